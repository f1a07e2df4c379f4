"""fsr_jax: real-world face super-resolution (teacher-student, progressive edge priors) in JAX/Flax."""

__version__ = "0.1.0"

"""Loss terms against hand computations."""
import numpy as np
import pytest

from fsr_jax import losses

A = np.array([[0.0, 0.5], [1.0, 0.25]], np.float32).reshape(1, 2, 2, 1)
B = np.array([[0.5, 0.5], [0.0, 0.75]], np.float32).reshape(1, 2, 2, 1)


def test_l1_mse_and_reconstruction_by_hand():
    assert float(losses.l1(A, B)) == pytest.approx((0.5 + 0 + 1 + 0.5) / 4)
    assert float(losses.mse(A, B)) == pytest.approx((0.25 + 0 + 1 + 0.25) / 4)
    # eq. 5: mean over iterations of each iteration's MSE
    expected = (0.375 + float(np.mean((A - 0.0) ** 2))) / 2
    assert float(losses.reconstruction(A, [B, np.zeros_like(B)])) == pytest.approx(expected)


def test_gan_losses_by_hand():
    real, fake = np.array([[2.0], [-1.0]]), np.array([[0.5], [-3.0]])
    softplus = lambda x: np.log1p(np.exp(x))  # noqa: E731
    assert float(losses.generator_adversarial(fake, "logistic")) == pytest.approx(np.mean(softplus(-fake)))
    assert float(losses.generator_adversarial(fake, "hinge")) == pytest.approx(1.25)
    # -E log sigmoid(real) - E log(1 - sigmoid(fake))
    sigmoid = lambda x: 1 / (1 + np.exp(-x))  # noqa: E731
    expected = -np.mean(np.log(sigmoid(real))) - np.mean(np.log(1 - sigmoid(fake)))
    assert float(losses.discriminator_adversarial(real, fake, "logistic")) == pytest.approx(expected, rel=1e-6)
    hinge = np.mean(np.maximum(0, 1 - real)) + np.mean(np.maximum(0, 1 + fake))
    assert float(losses.discriminator_adversarial(real, fake, "hinge")) == pytest.approx(hinge)
    with pytest.raises(ValueError, match="gan loss"):
        losses.generator_adversarial(fake, "wasserstein")

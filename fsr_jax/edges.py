"""Edge priors of the SR nets: Canny and Difference of Gaussians, and their registry `PRIORS`.

Both map RGB images (B, H, W, 3) float in [0, 1] to one-channel edge maps (B, H, W, 1) float32
and stop gradients: the paper computes them with OpenCV, outside the autodiff graph. Canny has
two implementations: `jax` (the default, on the device, integer arithmetic that reproduces
`cv2.Canny` step by step) and `opencv` (`cv2.Canny` itself through a host callback, the
reference). DoG is jnp, equal to OpenCV's Gaussian blurs to float rounding.

`PRIORS` maps each prior's name (what `model.sr.edges` lists) to an `EdgePrior`: its function,
the `model.sr` config fields it reads with their defaults, and how previews draw it. Registering
an entry (`register_prior`) is all a new prior needs: the model config, FeedbackSR and the
previews read the registry.
"""
from __future__ import annotations

import dataclasses
import functools
import math
from collections.abc import Callable, Mapping
from typing import Any

import cv2
import jax
import jax.numpy as jnp
import numpy as np
from jax.sharding import PartitionSpec

from fsr_jax.mesh import DATA_AXIS
from fsr_jax.registry import Registry

#: ITU-R BT.601 luma weights, as OpenCV's RGB2GRAY uses them for float images.
GREY_WEIGHTS = (0.299, 0.587, 0.114)
#: OpenCV's fixed-point RGB2GRAY for uint8: (R*9798 + G*19235 + B*3735 + 2**14) >> 15.
GREY_WEIGHTS_FIXED, GREY_SHIFT = (9798, 19235, 3735), 15
#: OpenCV Canny's tan(22.5 deg) in Q15 fixed point, for its sector test.
CANNY_SHIFT, TAN22_FIXED = 15, 13573
CANNY_IMPLS = ("jax", "opencv")


def to_uint8(images: jax.Array) -> jax.Array:
    """Float images in [0, 1] (any shape) -> uint8 0..255 by uint8(round(255 * clip(x, 0, 1)))."""
    return jnp.round(255.0 * jnp.clip(images, 0.0, 1.0)).astype(jnp.uint8)


def _canny_host(images: np.ndarray, low: float, high: float) -> np.ndarray:
    """Host side of `canny`: uint8 RGB (..., H, W, 3) -> uint8 {0, 1} (..., H, W, 1)."""
    images = np.asarray(images)
    flat = images.reshape((-1,) + images.shape[-3:])
    edges = np.empty(flat.shape[:-1] + (1,), np.uint8)
    for i, image in enumerate(flat):
        grey = cv2.cvtColor(np.ascontiguousarray(image), cv2.COLOR_RGB2GRAY)
        edges[i, ..., 0] = cv2.Canny(grey, low, high, apertureSize=3, L2gradient=False) // 255
    return edges.reshape(images.shape[:-1] + (1,))


def _batch_axis_to_shard(x: jax.Array) -> str | None:
    """The mesh axis `x`'s batch should be split over for a per-shard callback, if any.

    A mesh set with `jax.set_mesh` that has a `data` axis not already manual (i.e. we are
    not inside a `shard_map` over it) and that divides the batch.
    """
    mesh = jax.sharding.get_abstract_mesh()
    if mesh.empty or DATA_AXIS not in mesh.axis_names or DATA_AXIS in mesh.manual_axes:
        return None
    if x.shape[0] % mesh.shape[DATA_AXIS]:
        return None
    return DATA_AXIS


def _per_shard(fn, x: jax.Array) -> jax.Array:
    """Apply `fn` to each batch shard where a device mesh is active, else to the whole batch.

    Under a mesh a bare host callback would gather the whole batch onto one device; wrapping
    it in `shard_map` over the batch axis makes every shard call back on its own host.
    """
    axis = _batch_axis_to_shard(x)
    if axis is None:
        return fn(x)
    spec = PartitionSpec(axis)
    return jax.shard_map(fn, in_specs=spec, out_specs=spec)(x)


def canny(images: jax.Array, low: float = 50.0, high: float = 150.0, impl: str = "jax") -> jax.Array:
    """Canny edges of RGB images: `cv2.Canny(cvtColor(uint8(round(255 * clip(x, 0, 1))),
    RGB2GRAY), low, high, apertureSize=3, L2gradient=False)`.

    impl 'jax' computes it on the device (`canny_jax`); 'opencv' calls OpenCV on the host
    (`canny_opencv`). Args: images (B, H, W, 3) float in [0, 1]. Returns (B, H, W, 1) float32
    in {0, 1}, gradient stopped.
    """
    if impl == "jax":
        return canny_jax(images, low, high)
    if impl == "opencv":
        return canny_opencv(images, low, high)
    raise ValueError(f"Canny impl must be one of {CANNY_IMPLS}, got {impl!r}")


def canny_opencv(images: jax.Array, low: float = 50.0, high: float = 150.0) -> jax.Array:
    """`canny` by OpenCV on the host, through `jax.pure_callback`: the reference.

    Works eagerly and inside jit, vmap and shard_map (one host call per shard; under a mesh
    the batch is split so that each shard calls back on its own host). It stops the device
    for every call and cannot run inside `lax.scan` loops of several training steps.
    """
    host = functools.partial(_canny_host, low=float(low), high=float(high))

    def call(x: jax.Array) -> jax.Array:
        quantised = to_uint8(x)
        shape = jax.ShapeDtypeStruct(quantised.shape[:-1] + (1,), jnp.uint8)
        return jax.pure_callback(host, shape, quantised, vmap_method="expand_dims")

    edges = _per_shard(call, jax.lax.stop_gradient(images))
    return edges.astype(jnp.float32)


def grey_uint8(images: jax.Array) -> jax.Array:
    """OpenCV's RGB2GRAY of uint8 images, bit-exact: (..., 3) uint8 -> (...) int32 in 0..255."""
    rgb = images.astype(jnp.int32)
    weighted = sum(rgb[..., c] * w for c, w in enumerate(GREY_WEIGHTS_FIXED))
    return (weighted + (1 << (GREY_SHIFT - 1))) >> GREY_SHIFT


def _shifted(x: jax.Array, pad_mode: str):
    """x (B, H, W) padded by one pixel -> view(dy, dx), the neighbour at offset (dy, dx)."""
    padded = jnp.pad(x, ((0, 0), (1, 1), (1, 1)), mode=pad_mode)
    height, width = x.shape[1:]
    return lambda dy, dx: padded[:, 1 + dy:1 + dy + height, 1 + dx:1 + dx + width]


def sobel(grey: jax.Array) -> tuple[jax.Array, jax.Array]:
    """3x3 Sobel derivatives with replicated borders, as Canny's: (B, H, W) int -> (dx, dy) int32."""
    at = _shifted(grey.astype(jnp.int32), "edge")
    dx = (at(-1, 1) + 2 * at(0, 1) + at(1, 1)) - (at(-1, -1) + 2 * at(0, -1) + at(1, -1))
    dy = (at(1, -1) + 2 * at(1, 0) + at(1, 1)) - (at(-1, -1) + 2 * at(-1, 0) + at(-1, 1))
    return dx, dy


def canny_candidates(dx: jax.Array, dy: jax.Array, low: int, high: int) -> tuple[jax.Array, jax.Array]:
    """OpenCV's non-maximum suppression and double threshold on the L1 magnitude.

    A pixel with magnitude m = |dx| + |dy| > low survives if m beats its two neighbours across
    the gradient direction (sector by OpenCV's Q15 tangent test; left/up neighbour strictly,
    right/down non-strictly, both diagonals strictly); outside the image m is 0. Args: dx, dy
    (B, H, W) int32. Returns boolean (strong, weak): survivors with m > high, and the rest.
    """
    magnitude = jnp.abs(dx) + jnp.abs(dy)
    at = _shifted(magnitude, "constant")
    x = jnp.abs(dx)
    y = jnp.abs(dy) << CANNY_SHIFT
    tan22 = x * TAN22_FIXED
    tan67 = tan22 + (x << (CANNY_SHIFT + 1))
    same_sign = (dx ^ dy) >= 0
    horizontal = (magnitude > at(0, -1)) & (magnitude >= at(0, 1))
    vertical = (magnitude > at(-1, 0)) & (magnitude >= at(1, 0))
    diagonal = jnp.where(same_sign, (magnitude > at(-1, -1)) & (magnitude > at(1, 1)),
                         (magnitude > at(-1, 1)) & (magnitude > at(1, -1)))
    peak = jnp.where(y < tan22, horizontal, jnp.where(y > tan67, vertical, diagonal))
    survivor = peak & (magnitude > low)
    strong = survivor & (magnitude > high)
    return strong, survivor & ~strong


def hysteresis(strong: jax.Array, weak: jax.Array, steps_per_check: int = 4) -> jax.Array:
    """Grow `strong` into 8-connected `weak` pixels until nothing changes (on the device).

    Args: boolean (B, H, W). Returns boolean (B, H, W): every weak pixel connected to a strong
    one through weak pixels, and the strong ones. `steps_per_check` growth steps run between
    convergence checks (fewer loop round trips; extra steps after convergence change nothing).
    """
    def grow(edges):
        at = _shifted(edges, "constant")
        near = functools.reduce(jnp.logical_or, [at(dy, dx) for dy in (-1, 0, 1) for dx in (-1, 0, 1)])
        return edges | (weak & near)

    def grow_several(edges):
        for _ in range(steps_per_check):
            edges = grow(edges)
        return edges

    _, edges = jax.lax.while_loop(lambda pair: jnp.any(pair[0] != pair[1]),
                                  lambda pair: (pair[1], grow_several(pair[1])),
                                  (strong, grow_several(strong)))
    return edges


def opencv_thresholds(low: float, high: float) -> tuple[int, int]:
    """Canny's integer thresholds as OpenCV makes them for the L1 magnitude: swapped if
    low > high, then floored."""
    low, high = sorted((float(low), float(high)))
    return math.floor(low), math.floor(high)


def canny_jax(images: jax.Array, low: float = 50.0, high: float = 150.0) -> jax.Array:
    """`canny` computed on the device in jnp, reproducing `cv2.Canny` as the project calls it.

    uint8 quantisation, OpenCV's fixed-point grey, 3x3 Sobel with replicated borders, L1
    magnitude, OpenCV's non-maximum suppression and thresholds, hysteresis to convergence.
    No host callback: runs under jit, vmap, shard_map, grad (stopped) and `lax.scan`.
    """
    low_int, high_int = opencv_thresholds(low, high)
    grey = grey_uint8(to_uint8(jax.lax.stop_gradient(images)))
    strong, weak = canny_candidates(*sobel(grey), low_int, high_int)
    return hysteresis(strong, weak)[..., None].astype(jnp.float32)


def gaussian_kernel(sigma: float) -> np.ndarray:
    """OpenCV's 1-D Gaussian for float images: size round(8 * sigma + 1) | 1, sums to 1.

    Equals `cv2.getGaussianKernel(ksize, sigma, cv2.CV_64F)` for that size (9 for sigma 1.0,
    15 for 1.6). Returns float64 (ksize,).
    """
    if sigma <= 0:
        raise ValueError(f"DoG sigma must be positive, got {sigma}")
    size = int(math.floor(8.0 * sigma + 1.0 + 0.5)) | 1
    offsets = np.arange(size, dtype=np.float64) - (size - 1) / 2.0
    kernel = np.exp(-(offsets**2) / (2.0 * sigma * sigma))
    return kernel / kernel.sum()


def gaussian_blur(grey: jax.Array, sigma: float) -> jax.Array:
    """Separable Gaussian blur with BORDER_REFLECT_101 borders, as `cv2.GaussianBlur`.

    Args: grey (B, H, W) float32. Returns (B, H, W) float32.
    """
    kernel = jnp.asarray(gaussian_kernel(sigma), jnp.float32)
    radius = (kernel.shape[0] - 1) // 2
    padded = jnp.pad(grey, ((0, 0), (radius, radius), (radius, radius)), mode="reflect")
    height, width = grey.shape[1:]
    rows = sum(kernel[i] * padded[:, i:i + height, :] for i in range(kernel.shape[0]))
    return sum(kernel[i] * rows[:, :, i:i + width] for i in range(kernel.shape[0]))


def dog(images: jax.Array, sigmas: tuple[float, float] = (1.0, 1.6)) -> jax.Array:
    """Difference of Gaussians `G(sigmas[0]) - G(sigmas[1])` of the grey image.

    Grey = 0.299 R + 0.587 G + 0.114 B of clip(images, 0, 1), float32. Args: images
    (B, H, W, 3) float in [0, 1]. Returns (B, H, W, 1) float32, about +-0.12 on faces at
    the default sigmas, gradient stopped.
    """
    rgb = jnp.clip(jax.lax.stop_gradient(images).astype(jnp.float32), 0.0, 1.0)
    grey = rgb @ jnp.asarray(GREY_WEIGHTS, jnp.float32)
    fine, coarse = sigmas
    return (gaussian_blur(grey, fine) - gaussian_blur(grey, coarse))[..., None]


#: How a preview draws a prior's map: 'binary' (a {0, 1} map as black / white) or 'signed'
#: (a map of either sign, zero as mid-grey).
PANELS = ("binary", "signed")


@dataclasses.dataclass(frozen=True, eq=False)
class EdgePrior:
    """One edge prior an SR iteration can be fed.

    fn(images, **fields): (B, H, W, 3) float32 SR image, about [0, 1] (unclipped) ->
    (B, H, W, 1) float32 map, gradient stopped, called with every field of `fields` by name.
    """

    #: The map; keyword arguments named as `fields`.
    fn: Callable[..., jax.Array]
    #: The `model.sr` config fields fn reads, in order, with their defaults (the paper's, or
    #: a Decision where the paper gives none). Names are global to `model.sr`: prefix them with
    #: the prior's name.
    fields: Mapping[str, Any]
    #: How a preview draws the map: one of PANELS.
    panel: str
    #: Fields that only choose among implementations of the same map (same result, the caller's
    #: choice when loading exported weights, like the computation dtype).
    implementation_fields: tuple[str, ...] = ()
    #: check(**fields) raises ValueError naming a field whose value fn cannot use; or None.
    check: Callable[..., None] | None = None
    #: on_host(**fields): whether fn runs as a host callback with these field values (a loop of
    #: several training steps on the device cannot run one); None: never.
    on_host: Callable[..., bool] | None = None
    #: The map's column title in image grids ('' : the prior's registered name).
    title: str = ""

    def __post_init__(self):
        if self.panel not in PANELS:
            raise ValueError(f"an edge prior's panel must be one of {PANELS}, got {self.panel!r}")
        object.__setattr__(self, "fields", dict(self.fields))
        unknown = [name for name in self.implementation_fields if name not in self.fields]
        if unknown:
            raise ValueError(f"implementation_fields {unknown} are not among the fields {list(self.fields)}")


#: The registered edge priors by name, in registration order (canny, dog).
PRIORS: Registry[EdgePrior] = Registry("edge prior")


def register_prior(name: str, prior: EdgePrior) -> EdgePrior:
    """Add `prior` to PRIORS under `name`; refuses a taken name or a field another prior reads.

    (Remove one with `PRIORS.unregister(name)`.)
    """
    if name in PRIORS:
        raise ValueError(f"edge prior {name!r} is already registered")
    owners = {field: other for other, entry in PRIORS.items() for field in entry.fields}
    shared = {field: owners[field] for field in prior.fields if field in owners}
    if shared:
        raise ValueError(f"edge prior {name!r}: config fields already read by other priors: {shared}")
    return PRIORS.register(name, prior)


def unknown_priors(names) -> list[str]:
    """The names among `names` that are not registered, in order."""
    return [name for name in names if name not in PRIORS]


def prior_defaults() -> dict[str, Any]:
    """{field: default} of every registered prior's config fields, in registration order."""
    return {field: value for prior in PRIORS.values() for field, value in prior.fields.items()}


def implementation_fields() -> tuple[str, ...]:
    """Every registered prior's implementation_fields."""
    return tuple(field for prior in PRIORS.values() for field in prior.implementation_fields)


def _canny_prior(images: jax.Array, canny_thresholds: tuple[float, float], canny_impl: str) -> jax.Array:
    return canny(images, *canny_thresholds, impl=canny_impl)


def _check_canny(canny_thresholds, canny_impl) -> None:
    if canny_impl not in CANNY_IMPLS:
        raise ValueError(f"canny_impl must be one of {CANNY_IMPLS}, got {canny_impl!r}")
    if len(tuple(canny_thresholds)) != 2:
        raise ValueError(f"canny_thresholds must be (low, high), got {canny_thresholds!r}")


def _canny_on_host(canny_thresholds, canny_impl) -> bool:
    del canny_thresholds
    return canny_impl == "opencv"


def _dog_prior(images: jax.Array, dog_sigmas: tuple[float, float]) -> jax.Array:
    return dog(images, dog_sigmas)


def _check_dog(dog_sigmas) -> None:
    sigmas = tuple(dog_sigmas)
    if len(sigmas) != 2 or not all(s > 0 for s in sigmas):
        raise ValueError(f"dog_sigmas must be two positive sigmas (fine, coarse), got {dog_sigmas!r}")


register_prior("canny", EdgePrior(
    _canny_prior,
    # Hysteresis thresholds on 0..255 grey; Decision: OpenCV's usual 50/150 (paper: none).
    # 'jax': Canny on the device, pixel-equal to cv2.Canny (fast, allows several training steps
    # per call); 'opencv': cv2.Canny through a host callback (the reference).
    fields={"canny_thresholds": (50.0, 150.0), "canny_impl": "jax"},
    panel="binary", implementation_fields=("canny_impl",), check=_check_canny, on_host=_canny_on_host,
    title="Canny"))
register_prior("dog", EdgePrior(
    _dog_prior,
    # Decision: sigmas 1.0 and 1.6, the usual ratio approximating the LoG.
    fields={"dog_sigmas": (1.0, 1.6)},
    panel="signed", check=_check_dog, title="DoG"))

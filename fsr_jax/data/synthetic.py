"""The embedded default data: synthetic cartoon faces, HR and "real" LR.

No real face can ship with the package, so the default training set is drawn here,
deterministically from a seed: HR faces (varied head shapes, skin tones, eyes, brows, noses,
mouths, hair styles and colours, ears, glasses, clothes, backgrounds and lighting, slight
head roll) and, from disjoint seeds, LR faces made by a degradation that is not bicubic
(`fsr_jax.data.degrade`: blur, decimation, colour shift, noise, JPEG), so the gap between
bicubic pairs and "real" LR that the paper is about exists in the default set too.
**Decision**: the paper trains on FFHQ / WIDER FACE only.

Every face i of stream s is drawn from `numpy.random.default_rng([seed, s, i])`; the streams
(HR train, LR train, HR test, LR test) never share a seed, so HR and LR sets are unpaired.

Run `python -m fsr_jax.data.synthetic --output docs/contact_sheet_synthetic.png [--seed 0]` for
a contact sheet of both sets.
"""
from __future__ import annotations

import math

import numpy as np
from absl import flags
from PIL import Image, ImageDraw

from fsr_jax import cli
from fsr_jax.data.degrade import DegradationConfig, degrade, sample_degradation

# Seed streams: face i of stream s comes from default_rng([seed, s, i]).
STREAM_HR, STREAM_LR, STREAM_TEST_HR, STREAM_TEST_LR = 0, 1, 2, 3
_SUPERSAMPLE = 4  # faces are drawn at 4x and reduced with PIL's Lanczos filter

_SKIN = np.array([[255, 224, 196], [241, 194, 167], [224, 172, 135], [198, 134, 96],
                  [161, 102, 68], [120, 76, 50], [86, 56, 38]], np.float64)
_HAIR = np.array([[20, 16, 14], [58, 38, 26], [101, 67, 40], [166, 122, 72], [222, 188, 130],
                  [150, 60, 30], [160, 160, 160], [232, 228, 220]], np.float64)
_IRIS = np.array([[70, 45, 25], [40, 30, 20], [70, 110, 160], [80, 120, 80], [120, 100, 60]],
                 np.float64)


def _colour(rgb) -> tuple[int, int, int]:
    return tuple(int(round(float(np.clip(c, 0, 255)))) for c in rgb)


def _pick(rng: np.random.Generator, palette: np.ndarray, jitter: float) -> np.ndarray:
    """A palette colour blended with its neighbour and jittered by up to `jitter` levels."""
    i = rng.uniform(0, len(palette) - 1)
    lo = int(math.floor(i))
    hi = min(lo + 1, len(palette) - 1)
    base = palette[lo] * (1 - (i - lo)) + palette[hi] * (i - lo)
    return base + rng.uniform(-jitter, jitter, 3)


def _background(rng: np.random.Generator, side: int) -> Image.Image:
    """A two-colour linear gradient in a random direction with a few soft blobs.

    Smooth, so computed at a quarter of `side` and enlarged bilinearly.
    """
    n = side // _SUPERSAMPLE
    c0, c1 = rng.uniform(0, 255, 3), rng.uniform(0, 255, 3)
    angle = rng.uniform(0, 2 * np.pi)
    y, x = np.mgrid[0:n, 0:n] / (n - 1) - 0.5
    t = np.clip((x * np.cos(angle) + y * np.sin(angle)) + 0.5, 0, 1)[..., None]
    image = c0 * (1 - t) + c1 * t
    for _ in range(rng.integers(0, 4)):
        cx, cy, r = rng.uniform(0, 1), rng.uniform(0, 1), rng.uniform(0.05, 0.3)
        mask = np.exp(-((x + 0.5 - cx) ** 2 + (y + 0.5 - cy) ** 2) / (2 * r * r))[..., None]
        image = image * (1 - 0.6 * mask) + rng.uniform(0, 255, 3) * 0.6 * mask
    small = Image.fromarray(np.clip(image, 0, 255).astype(np.uint8))
    return small.resize((side, side), Image.BILINEAR)


def _ellipse(draw: ImageDraw.ImageDraw, cx, cy, rx, ry, **kw) -> None:
    draw.ellipse([cx - rx, cy - ry, cx + rx, cy + ry], **kw)


def _draw_head(rng: np.random.Generator, side: int) -> Image.Image:
    """An RGBA layer with hair, head, ears, neck, shoulders and facial features."""
    s = side
    layer = Image.new("RGBA", (s, s), (0, 0, 0, 0))
    d = ImageDraw.Draw(layer)
    cx, cy = s * rng.uniform(0.46, 0.54), s * rng.uniform(0.47, 0.55)
    rx = s * rng.uniform(0.25, 0.32)
    ry = rx * rng.uniform(1.15, 1.45)
    skin = _pick(rng, _SKIN, 12)
    shade = skin * 0.8
    hair = _pick(rng, _HAIR, 15)
    hair_style = rng.choice(["short", "long", "bald", "fringe", "bun"], p=[0.3, 0.3, 0.1, 0.2, 0.1])
    cloth = rng.uniform(0, 255, 3)

    if hair_style in ("long", "bun"):  # hair behind the head
        _ellipse(d, cx, cy + ry * 0.35, rx * 1.25, ry * 1.2, fill=_colour(hair))
    if hair_style == "bun":
        _ellipse(d, cx, cy - ry * 1.05, rx * 0.45, rx * 0.4, fill=_colour(hair))
    _ellipse(d, cx, s * 1.05, rx * 2.1, s * 0.22, fill=_colour(cloth))  # shoulders
    d.rectangle([cx - rx * 0.42, cy + ry * 0.6, cx + rx * 0.42, s * 0.9], fill=_colour(shade))
    for side_sign in (-1, 1):  # ears
        _ellipse(d, cx + side_sign * rx * 0.98, cy + ry * 0.05, rx * 0.16, ry * 0.2,
                 fill=_colour(skin * 0.92))
    chin = rng.uniform(0.0, 0.25)  # narrower jaw: a second, smaller ellipse for the lower face
    _ellipse(d, cx, cy, rx, ry * (1 - chin * 0.3), fill=_colour(skin))
    _ellipse(d, cx, cy + ry * 0.25, rx * (1 - chin), ry * 0.75, fill=_colour(skin))
    if hair_style in ("short", "long", "fringe", "bun"):
        top = cy - ry * rng.uniform(1.05, 1.2)
        d.chord([cx - rx * 1.08, top, cx + rx * 1.08, cy + ry * rng.uniform(0.0, 0.4)],
                180, 360, fill=_colour(hair))
    if hair_style == "fringe":
        d.chord([cx - rx, cy - ry * 1.0, cx + rx * rng.uniform(0.6, 1.0), cy - ry * 0.2],
                0, 180, fill=_colour(hair))

    eye_y = cy - ry * rng.uniform(0.02, 0.15)
    eye_dx = rx * rng.uniform(0.36, 0.48)
    eye_rx, eye_ry = rx * rng.uniform(0.14, 0.2), ry * rng.uniform(0.05, 0.09)
    iris = _pick(rng, _IRIS, 10)
    brow_y = eye_y - ry * rng.uniform(0.14, 0.24)
    brow_tilt = rng.uniform(-0.08, 0.12) * ry
    brow_w = max(2, int(s * rng.uniform(0.012, 0.03)))
    brow_colour = _colour(hair * 0.7 if hair_style != "bald" else shade * 0.6)
    for side_sign in (-1, 1):
        ex = cx + side_sign * eye_dx
        _ellipse(d, ex, eye_y, eye_rx, eye_ry, fill=(245, 245, 240))
        _ellipse(d, ex, eye_y, eye_ry * 0.95, eye_ry * 0.95, fill=_colour(iris))
        _ellipse(d, ex, eye_y, eye_ry * 0.45, eye_ry * 0.45, fill=(10, 10, 10))
        d.arc([ex - eye_rx, eye_y - eye_ry, ex + eye_rx, eye_y + eye_ry], 180, 360,
              fill=_colour(shade * 0.6), width=max(1, s // 128))
        inner, outer = ex - side_sign * eye_rx * 1.1, ex + side_sign * eye_rx * 1.2
        d.line([(inner, brow_y + brow_tilt), (ex, brow_y - ry * 0.03), (outer, brow_y)],
               fill=brow_colour, width=brow_w, joint="curve")

    nose_len = ry * rng.uniform(0.25, 0.4)
    nose_w = rx * rng.uniform(0.12, 0.22)
    nose_top, nose_bottom = eye_y + ry * 0.05, eye_y + nose_len
    d.line([(cx + nose_w * 0.3, nose_top), (cx + nose_w * 0.5, nose_bottom)],
           fill=_colour(shade), width=max(1, s // 100))
    d.arc([cx - nose_w, nose_bottom - nose_w * 0.6, cx + nose_w, nose_bottom + nose_w * 0.6],
          20, 160, fill=_colour(shade * 0.85), width=max(1, s // 80))

    mouth_y = nose_bottom + ry * rng.uniform(0.18, 0.3)
    mouth_w = rx * rng.uniform(0.3, 0.55)
    lips = skin * np.array([0.85, 0.55, 0.55]) + rng.uniform(-10, 10, 3)
    smile = rng.uniform(-0.3, 1.0)
    if rng.random() < 0.3:  # open mouth with teeth
        mh = ry * rng.uniform(0.06, 0.14)
        _ellipse(d, cx, mouth_y, mouth_w, mh, fill=_colour(lips * 0.4))
        d.rectangle([cx - mouth_w * 0.6, mouth_y - mh, cx + mouth_w * 0.6, mouth_y - mh * 0.4],
                    fill=(235, 235, 225))
        _ellipse(d, cx, mouth_y, mouth_w, mh, outline=_colour(lips), width=max(2, s // 70))
    else:
        curve = ry * 0.1 * smile
        box = [cx - mouth_w, mouth_y - abs(curve) - 1, cx + mouth_w, mouth_y + abs(curve) + 1]
        d.arc(box, 0 if smile >= 0 else 180, 180 if smile >= 0 else 360, fill=_colour(lips),
              width=max(2, int(s * rng.uniform(0.012, 0.025))))
    if hair_style != "bald" and rng.random() < 0.15:  # beard
        d.chord([cx - rx * 0.95, cy, cx + rx * 0.95, cy + ry * 1.02], 20, 160,
                fill=_colour(hair * 0.9))
        _ellipse(d, cx, mouth_y, mouth_w * 1.05, ry * 0.07, fill=_colour(lips))
    if rng.random() < 0.15:  # glasses
        frame = _colour(rng.uniform(0, 120, 3))
        r = eye_rx * 1.35
        for side_sign in (-1, 1):
            _ellipse(d, cx + side_sign * eye_dx, eye_y, r, r * 0.8, outline=frame,
                     width=max(2, s // 80))
        d.line([(cx - eye_dx + r, eye_y), (cx + eye_dx - r, eye_y)], fill=frame,
               width=max(2, s // 80))

    # Directional lighting over the head layer.
    strength = rng.uniform(0.0, 0.45)
    angle = rng.uniform(0, 2 * np.pi)
    ramp = np.linspace(-0.5, 0.5, s, dtype=np.float32)
    gain = 1.0 + strength * (ramp[None, :] * np.cos(angle) + ramp[:, None] * np.sin(angle))
    rgba = np.asarray(layer).copy()
    rgba[..., :3] = np.clip(rgba[..., :3] * gain[..., None], 0, 255)
    layer = Image.fromarray(rgba, "RGBA")
    return layer.rotate(rng.uniform(-12, 12), resample=Image.BILINEAR,
                        center=(cx, cy + ry * 0.3))


def draw_face(rng: np.random.Generator, size: int = 64) -> np.ndarray:
    """One synthetic face: uint8 (size, size, 3) RGB in [0, 255], drawn from `rng`."""
    side = size * _SUPERSAMPLE
    image = _background(rng, side).convert("RGBA")
    image.alpha_composite(_draw_head(rng, side))
    image = image.convert("RGB").resize((size, size), Image.LANCZOS)
    pixels = np.asarray(image, np.float64)
    contrast, brightness = rng.uniform(0.8, 1.15), rng.uniform(-20, 20)
    pixels = (pixels - 128) * contrast + 128 + brightness
    return np.clip(np.round(pixels), 0, 255).astype(np.uint8)


def face_rng(seed: int, stream: int, index: int) -> np.random.Generator:
    """The generator of face `index` in `stream` (STREAM_*); streams never share a seed."""
    return np.random.default_rng([seed, stream, index])


# ---------------------------------------------------------------- the sets


def hr_face(seed: int, index: int, size: int = 64, stream: int = STREAM_HR) -> np.ndarray:
    """HR face `index`: uint8 (size, size, 3)."""
    return draw_face(face_rng(seed, stream, index), size)


def lr_face(seed: int, index: int, hr_size: int = 64, lr_size: int = 16,
            stream: int = STREAM_LR, cfg: DegradationConfig = DegradationConfig()) -> np.ndarray:
    """"Real" LR face `index`: uint8 (lr_size, lr_size, 3), a degraded face of its own seed."""
    if hr_size % lr_size:
        raise ValueError(f"hr_size {hr_size} must be a multiple of lr_size {lr_size}")
    rng = face_rng(seed, stream, index)
    clean = draw_face(rng, hr_size)
    factor = hr_size // lr_size
    return degrade(clean, sample_degradation(rng, cfg, factor), factor, rng)


def contact_sheet(seed: int = 0, rows: int = 6, cols: int = 8, hr_size: int = 64,
                  lr_size: int = 16) -> Image.Image:
    """A picture of the first rows*cols HR faces (left) and LR faces (right, nearest-upscaled)."""
    gap, label = 16, 20
    width = 2 * cols * hr_size + gap
    sheet = Image.new("RGB", (width, rows * hr_size + label), (255, 255, 255))
    draw = ImageDraw.Draw(sheet)
    draw.text((4, 4), f"synthetic HR {hr_size}x{hr_size} (seed {seed})", fill=(0, 0, 0))
    draw.text((cols * hr_size + gap + 4, 4),
              f"synthetic 'real' LR {lr_size}x{lr_size}, shown x{hr_size // lr_size} nearest",
              fill=(0, 0, 0))
    for k in range(rows * cols):
        r, c = divmod(k, cols)
        hr = Image.fromarray(hr_face(seed, k, hr_size))
        lr = Image.fromarray(lr_face(seed, k, hr_size, lr_size)).resize((hr_size, hr_size),
                                                                        Image.NEAREST)
        sheet.paste(hr, (c * hr_size, label + r * hr_size))
        sheet.paste(lr, (cols * hr_size + gap + c * hr_size, label + r * hr_size))
    return sheet


def _define(fv: flags.FlagValues, argv) -> None:
    del argv
    flags.DEFINE_string("output", None, "The contact sheet to write (PNG).", flag_values=fv)
    flags.DEFINE_integer("seed", 0, "Seed of the faces.", flag_values=fv)
    flags.mark_flag_as_required("output", flag_values=fv)


def _run(fv: flags.FlagValues, args: list[str]) -> None:
    del args
    contact_sheet(fv.seed).save(fv.output)
    print(f"wrote {fv.output}")


def main(argv: list[str] | None = None) -> int:
    """The contact-sheet command; `argv` (the arguments after the program name) runs it in this process."""
    return cli.run(_define, _run, argv)


if __name__ == "__main__":
    main()

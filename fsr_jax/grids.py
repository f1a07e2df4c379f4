"""Image grids of faces: panels side by side, a face a row, titled columns (training previews,
evaluation grids, the DeNet contact sheet)."""
from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
from PIL import Image, ImageDraw, ImageFont


def to_panel(images: jax.Array, size: int, kind: str = "rgb") -> jax.Array:
    """One column of an image grid: (N, h, w, C) -> float32 (N, size, size, 3) in [0, 1].

    Nearest-neighbour upscaling. kind 'rgb': [0, 1] images; 'binary': {0, 1} edge maps;
    'signed': DoG maps, shown as 0.5 + 4 x.
    """
    images = jnp.asarray(images, jnp.float32)
    if kind == "signed":
        images = 0.5 + 4.0 * images
    if images.shape[-1] == 1:
        images = jnp.repeat(images, 3, axis=-1)
    factor = size // images.shape[1]
    images = jnp.repeat(jnp.repeat(images, factor, axis=1), factor, axis=2)
    return jnp.clip(images, 0.0, 1.0)


def image_grid(columns: list[np.ndarray]) -> np.ndarray:
    """Panels side by side, faces one per row: list of (N, S, S, 3) in [0, 1] -> uint8 (N*S, P*S, 3)."""
    rows = np.concatenate([np.asarray(c) for c in columns], axis=2)     # (N, S, P*S, 3)
    return np.round(255.0 * rows.reshape(-1, *rows.shape[2:])).astype(np.uint8)


def titled_grid(columns: list[np.ndarray], titles: list[str] | None) -> np.ndarray:
    """`image_grid` of the columns, with a title over each column when `titles` are given."""
    grid = image_grid(columns)
    return titled(grid, titles) if titles else grid


def titled(grid: np.ndarray, titles: list[str]) -> np.ndarray:
    """A title band over an image grid of len(titles) equal columns: uint8 (H, W, 3) ->
    uint8 (H + band, W, 3), each title centred over its column in black on white, in the largest
    font size from 12 down to 6 at which the longest title fits its column."""
    height, width = grid.shape[:2]
    column = width // len(titles)
    for size in range(12, 5, -1):
        font = ImageFont.load_default(size=size)
        if max(font.getlength(t) for t in titles) <= column - 2:
            break
    band = size + 6
    canvas = Image.new("RGB", (width, height + band), "white")
    canvas.paste(Image.fromarray(grid), (0, band))
    draw = ImageDraw.Draw(canvas)
    for i, title in enumerate(titles):
        draw.text((i * column + column / 2, band / 2), title, fill="black", font=font, anchor="mm")
    return np.asarray(canvas)

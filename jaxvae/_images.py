"""Image grids as PNG files."""

from __future__ import annotations

import math
import pathlib

import numpy as np
from PIL import Image


def image_grid(images: np.ndarray, *, columns: int, padding: int = 1) -> np.ndarray:
  """Tiles images into one picture, row by row.

  Args:
    images: `[N, H, W, C]` floats in [0, 1] (C = 1 or 3).
    columns: images per row; the last row is padded with blank tiles.
    padding: pixels of background between tiles.

  Returns:
    `[rows * (H + padding) + padding, columns * (W + padding) + padding, C]` uint8.
  """
  images = np.asarray(images, dtype=np.float32)
  if images.ndim != 4 or images.shape[-1] not in (1, 3):
    raise ValueError(f'`images` must be [N, H, W, C] with C = 1 or 3; got shape {images.shape}.')
  num, height, width, channels = images.shape
  rows = math.ceil(num / columns)
  grid = np.full(
    (rows * (height + padding) + padding, columns * (width + padding) + padding, channels), 0.5, np.float32
  )
  for i, image in enumerate(images):
    top = padding + (i // columns) * (height + padding)
    left = padding + (i % columns) * (width + padding)
    grid[top : top + height, left : left + width] = image
  return np.round(np.clip(grid, 0.0, 1.0) * 255).astype(np.uint8)


def save_png(path: str | pathlib.Path, grid: np.ndarray, *, scale: int = 2) -> None:
  """Writes a uint8 `[H, W, C]` picture as PNG, enlarged `scale` times with nearest-neighbour pixels."""
  picture = Image.fromarray(grid[..., 0] if grid.shape[-1] == 1 else grid)
  picture = picture.resize((picture.width * scale, picture.height * scale), Image.NEAREST)
  picture.save(path)

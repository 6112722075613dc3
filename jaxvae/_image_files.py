"""Data a user brings as files: a folder of images, an `.npz` of arrays, and the checks that guard them.

A folder is scanned once (every JPEG, PNG and WebP under it, recursively, in
sorted order) and split into train and test by a hash of each file's relative
path, so adding files never moves old ones between splits. Images are decoded
batch by batch, converted to the configured channel count, centre-cropped to
their largest square and resized. Every check here runs before anything is
compiled and raises a one-line `ValueError` (or `FileNotFoundError`).
"""

from __future__ import annotations

import dataclasses
import hashlib
import logging
import os
import pathlib
import threading
import zipfile
from collections.abc import Mapping

import numpy as np
from PIL import Image

from jaxvae import _types

IMAGE_SUFFIXES = ('.jpg', '.jpeg', '.png', '.webp')
CHANNELS = (1, 3)  # grey or RGB; RGBA and palette images become RGB (alpha dropped)
_PIL_MODES = {1: 'L', 3: 'RGB'}
# PIL's errors for a truncated or corrupt file.
_DECODE_ERRORS = (OSError, SyntaxError, ValueError, Image.DecompressionBombError)


def hash_fraction(key: str) -> float:
  """A number in [0, 1) fixed by `key` alone (SHA-256): the same on every machine and in every run."""
  return int.from_bytes(hashlib.sha256(key.encode('utf-8')).digest()[:8], 'big') / 2.0**64


def hash_split(keys: list[str], *, test_fraction: float) -> dict[str, np.ndarray]:
  """Positions of `keys` in `'train'` and `'test'`: a key is a test key iff `hash_fraction(key) < test_fraction`.

  A key's split depends on the key only, never on the others, so adding keys moves no old one.
  """
  is_test = np.array([hash_fraction(key) < test_fraction for key in keys], bool)
  return {'train': np.flatnonzero(~is_test), 'test': np.flatnonzero(is_test)}


def center_crop_and_resize(image: np.ndarray, *, crop_size: int, image_size: int) -> np.ndarray:
  """The central `crop_size` square of `image [H, W, C]` (uint8), resized to `[image_size, image_size, C]`.

  Resizing is PIL's antialiased bilinear filter, the usual CelebA preprocessing
  (e.g. a 148 crop for beta-VAE-style models, 140 for WAE comparisons).
  """
  height, width = image.shape[:2]
  top, left = (height - crop_size) // 2, (width - crop_size) // 2
  crop = image[top : top + crop_size, left : left + crop_size]
  if crop_size == image_size:
    return np.ascontiguousarray(crop)
  resized = Image.fromarray(crop.squeeze(-1) if crop.shape[-1] == 1 else crop).resize(
    (image_size, image_size), Image.Resampling.BILINEAR
  )
  return np.asarray(resized).reshape(image_size, image_size, crop.shape[-1])


# ----------------------------------------------------------------------------- folders


@dataclasses.dataclass(frozen=True)
class ImageFolder:
  """What a scan of a folder found: its image files, their class labels, and what was skipped."""

  root: pathlib.Path
  files: tuple[str, ...]  # [N] paths relative to root, POSIX, sorted
  labels: np.ndarray | None  # [N] int32 class of each file (its top-level sub-folder), if asked for
  class_names: tuple[str, ...]  # sub-folder of each label; () without labels
  min_side: int  # the shortest side of any image
  skipped: tuple[str, ...]  # files whose header could not be read


def scan_folder(path: str, *, labels: bool, image_size: int) -> ImageFolder:
  """Every JPEG, PNG and WebP under `path`, recursively, with each image's header read once.

  Args:
    path: the folder (`config.data.path`).
    labels: label each image by its top-level sub-folder (`config.data.folder_labels`).
    image_size: the side images are resized to; no image may be smaller.

  Returns:
    An `ImageFolder`. Files whose header cannot be read are left out, logged and
    listed in `skipped`.

  Raises:
    FileNotFoundError: for a path that does not exist or is not a folder.
    ValueError: for a folder without readable images, an image outside a class
      sub-folder when labels are asked for, or an image smaller than `image_size`.
  """
  root = pathlib.Path(path).expanduser()
  if not root.is_dir():
    what = 'is not a folder' if root.exists() else 'does not exist'
    raise FileNotFoundError(f'config.data.path {str(root)!r} {what}; point it at a folder of images.')
  found = sorted(
    p.relative_to(root).as_posix() for p in root.rglob('*') if p.suffix.lower() in IMAGE_SUFFIXES and p.is_file()
  )
  files, sides, skipped = [], [], []
  for name in found:
    try:
      with Image.open(root / name) as image:
        sides.append(min(image.size))
      files.append(name)
    except _DECODE_ERRORS as error:
      logging.warning('skipping unreadable image %s: %s', root / name, error)
      skipped.append(name)
  if not files:
    raise ValueError(
      f'config.data.path {str(root)!r} holds no readable JPEG, PNG or WebP images (searched recursively'
      f'{f"; {len(skipped)} unreadable" if skipped else ""}).'
    )
  if skipped:
    logging.warning('skipped %d unreadable of %d images under %s', len(skipped), len(found), root)
  small = [name for name, side in zip(files, sides, strict=True) if side < image_size]
  if small:
    raise ValueError(
      f'{len(small)} images under {str(root)!r} are smaller than config.data.image_size={image_size}, e.g. '
      f'{small[0]!r} ({min(sides)} pixels on its shortest side); lower image_size or remove them.'
    )
  label_array, class_names = None, ()
  if labels:
    outside = [name for name in files if '/' not in name]
    if outside:
      raise ValueError(
        f'config.data.folder_labels=True labels images by their sub-folder of {str(root)!r}, but {outside[0]!r} '
        'is in no sub-folder; move it into one, or set config.data.folder_labels=False.'
      )
    tops = [name.split('/', 1)[0] for name in files]
    class_names = tuple(sorted(set(tops)))
    index = {name: i for i, name in enumerate(class_names)}
    label_array = np.array([index[top] for top in tops], np.int32)
  return ImageFolder(root, tuple(files), label_array, class_names, min(sides), tuple(skipped))


def decode_image(path: os.PathLike | str, *, channels: int, image_size: int) -> np.ndarray:
  """One image file as uint8 `[image_size, image_size, channels]`: converted, centre square cropped, resized.

  JPEGs are decoded at the smallest power-of-two reduction that still covers
  `image_size` (PIL's `draft`), which halves decoding time for downscaling.

  Raises:
    OSError, SyntaxError, ValueError: for a file PIL cannot decode.
  """
  with Image.open(path) as image:
    width, height = image.size
    side = min(width, height)
    # Ask for the smallest decode whose shortest side still covers image_size.
    image.draft(_PIL_MODES[channels], (-(-width * image_size // side), -(-height * image_size // side)))
    image = image.convert(_PIL_MODES[channels])
    width, height = image.size
    side = min(width, height)
    left, top = (width - side) // 2, (height - side) // 2
    # Crop, then resize (as `center_crop_and_resize`): resizing with a box would filter pixels outside it.
    image = image.crop((left, top, left + side, top + side)).resize((image_size, image_size), Image.Resampling.BILINEAR)
    return np.asarray(image, np.uint8).reshape(image_size, image_size, channels)


class FolderSource:
  """Random access to images of a folder, decoded on demand; unreadable files are logged and replaced.

  An image that cannot be decoded mid-run is logged with its path and replaced
  by the next readable example of the split (deterministically), so a batch keeps
  its size and training never stops on a bad file; `num_skipped` counts them.
  """

  def __init__(
    self, root: pathlib.Path, files: tuple[str, ...], labels: np.ndarray | None, *, channels: int, size: int
  ):
    self.root, self.files, self.labels = root, files, labels
    self.channels, self.image_size = channels, size
    self._lock = threading.Lock()
    self._bad: set[int] = set()

  def __len__(self) -> int:
    return len(self.files)

  @property
  def num_skipped(self) -> int:
    return len(self._bad)

  def _decode(self, index: int) -> tuple[int, np.ndarray]:
    """The image at `index`, or at the next readable position after it; with the position read."""
    for step in range(len(self.files)):
      position = (index + step) % len(self.files)
      if position in self._bad:
        continue
      try:
        return position, decode_image(
          self.root / self.files[position], channels=self.channels, image_size=self.image_size
        )
      except _DECODE_ERRORS as error:
        with self._lock:
          self._bad.add(position)
          count = len(self._bad)
        logging.warning('skipped unreadable image %s (%d so far): %s', self.root / self.files[position], count, error)
    raise ValueError(f'no image under {str(self.root)!r} can be decoded.')

  def read(self, indices: np.ndarray) -> _types.Batch:
    decoded = [self._decode(int(i)) for i in indices]
    images = [image for _, image in decoded]
    shape = (self.image_size, self.image_size, self.channels)
    batch = {'image': np.stack(images) if images else np.zeros((0, *shape), np.uint8)}
    if self.labels is not None:
      batch['label'] = self.labels[np.array([position for position, _ in decoded], np.int64)]
    return batch


# ----------------------------------------------------------------------------- arrays


def check_arrays(arrays: Mapping[str, np.ndarray], *, where: str) -> int:
  """Checks a user's arrays: `images` uint8 `[N, H, W, C]`, optional `labels [N]` and `factors [N, F]`.

  Args:
    arrays: the arrays (an `.npz` file's, or a first batch of a user's source).
    where: what to name them after in messages (a path, or 'the source').

  Returns:
    The number of classes: `arrays['num_classes']` if given, else 1 + the
    largest label; 0 without labels.

  Raises:
    ValueError: naming the array, what it must be and what it is.
  """
  if 'images' not in arrays:
    raise ValueError(f'{where} has no `images` array (uint8 [N, H, W, C]); it has {", ".join(sorted(arrays))}.')
  images = arrays['images']
  if images.dtype != np.uint8:
    raise ValueError(f'`images` in {where} must be uint8 (0..255); got dtype {images.dtype}.')
  if images.ndim != 4 or min(images.shape) == 0:
    raise ValueError(
      f'`images` in {where} must have shape [N, H, W, C] with no empty axis (add a last axis of 1 for grey '
      f'images); got shape {images.shape}.'
    )
  num_classes = 0
  if 'labels' in arrays:
    labels = arrays['labels']
    if labels.ndim != 1 or len(labels) != len(images) or not np.issubdtype(labels.dtype, np.integer):
      raise ValueError(
        f'`labels` in {where} must be integers of shape [{len(images)}] (one per image); got {labels.dtype} '
        f'of shape {labels.shape}.'
      )
    num_classes = int(arrays['num_classes']) if 'num_classes' in arrays else int(labels.max()) + 1
    bad = (labels < 0) | (labels >= num_classes)
    if bad.any():
      raise ValueError(
        f'`labels` in {where} must lie in [0, {num_classes}) (num_classes={num_classes}); got {labels[bad][0]}.'
      )
  if 'factors' in arrays:
    factors = arrays['factors']
    if factors.ndim != 2 or len(factors) != len(images):
      raise ValueError(
        f'`factors` in {where} must have shape [{len(images)}, F] (one row per image); got shape {factors.shape}.'
      )
  return num_classes


def load_npz(path: str) -> tuple[dict[str, np.ndarray], int]:
  """The checked arrays of an `.npz` file as a batch (`'image'`, and `'label'` int32, `'factors'` where present).

  Returns:
    The batch of all examples, and the number of classes (0 without labels).

  Raises:
    FileNotFoundError: for a path that does not exist.
    ValueError: for a file that is not an `.npz`, or arrays `check_arrays` refuses.
  """
  file = pathlib.Path(path).expanduser()
  if not file.is_file():
    raise FileNotFoundError(f'config.data.path {str(file)!r} does not exist; point it at an .npz file.')
  try:
    loaded = np.load(file, allow_pickle=False)
  except (ValueError, OSError) as error:
    raise ValueError(f'config.data.path {str(file)!r} is not a readable .npz file ({error}).') from error
  if not isinstance(loaded, np.lib.npyio.NpzFile):
    raise ValueError(f'config.data.path {str(file)!r} is a single .npy array, not an .npz of named arrays.')
  try:
    with loaded as npz:
      arrays = {name: npz[name] for name in npz.files}
  except (zipfile.BadZipFile, ValueError, OSError) as error:
    raise ValueError(f'config.data.path {str(file)!r} is not a readable .npz file ({error}).') from error
  num_classes = check_arrays(arrays, where=str(file))
  batch = {'image': arrays['images']}
  if 'labels' in arrays:
    batch['label'] = arrays['labels'].astype(np.int32)
  if 'factors' in arrays:
    batch['factors'] = arrays['factors']
  return batch, num_classes

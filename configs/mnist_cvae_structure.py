"""The conditional VAE of configs/mnist_cvae.py, conditioned on the digit's edges (a structure map).

python train.py --config configs/mnist_cvae_structure.py --workdir runs/mnist_cvae_structure
"""

import ml_collections

from configs import mnist_cvae


def get_config(variant: str = '') -> ml_collections.ConfigDict:
  return mnist_cvae.get_config(','.join(filter(None, ['structure', variant])))

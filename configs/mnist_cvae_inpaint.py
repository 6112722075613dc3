"""The conditional VAE of configs/mnist_cvae.py, conditioned on the digit with quadrants hidden (inpainting).

python train.py --config configs/mnist_cvae_inpaint.py --workdir runs/mnist_cvae_inpaint
"""

import ml_collections

from configs import mnist_cvae


def get_config(variant: str = '') -> ml_collections.ConfigDict:
  return mnist_cvae.get_config(','.join(filter(None, ['inpaint', variant])))

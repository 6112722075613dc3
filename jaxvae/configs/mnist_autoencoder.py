"""A plain deterministic autoencoder on the embedded MNIST digits: the baseline to compare latent spaces with.

  python train.py --config configs/mnist_autoencoder.py --workdir runs/mnist_autoencoder

The same 784-400-20 networks as configs/default.py, trained on the
reconstruction log-likelihood at the encoder mean, with no KL term. It
defines no likelihood p(x): eval.py reports the reconstruction only.
"""

import ml_collections

from jaxvae.configs import common, default


def get_config(variant: str = '') -> ml_collections.ConfigDict:
  variants = common.parse_variants(variant, allowed=('smoke',), config_file=__file__)
  config = default.get_config()
  config.objective.name = 'autoencoder'
  return common.shrink(config) if 'smoke' in variants else config

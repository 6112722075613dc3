"""WAE-MMD (Tolstikhin et al. 2018) on the embedded MNIST digits: reconstruction + lambda MMD(q(z), p(z)).

  python train.py --config configs/mnist_wae.py --workdir runs/mnist_wae

A deterministic encoder (its mean), the inverse multiquadratic kernel summed
over scales, lambda = 10 and 8 latent dimensions as in the paper's MNIST
experiment. A WAE defines no likelihood p(x), so eval.py reports the
reconstruction log-likelihood only, and says so.
"""

import ml_collections

from jaxvae.configs import common, default


def get_config(variant: str = '') -> ml_collections.ConfigDict:
  variants = common.parse_variants(variant, allowed=('smoke',), config_file=__file__)
  config = default.get_config()
  config.objective.name = 'wae_mmd'
  config.objective.wae_mmd_weight = 10.0
  config.model.latent_dim = 8
  return common.shrink(config) if 'smoke' in variants else config

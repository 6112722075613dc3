"""The IWAE objective (Burda et al. 2016) with K = 5 on the embedded MNIST digits, the model of configs/default.py.

  python train.py --config configs/mnist_iwae.py --workdir runs/mnist_iwae

The same 784-400-20 networks, trained on the K-sample importance-weighted
bound instead of the ELBO; compare `eval.py` of this run with the default one.
"""

import ml_collections

from jaxvae.configs import common, default


def get_config(variant: str = '') -> ml_collections.ConfigDict:
  variants = common.parse_variants(variant, allowed=('smoke',), config_file=__file__)
  config = default.get_config()
  config.objective.name = 'iwae'
  config.train.num_samples = 5
  return common.shrink(config) if 'smoke' in variants else config

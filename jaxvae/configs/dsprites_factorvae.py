"""FactorVAE on dSprites (Kim & Mnih 2018): the ELBO minus gamma times a discriminator's total-correlation estimate.

  python train.py --config configs/dsprites_factorvae.py --workdir runs/dsprites_factorvae

The discriminator (6 layers of 1000 units, leaky ReLU 0.2) tells samples of
q(z) from samples with each dimension permuted across the batch; it has its
own Adam (1e-4, beta1 0.5, beta2 0.9) and is trained in the same step. Its
parameters and optimiser state are checkpointed with the VAE's. gamma = 35.
"""

import ml_collections

from jaxvae.configs import common, dsprites


def get_config(variant: str = '') -> ml_collections.ConfigDict:
  variants = common.parse_variants(variant, allowed=('smoke',), config_file=__file__)
  config = dsprites.get_config()
  config.objective.name = 'factor_vae'
  config.objective.factor_gamma = 35.0
  return common.shrink(config) if 'smoke' in variants else config

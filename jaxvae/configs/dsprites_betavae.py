"""beta-VAE on dSprites (Higgins et al. 2017): the KL weighted by beta = 4, their dSprites setting.

  python train.py --config configs/dsprites_betavae.py --workdir runs/dsprites_betavae

The standard 64x64 conv encoder/decoder with 10 latents of configs/dsprites.py.
"""

import ml_collections

from jaxvae.configs import common, dsprites


def get_config(variant: str = '') -> ml_collections.ConfigDict:
  variants = common.parse_variants(variant, allowed=('smoke',), config_file=__file__)
  config = dsprites.get_config()
  config.objective.name = 'beta_vae'
  config.objective.beta = 4.0
  return common.shrink(config) if 'smoke' in variants else config

"""Capacity-annealed beta-VAE on dSprites (Burgess et al. 2018): gamma |KL - C|, C rising 0 -> 25 nats over 100k steps.

  python train.py --config configs/dsprites_capacity.py --workdir runs/dsprites_capacity

gamma = 1000 and the 25-nat ramp over 100,000 iterations are the paper's
dSprites settings (Section 5); the conv model is that of configs/dsprites.py.
"""

import ml_collections

from jaxvae.configs import common, dsprites


def get_config(variant: str = '') -> ml_collections.ConfigDict:
  variants = common.parse_variants(variant, allowed=('smoke',), config_file=__file__)
  config = dsprites.get_config()
  config.objective.name = 'capacity_vae'
  config.objective.capacity_max = 25.0
  config.objective.capacity_steps = 100_000
  config.objective.capacity_gamma = 1000.0
  return common.shrink(config) if 'smoke' in variants else config

"""beta-TCVAE on dSprites (Chen et al. 2018): the total correlation of q(z) weighted by beta = 6.

  python train.py --config configs/dsprites_betatcvae.py --workdir runs/dsprites_betatcvae

The KL decomposition (index-code mutual information, total correlation,
dimension-wise KL) is estimated by minibatch-weighted sampling over the
737,280 images; beta = 6 is the paper's dSprites setting.
"""

import ml_collections

from jaxvae.configs import common, dsprites


def get_config(variant: str = '') -> ml_collections.ConfigDict:
  variants = common.parse_variants(variant, allowed=('smoke',), config_file=__file__)
  config = dsprites.get_config()
  config.objective.name = 'beta_tcvae'
  config.objective.beta = 6.0
  return common.shrink(config) if 'smoke' in variants else config

"""DIP-VAE on dSprites (Kumar et al. 2018): the ELBO plus a penalty pushing a latent covariance towards I.

  python train.py --config configs/dsprites_dipvae.py --workdir runs/dsprites_dipvae      # DIP-VAE-I
  python train.py --config configs/dsprites_dipvae.py:ii --workdir runs/dsprites_dipvae2  # DIP-VAE-II

DIP-VAE-I penalises the covariance of the encoder means (lambda_od = 10,
lambda_d = 10 lambda_od); DIP-VAE-II that of q(z) (lambda_d = lambda_od = 10).
"""

import ml_collections

from jaxvae.configs import common, dsprites


def get_config(variant: str = '') -> ml_collections.ConfigDict:
  variants = common.parse_variants(variant, allowed=('ii', 'smoke'), config_file=__file__)
  config = dsprites.get_config()
  config.objective.name = 'dip_vae'
  config.objective.dip_kind = 'ii' if 'ii' in variants else 'i'
  config.objective.dip_lambda_off_diagonal = 10.0  # lambda_d follows each kind's reference (see configs/default.py)
  return common.shrink(config) if 'smoke' in variants else config

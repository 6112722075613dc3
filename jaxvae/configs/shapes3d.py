"""The dSprites family of configs on 3D Shapes (Burgess & Kim 2018): the same models and objectives, 64x64x3 renders.

  python train.py --config configs/shapes3d.py --workdir runs/shapes3d                   # the VAE
  python train.py --config configs/shapes3d.py:betavae --workdir runs/shapes3d_betavae   # beta-VAE, beta = 4

A variant names a member of the dSprites family (`betavae`, `betatcvae`,
`capacity`, `dipvae`, `factorvae`: `configs/dsprites_<member>.py`), whose
objective and weights are kept; the data become tfds `shapes3d` (480,000 images
of 6 factors; `tfds build shapes3d --file_format=array_record` first) with an
8-bit (discretised-logistic) likelihood, as the renders are colour, not binary.
`eval.py` computes the disentanglement metrics on its factors. The other
benchmarks run the same way with dataset overrides, e.g.
`--config.data.dataset=smallnorb --config.data.image_size=64` (its images are
grey 96x96) or `--config.data.dataset=noisy_dsprites`.
"""

import importlib

import ml_collections

from jaxvae.configs import common

MEMBERS = ('betavae', 'betatcvae', 'capacity', 'dipvae', 'factorvae')


def get_config(variant: str = '') -> ml_collections.ConfigDict:
  variants = common.parse_variants(variant, allowed=(*MEMBERS, 'smoke'), config_file=__file__)
  members = sorted(variants & set(MEMBERS))
  if len(members) > 1:
    raise ValueError(f'configs/shapes3d.py takes one family member; got {", ".join(members)}.')
  module = importlib.import_module(f'jaxvae.configs.dsprites_{members[0]}' if members else 'jaxvae.configs.dsprites')
  config = module.get_config()
  config.data.dataset = 'shapes3d'
  config.data.binarize = 'none'
  config.model.likelihood = 'discretized_logistic'
  return common.shrink(config) if 'smoke' in variants else config

"""A VAE of dSprites with the standard 64x64 convolutional encoder/decoder of the disentanglement literature.

  python train.py --config configs/dsprites.py --workdir runs/dsprites

The 737,280 binary 64x64 sprites are regenerated procedurally: nothing to
download. Encoder: four stride-2 4x4 convolutions (32, 32, 64, 64 channels),
a 256-unit Dense layer, 10 latent dimensions; the decoder mirrors it with a
Bernoulli likelihood (Burgess et al. 2018, Appendix A.1; the architecture of
Locatello et al. 2019's study). Adam 1e-4, batch 64, 300,000 steps as in
Locatello et al. 2019 (the fixed hyperparameters of their
unsupervised study, Appendix).
"""

import ml_collections

from jaxvae.configs import common, default


def get_config(variant: str = '') -> ml_collections.ConfigDict:
  variants = common.parse_variants(variant, allowed=('smoke',), config_file=__file__)
  config = default.get_config()

  config.data.dataset = 'dsprites'
  config.data.binarize = 'none'  # already binary
  config.data.read_threads = 2

  config.model.architecture = 'conv'
  config.model.conv_channels = (32, 32, 64, 64)
  config.model.dense_size = 256
  config.model.latent_dim = 10
  config.model.likelihood = 'bernoulli'

  config.optim.name = 'adam'
  config.optim.learning_rate = 1e-4

  config.train.batch_size = 64
  config.train.num_train_steps = 300_000
  config.train.log_every = 1000
  config.train.checkpoint_every = 10_000

  config.eval.batch_size = 100
  # The full suite with the reference's sample counts: minutes, most of it DCI's gradient boosting.
  config.eval.disentanglement_metrics = ('beta_vae', 'factor_vae', 'mig', 'dci', 'modularity_explicitness', 'sap')
  config.eval.elbo_num_samples = 10
  # A conv decoder at K = 1000 over 10,000 images is ~10^7 decodes: K = 100
  # keeps eval to minutes on an accelerator; pass --iwae_num_samples to eval.py for more.
  config.eval.iwae_num_samples = (100,)
  config.eval.iwae_chunk_size = 50

  if 'smoke' in variants:
    common.shrink(config)
  return config

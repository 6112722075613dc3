"""A convolutional VAE of 128x128 CelebA faces, with an 8-bit (discretised-logistic) or Gaussian likelihood.

  python train.py --config configs/celeba.py --workdir runs/celeba
  python train.py --config configs/celeba.py:64 --workdir runs/celeba64
  python train.py --config configs/celeba.py:gaussian --workdir runs/celeba_gaussian

The centre 148x148 crop of each 218x178 image (use
`--config.data.crop_size=140` for the WAE/RAE comparisons), resized to
`config.data.image_size` (128, or 64 with the `64` variant). Five stride-2
4x4 convolutions (32-64-128-256-512 channels) down to 4x4, a 512-unit Dense
layer and 128 latent dimensions; the decoder mirrors it. The default
likelihood is the discretised logistic on 8-bit pixels, so bounds convert to
bits/dim exactly; `gaussian` trains a Gaussian with a learned per-pixel scale
on uniformly dequantised pixels (bits/dim then bound the 8-bit data as well,
Theis et al. 2016). Variants combine: `configs/celeba.py:64,gaussian`.
Needs `tfds build celeb_a --file_format=array_record` first (see README).
"""

import ml_collections

from jaxvae.configs import common, default


def get_config(variant: str = '') -> ml_collections.ConfigDict:
  variants = common.parse_variants(variant, allowed=('64', 'gaussian', 'smoke'), config_file=__file__)
  config = default.get_config()

  config.data.dataset = 'celeb_a'
  config.data.crop_size = 148
  config.data.image_size = 64 if '64' in variants else 128
  config.data.binarize = 'none'
  config.data.read_threads = 4  # JPEG decoding and resizing on the host

  config.model.architecture = 'conv'
  config.model.conv_channels = (32, 64, 128, 256, 512) if config.data.image_size == 128 else (32, 64, 128, 256)
  config.model.dense_size = 512
  config.model.latent_dim = 128
  if 'gaussian' in variants:
    config.data.dequantize = 'uniform'
    config.model.likelihood = 'gaussian'
    config.model.gaussian_scale = 'per_pixel'
    config.model.gaussian_fixed_log_scale = -2.0  # initial log std, about 1/8 of the pixel range
  else:
    config.model.likelihood = 'discretized_logistic'

  config.optim.name = 'adam'
  config.optim.learning_rate = 5e-4
  config.optim.schedule = 'warmup_cosine'
  config.optim.warmup_steps = 2000
  config.optim.grad_clip_norm = 100.0

  config.train.batch_size = 64
  config.train.num_train_steps = 200_000  # about 79 epochs of the 162,770 training faces
  config.train.log_every = 500
  config.train.checkpoint_every = 10_000

  config.eval.batch_size = 50
  config.eval.elbo_num_samples = 10
  config.eval.iwae_num_samples = (1000,)
  config.eval.iwae_chunk_size = 50

  if 'smoke' in variants:
    common.shrink(config)
  return config

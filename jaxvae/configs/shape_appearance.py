"""Shape and appearance at 128x128x3: the Variational U-Net (Esser et al. 2018) on the procedural shapes, or CelebA.

  python train.py --config configs/shape_appearance.py --workdir runs/shape_appearance
  python eval.py --workdir runs/shape_appearance
  python train.py --config configs/shape_appearance.py:smoke --workdir /tmp/jaxvae/shape_appearance_smoke
  python train.py --config configs/shape_appearance.py:celeba --workdir runs/shape_appearance_celeba

A U-Net generator p(x | y, z) conditioned on a structure map y computed from
the image inside the step (its features reach the decoder by skip
connections at every resolution), an appearance encoder q(z | x, y), and the
paper's learned prior p(z | y) (`standard_normal` switches to N(0, I));
trained by the ELBO (objective 'cvae') with a fixed-scale Gaussian on
dequantised pixels; bounds on log p(x | y) in eval.py.
The structure map: edges (the Sobel map, default), `segmentation` (coarse
intensity bands) or `mask` (the shapes' exact mask; not on CelebA). Data: the
procedural `shapes` (4 classes with random colour, texture, shading and
background; no download), or `celeba` (CelebA's centre 148 crop at 128x128;
needs `tfds build celeb_a --file_format=array_record`). `smoke` trains the
same model, narrow, on the shapes at 32x32 in about a minute on a CPU.
Variants combine: `configs/shape_appearance.py:mask,smoke`.
"""

import ml_collections

from jaxvae.configs import common, default

_STRUCTURES = {'edges': 'structure', 'segmentation': 'segmentation', 'mask': 'mask'}


def get_config(variant: str = '') -> ml_collections.ConfigDict:
  variants = common.parse_variants(
    variant, allowed=(*_STRUCTURES, 'celeba', 'standard_normal', 'smoke'), config_file=__file__
  )
  structures = variants & set(_STRUCTURES)
  if len(structures) > 1:
    raise ValueError(
      f'configs/shape_appearance.py takes at most one structure of {tuple(_STRUCTURES)}; got {variant!r}.'
    )
  config = default.get_config()

  config.data.binarize = 'none'
  if 'celeba' in variants:
    config.data.dataset = 'celeb_a'
    config.data.crop_size = 148
    config.data.image_size = 128
    config.data.read_threads = 4  # JPEG decoding and resizing on the host
  else:
    config.data.dataset = 'shapes'  # 128x128x3, rendered on the fly

  config.model.architecture = 'unet'
  config.model.prior = 'standard_normal' if 'standard_normal' in variants else 'learned'
  config.model.conv_channels = (32, 64, 128, 256, 256)  # five halvings: 128 -> 4x4 bottleneck
  config.model.latent_dim = 32  # the appearance
  # A Gaussian of fixed scale on dequantised pixels: bounds bound the 8-bit data in bits/dim (Theis et al. 2016).
  # Its fixed weight on reconstruction makes the decoder take up z's colours early; with a learned scale or
  # the discretised logistic, short CPU runs sat longer near KL = 0 (z unused, grey images).
  config.data.dequantize = 'uniform'
  config.model.likelihood = 'gaussian'
  config.model.gaussian_scale = 'fixed'
  config.model.gaussian_fixed_log_scale = -2.0  # std 0.135 of the pixel range

  config.objective.name = 'cvae'
  config.objective.condition = _STRUCTURES[structures.pop()] if structures else 'structure'

  config.optim.learning_rate = 5e-4
  config.optim.schedule = 'warmup_cosine'
  config.optim.warmup_steps = 1000
  config.optim.grad_clip_norm = 100.0

  config.train.batch_size = 32
  config.train.num_train_steps = 50_000
  config.train.log_every = 500
  config.train.checkpoint_every = 5000

  config.eval.batch_size = 50
  config.eval.num_examples = 1000
  config.eval.elbo_num_samples = 10
  config.eval.iwae_num_samples = (100,)
  config.eval.iwae_chunk_size = 50
  config.eval.num_image_rows = 6  # appearance_transfer.png: 6 appearances x 6 structures

  if 'smoke' in variants:
    if 'celeba' not in variants:
      config.data.dataset = 'shapes_32'
    config.model.conv_channels = (16, 32, 32)  # 32 -> 4x4
    config.model.latent_dim = 8
    config.optim.learning_rate = 2e-3
    config.optim.warmup_steps = 20
    config.train.batch_size = 16
    config.train.num_train_steps = 300
    config.train.log_every = 50
    config.train.checkpoint_every = 150
    config.eval.batch_size = 32
    config.eval.num_examples = 64
    config.eval.elbo_num_samples = 2
    config.eval.iwae_num_samples = (4,)
    config.eval.iwae_chunk_size = 4
    config.eval.num_image_rows = 4
  return config

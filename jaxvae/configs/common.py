"""What every config file shares: the parser of its `:variant` suffix, the shrinker behind every `smoke` variant."""

import pathlib
from collections.abc import Iterable

import ml_collections


def parse_variants(variant: str, *, allowed: Iterable[str], config_file: str) -> set[str]:
  """`'64,smoke'` -> `{'64', 'smoke'}`: the comma-separated variants of `--config=FILE:VARIANT`.

  Raises:
    ValueError: naming the first variant that is not `allowed`, and the ones that are.
  """
  allowed = tuple(allowed)
  variants = set(filter(None, variant.split(',')))
  unknown = sorted(variants - set(allowed))
  if unknown:
    raise ValueError(
      f'unknown variant {unknown[0]!r} of configs/{pathlib.Path(config_file).name}; '
      f'use {", ".join(map(repr, allowed))} (several: comma-separated).'
    )
  return variants


def shrink(config: ml_collections.ConfigDict) -> ml_collections.ConfigDict:
  """The `smoke` variant of any config: tiny networks, 6 steps, checkpoints at 3 and 6; seconds on a CPU.

  It checks the whole pipeline (data, step, checkpoints, evaluation,
  pictures), not the model.
  """
  config.model.hidden_sizes = (16,)
  config.model.conv_channels = (4,) * len(config.model.conv_channels)
  config.model.dense_size = 8
  config.model.latent_dim = 4
  config.objective.capacity_steps = 4
  config.objective.factor_discriminator_hidden_size = 16
  config.objective.factor_discriminator_layers = 2
  config.optim.warmup_steps = min(config.optim.warmup_steps, 2)
  config.train.batch_size = 8
  config.train.num_train_steps = 6
  config.train.log_every = 2
  config.train.checkpoint_every = 3
  config.train.image_every = 3
  config.eval.batch_size = 50
  config.eval.num_examples = 200
  config.eval.elbo_num_samples = 2
  config.eval.iwae_num_samples = (4,)
  config.eval.iwae_chunk_size = 2
  config.eval.num_image_rows = 2
  config.eval.metric_num_train = 100
  config.eval.metric_num_eval = 50
  return config

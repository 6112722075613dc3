"""Config validation: every shipped config is valid; unknown fields and bad values get clear errors."""

import numpy as np
import pytest
from conftest import load_config

import jaxvae
from jaxvae import _config, _run


@pytest.mark.parametrize(
  'name, variant',
  [
    ('default', ''),
    ('default', 'smoke'),
    ('mnist', ''),
    ('mnist', 'binarized'),
    ('mnist', 'binarized,smoke'),
    ('celeba', ''),
    ('celeba', '64'),
    ('celeba', 'gaussian'),
    ('celeba', '64,gaussian,smoke'),
    ('dsprites', ''),
    ('dsprites', 'smoke'),
    ('dsprites_betavae', ''),
    ('dsprites_betatcvae', ''),
    ('dsprites_capacity', ''),
    ('dsprites_dipvae', 'ii'),
    ('dsprites_factorvae', ''),
    ('mnist_autoencoder', ''),
    ('mnist_cvae', 'structure'),
    ('mnist_iwae', ''),
    ('mnist_wae', 'smoke'),
    ('shapes3d', ''),
    ('shapes3d', 'betavae'),
    ('shapes3d', 'dipvae,smoke'),
  ],
)
def test_shipped_configs_are_valid(name, variant):
  jaxvae.validate_config(load_config(name, variant))


def test_iwae_schedule():
  config = load_config('mnist')
  schedule = _run.learning_rate_schedule(config)
  steps_per_epoch = 60_000 // 20
  assert config.train.num_train_steps == 3280 * steps_per_epoch
  # Stage i (3^i epochs) runs at 1e-3 * 10^(-i/7); stages end after 1, 4, 13, 40, ... epochs.
  for epoch, stage in [(0, 0), (1, 1), (3.9, 1), (4, 2), (13, 3), (1093, 7), (3279, 7)]:
    np.testing.assert_allclose(schedule(int(epoch * steps_per_epoch)), 1e-3 * 10 ** (-stage / 7), rtol=1e-5)


def test_unknown_variant():
  with pytest.raises(ValueError, match="unknown variant 'tiny' of configs/default.py; use 'smoke'"):
    load_config('default', 'tiny')
  with pytest.raises(ValueError, match="unknown variant '32' of configs/celeba.py; use '64', 'gaussian', 'smoke'"):
    load_config('celeba', '64,32')


@pytest.mark.parametrize(
  'path, value, message',
  [
    ('train.batch_size', 0, r'config.train.batch_size must be an integer >= 1; got 0'),
    ('optim.learning_rate', -1.0, r'config.optim.learning_rate must be a finite number > 0; got -1.0'),
    ('optim.name', 'adamax_typo', r'config.optim.name must be the name of an optax optimiser'),
    ('data.dataset', 'imagenet', r"config.data.dataset must be one of \('mnist_5k', 'dsprites', .*got 'imagenet'"),
    ('data.eval_split', 'valid', r"dataset 'mnist_5k' has no split 'valid' \(config.data.eval_split\)"),
    ('optim.eps', -1.0, r'config.optim.eps must be a finite number >= 0; got -1.0'),
    ('model.hidden_sizes', (400, 0), r'config.model.hidden_sizes must be a tuple of integers >= 1'),
    ('model.likelihood', 'poisson', r'config.model.likelihood must be one of'),
    ('seed', 1.5, r'config.seed must be an integer >= 0; got 1.5'),
    ('optim.learning_rate', float('inf'), r'config.optim.learning_rate must be a finite number > 0; got inf'),
    ('optim.grad_clip_norm', float('nan'), r'config.optim.grad_clip_norm must be a finite number >= 0; got nan'),
    ('model.gaussian_fixed_log_scale', float('-inf'), r'must be a finite number; got -inf'),
  ],
)
def test_bad_values(path, value, message):
  config = load_config()
  section, _, field = path.rpartition('.')
  target = config[section] if section else config
  with config.ignore_type():
    target[field] = value
  with pytest.raises(ValueError, match=message):
    jaxvae.validate_config(config)


def test_unknown_and_missing_fields():
  config = load_config()
  with config.unlocked():
    config.train.batch_sise = 3
  with pytest.raises(
    ValueError,
    match=r"unknown config field 'train.batch_sise'. Did you mean 'train.batch_size'.*Known fields here: .*batch_size",
  ):
    jaxvae.validate_config(config)
  with pytest.raises(ValueError, match=r"unknown config field 'num_train_steps'. Did you mean 'train.num_train_steps'"):
    _config.check_field_names(['train.batch_size', 'num_train_steps'])
  config = load_config()
  with config.unlocked():
    del config.eval['seed']
  with pytest.raises(ValueError, match="config field 'eval.seed' is missing"):
    jaxvae.validate_config(config)


def test_likelihood_must_match_data():
  config = load_config()
  config.data.binarize = 'none'
  with pytest.raises(ValueError, match="a Bernoulli likelihood needs binary data.*set config.data.binarize='dynamic'"):
    jaxvae.validate_config(config)
  config = load_config()
  config.model.likelihood = 'discretized_logistic'
  with pytest.raises(ValueError, match='discretised-logistic likelihood models 8-bit pixel values'):
    jaxvae.validate_config(config)


def test_preprocessing_must_match_data_and_likelihood():
  config = load_config('dsprites')
  config.data.binarize = 'dynamic'
  with pytest.raises(ValueError, match="'dsprites' is already binary: set config.data.binarize='none'"):
    jaxvae.validate_config(config)
  config = load_config()
  config.data.dequantize = 'uniform'
  with pytest.raises(ValueError, match="binarize='dynamic' and config.data.dequantize='uniform' exclude each other"):
    jaxvae.validate_config(config)
  config.data.binarize = 'none'
  with pytest.raises(ValueError, match='uniform dequantisation makes continuous data.*the bernoulli likelihood'):
    jaxvae.validate_config(config)


def test_optimizer_without_eps():
  config = load_config()
  config.optim.name, config.optim.eps = 'sgd', 1e-4
  with pytest.raises(ValueError, match=r'optax.sgd takes no eps; set config.optim.eps=0 \(got 0.0001\)'):
    jaxvae.validate_config(config)


def test_warmup_shorter_than_training():
  config = load_config()
  config.optim.schedule, config.optim.warmup_steps = 'warmup_cosine', 10_000
  with pytest.raises(ValueError, match=r'config.optim.warmup_steps \(10000\) must be smaller'):
    jaxvae.validate_config(config)


def test_dsprites_family_on_the_colour_variants_as_the_readme_says():
  config = load_config('dsprites', 'smoke')
  config.data.update({'dataset': 'noisy_dsprites', 'binarize': 'none'})
  config.model.likelihood = 'discretized_logistic'
  jaxvae.validate_config(config)
  config.data.dataset = 'scream_dsprites'
  with pytest.raises(FileNotFoundError, match=r"needs a texture image at config.data.scream_path; got ''"):
    jaxvae.validate_config(config)


@pytest.mark.parametrize(
  'dataset, message',
  [
    ('cifar100', r"config.data.dataset must be one of \('mnist_5k', .*'source'\) or tfds:NAME; got 'cifar100'"),
    ('tfds:', r"config.data.dataset must be one of .* or tfds:NAME; got 'tfds:'"),
  ],
)
def test_unknown_dataset_names(smoke_config, dataset, message):
  smoke_config.data.dataset = dataset
  with pytest.raises(ValueError, match=message):
    jaxvae.validate_config(smoke_config)

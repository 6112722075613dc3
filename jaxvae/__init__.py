"""jaxvae: variational autoencoders as pure JAX functions, with Flax models and a training driver.

The core is a handful of pure functions of arrays and keys (bounds, KL
divergences, likelihoods, reparameterised sampling) that work under `jit`,
`grad`, `vmap` and sharded `jit`; values are per example and in nats.
"""

from jaxvae._bounds import ElboOutput, elbo, iwae_bound, iwae_bounds
from jaxvae._config import validate_config
from jaxvae._data import binarize, dequantize
from jaxvae._discriminator import FactorVAEDiscriminator
from jaxvae._disentanglement import (
  METRICS,
  GroundTruthData,
  beta_vae_score,
  compute_all,
  dci,
  factor_vae_score,
  mig,
  modularity_explicitness,
  sap,
)
from jaxvae._evaluate import evaluate, evaluate_bounds
from jaxvae._gaussian import (
  diag_gaussian_log_prob,
  kl_diag_gaussian_standard_normal,
  kl_diag_gaussians,
  sample_diag_gaussian,
  standard_normal_log_prob,
)
from jaxvae._likelihoods import (
  bernoulli_log_likelihood,
  discretized_logistic_log_likelihood,
  gaussian_log_likelihood,
  nats_to_bits_per_dim,
)
from jaxvae._models import (
  VAE,
  ConvDecoder,
  ConvEncoder,
  LikelihoodHead,
  MLPDecoder,
  MLPEncoder,
  bind_vae,
  make_vae,
)
from jaxvae._objectives import (
  KLDecomposition,
  beta_tcvae_objective,
  beta_vae_objective,
  capacity,
  capacity_objective,
  decomposed_kl_mws,
  dip_vae_regularizer,
  factor_vae_discriminator_loss,
  factor_vae_total_correlation,
  mmd_imq,
  permute_dims,
)
from jaxvae._train import TrainState, train_and_evaluate

__version__ = '0.1.0'

__all__ = (
  'ConvDecoder',
  'ConvEncoder',
  'ElboOutput',
  'FactorVAEDiscriminator',
  'GroundTruthData',
  'KLDecomposition',
  'LikelihoodHead',
  'METRICS',
  'MLPDecoder',
  'MLPEncoder',
  'TrainState',
  'VAE',
  'bernoulli_log_likelihood',
  'beta_tcvae_objective',
  'beta_vae_objective',
  'beta_vae_score',
  'binarize',
  'bind_vae',
  'capacity',
  'capacity_objective',
  'compute_all',
  'dci',
  'decomposed_kl_mws',
  'dequantize',
  'diag_gaussian_log_prob',
  'dip_vae_regularizer',
  'discretized_logistic_log_likelihood',
  'elbo',
  'evaluate',
  'evaluate_bounds',
  'factor_vae_discriminator_loss',
  'factor_vae_score',
  'factor_vae_total_correlation',
  'gaussian_log_likelihood',
  'iwae_bound',
  'iwae_bounds',
  'kl_diag_gaussian_standard_normal',
  'kl_diag_gaussians',
  'make_vae',
  'mig',
  'mmd_imq',
  'modularity_explicitness',
  'nats_to_bits_per_dim',
  'permute_dims',
  'sample_diag_gaussian',
  'sap',
  'standard_normal_log_prob',
  'train_and_evaluate',
  'validate_config',
)

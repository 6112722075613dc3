"""jaxvae: variational autoencoders as pure JAX functions, with Flax models and a training driver.

The core is a handful of pure functions of arrays and keys (bounds, KL
divergences, likelihoods, reparameterised sampling) that work under `jit`,
`grad`, `vmap` and sharded `jit`; values are per example and in nats.
"""

# Core: bounds, Gaussians, likelihoods.
from jaxvae._bounds import ElboOutput, elbo, iwae_bound, iwae_bounds
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

# Models.
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
from jaxvae._discriminator import FactorVAEDiscriminator
from jaxvae._unet import VariationalUNet, make_unet_vae

# Family: the objectives and estimators of the disentangling VAEs.
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

# Data.
from jaxvae._data import binarize, dequantize

# Training.
from jaxvae._config import validate_config
from jaxvae._checkpoint import NoIntactCheckpointError, NonFiniteStateError
from jaxvae._run import TrainState
from jaxvae._train import Preempted, train_and_evaluate
from jaxvae._workdir import WorkdirInUseError

# Evaluation.
from jaxvae._dataset_bounds import BoundsSummary, Estimate, evaluate_bounds
from jaxvae._evaluate import Evaluation, evaluate, format_table

# A trained model.
from jaxvae._load import Model, load

# Metrics: disentanglement.
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

__version__ = '0.1.0'

__all__ = (
  # Core.
  'ElboOutput',
  'elbo',
  'iwae_bound',
  'iwae_bounds',
  'diag_gaussian_log_prob',
  'kl_diag_gaussian_standard_normal',
  'kl_diag_gaussians',
  'sample_diag_gaussian',
  'standard_normal_log_prob',
  'bernoulli_log_likelihood',
  'discretized_logistic_log_likelihood',
  'gaussian_log_likelihood',
  'nats_to_bits_per_dim',
  # Models.
  'VAE',
  'ConvDecoder',
  'ConvEncoder',
  'LikelihoodHead',
  'MLPDecoder',
  'MLPEncoder',
  'bind_vae',
  'make_vae',
  'FactorVAEDiscriminator',
  'VariationalUNet',
  'make_unet_vae',
  # Family.
  'KLDecomposition',
  'beta_tcvae_objective',
  'beta_vae_objective',
  'capacity',
  'capacity_objective',
  'decomposed_kl_mws',
  'dip_vae_regularizer',
  'factor_vae_discriminator_loss',
  'factor_vae_total_correlation',
  'mmd_imq',
  'permute_dims',
  # Data.
  'binarize',
  'dequantize',
  # Training.
  'validate_config',
  'NoIntactCheckpointError',
  'NonFiniteStateError',
  'Preempted',
  'TrainState',
  'WorkdirInUseError',
  'train_and_evaluate',
  # Evaluation.
  'BoundsSummary',
  'Estimate',
  'evaluate_bounds',
  'Evaluation',
  'evaluate',
  'format_table',
  # A trained model.
  'Model',
  'load',
  # Metrics.
  'METRICS',
  'GroundTruthData',
  'beta_vae_score',
  'compute_all',
  'dci',
  'factor_vae_score',
  'mig',
  'modularity_explicitness',
  'sap',
)

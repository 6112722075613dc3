"""The VAE family as training losses: `config.objective` turned into the loss of one train step.

The estimators themselves are pure functions in `jaxvae._objectives` (each
citing its paper); this module picks one by name and feeds it the terms of
`jaxvae.elbo` (or of `jaxvae.iwae_bound`, or of a deterministic
reconstruction). Member-specific fields of `config.objective` start with the
member's name without `_vae` (`capacity_*`, `factor_*`, `dip_*`, `wae_mmd_*`);
`beta` weighs beta-VAE's KL and beta-TCVAE's total correlation.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp
import optax

from jaxvae import _bounds, _discriminator, _objectives, _types

OBJECTIVES = (
  'vae',  # Kingma & Welling 2014
  'beta_vae',  # Higgins et al. 2017
  'capacity_vae',  # Burgess et al. 2018
  'factor_vae',  # Kim & Mnih 2018
  'beta_tcvae',  # Chen et al. 2018
  'dip_vae',  # Kumar et al. 2018
  'wae_mmd',  # Tolstikhin et al. 2018
  'iwae',  # Burda et al. 2016
  'cvae',  # Sohn et al. 2015
  'autoencoder',  # deterministic baseline
)
# Objectives with a deterministic encoder: they define no likelihood bound.
DETERMINISTIC = ('wae_mmd', 'autoencoder')

Discriminator = Callable[[jax.Array], jax.Array]  # z [B, D] -> logits [B, 2]


def family_loss(
  objective: _types.Config,
  x: jax.Array,
  *,
  encoder: _bounds.Encoder,
  decoder: _bounds.Decoder,
  log_likelihood: _bounds.LogLikelihood,
  key: jax.Array,
  step: jax.Array,
  num_samples: int,
  dataset_size: int,
  discriminator: Discriminator | None = None,
) -> tuple[jax.Array, _types.Metrics, jax.Array]:
  """The loss of `objective.name` on the batch `x`, in nats per example (mean over the batch).

  Args:
    objective: `config.objective`.
    x: the batch, in the likelihood's domain.
    encoder, decoder, log_likelihood: as for `jaxvae.elbo`.
    key: PRNG key of the step's latent noise.
    step: the step number (the capacity schedule depends on it).
    num_samples: latent samples per example (K for IWAE).
    dataset_size: N, the number of training examples (beta-TCVAE's estimator).
    discriminator: FactorVAE's `z -> logits`, with its parameters fixed.

  Returns:
    `(loss, metrics, z)`: the scalar loss, scalar metrics named `train_*`,
    and the latents `[B, D]` a FactorVAE discriminator trains on.
  """
  name = objective.name
  if name in DETERMINISTIC:
    loc, _ = encoder(x)
    reconstruction = log_likelihood(x, decoder(loc))  # [B] log p(x | z = loc)
    metrics = {'train_reconstruction': jnp.mean(reconstruction)}
    loss = -jnp.mean(reconstruction)
    if name == 'wae_mmd':
      # Tolstikhin et al. 2018, Algorithm 2: reconstruction cost + lambda MMD(q(z), p(z)).
      mmd = _objectives.mmd_imq(loc, jax.random.normal(key, loc.shape, loc.dtype))
      loss = loss + objective.wae_mmd_weight * mmd
      metrics['train_mmd'] = mmd
    return loss, metrics, loc
  if name == 'iwae':
    x, loc, log_var = _bounds.encode_checked(x, encoder)
    bound = _bounds.iwae_bounds_given_posterior(
      x, loc, log_var, decoder=decoder, log_likelihood=log_likelihood, key=key, num_samples=(num_samples,)
    )[num_samples]
    return -jnp.mean(bound), {'train_iwae': jnp.mean(bound)}, loc

  out = _bounds.elbo(
    x, encoder=encoder, decoder=decoder, log_likelihood=log_likelihood, key=key, num_samples=num_samples
  )
  z = out.z[0]  # [B, D]
  metrics = {'train_reconstruction': jnp.mean(out.reconstruction), 'train_kl': jnp.mean(out.kl)}
  if name in ('vae', 'cvae'):
    objective_value = out.elbo
  elif name == 'beta_vae':
    objective_value = _objectives.beta_vae_objective(out.reconstruction, out.kl, beta=objective.beta)
  elif name == 'capacity_vae':
    capacity = _objectives.capacity(step, capacity_max=objective.capacity_max, num_steps=objective.capacity_steps)
    metrics['train_capacity'] = capacity
    # Burgess et al.'s form: the batch-mean KL pulled towards C; the objective is already the batch's scalar.
    objective_value = _objectives.capacity_objective(
      out.reconstruction, out.kl, gamma=objective.capacity_gamma, capacity=capacity
    )
    return -objective_value, metrics, z
  elif name == 'beta_tcvae':
    terms = _objectives.decomposed_kl_mws(z, out.loc, out.log_var, dataset_size=dataset_size)
    objective_value = _objectives.beta_tcvae_objective(
      out.reconstruction,
      terms.mutual_information,
      terms.total_correlation,
      terms.dimension_wise_kl,
      beta=objective.beta,
    )
    metrics['train_total_correlation'] = jnp.mean(terms.total_correlation)
  elif name == 'dip_vae':
    penalty = _objectives.dip_vae_regularizer(
      out.loc,
      out.log_var,
      kind=objective.dip_kind,
      lambda_off_diagonal=objective.dip_lambda_off_diagonal,
      lambda_diagonal=objective.dip_lambda_diagonal,
    )
    metrics['train_dip_penalty'] = penalty
    return -jnp.mean(out.elbo) + penalty, metrics, z
  elif name == 'factor_vae':
    # Kim & Mnih 2018, eq. 2: the ELBO minus gamma times the discriminator's TC estimate.
    total_correlation = _objectives.factor_vae_total_correlation(discriminator(z))  # [B]
    objective_value = out.elbo - objective.factor_gamma * total_correlation
    metrics['train_total_correlation'] = jnp.mean(total_correlation)
  else:
    raise ValueError(f'unknown objective {name!r}; choose one of {OBJECTIVES}.')
  return -jnp.mean(objective_value), metrics, z


def make_discriminator(objective: _types.Config) -> tuple[_discriminator.FactorVAEDiscriminator, Any]:
  """FactorVAE's discriminator and its own optimiser (Adam, beta1 0.5, beta2 0.9 in Kim & Mnih 2018)."""
  module = _discriminator.FactorVAEDiscriminator(
    hidden_size=objective.factor_discriminator_hidden_size, num_hidden_layers=objective.factor_discriminator_layers
  )
  tx = optax.adam(objective.factor_discriminator_learning_rate, b1=0.5, b2=0.9)
  return module, tx


def discriminator_step(
  module: _discriminator.FactorVAEDiscriminator,
  tx: optax.GradientTransformation,
  state: dict[str, Any],
  z: jax.Array,
  key: jax.Array,
) -> tuple[dict[str, Any], _types.Metrics]:
  """One update of the discriminator on `z [B, D]` (class 0) against `z` permuted per dimension (class 1).

  The permuted samples come from the same batch (as in disentanglement_lib);
  Kim & Mnih's Algorithm 2 draws a second batch for them.
  """
  z = jax.lax.stop_gradient(z)
  permuted = _objectives.permute_dims(key, z)

  def loss_fn(params):
    return _objectives.factor_vae_discriminator_loss(module.apply(params, z), module.apply(params, permuted))

  loss, grads = jax.value_and_grad(loss_fn)(state['params'])
  updates, opt_state = tx.update(grads, state['opt_state'], state['params'])
  return {'params': optax.apply_updates(state['params'], updates), 'opt_state': opt_state}, {
    'train_discriminator_loss': loss
  }

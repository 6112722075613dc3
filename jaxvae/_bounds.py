"""Variational lower bounds on log p(x): the ELBO and the importance-weighted bound.

Both take the encoder and decoder as plain callables, so a Flax module's
`apply` closed over its parameters and a hand-written JAX function serve
alike:

* `encoder(x)` maps data `[B, *event]` to the Gaussian posterior parameters
  `(loc, log_var)`, each `[B, D]`;
* `decoder(z)` maps latents `[N, D]` to a pytree of likelihood parameters
  whose leaves all have leading axis `N`;
* `log_likelihood(x, decoder_output)` returns `log p(x|z)` summed over the
  event axes, `[..., B]`, for decoder outputs with leading axes `[..., B]`
  (see `jaxvae.bernoulli_log_likelihood` and friends).

The prior is the standard normal. Values are per example, in nats; reduce them
in the training step.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from jaxvae import _checks, _gaussian

Encoder = Callable[[jax.Array], tuple[jax.Array, jax.Array]]
Decoder = Callable[[jax.Array], Any]
LogLikelihood = Callable[[jax.Array, Any], jax.Array]


class ElboOutput(NamedTuple):
  """The ELBO and its two terms, per example, in nats; and the posterior and samples they came from."""

  elbo: jax.Array  # [B] reconstruction - kl
  reconstruction: jax.Array  # [B] Monte Carlo estimate of E_q[log p(x|z)]
  kl: jax.Array  # [B] closed-form KL(q(z|x) || N(0, I))
  loc: jax.Array  # [B, D] posterior mean
  log_var: jax.Array  # [B, D] posterior log-variance
  z: jax.Array  # [S, B, D] the reparameterised samples of the reconstruction term


def elbo(
  x: jax.typing.ArrayLike,
  *,
  encoder: Encoder,
  decoder: Decoder,
  log_likelihood: LogLikelihood,
  key: jax.Array,
  num_samples: int = 1,
) -> ElboOutput:
  r"""The evidence lower bound of each example, in nats.

  .. math::
     \mathcal L(x) = \mathbb E_{q(z|x)}[\log p(x|z)] - \mathrm{KL}(q(z|x) \,\|\, \mathcal N(0, I))
     \le \log p(x)

  estimated as in Kingma & Welling 2014, eq. 10: the reconstruction term by
  `num_samples` reparameterised samples, the KL term in closed form. The
  estimate is unbiased and differentiable in the encoder and decoder.

  Args:
    x: data, `[B, *event]`.
    encoder: `x -> (loc, log_var)`, each `[B, D]`.
    decoder: `z [N, D] -> pytree` of likelihood parameters with leading axis `N`.
    log_likelihood: `(x, decoder_output) -> [..., B]` in nats.
    key: PRNG key for the latent samples.
    num_samples: samples per example for the reconstruction term.

  Returns:
    An `ElboOutput`: `[B]` arrays `elbo`, `reconstruction`, `kl`, and the
    posterior `loc`, `log_var` `[B, D]` and samples `z` `[S, B, D]` (for
    regularisers such as `jaxvae.decomposed_kl_mws`).

  Raises:
    ValueError: if `x` is not a floating array with a batch axis, the encoder
      outputs are not two floating `[B, D]` arrays of equal shape, or a decoder
      output leaf does not lead with the number of latents it was given.

  >>> import jax, jax.numpy as jnp
  >>> x = jnp.ones((3, 4))
  >>> encoder = lambda x: (jnp.zeros((x.shape[0], 2)), jnp.zeros((x.shape[0], 2)))
  >>> decoder = lambda z: jnp.zeros((z.shape[0], 4))  # logits
  >>> from jaxvae import bernoulli_log_likelihood
  >>> out = elbo(x, encoder=encoder, decoder=decoder,
  ...            log_likelihood=bernoulli_log_likelihood, key=jax.random.key(0))
  >>> out.elbo.shape, round(float(out.elbo[0]), 4)  # 4 log(1/2), and KL = 0
  ((3,), -2.7726)
  """
  x, loc, log_var = encode_checked(x, encoder)
  return elbo_given_posterior(
    x, loc, log_var, decoder=decoder, log_likelihood=log_likelihood, key=key, num_samples=num_samples
  )


def elbo_given_posterior(
  x: jax.Array,
  loc: jax.Array,
  log_var: jax.Array,
  *,
  decoder: Decoder,
  log_likelihood: LogLikelihood,
  key: jax.Array,
  num_samples: int = 1,
) -> ElboOutput:
  """`elbo` for data `x [B, *event]` already encoded as `(loc, log_var)` `[B, D]`: for callers that encode once."""
  _checks.check_positive_int('num_samples', num_samples)
  z = _gaussian.sample_diag_gaussian(key, loc, log_var, num_samples=num_samples)  # [S, B, D]
  reconstruction = _log_likelihood_of_samples(x, z, decoder, log_likelihood)  # [S, B]
  kl = _gaussian.kl_diag_gaussian_standard_normal(loc, log_var)  # [B]
  reconstruction = jnp.mean(reconstruction, axis=0)  # [B]
  return ElboOutput(reconstruction - kl, reconstruction, kl, loc, log_var, z)


def iwae_bound(
  x: jax.typing.ArrayLike,
  *,
  encoder: Encoder,
  decoder: Decoder,
  log_likelihood: LogLikelihood,
  key: jax.Array,
  num_samples: int,
  chunk_size: int | None = None,
) -> jax.Array:
  r"""The importance-weighted bound :math:`\mathcal L_K` of Burda et al. 2016 (eq. 8), in nats.

  .. math::
     \mathcal L_K(x) = \log \frac1K \sum_{k=1}^K
       \frac{p(x|z_k)\, p(z_k)}{q(z_k|x)}, \qquad z_k \sim q(z|x),

  with :math:`\mathcal L_1 \le \mathcal L_K \le \mathcal L_{K'} \le \log p(x)`
  in expectation for :math:`K \le K'` (Burda et al. 2016, Theorem 1),
  approaching :math:`\log p(x)` as :math:`K \to \infty`. The average is a
  log-sum-exp, so it is exact for weights far outside the float range.

  `chunk_size` bounds memory: `chunk_size` samples per example are drawn and
  decoded at a time, and chunks are combined by a running log-sum-exp, so
  memory does not grow with `K`. Sample `k` is drawn from `fold_in(key, k)`
  (see `jaxvae.sample_diag_gaussian`), so the result does not depend on
  `chunk_size`, and with `K = 1` it is the single-sample Monte Carlo ELBO
  log p(x|z) + log p(z) - log q(z|x) at the very sample `jaxvae.elbo` draws
  with the same key (whose estimate differs: its KL is in closed form).
  `jaxvae.iwae_bounds` gives several `K` from the same samples.

  Args:
    x: data, `[B, *event]`.
    encoder: `x -> (loc, log_var)`, each `[B, D]`.
    decoder: `z [N, D] -> pytree` of likelihood parameters with leading axis `N`.
    log_likelihood: `(x, decoder_output) -> [..., B]` in nats.
    key: PRNG key for the latent samples.
    num_samples: K, the number of importance samples per example.
    chunk_size: samples per example decoded at once; `None` decodes all `K`
      together. Need not divide `K`.

  Returns:
    `[B]`: the bound, in nats.

  Raises:
    ValueError: as `elbo`, and for `num_samples < 1` or `chunk_size < 1`.
  """
  bounds = iwae_bounds(
    x,
    encoder=encoder,
    decoder=decoder,
    log_likelihood=log_likelihood,
    key=key,
    num_samples=(num_samples,),
    chunk_size=chunk_size,
  )
  return bounds[num_samples]


def iwae_bounds(
  x: jax.typing.ArrayLike,
  *,
  encoder: Encoder,
  decoder: Decoder,
  log_likelihood: LogLikelihood,
  key: jax.Array,
  num_samples: Sequence[int],
  chunk_size: int | None = None,
) -> dict[int, jax.Array]:
  """`iwae_bound` for several `K` in one pass, from shared samples: `L_K` uses the first `K` of `max(K)` samples.

  As the IWAE paper's tables report K = 1, 5, 50, 5000 side by side. Memory
  is that of one chunk, whatever the largest `K`.

  Args:
    x, encoder, decoder, log_likelihood, key: as for `iwae_bound`.
    num_samples: the values of K, each >= 1.
    chunk_size: samples per example decoded at once; `None`: all at once.

  Returns:
    `{K: [B] bound in nats}` for each K.

  Raises:
    ValueError: as `iwae_bound`, or for an empty `num_samples`.

  >>> import jax, jax.numpy as jnp
  >>> from jaxvae import bernoulli_log_likelihood
  >>> encoder = lambda x: (jnp.zeros((x.shape[0], 2)), jnp.zeros((x.shape[0], 2)))
  >>> decoder = lambda z: jnp.zeros((z.shape[0], 4))
  >>> bounds = iwae_bounds(jnp.ones((3, 4)), encoder=encoder, decoder=decoder,
  ...                      log_likelihood=bernoulli_log_likelihood, key=jax.random.key(0), num_samples=(1, 50))
  >>> sorted(bounds), round(float(bounds[50][0]), 4)  # q = p(z) and p(x|z) = 1/16: every weight is 1/16
  ([1, 50], -2.7726)
  """
  x, loc, log_var = encode_checked(x, encoder)
  return iwae_bounds_given_posterior(
    x,
    loc,
    log_var,
    decoder=decoder,
    log_likelihood=log_likelihood,
    key=key,
    num_samples=num_samples,
    chunk_size=chunk_size,
  )


def iwae_bounds_given_posterior(
  x: jax.Array,
  loc: jax.Array,
  log_var: jax.Array,
  *,
  decoder: Decoder,
  log_likelihood: LogLikelihood,
  key: jax.Array,
  num_samples: Sequence[int],
  chunk_size: int | None = None,
) -> dict[int, jax.Array]:
  """`iwae_bounds` for data `x [B, *event]` already encoded as `(loc, log_var)` `[B, D]`."""
  ks = tuple(num_samples)
  if not ks:
    raise ValueError('`num_samples` must hold at least one K; got an empty sequence.')
  for k in ks:
    _checks.check_positive_int('num_samples', k)
  most = max(ks)
  chunk_size = most if chunk_size is None else chunk_size
  _checks.check_positive_int('chunk_size', chunk_size)
  chunk_size = min(chunk_size, most)
  thresholds = jnp.array(ks)[:, None]  # [nK, 1]

  def log_sum_weights(first: jax.Array, size: int) -> jax.Array:  # -> [nK, B]
    eps = _gaussian.standard_normal_noise(key, loc.shape, num_samples=size, dtype=loc.dtype, first_sample=first)
    z = loc[None] + jnp.exp(0.5 * log_var)[None] * eps  # [C, B, D]
    # log p(z) - log q(z|x), with the log(2 pi) terms cancelled and log q
    # written in terms of eps (as z is), so no division by the scale.
    log_prior_ratio = 0.5 * jnp.sum(jnp.square(eps) - jnp.square(z) + log_var[None], axis=-1)
    log_weights = _log_likelihood_of_samples(x, z, decoder, log_likelihood) + log_prior_ratio  # [C, B]
    if len(ks) == 1:  # every sample counts: no masking (and clean gradients for training)
      return jax.nn.logsumexp(log_weights, axis=0)[None]
    in_bound = (first + jnp.arange(size))[None, :] < thresholds  # [nK, C]: sample k counts for L_K if k < K
    masked = jnp.where(in_bound[:, :, None], log_weights[None], -jnp.inf)  # [nK, C, B]
    return jax.nn.logsumexp(masked, axis=1)

  num_full_chunks, remainder = divmod(most, chunk_size)
  if num_full_chunks == 1:
    total = log_sum_weights(0, chunk_size)
  else:

    def accumulate(running: jax.Array, chunk: jax.Array) -> tuple[jax.Array, None]:
      return jnp.logaddexp(running, log_sum_weights(chunk * chunk_size, chunk_size)), None

    initial = jnp.full((len(ks), loc.shape[0]), -jnp.inf, loc.dtype)
    total, _ = jax.lax.scan(accumulate, initial, jnp.arange(num_full_chunks))
  if remainder:
    total = jnp.logaddexp(total, log_sum_weights(num_full_chunks * chunk_size, remainder))
  return {k: total[i] - math.log(k) for i, k in enumerate(ks)}


def encode_checked(x: jax.typing.ArrayLike, encoder: Encoder) -> tuple[jax.Array, jax.Array, jax.Array]:
  """Checks `x`, runs the encoder and checks that it returned `(loc, log_var)`, each `[B, D]`."""
  _checks.check_floating('x', x, min_ndim=2)
  x = jnp.asarray(x)
  posterior = encoder(x)
  if not (isinstance(posterior, (tuple, list)) and len(posterior) == 2):
    raise ValueError(
      f'`encoder(x)` must return a pair (loc, log_var) of [B, D] arrays; got {type(posterior).__name__}.'
    )
  loc, log_var = posterior
  _checks.check_floating('encoder loc', loc)
  _checks.check_floating('encoder log_var', log_var)
  _checks.check_same_shape('encoder loc', loc, 'encoder log_var', log_var)
  if np.ndim(loc) != 2 or np.shape(loc)[0] != x.shape[0]:
    raise ValueError(
      f'`encoder(x)` must return loc and log_var of shape [B, D] with B = {x.shape[0]} '
      f'(the batch size of x); got {np.shape(loc)}.'
    )
  return x, jnp.asarray(loc), jnp.asarray(log_var)


def _log_likelihood_of_samples(
  x: jax.Array, z: jax.Array, decoder: Decoder, log_likelihood: LogLikelihood
) -> jax.Array:
  """log p(x|z) for latents `z` `[S, B, D]`; returns `[S, B]`.

  Several samples are decoded with `vmap` over the sample axis rather than a
  reshape to `[S*B, D]`: merging a batch axis sharded over devices with the
  sample axis is not a layout-preserving reshape, and explicit sharding
  rejects it.
  """
  num_samples, batch_size, _ = z.shape
  if num_samples == 1:
    # The common training case without the size-1 sample axis, which would
    # make XLA transpose activations for the weight gradients (~30% slower).
    decoded = decoder(z[0])
    _check_decoded(decoded, batch_size, leading_axes=0)
    log_prob = log_likelihood(x, decoded)[None]
  else:
    decoded = jax.vmap(decoder)(z)
    _check_decoded(decoded, batch_size, leading_axes=1)
    log_prob = log_likelihood(x, decoded)
  if np.shape(log_prob) != (num_samples, batch_size):
    raise ValueError(
      f'`log_likelihood(x, decoder_output)` must return one value per sample and example, '
      f'shape {(num_samples, batch_size)}; got {np.shape(log_prob)}.'
    )
  return log_prob


def _check_decoded(decoded: Any, batch_size: int, *, leading_axes: int) -> None:
  for leaf in jax.tree.leaves(decoded):
    shape = np.shape(leaf)[leading_axes:]
    if len(shape) < 1 or shape[0] != batch_size:
      raise ValueError(
        f'every output of `decoder(z)` must have leading axis N = {batch_size} (one entry per latent '
        f'in z [N, D]); got an output of shape {shape}. Broadcast shared parameters such as a learned '
        'scale to the batch.'
      )

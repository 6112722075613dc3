"""Training objectives and regularisers of the disentangling VAE family, as pure functions of arrays and keys.

Each function implements one paper's objective or estimator on the encoder's
`(loc, log_var)`, a latent sample `z` and the ELBO terms of `jaxvae.elbo`:

* `beta_vae_objective`: beta-VAE (Higgins et al. 2017);
* `capacity` and `capacity_objective`: beta-VAE with a controlled capacity
  (Burgess et al. 2018);
* `decomposed_kl_mws` and `beta_tcvae_objective`: beta-TCVAE (Chen et al. 2018);
* `dip_vae_regularizer`: DIP-VAE-I and -II (Kumar et al. 2018);
* `mmd_imq`: the WAE-MMD penalty (Tolstikhin et al. 2018);
* `permute_dims`, `factor_vae_total_correlation` and
  `factor_vae_discriminator_loss`: FactorVAE (Kim & Mnih 2018), with the
  discriminator in `jaxvae._discriminator`.

Objectives are higher-is-better, like `elbo`; regularisers, penalties and the
discriminator loss are lower-is-better. Per-example quantities are returned
per example, `[B]`, for the training step to reduce; estimators that exist only
for a whole batch (a covariance, an MMD, a classifier loss) return a scalar.
All values are in nats. The prior is the standard normal.
"""

from __future__ import annotations

import math
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from jaxvae import _checks, _gaussian

DIP_VAE_KINDS = ('i', 'ii')
# The kernel scales of the WAE authors' code (tolstikhin/wae, `wae.py`,
# `mmd_penalty`): C = 2 * D * prior_variance * s for each s, summed.
IMQ_SCALES = (0.1, 0.2, 0.5, 1.0, 2.0, 5.0, 10.0)


def _check_terms(**terms: jax.typing.ArrayLike) -> list[jax.Array]:
  """Checks that the named per-example terms are floating arrays of one shape; returns them as arrays."""
  (first_name, first), *rest = terms.items()
  _checks.check_floating(first_name, first)
  for name, value in rest:
    _checks.check_floating(name, value)
    _checks.check_same_shape(first_name, first, name, value)
  return [jnp.asarray(value) for value in terms.values()]


def _check_latents(name: str, z: jax.typing.ArrayLike) -> jax.Array:
  """Checks that `z` is a floating `[B, D]` batch of latents."""
  _checks.check_floating(name, z)
  if np.ndim(z) != 2:
    raise ValueError(f'`{name}` must be a [B, D] batch of latent vectors; got shape {np.shape(z)}.')
  return jnp.asarray(z)


def _check_posterior(
  z: jax.typing.ArrayLike, loc: jax.typing.ArrayLike, log_var: jax.typing.ArrayLike
) -> tuple[jax.Array, jax.Array, jax.Array]:
  z, loc = _check_latents('z', z), _check_latents('loc', loc)
  _checks.check_floating('log_var', log_var)
  _checks.check_same_shape('z', z, 'loc', loc)
  _checks.check_same_shape('loc', loc, 'log_var', log_var)
  return z, loc, jnp.asarray(log_var)


# -- beta-VAE and its capacity-controlled variant ----------------------------------------------------------------------


def beta_vae_objective(reconstruction: jax.typing.ArrayLike, kl: jax.typing.ArrayLike, *, beta: float) -> jax.Array:
  r"""The beta-VAE objective of each example, in nats; higher is better.

  .. math:: \mathcal L_\beta(x) = \mathbb E_{q(z|x)}[\log p(x|z)] - \beta\, \mathrm{KL}(q(z|x) \,\|\, p(z))

  (Higgins et al. 2017, "beta-VAE: Learning basic visual concepts with a
  constrained variational framework", eq. 4). `beta = 1` is the ELBO; `beta > 1`
  puts a stronger bottleneck on the latent code.

  Args:
    reconstruction: the reconstruction term :math:`\mathbb E_q[\log p(x|z)]`, `[B]`
      (e.g. `jaxvae.elbo(...).reconstruction`).
    kl: :math:`\mathrm{KL}(q(z|x) \| p(z))`, same shape (e.g. `jaxvae.elbo(...).kl`).
    beta: the weight of the KL term; may be a traced scalar, for annealing.

  Returns:
    `[B]` (the shape of the inputs): the objective, in nats.

  Raises:
    ValueError: if the terms are not floating arrays of one shape.

  >>> import jax.numpy as jnp
  >>> beta_vae_objective(jnp.array([-10.0, -12.0]), jnp.array([2.0, 3.0]), beta=4.0)
  Array([-18., -24.], dtype=float32)
  """
  reconstruction, kl = _check_terms(reconstruction=reconstruction, kl=kl)
  return reconstruction - beta * kl


def capacity(step: jax.typing.ArrayLike, *, capacity_max: float, num_steps: int) -> jax.Array:
  r"""The annealed capacity :math:`C`: linear from 0 nats at step 0 to `capacity_max` at `num_steps`, then constant.

  .. math:: C(t) = C_\max \cdot \min\!\left(1, \max\!\left(0, t / T\right)\right)

  the schedule of Burgess et al. 2018, "Understanding disentangling in
  beta-VAE" (their dSprites runs raise :math:`C` from 0 to 25 nats), as
  disentanglement_lib's `anneal` implements it. Traceable in `step`, so a jitted
  step can compute it from its own step counter.

  Args:
    step: the training step :math:`t`, a scalar (Python or array, possibly traced).
    capacity_max: :math:`C_\max`, in nats; `>= 0`.
    num_steps: :math:`T`, the number of steps to reach `capacity_max`; an integer `>= 1`.

  Returns:
    `[]`: the capacity :math:`C(t)`, in nats, in the default float dtype.

  Raises:
    ValueError: if `capacity_max < 0` or `num_steps < 1`.

  >>> [round(float(capacity(t, capacity_max=25.0, num_steps=100)), 2) for t in (0, 50, 100, 200)]
  [0.0, 12.5, 25.0, 25.0]
  """
  if not capacity_max >= 0:
    raise ValueError(f'`capacity_max` must be >= 0 nats; got {capacity_max!r}.')
  _checks.check_positive_int('num_steps', num_steps)
  fraction = jnp.clip(jnp.asarray(step, dtype=float) / num_steps, 0.0, 1.0)
  return capacity_max * fraction


def capacity_objective(
  reconstruction: jax.typing.ArrayLike,
  kl: jax.typing.ArrayLike,
  *,
  gamma: float,
  capacity: jax.typing.ArrayLike,
  per_example: bool = False,
) -> jax.Array:
  r"""The capacity-controlled beta-VAE objective, in nats; higher is better.

  .. math::
     \mathcal L = \frac1B \sum_i \mathbb E_{q(z|x_i)}[\log p(x_i|z)]
       - \gamma\, \Bigl|\frac1B \sum_i \mathrm{KL}(q(z|x_i) \,\|\, p(z)) - C\Bigr|

  (Burgess et al. 2018, "Understanding disentangling in beta-VAE", eq. 8),
  with the capacity :math:`C` from `capacity`: the KL is pulled towards
  :math:`C` from either side, with weight :math:`\gamma` (1000 in the paper).

  By default the penalty applies to the batch-mean KL, as in the reference
  implementations (Burgess et al.'s; disentanglement_lib's `AnnealedVAE`,
  `methods/unsupervised/vae.py`; 1Konny/Beta-VAE): it constrains the average
  information the code carries, and individual examples may carry more or less.
  The result is then one scalar for the batch: the training loss is its
  negative, with no further mean.

  `per_example=True` instead pulls every example's KL towards :math:`C`,
  :math:`\log p(x_i|z) - \gamma |\mathrm{KL}_i - C|` per example (its mean is
  lower than the default wherever the KLs of a batch straddle :math:`C`); it is
  not what the papers' results were obtained with.

  Args:
    reconstruction: :math:`\mathbb E_q[\log p(x|z)]`, `[B]`.
    kl: :math:`\mathrm{KL}(q(z|x) \| p(z))`, same shape.
    gamma: the weight of the capacity penalty.
    capacity: :math:`C`, in nats: a scalar; with `per_example=True` also an
      array of the shape of `kl`.
    per_example: apply the penalty to each example's KL instead of the batch mean.

  Returns:
    `[]`: the batch objective, in nats (the default); with `per_example=True`,
    `[B]` (the shape of the inputs), one objective per example.

  Raises:
    ValueError: if the terms are not floating arrays of one shape, or the
      batch form gets a `capacity` that is not a scalar.

  >>> import jax.numpy as jnp
  >>> reconstruction, kl = jnp.array([-10.0, -10.0]), jnp.array([3.0, 7.0])
  >>> capacity_objective(reconstruction, kl, gamma=100.0, capacity=5.0)  # mean KL = C: no penalty
  Array(-10., dtype=float32)
  >>> capacity_objective(reconstruction, kl, gamma=100.0, capacity=5.0, per_example=True)  # |3 - 5| = |7 - 5| = 2
  Array([-210., -210.], dtype=float32)
  """
  reconstruction, kl = _check_terms(reconstruction=reconstruction, kl=kl)
  if per_example:
    return reconstruction - gamma * jnp.abs(kl - capacity)
  if np.ndim(capacity) != 0:
    raise ValueError(
      f'`capacity` must be a scalar for the batch-mean objective (per_example=False); got shape {np.shape(capacity)}.'
    )
  return jnp.mean(reconstruction) - gamma * jnp.abs(jnp.mean(kl) - capacity)


# -- beta-TCVAE --------------------------------------------------------------------------------------------------------


class KLDecomposition(NamedTuple):
  """The three terms of Chen et al.'s decomposition of the KL, per example, in nats.

  Their sum is :math:`\\log q(z|x) - \\log p(z)`, the one-sample estimate of
  :math:`\\mathrm{KL}(q(z|x) \\| p(z))`.
  """

  mutual_information: jax.Array  # [B] log q(z|x) - log q(z): index-code mutual information
  total_correlation: jax.Array  # [B] log q(z) - sum_j log q(z_j)
  dimension_wise_kl: jax.Array  # [B] sum_j log q(z_j) - log p(z)


def decomposed_kl_mws(
  z: jax.typing.ArrayLike, loc: jax.typing.ArrayLike, log_var: jax.typing.ArrayLike, *, dataset_size: int
) -> KLDecomposition:
  r"""The KL decomposed into mutual information, total correlation and dimension-wise KL, per example, in nats.

  Chen et al. 2018, "Isolating sources of disentanglement in VAEs", eq. 2:

  .. math::
     \mathbb E_{p(n)}\bigl[\mathrm{KL}(q(z|n) \,\|\, p(z))\bigr]
       = \underbrace{I_q(z; n)}_{\text{mutual information}}
       + \underbrace{\mathrm{KL}\bigl(q(z) \,\|\, \textstyle\prod_j q(z_j)\bigr)}_{\text{total correlation}}
       + \underbrace{\textstyle\sum_j \mathrm{KL}(q(z_j) \,\|\, p(z_j))}_{\text{dimension-wise KL}},

  estimated at each example's sample :math:`z_i \sim q(z|x_i)` by
  :math:`\log q(z_i|x_i) - \log q(z_i)`, :math:`\log q(z_i) - \sum_j \log q(z_{ij})`
  and :math:`\sum_j \log q(z_{ij}) - \log p(z_i)`, with the aggregate
  posterior's densities by minibatch-weighted sampling (MWS; Sec. 3.1 and
  Appendix C.1; `vae_quant.py` of the authors' code, rtqichen/beta-tcvae):

  .. math::
     \log q(z_i) \approx \log \sum_{k=1}^B q(z_i | x_k) - \log(B N), \qquad
     \log q(z_{ij}) \approx \log \sum_{k=1}^B q(z_{ij} | x_k) - \log(B N),

  for a batch of `B` examples drawn from a data set of `N`. The three terms
  add up to :math:`\log q(z_i|x_i) - \log p(z_i)` (up to rounding), whatever
  the estimate of :math:`q`. Memory grows as `B * B * D`.

  `N` enters only through :math:`\log N`: relative to `dataset_size=1`, it
  shifts the mutual information by :math:`+\log N`, the total correlation by
  :math:`+(D-1)\log N` and the dimension-wise KL by :math:`-D\log N`, which
  changes the terms' values but not their gradients. MWS is biased, and for a
  large data set these shifts dominate the values (a batch of overlapping
  posteriors gets a total correlation near :math:`(D-1)\log N` even when
  :math:`q(z)` factorises); read the values as training signals. With
  `dataset_size=1` the estimates are exact for the data set made of the batch
  itself, :math:`q(z) = \frac1B \sum_k q(z|x_k)`.

  Args:
    z: one sample of each example's posterior, `[B, D]`.
    loc: posterior means, `[B, D]`.
    log_var: posterior log-variances, `[B, D]`.
    dataset_size: `N`, the number of training examples; an integer `>= 1`.

  Returns:
    A `KLDecomposition` of `[B]` arrays: `mutual_information`,
    `total_correlation`, `dimension_wise_kl`; average them over the batch for
    the three expectations.

  Raises:
    ValueError: if the arrays are not floating `[B, D]` arrays of one shape or
      `dataset_size < 1`.

  >>> import jax, jax.numpy as jnp
  >>> loc, log_var = jnp.array([[-3.0, -3.0], [3.0, 3.0]]), jnp.full((2, 2), -2.0)
  >>> z = loc  # the posterior means, for a reproducible example
  >>> terms = decomposed_kl_mws(z, loc, log_var, dataset_size=1)
  >>> [round(float(t[0]), 3) for t in terms]  # both latents share one bit: TC = log 2
  [0.693, 0.693, 9.614]
  """
  z, loc, log_var = _check_posterior(z, loc, log_var)
  _checks.check_positive_int('dataset_size', dataset_size)
  batch_size = z.shape[0]
  # log q(z_ij | x_k) for every sample i, posterior k and latent j: the
  # Gaussian log-density of trailing size-1 events, so nothing is summed.
  log_q_pairs = _gaussian.diag_gaussian_log_prob(
    z[:, None, :, None], loc[None, :, :, None], log_var[None, :, :, None]
  )  # [B (sample i), B (posterior k), D]
  log_normalizer = math.log(batch_size) + math.log(dataset_size)
  log_q_z = jax.nn.logsumexp(jnp.sum(log_q_pairs, axis=-1), axis=1) - log_normalizer  # [B]
  log_q_marginals = jnp.sum(jax.nn.logsumexp(log_q_pairs, axis=1) - log_normalizer, axis=-1)  # [B]
  log_q_z_given_x = _gaussian.diag_gaussian_log_prob(z, loc, log_var)  # [B]
  log_p_z = _gaussian.standard_normal_log_prob(z)  # [B]
  return KLDecomposition(
    mutual_information=log_q_z_given_x - log_q_z,
    total_correlation=log_q_z - log_q_marginals,
    dimension_wise_kl=log_q_marginals - log_p_z,
  )


def beta_tcvae_objective(
  log_px: jax.typing.ArrayLike,
  mutual_information: jax.typing.ArrayLike,
  total_correlation: jax.typing.ArrayLike,
  dimension_wise_kl: jax.typing.ArrayLike,
  *,
  beta: float,
  alpha: float = 1.0,
  gamma: float = 1.0,
) -> jax.Array:
  r"""The beta-TCVAE objective of each example, in nats; higher is better.

  .. math::
     \mathcal L_{\beta\text{-TC}}(x) = \log p(x|z) - \alpha\, I_q(z; n)
       - \beta\, \mathrm{KL}\bigl(q(z) \,\|\, \textstyle\prod_j q(z_j)\bigr)
       - \gamma \textstyle\sum_j \mathrm{KL}(q(z_j) \,\|\, p(z_j))

  (Chen et al. 2018, "Isolating sources of disentanglement in VAEs", the
  beta-TCVAE objective; eq. 5 in the arXiv version, as disentanglement_lib
  cites it). The paper keeps :math:`\alpha = \gamma = 1` and tunes
  :math:`\beta`; then :math:`\alpha = \beta = \gamma = 1` is the ELBO.

  Args:
    log_px: :math:`\log p(x|z)` at the sample `z` of `decomposed_kl_mws`, `[B]`.
    mutual_information: `decomposed_kl_mws(...).mutual_information`, `[B]`.
    total_correlation: `decomposed_kl_mws(...).total_correlation`, `[B]`.
    dimension_wise_kl: `decomposed_kl_mws(...).dimension_wise_kl`, `[B]`.
    beta: the weight of the total correlation.
    alpha: the weight of the index-code mutual information.
    gamma: the weight of the dimension-wise KL.

  Returns:
    `[B]`: the objective, in nats.

  Raises:
    ValueError: if the terms are not floating arrays of one shape.

  >>> import jax.numpy as jnp
  >>> one = jnp.ones(2)
  >>> beta_tcvae_objective(-10.0 * one, 1.0 * one, 2.0 * one, 3.0 * one, beta=6.0)
  Array([-26., -26.], dtype=float32)
  """
  log_px, mutual_information, total_correlation, dimension_wise_kl = _check_terms(
    log_px=log_px,
    mutual_information=mutual_information,
    total_correlation=total_correlation,
    dimension_wise_kl=dimension_wise_kl,
  )
  return log_px - alpha * mutual_information - beta * total_correlation - gamma * dimension_wise_kl


# -- DIP-VAE -----------------------------------------------------------------------------------------------------------


def dip_vae_regularizer(
  loc: jax.typing.ArrayLike,
  log_var: jax.typing.ArrayLike,
  *,
  kind: str,
  lambda_off_diagonal: float,
  lambda_diagonal: float | None = None,
) -> jax.Array:
  r"""The DIP-VAE penalty on a batch (squared covariance entries, unitless); lower is better, 0 at identity.

  .. math::
     \lambda_{od} \sum_{i \ne j} \mathrm{Cov}_{ij}^2 + \lambda_d \sum_i (\mathrm{Cov}_{ii} - 1)^2

  with :math:`\mathrm{Cov} = \mathrm{Cov}_{p(x)}[\mu(x)]`, the covariance of the
  posterior means, for DIP-VAE-I (Kumar et al. 2018, "Variational inference of
  disentangled latent concepts from unlabeled observations", eq. 6), or
  :math:`\mathrm{Cov} = \mathrm{Cov}_{q(z)}[z] = \mathbb E_{p(x)}[\mathrm{diag}\,\sigma^2(x)]
  + \mathrm{Cov}_{p(x)}[\mu(x)]`, the covariance of the aggregate posterior,
  for DIP-VAE-II (eq. 7). Expectations are batch means and the covariance is
  the population (divide-by-`B`) one, as in disentanglement_lib's `DIPVAE`.
  Subtract it from the mean ELBO (or add it to the loss).

  Args:
    loc: posterior means, `[B, D]`.
    log_var: posterior log-variances, `[B, D]`; unused by `kind='i'`.
    kind: `'i'` (DIP-VAE-I) or `'ii'` (DIP-VAE-II).
    lambda_off_diagonal: :math:`\lambda_{od}`, the weight of the off-diagonal entries.
    lambda_diagonal: :math:`\lambda_d`, the weight of the diagonal entries'
      distance from 1; `None` takes disentanglement_lib's defaults,
      :math:`10\lambda_{od}` for `'i'` and :math:`\lambda_{od}` for `'ii'`.

  Returns:
    `[]`: the penalty for the batch.

  Raises:
    ValueError: for an unknown `kind`, or if `loc` and `log_var` are not
      floating `[B, D]` arrays of one shape.

  >>> import jax.numpy as jnp
  >>> loc = jnp.array([[1.0, 1.0], [1.0, -1.0], [-1.0, 1.0], [-1.0, -1.0]])  # Cov[mu] = I
  >>> float(dip_vae_regularizer(loc, jnp.zeros((4, 2)), kind='i', lambda_off_diagonal=1.0))
  0.0
  >>> float(dip_vae_regularizer(loc, jnp.zeros((4, 2)), kind='ii', lambda_off_diagonal=1.0))  # Cov[z] = 2 I
  2.0
  """
  if kind not in DIP_VAE_KINDS:
    raise ValueError(f"unknown DIP-VAE `kind` {kind!r}; choose 'i' (DIP-VAE-I) or 'ii' (DIP-VAE-II).")
  loc = _check_latents('loc', loc)
  _checks.check_floating('log_var', log_var)
  _checks.check_same_shape('loc', loc, 'log_var', log_var)
  if lambda_diagonal is None:
    lambda_diagonal = 10.0 * lambda_off_diagonal if kind == 'i' else lambda_off_diagonal
  batch_size = loc.shape[0]
  # Centre first rather than E[mu mu^T] - E[mu] E[mu]^T (disentanglement_lib's
  # form): the same value without cancelling two large terms for means far from 0.
  centred = loc - jnp.mean(loc, axis=0, keepdims=True)  # [B, D]
  covariance = jnp.matmul(centred.T, centred, precision=jax.lax.Precision.HIGHEST) / batch_size  # [D, D]
  if kind == 'ii':
    covariance = covariance + jnp.diag(jnp.mean(jnp.exp(jnp.asarray(log_var)), axis=0))
  diagonal = jnp.diagonal(covariance)  # [D]
  off_diagonal = covariance - jnp.diag(diagonal)  # [D, D]
  return lambda_off_diagonal * jnp.sum(jnp.square(off_diagonal)) + lambda_diagonal * jnp.sum(jnp.square(diagonal - 1.0))


# -- WAE-MMD -----------------------------------------------------------------------------------------------------------


def _squared_distances(x: jax.Array, y: jax.Array) -> jax.Array:
  """`||x_i - y_k||^2` for `x [N, D]`, `y [M, D]`; returns `[N, M]` without an `[N, M, D]` intermediate."""
  # HIGHEST precision: TPUs and recent GPUs otherwise multiply in bf16/tf32,
  # and the cancellation in |x|^2 + |y|^2 - 2 x.y loses the small distances
  # that the kernel is most sensitive to.
  cross = jnp.matmul(x, y.T, precision=jax.lax.Precision.HIGHEST)  # [N, M]
  squared_norms_x = jnp.sum(jnp.square(x), axis=-1)  # [N]
  squared_norms_y = jnp.sum(jnp.square(y), axis=-1)  # [M]
  return jnp.maximum(squared_norms_x[:, None] + squared_norms_y[None, :] - 2.0 * cross, 0.0)


def mmd_imq(z_q: jax.typing.ArrayLike, z_p: jax.typing.ArrayLike, *, prior_variance: float = 1.0) -> jax.Array:
  r"""The unbiased estimate of :math:`\mathrm{MMD}^2` between two samples, with inverse multiquadratic kernels.

  The WAE-MMD penalty of Tolstikhin et al. 2018, "Wasserstein auto-encoders",
  Algorithm 2, between encoded latents :math:`z_q` (`N` of them) and prior
  samples :math:`z_p` (`M`):

  .. math::
     \frac{1}{N(N-1)} \sum_{i \ne k} k(z_{q,i}, z_{q,k})
     + \frac{1}{M(M-1)} \sum_{i \ne k} k(z_{p,i}, z_{p,k})
     - \frac{2}{NM} \sum_{i, k} k(z_{q,i}, z_{p,k}),

  a U-statistic (unbiased; it can be slightly negative when the two
  distributions agree). The kernel is
  :math:`k(x, y) = \sum_s C_s / (C_s + \|x - y\|^2)` with
  :math:`C_s = 2 D \sigma^2 s` for :math:`s \in` `IMQ_SCALES`, as in the
  authors' code (tolstikhin/wae, `wae.py`), :math:`\sigma^2` being the
  prior's variance per dimension. The WAE objective adds :math:`\lambda`
  times this to the reconstruction cost. The estimate is exactly symmetric in
  its two arguments.

  Args:
    z_q: a sample of one distribution (the aggregate posterior), `[N, D]`, `N >= 2`.
    z_p: a sample of the other (the prior), `[M, D]`, `M >= 2`.
    prior_variance: :math:`\sigma^2`, the prior's variance per dimension (1 for
      the standard normal); sets the kernel scales. `> 0`.

  Returns:
    `[]`: the estimate for the batch.

  Raises:
    ValueError: if a sample is not a floating `[N, D]` array with at least 2
      rows, the two differ in `D`, or `prior_variance <= 0`.

  >>> import jax
  >>> z = jax.random.normal(jax.random.key(0), (2, 256, 2))
  >>> same, shifted = mmd_imq(z[0], z[1]), mmd_imq(z[0], z[1] + 1.0)
  >>> bool(abs(same) < 0.01), round(float(shifted), 2)
  (True, 0.88)
  """
  z_q, z_p = _check_latents('z_q', z_q), _check_latents('z_p', z_p)
  for name, sample in (('z_q', z_q), ('z_p', z_p)):
    if sample.shape[0] < 2:
      raise ValueError(
        f'`{name}` must hold at least 2 samples (rows) for the unbiased MMD estimate; got shape {sample.shape}.'
      )
  if z_q.shape[1] != z_p.shape[1]:
    raise ValueError(f'`z_q` and `z_p` must have the same latent dimension D; got shapes {z_q.shape} and {z_p.shape}.')
  if not prior_variance > 0:
    raise ValueError(f'`prior_variance` must be > 0; got {prior_variance!r}.')
  if z_q.shape[0] > z_p.shape[0]:
    # The estimate is symmetric; one argument order per pair of sizes makes
    # mmd_imq(a, b) and mmd_imq(b, a) the same computation, bit for bit.
    z_q, z_p = z_p, z_q
  latent_dim = z_q.shape[1]
  scales = [2.0 * latent_dim * prior_variance * s for s in IMQ_SCALES]

  def kernel(squared_distances: jax.Array) -> jax.Array:
    # The sum of the kernels, so one reduction serves all scales (the
    # authors sum the seven statistics, which is the same number).
    return sum(c / (c + squared_distances) for c in scales)

  def mean_off_diagonal(kernel_matrix: jax.Array) -> jax.Array:  # [N, N] -> []
    num = kernel_matrix.shape[0]
    off_diagonal = ~jnp.eye(num, dtype=bool)  # [N, N]
    return jnp.sum(jnp.where(off_diagonal, kernel_matrix, 0.0)) / (num * (num - 1))

  within_q = mean_off_diagonal(kernel(_squared_distances(z_q, z_q)))  # from [N, N]
  within_p = mean_off_diagonal(kernel(_squared_distances(z_p, z_p)))  # from [M, M]
  # The cross term in both orders, averaged, so that for samples of one size
  # swapping them only swaps the operands of additions: the estimate is then
  # exactly symmetric, which one order alone is not in floating point.
  between = 0.5 * (jnp.mean(kernel(_squared_distances(z_q, z_p))) + jnp.mean(kernel(_squared_distances(z_p, z_q))))
  return (within_q + within_p) - 2.0 * between


# -- FactorVAE ---------------------------------------------------------------------------------------------------------


def permute_dims(key: jax.Array, z: jax.typing.ArrayLike) -> jax.Array:
  r"""Shuffles each latent dimension independently across the batch: samples of :math:`\bar q(z) = \prod_j q(z_j)`.

  `permute_dims` of Kim & Mnih 2018, "Disentangling by factorising",
  Algorithm 1: each column of `z` gets its own random permutation, which keeps
  every marginal :math:`q(z_j)` and breaks the dependence between dimensions.
  FactorVAE's discriminator learns to tell these from samples of :math:`q(z)`
  (Algorithm 2 permutes a second, independent batch; pass `z` through
  `jax.lax.stop_gradient` when training only the discriminator on them).

  Args:
    key: a PRNG key.
    z: latent samples, `[B, D]`.

  Returns:
    `[B, D]`: `z` with each column permuted.

  Raises:
    ValueError: if `z` is not a floating `[B, D]` array.

  >>> import jax, jax.numpy as jnp
  >>> z = jnp.arange(8.0).reshape(4, 2)
  >>> z_perm = permute_dims(jax.random.key(0), z)
  >>> bool(jnp.all(jnp.sort(z_perm, axis=0) == z))  # every column keeps its values
  True
  """
  z = _check_latents('z', z)
  keys = jax.random.split(key, z.shape[1])  # one independent permutation per dimension
  return jax.vmap(jax.random.permutation, in_axes=(0, 1), out_axes=1)(keys, z)


def factor_vae_total_correlation(logits: jax.typing.ArrayLike) -> jax.Array:
  r"""FactorVAE's density-ratio estimate of the total correlation at each sample, in nats.

  .. math::
     \mathrm{TC}(z) = \mathrm{KL}(q(z) \,\|\, \bar q(z))
       \approx \mathbb E_{q(z)}\left[\log \frac{D(z)}{1 - D(z)}\right], \qquad
     \log \frac{D(z)}{1 - D(z)} = \ell_0(z) - \ell_1(z)

  (Kim & Mnih 2018, "Disentangling by factorising", eq. 3), for a
  discriminator with two logits :math:`(\ell_0, \ell_1)` and
  :math:`D(z) = \mathrm{softmax}(\ell)_0`, the probability that `z` is a
  sample of :math:`q(z)` rather than of :math:`\bar q(z)` (`permute_dims`):
  class 0 is "from q(z)", class 1 "permuted", as in
  `factor_vae_discriminator_loss` and disentanglement_lib. At the optimal
  discriminator this is :math:`\log q(z) - \log \bar q(z)`.

  The FactorVAE objective (eq. 2) is `elbo - gamma * factor_vae_total_correlation(...)`,
  averaged over the batch, with `logits` of the encoder's own samples; the
  gradient flows through the discriminator into the encoder, while the
  discriminator's parameters are left alone by this term.

  Args:
    logits: discriminator logits at samples of :math:`q(z)`, `[B, 2]`.

  Returns:
    `[B]`: :math:`\ell_0 - \ell_1`, in nats; its batch mean estimates the total correlation.

  Raises:
    ValueError: if `logits` is not a floating `[B, 2]` array.

  >>> import jax.numpy as jnp
  >>> factor_vae_total_correlation(jnp.array([[2.0, -1.0], [0.5, 0.5]]))
  Array([3., 0.], dtype=float32)
  """
  logits = _check_logits('logits', logits)
  return logits[:, 0] - logits[:, 1]


def factor_vae_discriminator_loss(logits_q: jax.typing.ArrayLike, logits_permuted: jax.typing.ArrayLike) -> jax.Array:
  r"""The FactorVAE discriminator's cross-entropy, in nats; lower is better.

  .. math::
     -\frac12 \left(\frac1B \sum_i \log D(z_i) + \frac1{B'} \sum_i \log\bigl(1 - D(\tilde z_i)\bigr)\right)

  for samples :math:`z_i` of :math:`q(z)` (class 0) and permuted samples
  :math:`\tilde z_i` of :math:`\bar q(z)` (class 1, from `permute_dims`):
  the negative of the discriminator's objective in Kim & Mnih 2018,
  "Disentangling by factorising", Algorithm 2, with
  :math:`D = \mathrm{softmax}(\ell)_0`. It is :math:`\log 2` for a
  discriminator that cannot tell the classes apart.

  Args:
    logits_q: discriminator logits at samples of :math:`q(z)`, `[B, 2]`.
    logits_permuted: discriminator logits at permuted samples, `[B', 2]`.

  Returns:
    `[]`: the loss for the two batches.

  Raises:
    ValueError: if the logits are not floating `[B, 2]` arrays.

  >>> import jax.numpy as jnp
  >>> round(float(factor_vae_discriminator_loss(jnp.zeros((3, 2)), jnp.zeros((5, 2)))), 4)  # log 2
  0.6931
  """
  logits_q = _check_logits('logits_q', logits_q)
  logits_permuted = _check_logits('logits_permuted', logits_permuted)
  log_prob_q = jax.nn.log_softmax(logits_q, axis=-1)[:, 0]  # [B] log D(z)
  log_prob_permuted = jax.nn.log_softmax(logits_permuted, axis=-1)[:, 1]  # [B'] log(1 - D(z~))
  return -0.5 * (jnp.mean(log_prob_q) + jnp.mean(log_prob_permuted))


def _check_logits(name: str, logits: jax.typing.ArrayLike) -> jax.Array:
  _checks.check_floating(name, logits)
  if np.ndim(logits) != 2 or np.shape(logits)[1] != 2:
    raise ValueError(
      f'`{name}` must be [B, 2] discriminator logits (class 0: from q(z), class 1: permuted); '
      f'got shape {np.shape(logits)}.'
    )
  return jnp.asarray(logits)

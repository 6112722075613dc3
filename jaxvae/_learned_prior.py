r"""A learned conditional prior p(z | y) = N(loc_p, diag exp(log_var_p)) reduced to the standard-normal one.

The Variational U-Net (Esser, Sutter & Ommer 2018, eq. 4) trains

.. math::
   \mathcal L(x | y) = \mathbb E_{q(z|x, y)}[\log p(x | y, z)] - \mathrm{KL}(q(z | x, y) \,\|\, p(z | y))

with both q and p diagonal Gaussians. Write z in the prior's standardised
coordinates, u = (z - loc_p) / scale_p. The map is affine and invertible, and
KL divergences and importance weights p(z|y) / q(z|x, y) are invariant under
one invertible map applied to both densities (the Jacobians cancel). So with
the posterior over u (`whiten`) and a decoder that maps u back to z
(`unwhiten`), p(z|y) becomes N(0, I) over u, and every bound of
`jaxvae._bounds` (`elbo`, `iwae_bounds`) is, unchanged, the bound on
log p(x | y) under the learned prior; sampling u ~ N(0, I) samples p(z | y).
For the same noise the samples z are the very ones drawn from q directly.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp


def whiten(
  loc_q: jax.typing.ArrayLike,
  log_var_q: jax.typing.ArrayLike,
  loc_p: jax.typing.ArrayLike,
  log_var_p: jax.typing.ArrayLike,
) -> tuple[jax.Array, jax.Array]:
  r"""The posterior q(z) = N(loc_q, exp(log_var_q)) as a distribution over u = (z - loc_p) / scale_p.

  .. math::
     \mathrm{KL}(\mathcal N(\text{whiten}(q)) \,\|\, \mathcal N(0, I)) = \mathrm{KL}(q \,\|\, p)

  Args:
    loc_q, log_var_q: the posterior, `[B, D]` each.
    loc_p, log_var_p: the prior, `[B, D]` each (or broadcastable).

  Returns:
    `(loc, log_var)` of u, `[B, D]` each.

  >>> import jax.numpy as jnp
  >>> from jaxvae import kl_diag_gaussian_standard_normal, kl_diag_gaussians
  >>> q, p = (jnp.array([1.0]), jnp.array([0.5])), (jnp.array([-1.0]), jnp.array([2.0]))
  >>> round(float(kl_diag_gaussian_standard_normal(*whiten(*q, *p))), 5) == round(float(kl_diag_gaussians(*q, *p)), 5)
  True
  """
  loc_q, log_var_q = jnp.asarray(loc_q), jnp.asarray(log_var_q)
  loc_p, log_var_p = jnp.asarray(loc_p), jnp.asarray(log_var_p)
  return (loc_q - loc_p) * jnp.exp(-0.5 * log_var_p), log_var_q - log_var_p


def unwhiten(u: jax.typing.ArrayLike, loc_p: jax.typing.ArrayLike, log_var_p: jax.typing.ArrayLike) -> jax.Array:
  """The latent z = loc_p + scale_p u of standardised latents `u [..., B, D]`, for a prior `[B, D]`."""
  return jnp.asarray(loc_p) + jnp.exp(0.5 * jnp.asarray(log_var_p)) * jnp.asarray(u)

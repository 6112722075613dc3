"""The Variational U-Net (Esser, Sutter & Ommer 2018): images from a structure map y and an appearance latent z.

A U-Net generator p(x | y, z): a structure encoder reduces y `[B, H, W, C_y]`
by stride-2 convolutions to a bottleneck and hands its features at every
resolution to the decoder through skip connections; the appearance latent z
`[B, D]` enters at the bottleneck and, broadcast over the pixels, at every
resolution beside the skips. The appearance encoder q(z | x, y) sees
the image beside its structure. The prior is N(0, I) (`prior='standard_normal'`)
or, as in the paper, learned from the structure's bottleneck, p(z | y) =
N(loc_p(y), diag exp(log_var_p(y))) (`prior='learned'`).

The module has the interface of `jaxvae._models.VAE` (`context`,
`encode_in_context`, `decode_in_context`), so `jaxvae.bind_vae`, the family's
losses, the bounds, training and evaluation use it unchanged. With the
learned prior, its encoder returns the posterior over the prior's
standardised latent u = (z - loc_p) / scale_p and its decoder maps u back to
z (`jaxvae._learned_prior`): under that change of variables the prior is
N(0, I), so the ELBO, its KL(q(z|x, y) || p(z|y)) and the IWAE bound are those
of the learned prior exactly. `appearance` and `generate` work in z itself,
for transferring one image's appearance onto another's structure.

Like every module here it outputs distribution parameters only.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp

from jaxvae import _learned_prior, _models

PRIORS = ('standard_normal', 'learned')


class StructureEncoder(nn.Module):
  """`y [B, H, W, C_y] ->` features at H, H/2, ..., H/2^L: `[B, H / 2^l, W / 2^l, channels[max(l - 1, 0)]]`."""

  channels: Sequence[int]
  activation: str = 'relu'
  dtype: Any = jnp.float32

  @nn.compact
  def __call__(self, y: jax.Array) -> tuple[jax.Array, ...]:
    act = _models._activation(self.activation)  # pylint: disable=protected-access
    h = act(nn.Conv(self.channels[0], (3, 3), padding='SAME', dtype=self.dtype)(y.astype(self.dtype)))
    skips = [h]  # [B, H, W, c0]
    for features in self.channels:
      h = act(nn.Conv(features, (4, 4), strides=(2, 2), padding='SAME', dtype=self.dtype)(h))
      h = act(nn.Conv(features, (3, 3), padding='SAME', dtype=self.dtype)(h))
      skips.append(h)  # [B, H / 2^l, W / 2^l, features]
    return tuple(skips)


class AppearanceEncoder(nn.Module):
  """`(x [B, H, W, C], y [B, H, W, C_y]) -> (loc, log_var)` of q(z | x, y), each `[B, D]`."""

  channels: Sequence[int]
  latent_dim: int
  activation: str = 'relu'
  dtype: Any = jnp.float32

  @nn.compact
  def __call__(self, x: jax.Array, y: jax.Array) -> tuple[jax.Array, jax.Array]:
    act = _models._activation(self.activation)  # pylint: disable=protected-access
    h = jnp.concatenate([x, y.astype(x.dtype)], axis=-1).astype(self.dtype)  # [B, H, W, C + C_y]
    for features in self.channels:
      h = act(nn.Conv(features, (4, 4), strides=(2, 2), padding='SAME', dtype=self.dtype)(h))
    out = nn.Dense(2 * self.latent_dim, dtype=self.dtype)(h.reshape(h.shape[0], -1)).astype(jnp.float32)
    return out[:, : self.latent_dim], out[:, self.latent_dim :]


class PriorHead(nn.Module):
  """The structure's bottleneck `[B, b, b, c] -> (loc_p, log_var_p)` of p(z | y), each `[B, D]`."""

  latent_dim: int
  dtype: Any = jnp.float32

  @nn.compact
  def __call__(self, bottleneck: jax.Array) -> tuple[jax.Array, jax.Array]:
    # Zero-initialised: training starts from N(0, I) and moves the prior only as far as the data ask.
    out = nn.Dense(2 * self.latent_dim, kernel_init=nn.initializers.zeros, dtype=self.dtype)(
      bottleneck.reshape(bottleneck.shape[0], -1)
    ).astype(jnp.float32)
    return out[:, : self.latent_dim], out[:, self.latent_dim :]


class UNetDecoder(nn.Module):
  """`(z [N, D], skips) ->` likelihood parameters `[N, H, W, C]`: up from the bottleneck, joining each skip."""

  channels: Sequence[int]
  event_shape: tuple[int, ...]
  head: _models.LikelihoodHead
  activation: str = 'relu'
  dtype: Any = jnp.float32

  @nn.compact
  def __call__(self, z: jax.Array, skips: Sequence[jax.Array]) -> Any:
    act = _models._activation(self.activation)  # pylint: disable=protected-access
    bottleneck = skips[-1]  # [B, b, b', c_L]
    _, height, width, features = bottleneck.shape
    h = nn.Dense(height * width * features, dtype=self.dtype)(z.astype(self.dtype))
    h = act(h.reshape(z.shape[0], height, width, features))
    levels = len(skips) - 1
    for level in range(levels, -1, -1):
      # The structure at this resolution, and z broadcast over it: a short path from the appearance to
      # every level (the pixels' colours), which a bottleneck-only z learned far more slowly.
      z_here = jnp.broadcast_to(z[:, None, None, :].astype(self.dtype), (*h.shape[:3], z.shape[-1]))
      h = jnp.concatenate([h, skips[level].astype(self.dtype), z_here], axis=-1)
      width_here = self.channels[max(level - 1, 0)]
      h = act(nn.Conv(width_here, (3, 3), padding='SAME', dtype=self.dtype)(h))
      if level > 0:
        up = self.channels[max(level - 2, 0)]
        h = act(nn.ConvTranspose(up, (4, 4), strides=(2, 2), padding='SAME', dtype=self.dtype)(h))
    per_pixel = self.head.params_per_pixel
    h = nn.Conv(self.event_shape[-1] * per_pixel, (3, 3), padding='SAME', dtype=self.dtype)(h)
    return self.head(jnp.split(h.astype(jnp.float32), per_pixel, axis=-1))  # P arrays [N, H, W, C]


class VariationalUNet(nn.Module):
  """The Variational U-Net under one parameter tree; the interface of `jaxvae._models.VAE`.

  `context(y)` computes the structure's features (and the learned prior)
  once per batch; the encoder and decoder callables of `jaxvae.bind_vae`
  take batches of the same `B` examples.
  """

  structure_encoder: StructureEncoder
  appearance_encoder: AppearanceEncoder
  decoder: UNetDecoder
  prior_head: PriorHead | None = None  # None: the N(0, I) prior

  def context(self, condition: jax.Array | None) -> dict[str, Any]:
    """`{'condition': y, 'skips': (...), 'prior_loc', 'prior_log_var'}` of the structure `y [B, H, W, C_y]`."""
    if condition is None:
      raise ValueError('the Variational U-Net generates from a structure map: it needs a condition; got None.')
    skips = self.structure_encoder(condition)
    if self.prior_head is None:
      zeros = jnp.zeros((condition.shape[0], self.appearance_encoder.latent_dim), jnp.float32)
      prior_loc, prior_log_var = zeros, zeros
    else:
      prior_loc, prior_log_var = self.prior_head(skips[-1])
    return {'condition': condition, 'skips': skips, 'prior_loc': prior_loc, 'prior_log_var': prior_log_var}

  def prior(self, context: dict[str, Any]) -> tuple[jax.Array, jax.Array]:
    """`(loc, log_var)` of p(z | y), `[B, D]` each."""
    return context['prior_loc'], context['prior_log_var']

  def appearance(self, x: jax.Array, context: dict[str, Any]) -> tuple[jax.Array, jax.Array]:
    """q(z | x, y) over z itself: `(loc, log_var)`, `[B, D]` each."""
    return self.appearance_encoder(x, context['condition'])

  def generate(self, z: jax.Array, context: dict[str, Any]) -> Any:
    """The likelihood parameters of p(x | y, z) for latents z `[B, D]` (not standardised)."""
    return self.decoder(z, context['skips'])

  def encode_in_context(self, x: jax.Array, context: dict[str, Any]) -> tuple[jax.Array, jax.Array]:
    """q over the prior's standardised latent u (z itself under the N(0, I) prior), `[B, D]` each."""
    loc, log_var = self.appearance(x, context)
    if self.prior_head is None:
      return loc, log_var
    return _learned_prior.whiten(loc, log_var, *self.prior(context))

  def decode_in_context(self, u: jax.Array, context: dict[str, Any]) -> Any:
    """p(x | y, z = loc_p + scale_p u) for standardised latents `u [B, D]`."""
    z = u if self.prior_head is None else _learned_prior.unwhiten(u, *self.prior(context))
    return self.generate(z, context)

  def encode(self, x: jax.Array, condition: jax.Array | None = None) -> tuple[jax.Array, jax.Array]:
    return self.encode_in_context(x, self.context(condition))

  def decode(self, u: jax.Array, condition: jax.Array | None = None) -> Any:
    return self.decode_in_context(u, self.context(condition))

  def __call__(self, x: jax.Array, condition: jax.Array | None = None) -> Any:
    """Decodes the posterior means of `x` given `condition`: used to initialise every parameter."""
    context = self.context(condition)
    loc, _ = self.encode_in_context(x, context)
    return self.decode_in_context(loc, context)


def check_unet_image_shape(event_shape: Sequence[int], num_levels: int) -> None:
  """Raises ValueError unless `[H, W, C]` halves `num_levels` times exactly (the skips must line up)."""
  event_shape = tuple(event_shape)
  factor = 2**num_levels
  if len(event_shape) != 3 or event_shape[0] % factor or event_shape[1] % factor:
    raise ValueError(
      f'the U-Net halves the image {num_levels} times (one per entry of conv_channels), so H and W must be '
      f'multiples of {factor}; got event shape {event_shape}. Use fewer conv_channels or another image size.'
    )


def make_unet_vae(
  *,
  event_shape: Sequence[int],
  latent_dim: int,
  likelihood: str,
  conv_channels: Sequence[int],
  prior: str = 'learned',
  activation: str = 'relu',
  gaussian_scale: str = 'fixed',
  gaussian_fixed_log_scale: float = 0.0,
  dtype: str = 'float32',
  conditional: bool = True,
  architecture: str = 'unet',
  hidden_sizes: Sequence[int] = (),
  dense_size: int = 0,
) -> VariationalUNet:
  """Builds a `VariationalUNet` from model settings (the fields of `config.model`).

  Args:
    event_shape: `(H, W, C)`; H and W must halve `len(conv_channels)` times.
    latent_dim: D, the appearance latent's dimensions.
    likelihood: one of `jaxvae._models.LIKELIHOODS`: all of them are supported.
    conv_channels: widths at each halving, from the image down to the
      bottleneck (the structure encoder, the appearance encoder and, mirrored,
      the decoder).
    prior: `'learned'` (p(z | y), Esser et al. 2018) or `'standard_normal'`.
    activation, gaussian_scale, gaussian_fixed_log_scale, dtype: as for `jaxvae.make_vae`.
    conditional: must be True: the model is conditioned on a structure map.
    architecture, hidden_sizes, dense_size: the other fields of
      `config.model`; `architecture` must be `'unet'`, the others are unused.

  Returns:
    An unbound `VariationalUNet`.

  Raises:
    ValueError: for an unconditional model, an unknown prior, likelihood or
      activation, non-positive sizes, or an image the U-Net cannot halve down
      to its bottleneck.
  """
  del hidden_sizes, dense_size
  if architecture != 'unet':
    raise ValueError(f"make_unet_vae builds architecture 'unet'; got {architecture!r}.")
  if not conditional:
    raise ValueError(
      'the Variational U-Net generates from a structure map: set config.objective.condition to a structure '
      "kind (e.g. 'structure') with objective 'cvae'."
    )
  if prior not in PRIORS:
    raise ValueError(f'unknown prior {prior!r}; choose one of {PRIORS}.')
  if likelihood not in _models.LIKELIHOODS:
    raise ValueError(f'unknown likelihood {likelihood!r}; choose one of {_models.LIKELIHOODS}.')
  if gaussian_scale not in _models.GAUSSIAN_SCALES:
    raise ValueError(f'unknown gaussian_scale {gaussian_scale!r}; choose one of {_models.GAUSSIAN_SCALES}.')
  _models._activation(activation)  # pylint: disable=protected-access
  if dtype not in _models.DTYPES:
    raise ValueError(f'unknown dtype {dtype!r}; choose one of {_models.DTYPES}.')
  sizes = [latent_dim, *conv_channels]
  if not conv_channels or any(not isinstance(v, int) or v < 1 for v in sizes):
    raise ValueError(
      f'`latent_dim` and `conv_channels` must be positive integers (at least one channel); got {latent_dim!r} '
      f'and {tuple(conv_channels)!r}.'
    )
  event_shape = tuple(int(s) for s in event_shape)
  check_unet_image_shape(event_shape, len(conv_channels))
  compute = jnp.dtype(dtype)
  channels = tuple(conv_channels)
  head = _models.LikelihoodHead(likelihood, gaussian_scale, gaussian_fixed_log_scale)
  return VariationalUNet(
    structure_encoder=StructureEncoder(channels, activation, dtype=compute),
    appearance_encoder=AppearanceEncoder(channels, latent_dim, activation, dtype=compute),
    decoder=UNetDecoder(channels, event_shape, head, activation, dtype=compute),
    prior_head=PriorHead(latent_dim, dtype=compute) if prior == 'learned' else None,
  )

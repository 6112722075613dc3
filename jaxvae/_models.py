"""Flax linen encoders and decoders.

Modules only output distribution parameters: the encoder `(loc, log_var)` of
the Gaussian posterior, the decoder the parameters of the likelihood named by
`likelihood`. All probability math lives in pure functions elsewhere.

Images are `[B, H, W, C]`; an MLP flattens them, a conv net keeps them.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp

from jaxvae import _likelihoods

LIKELIHOODS = ('bernoulli', 'gaussian', 'discretized_logistic')
GAUSSIAN_SCALES = ('fixed', 'scalar', 'per_pixel')
ACTIVATIONS = ('relu', 'tanh', 'elu', 'gelu', 'leaky_relu', 'swish', 'softplus')
CONV_IMAGE_SIZES = (28, 32, 64, 128)
DTYPES = ('float32', 'bfloat16')
# The PixelCNN++ floor on the logistic log-scale, which keeps the bins' mass
# from collapsing onto a point while the decoder is still poor.
_MIN_LOGISTIC_LOG_SCALE = -7.0


def log_likelihood_fn(likelihood: str) -> Callable[..., jax.Array]:
  """The `(x, decoder_output, *, mask=None) -> [..., B]` log-likelihood matching a decoder's `likelihood`."""
  if likelihood == 'bernoulli':
    return _likelihoods.bernoulli_log_likelihood
  if likelihood == 'gaussian':
    return lambda x, params, *, mask=None: _likelihoods.gaussian_log_likelihood(x, *params, mask=mask)
  if likelihood == 'discretized_logistic':
    return lambda x, params, *, mask=None: _likelihoods.discretized_logistic_log_likelihood(x, *params, mask=mask)
  raise ValueError(f'unknown likelihood {likelihood!r}; choose one of {LIKELIHOODS}.')


def mean_image(likelihood: str, decoder_output: Any) -> jax.Array:
  """The mean of p(x|z) in data space [0, 1], for pictures of samples and reconstructions."""
  if likelihood == 'bernoulli':
    return jax.nn.sigmoid(decoder_output)
  loc, _ = decoder_output
  return jnp.clip(loc, 0.0, 1.0)


def _activation(name: str) -> Callable[[jax.Array], jax.Array]:
  if name not in ACTIVATIONS:
    raise ValueError(f'unknown activation {name!r}; choose one of {ACTIVATIONS}.')
  return getattr(nn, name)


class LikelihoodHead(nn.Module):
  """Turns the decoder's P raw outputs, each `[N, *event]`, into the parameters of `likelihood`.

  `gaussian_scale` is `'fixed'` (at `gaussian_fixed_log_scale`), or learned
  from that initial value as one `'scalar'` or `'per_pixel'`.
  """

  likelihood: str = 'bernoulli'
  gaussian_scale: str = 'fixed'
  gaussian_fixed_log_scale: float = 0.0

  @property
  def params_per_pixel(self) -> int:
    """P: raw decoder outputs per pixel."""
    return 2 if self.likelihood == 'discretized_logistic' else 1

  @nn.compact
  def __call__(self, raw: Sequence[jax.Array]) -> Any:
    if self.likelihood == 'bernoulli':
      return raw[0]  # logits [N, *event]
    if self.likelihood == 'discretized_logistic':
      return raw[0], jnp.maximum(raw[1], _MIN_LOGISTIC_LOG_SCALE)
    loc = raw[0]  # [N, *event]
    if self.gaussian_scale == 'fixed':
      log_scale = jnp.asarray(self.gaussian_fixed_log_scale, loc.dtype)
    elif self.gaussian_scale == 'scalar':
      log_scale = self.param('log_scale', nn.initializers.constant(self.gaussian_fixed_log_scale), ())
    else:
      log_scale = self.param('log_scale', nn.initializers.constant(self.gaussian_fixed_log_scale), loc.shape[1:])
    # Every decoder output leads with N (see jaxvae.elbo), so the shared scale is broadcast.
    return loc, jnp.broadcast_to(log_scale, loc.shape)


class MLPEncoder(nn.Module):
  """`x [B, *event] -> (loc, log_var)`, each `[B, latent_dim]`: hidden Dense layers, then one linear head."""

  hidden_sizes: Sequence[int]
  latent_dim: int
  activation: str = 'relu'
  dtype: Any = jnp.float32  # computation dtype; parameters and outputs stay float32

  @nn.compact
  def __call__(self, x: jax.Array, context: jax.Array | None = None) -> tuple[jax.Array, jax.Array]:
    act = _activation(self.activation)
    h = _with_context(x.reshape(x.shape[0], -1), context)  # [B, prod(event) (+ E)]
    for size in self.hidden_sizes:
      h = act(nn.Dense(size, dtype=self.dtype)(h))
    # One Dense for both heads: a single wider matmul is faster than two.
    # The bounds (KL, sampling, log-likelihoods) are computed in float32.
    loc_and_log_var = nn.Dense(2 * self.latent_dim, dtype=self.dtype)(h).astype(jnp.float32)  # [B, 2D]
    return loc_and_log_var[:, : self.latent_dim], loc_and_log_var[:, self.latent_dim :]


class MLPDecoder(nn.Module):
  """`z [N, latent_dim] ->` likelihood parameters for `[N, *event_shape]`."""

  hidden_sizes: Sequence[int]
  event_shape: tuple[int, ...]
  head: LikelihoodHead
  activation: str = 'relu'
  dtype: Any = jnp.float32  # computation dtype; parameters and outputs stay float32

  @nn.compact
  def __call__(self, z: jax.Array, context: jax.Array | None = None) -> Any:
    act = _activation(self.activation)
    h = _with_context(z, context)  # [N, D (+ E)]
    for size in self.hidden_sizes:
      h = act(nn.Dense(size, dtype=self.dtype)(h))
    per_pixel = self.head.params_per_pixel
    raw = nn.Dense(per_pixel * math.prod(self.event_shape), dtype=self.dtype)(h).astype(jnp.float32)  # [N, P * E]
    # Contiguous blocks per parameter: slicing a minor axis of size P would
    # make XLA copy the decoder output (~25% of a step at batch 1024).
    raw = raw.reshape(z.shape[0], per_pixel, *self.event_shape)
    return self.head([raw[:, i] for i in range(per_pixel)])


def _conv_sizes(image_size: int, num_layers: int) -> list[int]:
  """Spatial sizes through `num_layers` stride-2 'SAME' convolutions: [H, ceil(H/2), ...]."""
  sizes = [image_size]
  for _ in range(num_layers):
    sizes.append(-(-sizes[-1] // 2))
  return sizes


class ConvEncoder(nn.Module):
  """`x [B, H, W, C] -> (loc, log_var)`: stride-2 4x4 convolutions, a Dense layer, a linear head.

  With `channels=(32, 32, 64, 64)` and `dense_size=256` this is the 64x64
  encoder of the disentanglement literature (Burgess et al. 2018, Appendix A.1).
  """

  channels: Sequence[int]
  dense_size: int
  latent_dim: int
  activation: str = 'relu'
  dtype: Any = jnp.float32  # computation dtype; parameters and outputs stay float32

  @nn.compact
  def __call__(self, x: jax.Array, context: jax.Array | None = None) -> tuple[jax.Array, jax.Array]:
    act = _activation(self.activation)
    h = x
    for features in self.channels:
      h = act(nn.Conv(features, (4, 4), strides=(2, 2), padding='SAME', dtype=self.dtype)(h))
    h = act(nn.Dense(self.dense_size, dtype=self.dtype)(_with_context(h.reshape(h.shape[0], -1), context)))
    # The bounds (KL, sampling, log-likelihoods) are computed in float32.
    loc_and_log_var = nn.Dense(2 * self.latent_dim, dtype=self.dtype)(h).astype(jnp.float32)  # [B, 2D]
    return loc_and_log_var[:, : self.latent_dim], loc_and_log_var[:, self.latent_dim :]


class ConvDecoder(nn.Module):
  """`z [N, latent_dim] ->` likelihood parameters for `[N, H, W, C]`, the mirror of `ConvEncoder`."""

  channels: Sequence[int]
  dense_size: int
  event_shape: tuple[int, ...]
  head: LikelihoodHead
  activation: str = 'relu'
  dtype: Any = jnp.float32  # computation dtype; parameters and outputs stay float32

  @nn.compact
  def __call__(self, z: jax.Array, context: jax.Array | None = None) -> Any:
    act = _activation(self.activation)
    height, _, image_channels = self.event_shape
    sizes = _conv_sizes(height, len(self.channels))  # e.g. 28 -> [28, 14, 7, 4, 2]
    features = list(reversed(self.channels))
    h = act(nn.Dense(self.dense_size, dtype=self.dtype)(_with_context(z, context)))
    h = act(nn.Dense(sizes[-1] * sizes[-1] * features[0], dtype=self.dtype)(h))
    h = h.reshape(z.shape[0], sizes[-1], sizes[-1], features[0])
    per_pixel = self.head.params_per_pixel
    targets = list(reversed(sizes[:-1]))
    for i, target in enumerate(targets):
      last = i == len(targets) - 1
      out_features = image_channels * per_pixel if last else features[i + 1]
      h = nn.ConvTranspose(out_features, (4, 4), strides=(2, 2), padding='SAME', dtype=self.dtype)(h)
      # A stride-2 transpose doubles the size; crop where the encoder rounded up (7 -> 4 -> 8).
      h = h[:, :target, :target]
      if not last:
        h = act(h)
    return self.head(jnp.split(h.astype(jnp.float32), per_pixel, axis=-1))  # P arrays [N, H, W, C]


class ConditionNet(nn.Module):
  """A condition `[B, ...]` to the context vector `[B, E]` that a conditional VAE's encoder and decoder take.

  Vectors (one-hot labels) pass through; images (a masked image with its
  mask, a structure map) are flattened (`architecture='mlp'`) or summarised
  by stride-2 convolutions and a Dense layer (`'conv'`).
  """

  architecture: str = 'mlp'
  channels: Sequence[int] = (32, 32, 64, 64)
  dense_size: int = 256
  activation: str = 'relu'
  dtype: Any = jnp.float32

  @nn.compact
  def __call__(self, condition: jax.Array) -> jax.Array:
    if condition.ndim == 2 or self.architecture == 'mlp':
      return condition.reshape(condition.shape[0], -1)
    act = _activation(self.activation)
    h = condition  # [B, H, W, C']
    for features in self.channels:
      h = act(nn.Conv(features, (4, 4), strides=(2, 2), padding='SAME', dtype=self.dtype)(h))
    return act(nn.Dense(self.dense_size, dtype=self.dtype)(h.reshape(h.shape[0], -1))).astype(jnp.float32)


def _with_context(h: jax.Array, context: jax.Array | None) -> jax.Array:
  """`h [N, F]` with the context vector `[N, E]` appended to its features, if there is one."""
  return h if context is None else jnp.concatenate([h, context.astype(h.dtype)], axis=-1)


class VAE(nn.Module):
  """An encoder and a decoder under one parameter tree `{'encoder': ..., 'decoder': ...}`.

  Use `encode` and `decode` through `apply(..., method=...)`, or get both as
  closures over the parameters with `jaxvae.bind_vae`. With a `condition_net`
  it is a conditional VAE (Sohn et al. 2015): q(z|x, c) and p(x|z, c), both
  given the condition's context vector, with the N(0, I) prior.
  """

  encoder: nn.Module
  decoder: nn.Module
  condition_net: nn.Module | None = None

  def context(self, condition: jax.Array | None) -> jax.Array | None:
    """The condition's context vector `[B, E]` that the encoder and decoder take; None without a condition."""
    if (condition is None) != (self.condition_net is None):
      raise ValueError(
        'a conditional VAE needs a condition and an unconditional one takes none; got '
        f'condition={"None" if condition is None else "an array"} for a '
        f'{"conditional" if self.condition_net is not None else "unconditional"} VAE.'
      )
    return None if condition is None else self.condition_net(condition)

  def encode(self, x: jax.Array, condition: jax.Array | None = None) -> tuple[jax.Array, jax.Array]:
    return self.encoder(x, self.context(condition))

  def decode(self, z: jax.Array, condition: jax.Array | None = None) -> Any:
    return self.decoder(z, self.context(condition))

  def encode_in_context(self, x: jax.Array, context: jax.Array | None) -> tuple[jax.Array, jax.Array]:
    """`encode` given the condition's context vector from `context` (computed once for many calls)."""
    return self.encoder(x, context)

  def decode_in_context(self, z: jax.Array, context: jax.Array | None) -> Any:
    """`decode` given the condition's context vector from `context`."""
    return self.decoder(z, context)

  def __call__(self, x: jax.Array, condition: jax.Array | None = None) -> Any:
    """Decodes the posterior means of `x`: used to initialise every parameter."""
    loc, _ = self.encode(x, condition)
    return self.decode(loc, condition)


def make_vae(
  *,
  architecture: str,
  event_shape: Sequence[int],
  latent_dim: int,
  likelihood: str,
  activation: str = 'relu',
  hidden_sizes: Sequence[int] = (400,),
  conv_channels: Sequence[int] = (32, 32, 64, 64),
  dense_size: int = 256,
  gaussian_scale: str = 'fixed',
  gaussian_fixed_log_scale: float = 0.0,
  dtype: str = 'float32',
  conditional: bool = False,
) -> VAE:
  """Builds a `VAE` from model settings (the fields of `config.model`).

  Args:
    architecture: `'mlp'` or `'conv'`.
    event_shape: shape of one example, `(H, W, C)` for images.
    latent_dim: D, the number of latent dimensions.
    likelihood: one of `LIKELIHOODS`.
    activation: one of `ACTIVATIONS`.
    hidden_sizes: MLP hidden widths, encoder order; the decoder mirrors them.
    conv_channels: conv widths, encoder order (one stride-2 layer each).
    dense_size: width of the conv nets' Dense layer.
    gaussian_scale: `'fixed'` (at `gaussian_fixed_log_scale`), `'scalar'` or
      `'per_pixel'` (learned, initialised there); Gaussian likelihood only.
    gaussian_fixed_log_scale: log standard deviation of the Gaussian decoder.
    dtype: `'float32'`, or `'bfloat16'` for mixed precision: bfloat16 matmuls
      and convolutions with float32 parameters, outputs and bounds.
    conditional: add a `ConditionNet`: `encode`, `decode` then take a condition.

  Returns:
    An unbound `VAE` module.

  Raises:
    ValueError: for an unknown architecture, likelihood, activation or scale,
      non-positive sizes, or a conv net on images it does not support.
  """
  event_shape = tuple(int(s) for s in event_shape)
  if likelihood not in LIKELIHOODS:
    raise ValueError(f'unknown likelihood {likelihood!r}; choose one of {LIKELIHOODS}.')
  if gaussian_scale not in GAUSSIAN_SCALES:
    raise ValueError(f'unknown gaussian_scale {gaussian_scale!r}; choose one of {GAUSSIAN_SCALES}.')
  _activation(activation)
  if dtype not in DTYPES:
    raise ValueError(f'unknown dtype {dtype!r}; choose one of {DTYPES}.')
  sizes = {
    'latent_dim': [latent_dim],
    'hidden_sizes': list(hidden_sizes),
    'conv_channels': list(conv_channels),
    'dense_size': [dense_size],
  }
  for name, values in sizes.items():
    if any(not isinstance(v, int) or v < 1 for v in values):
      raise ValueError(f'`{name}` must be positive integers; got {values if len(values) > 1 else values[0]!r}.')
  head = LikelihoodHead(likelihood, gaussian_scale, gaussian_fixed_log_scale)
  if architecture == 'mlp':
    encoder = MLPEncoder(tuple(hidden_sizes), latent_dim, activation, dtype=jnp.dtype(dtype))
    decoder = MLPDecoder(tuple(reversed(hidden_sizes)), event_shape, head, activation, dtype=jnp.dtype(dtype))
  elif architecture == 'conv':
    if len(event_shape) != 3 or event_shape[0] != event_shape[1] or event_shape[0] not in CONV_IMAGE_SIZES:
      raise ValueError(
        f'the conv architecture takes square images of size {CONV_IMAGE_SIZES}, [H, W, C]; '
        f'got event shape {event_shape}. Use architecture="mlp" or resize the images.'
      )
    if not conv_channels:
      raise ValueError('`conv_channels` must name at least one conv layer for the conv architecture.')
    encoder = ConvEncoder(tuple(conv_channels), dense_size, latent_dim, activation, dtype=jnp.dtype(dtype))
    decoder = ConvDecoder(tuple(conv_channels), dense_size, event_shape, head, activation, dtype=jnp.dtype(dtype))
  else:
    raise ValueError(f"unknown architecture {architecture!r}; choose 'mlp' or 'conv'.")
  condition_net = None
  if conditional:
    condition_net = ConditionNet(architecture, tuple(conv_channels), dense_size, activation, dtype=jnp.dtype(dtype))
  return VAE(encoder=encoder, decoder=decoder, condition_net=condition_net)


def bind_vae(
  vae: nn.Module, params: Any, condition: jax.Array | None = None
) -> tuple[Callable[[jax.Array], Any], Callable[[jax.Array], Any]]:
  """The `(encoder, decoder)` callables of `vae` closed over `params`, ready for `jaxvae.elbo`.

  `vae` is a `VAE` or any module with its `context`, `encode_in_context` and
  `decode_in_context` methods (`jaxvae._unet.VariationalUNet`).

  For a conditional VAE, `condition` `[B, ...]` is the batch's condition:
  the callables then take batches of `B` examples or latents. Its context
  vector is computed once here, not on every call (IWAE decodes many chunks).
  """
  variables = {'params': params}
  # Methods by name: any module with this interface (`jaxvae._unet.VariationalUNet` too) binds alike.
  context = vae.apply(variables, condition, method='context')

  def encoder(x: jax.Array) -> tuple[jax.Array, jax.Array]:
    return vae.apply(variables, x, context, method='encode_in_context')

  def decoder(z: jax.Array) -> Any:
    return vae.apply(variables, z, context, method='decode_in_context')

  return encoder, decoder

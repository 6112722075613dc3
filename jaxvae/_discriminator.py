"""The FactorVAE discriminator: a Flax linen MLP that tells samples of q(z) from permuted ones.

Like the encoders and decoders, the module only outputs logits; the total
correlation estimate and the discriminator's loss are pure functions in
`jaxvae._objectives` (`factor_vae_total_correlation`,
`factor_vae_discriminator_loss`, `permute_dims`).
"""

from __future__ import annotations

import flax.linen as nn
import jax


class FactorVAEDiscriminator(nn.Module):
  """`z [B, D] -> logits [B, 2]`: class 0 "a sample of q(z)", class 1 "a sample of prod_j q(z_j)" (permuted).

  `num_hidden_layers` Dense layers of `hidden_size` units with leaky ReLUs of
  slope `negative_slope`, then a linear layer to the two logits. The defaults
  are the discriminator of Kim & Mnih 2018, "Disentangling by factorising"
  (Appendix, architecture tables): 6 layers of 1000 units, leaky ReLU 0.2.

  >>> import jax, jax.numpy as jnp
  >>> discriminator = FactorVAEDiscriminator(hidden_size=8, num_hidden_layers=2)
  >>> z = jnp.zeros((3, 10))
  >>> params = discriminator.init(jax.random.key(0), z)
  >>> discriminator.apply(params, z).shape
  (3, 2)
  """

  hidden_size: int = 1000
  num_hidden_layers: int = 6
  negative_slope: float = 0.2

  @nn.compact
  def __call__(self, z: jax.Array) -> jax.Array:
    """Logits of the two classes, `[B, 2]`, for latents `z [B, D]`."""
    h = z  # [B, D]
    for _ in range(self.num_hidden_layers):
      h = nn.leaky_relu(nn.Dense(self.hidden_size)(h), negative_slope=self.negative_slope)  # [B, H]
    return nn.Dense(2)(h)  # [B, 2]

"""Test-wide JAX settings: fake CPU devices for sharding tests, and no silent rank promotion."""

import os

# Must precede the first jax import of the session.
os.environ.setdefault('XLA_FLAGS', '--xla_force_host_platform_device_count=8')

import jax  # noqa: E402

jax.config.update('jax_numpy_rank_promotion', 'raise')

"""The examples in the public docstrings run and print what they say."""

import doctest

import pytest

from jaxvae import (
  _bounds,
  _data,
  _discriminator,
  _disentanglement,
  _dsprites,
  _gaussian,
  _learned_prior,
  _likelihoods,
  _objectives,
  _shapes,
)

_MODULES = [
  _bounds,
  _data,
  _discriminator,
  _disentanglement,
  _dsprites,
  _gaussian,
  _learned_prior,
  _likelihoods,
  _objectives,
  _shapes,
]


@pytest.mark.parametrize('module', _MODULES, ids=lambda m: m.__name__)
def test_docstring_examples(module):
  results = doctest.testmod(module, optionflags=doctest.ELLIPSIS | doctest.NORMALIZE_WHITESPACE)
  assert results.attempted > 0 or module is _data
  assert results.failed == 0

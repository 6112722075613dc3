"""A conditional VAE (Sohn et al. 2015) on the embedded MNIST digits; the variant names the condition.

  python train.py --config configs/mnist_cvae.py:label --workdir runs/mnist_cvae_label
  python train.py --config configs/mnist_cvae.py:inpaint --workdir runs/mnist_cvae_inpaint
  python train.py --config configs/mnist_cvae.py:structure --workdir runs/mnist_cvae_structure

The encoder q(z|x, c) and the decoder p(x|z, c) both see the condition c; the
prior is N(0, I), and eval.py reports bounds on log p(x | c). Conditions:
`label`, the one-hot digit class (a chosen digit in many styles); `inpaint`,
the digit with one to three random quadrants hidden, beside the mask (several
plausible completions of one input); `structure`, the digit's edges (its
shape, rendered with sampled stroke and style). Add `,smoke` for a CPU check,
e.g. `configs/mnist_cvae.py:inpaint,smoke`.
"""

import ml_collections

from jaxvae.configs import common, default

_CONDITIONS = ('label', 'inpaint', 'structure')


def get_config(variant: str = 'label') -> ml_collections.ConfigDict:
  variants = common.parse_variants(variant, allowed=(*_CONDITIONS, 'smoke'), config_file=__file__)
  conditions = variants & set(_CONDITIONS)
  if len(conditions) != 1:
    raise ValueError(
      f'configs/mnist_cvae.py takes one condition of {_CONDITIONS} as its variant (plus optionally smoke), '
      f'e.g. configs/mnist_cvae.py:inpaint; got {variant!r}.'
    )
  config = default.get_config()
  config.objective.name = 'cvae'
  config.objective.condition = conditions.pop()
  return common.shrink(config) if 'smoke' in variants else config

"""Evaluates a trained VAE: `python eval.py --workdir DIR [--iwae_num_samples=K[,K...]] [--metrics=...]`.

Uses the newest intact checkpoint in DIR and the config stored with it; prints a
table and writes DIR/eval/step_<step>.json (or under --output_dir). It only
reads DIR, so it may run while train.py writes there.
"""

from absl import app, flags, logging

import jaxvae
from jaxvae.scripts import _common_flags

_IWAE_NUM_SAMPLES = flags.DEFINE_list(
  'iwae_num_samples', None, 'K of the importance-weighted bound, or several: 1,5,50,5000 (default: the run config).'
)
_METRICS = flags.DEFINE_list(
  'metrics', None, 'Disentanglement metrics, e.g. mig,dci, or none (default: the run config; dsprites: all).'
)
_DATASET = flags.DEFINE_string('dataset', None, 'Refuse to run unless the checkpoint was trained on this dataset.')
_OUTPUT_DIR = flags.DEFINE_string(
  'output_dir', None, 'Where to write eval/step_<step>.json and the pictures (default: --workdir; e.g. if read-only).'
)
flags.mark_flags_as_required(['workdir'])


def main(argv: list[str]) -> None:
  if len(argv) > 1:
    raise app.UsageError(f'unexpected arguments: {" ".join(argv[1:])}')
  logging.set_verbosity(logging.WARNING)
  _common_flags.join_processes()
  ks = None
  if _IWAE_NUM_SAMPLES.value is not None:
    try:
      ks = [int(k) for k in _IWAE_NUM_SAMPLES.value]
    except ValueError:
      ks = None
    if not ks or min(ks) < 1:
      _common_flags.user_error(
        f'--iwae_num_samples takes integers K >= 1, e.g. 1,5,50,5000; got {",".join(_IWAE_NUM_SAMPLES.value)}'
      )
  metrics = None if _METRICS.value is None else [m for m in _METRICS.value if m != 'none']
  evaluation = jaxvae.evaluate(
    _common_flags.WORKDIR.value,
    iwae_num_samples=ks,
    metrics=metrics,
    dataset=_DATASET.value,
    output_dir=_OUTPUT_DIR.value,
  )
  if evaluation.path is not None:  # process 0
    print(jaxvae.format_table(evaluation))
    tensorboard = evaluation.path.parent / 'tensorboard'
    print(f'wrote {evaluation.path}, scalars to TensorBoard ({tensorboard}, step {evaluation.step})')
    if evaluation.pictures:
      print(f'pictures: {evaluation.pictures[0].parent}/ ({", ".join(p.name for p in evaluation.pictures)})')


def run() -> None:
  _common_flags.run(main)

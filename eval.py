"""Evaluates a trained VAE: `python eval.py --workdir DIR [--iwae_num_samples=K[,K...]] [--metrics=...]`.

Prints a table and writes DIR/eval/step_<step>.json. The program is `jaxvae.scripts.eval`.
"""

from jaxvae.scripts import eval as evaluate

if __name__ == '__main__':
  evaluate.run()

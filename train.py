"""Trains a VAE: `python train.py --config configs/default.py --workdir DIR [--config.field=value ...]`.

Rerunning with the same --workdir resumes from its latest checkpoint. The program is `jaxvae.scripts.train`.
"""

from jaxvae.scripts import train

if __name__ == '__main__':
  train.run()

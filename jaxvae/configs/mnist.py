"""The IWAE paper's MNIST setup: MLP 784-200-200-50 (tanh), Bernoulli decoder, Adam and the 3^i-epoch schedule.

  python train.py --config configs/mnist.py --workdir runs/mnist
  python train.py --config configs/mnist.py:binarized --workdir runs/binarized_mnist
  python eval.py --workdir runs/mnist --iwae_num_samples=1,5,50,5000

Burda et al. 2016, Section 5 and Appendix: one stochastic layer of 50 units,
two deterministic layers of 200 tanh units each way, batch 20, Adam
(beta1 = 0.9, beta2 = 0.999, eps = 1e-4), learning rate 1e-3 * 10^(-i/7) for
3^i epochs, i = 0..7 (3,280 epochs). Dynamically binarised `mnist` (60,000
train / 10,000 test); the `binarized` variant uses the fixed binarisation of
Larochelle & Murray (`binarized_mnist`: 50,000 / 10,000 / 10,000). Add
`--config.train.num_samples=K` for the paper's VAE with K samples; the IWAE
objective itself is a separate objective. Needs the dataset prepared by
`tfds build mnist --file_format=array_record` (or `binarized_mnist`), see README.
"""

import ml_collections

from jaxvae.configs import common, default

_EPOCHS = sum(3**i for i in range(8))  # 3,280


def get_config(variant: str = '') -> ml_collections.ConfigDict:
  variants = common.parse_variants(variant, allowed=('binarized', 'smoke'), config_file=__file__)
  config = default.get_config()

  if 'binarized' in variants:
    config.data.dataset = 'binarized_mnist'
    config.data.binarize = 'none'  # already binary
  else:
    config.data.dataset = 'mnist'
    config.data.binarize = 'dynamic'

  config.model.architecture = 'mlp'
  config.model.hidden_sizes = (200, 200)
  config.model.latent_dim = 50
  config.model.activation = 'tanh'
  config.model.likelihood = 'bernoulli'

  config.optim.name = 'adam'
  config.optim.learning_rate = 1e-3
  config.optim.eps = 1e-4
  config.optim.schedule = 'iwae'

  train_examples = 50_000 if 'binarized' in variants else 60_000
  config.train.batch_size = 20
  config.train.num_train_steps = _EPOCHS * (train_examples // config.train.batch_size)
  config.train.log_every = 1000
  config.train.checkpoint_every = 100_000

  config.eval.iwae_num_samples = (1, 5, 50, 5000)  # the paper's table columns; K = 5000 is its NLL protocol
  config.eval.iwae_chunk_size = 250

  if 'smoke' in variants:
    common.shrink(config)
  return config

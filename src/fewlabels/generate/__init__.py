"""Generated images for pretraining: a data-efficient GAN (DiffAugment), sampling to a
folder of PNGs, and sample quality (FD, precision/recall) in a self-supervised encoder's
feature space."""

from fewlabels.generate.gan import Discriminator, Generator, sample
from fewlabels.generate.quality import frechet_distance, knn_precision_recall, sample_quality
from fewlabels.generate.run import GenerateConfig, GenerateResult, run_generate
from fewlabels.generate.train import GANConfig, GANResult, load_generator, train_gan

__all__ = [
    "Discriminator",
    "GANConfig",
    "GANResult",
    "GenerateConfig",
    "GenerateResult",
    "Generator",
    "frechet_distance",
    "knn_precision_recall",
    "load_generator",
    "run_generate",
    "sample",
    "sample_quality",
    "train_gan",
]

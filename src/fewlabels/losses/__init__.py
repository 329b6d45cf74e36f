"""Self-supervised and semi-supervised losses: a pure function each, and an ``nn.Module``
over it.

>>> import torch
>>> from fewlabels.losses import NTXentLoss
>>> z1, z2 = torch.randn(8, 16), torch.randn(8, 16)
>>> loss = NTXentLoss(temperature=0.5)(z1, z2)

The functions run in fp32 under autocast where precision matters (``full_precision``) and
compute on the tensors they are given: under DDP the methods gather embeddings first
(``fewlabels.losses.distributed``).
"""

from __future__ import annotations

from fewlabels.losses.barlow_twins import (
    BarlowTwinsLoss,
    barlow_twins_loss,
    correlation_loss,
    correlation_terms,
    cross_correlation,
)
from fewlabels.losses.byol import BYOLLoss, byol_loss
from fewlabels.losses.classification import (
    RotationLoss,
    SupervisedLoss,
    rotation_loss,
    supervised_loss,
)
from fewlabels.losses.consistency import SoftmaxMSELoss, softmax_mse
from fewlabels.losses.dino import DINOLoss, dino_loss
from fewlabels.losses.infonce import InfoNCELoss, MoCoLoss, infonce_loss, moco_loss
from fewlabels.losses.nt_xent import NTXentLoss, nt_xent_logits, nt_xent_loss
from fewlabels.losses.numerics import full_precision, sum_sq_product
from fewlabels.losses.pseudo_label import (
    FairnessLoss,
    PseudoLabelLoss,
    freematch_fairness_loss,
    pseudo_label_loss,
)
from fewlabels.losses.reconstruction import (
    ReconstructionLoss,
    VAELoss,
    gaussian_kl,
    reconstruction_loss,
    vae_loss,
)
from fewlabels.losses.self_classifier import SelfClassifierLoss, self_classifier_loss
from fewlabels.losses.swav import SwAVLoss, prototype_scores, sinkhorn, swav_loss
from fewlabels.losses.vicreg import VICRegLoss, vicreg_loss, vicreg_terms

__all__ = [
    "BYOLLoss",
    "BarlowTwinsLoss",
    "DINOLoss",
    "FairnessLoss",
    "InfoNCELoss",
    "MoCoLoss",
    "NTXentLoss",
    "PseudoLabelLoss",
    "ReconstructionLoss",
    "RotationLoss",
    "SelfClassifierLoss",
    "SoftmaxMSELoss",
    "SupervisedLoss",
    "SwAVLoss",
    "VAELoss",
    "VICRegLoss",
    "barlow_twins_loss",
    "byol_loss",
    "correlation_loss",
    "correlation_terms",
    "cross_correlation",
    "dino_loss",
    "freematch_fairness_loss",
    "full_precision",
    "gaussian_kl",
    "infonce_loss",
    "moco_loss",
    "nt_xent_logits",
    "nt_xent_loss",
    "prototype_scores",
    "pseudo_label_loss",
    "reconstruction_loss",
    "rotation_loss",
    "self_classifier_loss",
    "sinkhorn",
    "softmax_mse",
    "sum_sq_product",
    "supervised_loss",
    "swav_loss",
    "vae_loss",
    "vicreg_loss",
    "vicreg_terms",
]

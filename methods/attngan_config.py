"""AttnGAN's configuration (the method's ``Config``, its paper defaults and the XRayGAN authors' variant), in
its own module so that the networks (methods/attngan_networks.py) and the method (methods/attngan.py) both
import it and neither imports the other. What each field means and where it comes from: methods/attngan.py.
"""

import dataclasses

from benchmark.core.validation import check_ranges
from methods.base import MethodConfig, TextEncoder
from methods.damsm import DAMSMConfig
from methods.layers import check_discriminator_loss

VARIANTS = {
    "faithful": {},  # the original AttnGAN objective (DAMSM, CA + KL, conditional + unconditional BCE)
    "xraygan_protocol": {  # as the XRayGAN authors ran it
        "text_training": "frozen_random",
        "damsm_weight": 0.0,
        "z_dim": 0,
        "condition_dim": 128,
        "kl_weight": 0.0,
        "d_condition": False,
        "loss": "wgan_gp",
        "d_norm": "instance",  # batch norm mixes the samples whose gradients the penalty takes one by one
        "l2_weight": 100.0,
        "betas": (0.9, 0.999),
        "ema_decay": 0.0,
    },
}
# The authors' optimisation schedule for their stand-in, applied with the variant at the paper setting only
# (``Method.paper_schedules``), so the tiny setting plus a variant stays tiny.
XRAYGAN_SCHEDULE = {"lr_g": 1e-4, "lr_d": 1e-4, "lr_milestones": (40, 80), "epochs": 150, "batch_size": 20}


@dataclasses.dataclass(frozen=True)
class Config(MethodConfig):
    # Text.
    encoder: str = "hae"  # key in TEXT_ENCODERS
    text: TextEncoder.Config = TextEncoder.Config()
    text_training: str = "damsm"  # "damsm": pretrained with the DAMSM, then frozen | "frozen_random" (XRayGAN's)
    damsm: DAMSMConfig = DAMSMConfig()
    # Generators.
    stage_sizes: tuple[int, ...] = (64, 128, 256)  # px; each stage doubles
    gf_dim: int = 32  # GF_DIM: channels of every stage after the first (the first starts at gf x 2^blocks)
    z_dim: int = 100  # noise size; 0 = no noise
    condition_dim: int = 100  # conditioning augmentation output
    res_blocks: int = 2  # R_NUM per attention stage
    # Discriminators.
    df_dim: int = 64
    d_condition: bool = True  # True: conditional + unconditional logits (the original); False: unconditional
    d_norm: str = "batch"  # "batch" (the original) | "instance" (WGAN-GP critics: a per-sample penalty)
    # Losses.
    loss: str = "bce"  # "bce" (the original) | "wgan_gp" (XRayGAN's runs)
    damsm_weight: float = 5.0  # lambda (birds 5, COCO 50); 0 = no DAMSM term
    kl_weight: float = 1.0
    l2_weight: float = 0.0  # per stage and view pixel L2 (XRayGAN's runs: 100)
    gp_weight: float = 10.0  # WGAN-GP only
    # Optimisation.
    batch_size: int = 20
    epochs: int = 600
    lr_g: float = 2e-4
    lr_d: float = 2e-4
    betas: tuple[float, float] = (0.5, 0.999)
    lr_milestones: tuple[int, ...] = ()  # epochs at which both learning rates are multiplied by lr_decay
    lr_decay: float = 0.2
    ema_decay: float = 0.999  # moving average of the generator weights used for sampling; 0 = off
    # Speed (checkpoints, logging and bf16: MethodConfig).
    channels_last: bool = True

    def __post_init__(self):
        check_ranges(self)
        sizes = self.stage_sizes
        if not sizes or sizes[0] < 8 or sizes[0] & (sizes[0] - 1):
            raise ValueError(f"attngan: the first stage size must be a power of two >= 8, got {sizes}")
        if any(b != 2 * a for a, b in zip(sizes, sizes[1:])):
            raise ValueError(f"attngan: each stage must double the size, got {sizes}")
        if self.text_training not in ("damsm", "frozen_random"):
            raise ValueError(f"attngan: text_training must be 'damsm' or 'frozen_random', not {self.text_training!r}")
        if self.damsm_weight > 0 and self.text_training != "damsm":
            raise ValueError("attngan: damsm_weight > 0 needs text_training = 'damsm' (a pretrained DAMSM)")
        check_discriminator_loss("attngan", self.loss, self.d_norm)
        if not 0 <= self.ema_decay < 1:
            raise ValueError(f"attngan: ema_decay must be in [0, 1), not {self.ema_decay}")

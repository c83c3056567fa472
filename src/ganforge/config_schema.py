"""The schema of a run's configuration: sections as dataclasses, and the allowed values of every key.

:mod:`ganforge.config` loads, overrides, migrates and validates configs against
this schema (and re-exports its names); this module only declares it.
"""

from __future__ import annotations

import typing
from dataclasses import dataclass, field


@dataclass
class DataConfig:
    """Where images come from and how they are shaped for the model."""

    dataset: str = "fashion-mnist"  # named dataset, image folder, IDX/CIFAR dir or .npz
    root: str | None = None  # explicit directory for a named dataset
    split: str = "train"
    image_size: int = 28
    channels: int = 1
    download: bool = True
    # Subsets (ganforge.data.subset): keep only these class ids (labels are kept as they
    # are), then the first `limit` images after a shuffle seeded by subset_seed.
    classes: list[int] | None = None  # None: every class
    limit: int = 0  # 0: every image
    subset_seed: int = 0
    # Random-crop training (ganforge.data.crops): photographs of any size are decoded once, the
    # longer side downscaled to max_side, and every batch is fresh crops of crop_scale x the short
    # side (resized to the load size) with horizontal flips. For an image folder or `photos`.
    crops: bool = False
    crop_scale: list[float] = field(default_factory=lambda: [0.25, 1.0])
    crop_flip: bool = True
    max_side: int = 1024  # memory: at most max_side**2 * 3 bytes per photograph


@dataclass
class ModelConfig:
    """Generator and discriminator architecture."""

    arch: str = "dcgan"  # a registered model family (ganforge.models.families; `ganforge train --help` lists them)
    z_dim: int = 100
    g_width: int = 64  # base channel (or unit) count of G
    d_width: int = 64
    g_layers: int = 3  # MLP families: hidden layers
    d_layers: int = 3
    num_classes: int = 0  # 0: unconditional; >0: class-conditional
    spectral_norm_d: bool = False
    spectral_norm_g: bool = False
    d_batchnorm: bool = True  # DCGAN D: BatchNorm after strided convs (off for WGAN-GP)
    dropout: float = 0.0  # MLP D dropout (Goodfellow et al. used dropout)
    res_blocks: int = 6  # inpainting: residual blocks in the bottleneck
    # resnet only: resolution of the feature map after which a self-attention block
    # (SAGAN) is inserted in both G and D, e.g. 14 at 28 px; 0 = none.
    attention: int = 0
    # resnet only: the residual branch, basic (3x3 -> 3x3) or bottleneck (1x1 -> grouped 3x3 -> 1x1,
    # shaped by expansion and group_channels below).
    block: str = "basic"
    # resnet only: G's norms, batch (SNGAN's conditional BatchNorm) or none (R3GAN's
    # normalisation-free G; each block then starts as its shortcut; unconditional only).
    g_norm: str = "batch"
    # r3gan (and resnet's bottleneck blocks): residual blocks per resolution (r3gan), the channel
    # expansion inside a block, and channels per group of its grouped 3x3 convolution.
    blocks_per_stage: int = 2
    expansion: int = 2
    group_channels: int = 16


@dataclass
class LossConfig:
    """Adversarial objective and regularisers."""

    name: str = "ns"  # a registered loss (ganforge.losses.LOSSES; `ganforge train --help` lists them)
    gp_weight: float = 10.0  # used by wgan-gp
    r1_weight: float = 0.0  # R1 penalty on real data; 0 = off
    r1_every: int = 16  # lazy R1: every k D steps, scaled by k
    r2_weight: float = 0.0  # R2 penalty on generated data (every D step); 0 = off
    label_smoothing: float = 0.0  # one-sided: real target 1 - s
    weight_clip: float = 0.01  # WGAN critic weight clipping
    # R1 and R2 together with one weight (R3GAN): gamma / 2 * (R1 + R2), lazily every r1_every
    # D steps; 0 = off. With optim.schedule_kimg it decays to gamma_decay_to x gamma (1 = constant).
    gamma: float = 0.0
    gamma_decay_to: float = 1.0


@dataclass
class OptimConfig:
    """Adam for both players, DCGAN defaults."""

    lr_g: float = 2e-4
    lr_d: float = 2e-4
    beta1: float = 0.5
    beta2: float = 0.999
    n_dis: int = 1  # discriminator steps per generator step
    grad_clip: float = 0.0  # max grad norm for both players; 0 = off
    # Schedule of both rates (ganforge.train.schedule): linear warm-up over the first lr_warmup
    # G steps, then an optional decay from lr_decay_start (a fraction of the run: train.steps,
    # or train.max_seconds if that ends it first) to lr_decay_to x the rates at the end.
    lr_warmup: int = 0  # 0 = none
    lr_decay: str = "none"  # none | linear | cosine
    lr_decay_start: float = 0.0
    lr_decay_to: float = 0.0
    # Schedules by images seen (ganforge.train.schedule), instead of the step-based one above:
    # linear warm-up of both rates over warmup_kimg, then a cosine over the rest of schedule_kimg
    # taking the rates to lr_decay_to x, loss.gamma to loss.gamma_decay_to x and Adam's beta2
    # to beta2_final. 0 = off (schedule_kimg), none (warmup_kimg), constant beta2 (beta2_final).
    schedule_kimg: float = 0.0
    warmup_kimg: float = 0.0
    beta2_final: float = 0.0


@dataclass
class TrainConfig:
    """Loop length, logging, checkpoints and execution mode."""

    steps: int = 2000  # generator steps
    # Training-time budget in seconds of the run's train_seconds (evaluation excluded,
    # earlier resumed segments included): the run stops at the first step past it, with a
    # checkpoint and a final sample grid. 0 = no limit; train.steps applies either way.
    max_seconds: float = 0.0
    batch_size: int = 64
    seed: int = 0
    log_every: int = 50
    sample_every: int = 500
    ckpt_every: int = 1000
    keep_last: int = 3
    sample_grid: int = 64  # images in the fixed-noise grid
    ema_decay: float = 0.0  # 0 = no EMA generator
    ema_start: int = 0  # steps before EMA starts tracking (warm-up copies G)
    augment: str = ""  # DiffAugment policy, e.g. "translation,cutout,color"
    precision: str = "auto"  # auto | fp32 | bf16 | fp16
    channels_last: bool = False
    compile: bool = False
    device: str = "auto"  # auto | cpu | cuda | cuda:N
    # Execution paths (BENCHMARKS.md): fast=false is the plain reference loop
    # (fp32 under precision=auto, foreach Adam, separate D passes, fresh fakes).
    fast: bool = True
    fused_optim: bool = True  # fused Adam kernels (CPU and CUDA)
    reuse_fake: bool = True  # the last D step's G(z) also serves the G step
    batch_d: bool = True  # D(real) and D(fake) in one forward when D has no BatchNorm
    cuda_graphs: bool = True  # capture the training step on CUDA when eligible
    cudnn_benchmark: bool = True
    tf32: bool = True  # float32 matmuls/convolutions on TF32 tensor cores (CUDA, Ampere and later)
    sync_bn: bool = False  # SyncBatchNorm under torchrun (CUDA only)
    eval_every: int = 0  # periodic evaluation (0 = off)
    eval_n: int = 2000
    # Registered metric names (ganforge.metrics.catalog) computed at each evaluation;
    # the first one's first result keeps the best checkpoint. Checked against the registry when used.
    # [auto]: FID on a GPU; on a CPU the domain classifier's Frechet distance (cls_fid, seconds
    # instead of minutes) for a labelled named data set, else FID (ganforge.train.periodic_eval).
    eval_metrics: list[str] = field(default_factory=lambda: ["auto"])
    tensorboard: bool = False  # also log scalars and sample grids to RUN/tensorboard/ (the tensorboard extra)
    # Numerical faults: a non-finite loss or gradient skips the update; after
    # max_bad_steps bad iterations in a row the run rolls back to its last
    # checkpoint with learning rates times rollback_lr_factor; after
    # max_rollbacks rollbacks it stops with a diagnosis.
    max_bad_steps: int = 20
    max_rollbacks: int = 3
    rollback_lr_factor: float = 0.5
    # Transfer learning (ganforge.train.transfer): start a new run from another run's
    # weights (a run directory, an exported generator or a .safetensors file).
    init_from: str | None = None
    init_partial: bool = False  # re-initialise layers whose shapes differ instead of refusing
    init_lr_mult: float = 1.0  # learning-rate multiplier of the loaded parameters
    freeze_d: int = 0  # FreezeD: D's first K blocks (from the image) stay fixed
    freeze_g: int = 0  # G's first K blocks (from the noise) stay fixed
    # EMA as a half-life in images (StyleGAN2-ADA): beta = 0.5 ** (batch / half-life), replacing
    # ema_decay; with ema_rampup > 0 the half-life is at most images_seen * ema_rampup. 0 = off.
    ema_halflife_kimg: float = 0.0
    ema_rampup: float = 0.0
    # BatchNorm statistics of the EMA generator recomputed from this many batches of its own
    # samples before it is evaluated, previewed or saved (ganforge.train.ema); 0 = G's copied.
    ema_bn_batches: int = 32
    # PyTorch's CPU threads (ganforge.threads): 0 = auto, the cores other processes leave
    # free (PyTorch's default of one per CPU collapses when another process is busy).
    threads: int = 0


@dataclass
class InpaintConfig:
    """Inpainting (``task: inpaint``): masks, crops and the generator's loss weights."""

    masks: str = "mixed"  # center | boxes | strokes | mixed | thin | medium | thick | lama | comod | lama-comod
    # Masks of the periodic evaluation (train.eval_every) and the preview grids; "" = the training
    # masks. Fixed, it keeps a run's curve on one evaluation set when the training masks change.
    eval_masks: str = ""
    hole_ratio: float = 0.25  # target fraction of missing pixels
    random_crop: bool = False  # train on random crops of images loaded at load_size
    load_size: int = 0  # 0: same as data.image_size
    # G loss = l1_hole * L1(hole) + l1_valid * L1(known) + adv_weight * adversarial + feature_matching * FM
    #          + gradient * L1(image gradients, at the hole) (Mathieu et al. 2016's gradient difference)
    l1_hole: float = 6.0
    l1_valid: float = 1.0
    feature_matching: float = 0.0
    adv_weight: float = 0.1
    gradient: float = 0.0
    # Dilations cycled over G's residual blocks (ganforge.models.encoder_decoder); larger ones
    # widen the receptive field for large holes, as LaMa's does (empty: the default 1, 2, 4).
    dilations: list[int] = field(default_factory=list)
    # G's starting point for the hole (ganforge.models.prefill): none (mid-gray, as before) or
    # smooth (a harmonic-like interpolation of the known pixels; G learns the residual).
    prefill: str = "none"
    # G's decoder upsampling: transposed (4x4 stride-2 transposed convolutions, as before) or
    # resize (nearest 2x, then a 3x3 convolution: no checkerboard pattern, Odena et al. 2016).
    upsample: str = "transposed"
    # G's residual blocks: dilated (a dilated 3x3 convolution each) or fourier (each also has
    # LaMa's global branch: a 1x1 convolution in the 2-D Fourier domain, ganforge.models.fourier).
    blocks: str = "dilated"


@dataclass
class RunConfig:
    """The whole configuration of a run."""

    name: str = "run"
    # What is learned: a registered task (ganforge.tasks; built in: generation, inpaint). Configs
    # without the key are migrated: model.arch inpaint meant the inpaint task.
    task: str = "generation"
    out_dir: str = "runs"
    data: DataConfig = field(default_factory=DataConfig)
    model: ModelConfig = field(default_factory=ModelConfig)
    loss: LossConfig = field(default_factory=LossConfig)
    optim: OptimConfig = field(default_factory=OptimConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    inpaint: InpaintConfig = field(default_factory=InpaintConfig)

    @property
    def label_classes(self) -> tuple[int, ...]:
        """The class ids a conditional generator is trained, sampled and evaluated on.

        ``data.classes`` (sorted) for a class-subset run, else ``0 .. model.num_classes - 1``;
        empty for an unconditional model. Labels are drawn uniformly over these, so a
        generator fine-tuned on class 9 alone is not asked for classes D never saw.
        """
        if not self.model.num_classes:
            return ()
        if self.data.classes is not None:
            return tuple(sorted(self.data.classes))
        return tuple(range(self.model.num_classes))


class Range(typing.NamedTuple):
    """Allowed values of a numeric key: ``lo <= v <= hi`` (``<`` at an open end). Values must be finite."""

    lo: float
    hi: float
    lo_open: bool = False
    hi_open: bool = False

    def __contains__(self, v) -> bool:
        above = v > self.lo if self.lo_open else v >= self.lo
        below = v < self.hi if self.hi_open else v <= self.hi
        return above and below

    def __str__(self) -> str:
        lo, hi = (str(v) if isinstance(v, int) else f"{v:g}" for v in (self.lo, self.hi))
        return f"{'(' if self.lo_open else '['}{lo}, {hi}{')' if self.hi_open else ']'}"


# Every numeric key with its allowed range, in one place (tests check that none is missing).
# The bounds say what the code can use sensibly, not what fits in memory: model sizes are
# also checked against the memory actually available when the models are built
# (ganforge.models.preflight). Keys documented with "0 = off" include 0.
BIG = 10**9  # step counts and intervals
RANGES: dict[str, Range] = {
    "data.image_size": Range(4, 1024),
    "data.channels": Range(1, 3),  # and one of 1, 3 (see CHOICES)
    "model.z_dim": Range(1, 4096),
    "model.g_width": Range(1, 4096),
    "model.d_width": Range(1, 4096),
    "model.g_layers": Range(1, 16),  # MLP widths double per layer
    "model.d_layers": Range(1, 16),
    "model.num_classes": Range(0, 100_000),  # 0 = unconditional
    "model.dropout": Range(0, 1, hi_open=True),
    "model.res_blocks": Range(0, 64),
    "model.attention": Range(0, 1024),  # 0 = none; which resolutions exist is checked when the resnet is built
    "loss.gp_weight": Range(0, 1e6),
    "loss.r1_weight": Range(0, 1e6),  # 0 = off
    "loss.r1_every": Range(1, 1e6),
    "loss.r2_weight": Range(0, 1e6),  # 0 = off
    "loss.label_smoothing": Range(0, 0.5, hi_open=True),
    "loss.weight_clip": Range(0, 1e3),  # 0 = off
    "optim.lr_g": Range(0, 1, lo_open=True),
    "optim.lr_d": Range(0, 1, lo_open=True),
    "optim.beta1": Range(0, 1, hi_open=True),
    "optim.beta2": Range(0, 1, hi_open=True),
    "optim.n_dis": Range(1, 100),
    "optim.grad_clip": Range(0, 1e6),  # 0 = off
    "optim.lr_warmup": Range(0, BIG),  # 0 = none
    "optim.lr_decay_start": Range(0, 1, hi_open=True),
    "optim.lr_decay_to": Range(0, 1),
    "train.steps": Range(1, BIG),
    "train.max_seconds": Range(0, BIG),
    "train.batch_size": Range(1, 65536),
    "train.seed": Range(0, 2**63 - 1),  # torch generators take a 64-bit seed
    "train.log_every": Range(1, BIG),
    "train.sample_every": Range(1, BIG),
    "train.ckpt_every": Range(1, BIG),
    "train.keep_last": Range(1, 10**6),
    "train.sample_grid": Range(1, 1024),
    "train.ema_decay": Range(0, 1, hi_open=True),  # 0 = no EMA
    "train.ema_start": Range(0, BIG),
    "train.eval_every": Range(0, BIG),  # 0 = off
    "train.eval_n": Range(2, 10**6),
    "train.max_bad_steps": Range(1, 10**6),
    "train.max_rollbacks": Range(0, 1000),
    "train.rollback_lr_factor": Range(0, 1, lo_open=True),
    "inpaint.hole_ratio": Range(0, 1, lo_open=True, hi_open=True),
    "inpaint.load_size": Range(0, 8192),  # 0 = data.image_size
    "inpaint.l1_hole": Range(0, 1e6),
    "inpaint.l1_valid": Range(0, 1e6),
    "inpaint.feature_matching": Range(0, 1e6),
    "inpaint.adv_weight": Range(0, 1e6),
    "inpaint.gradient": Range(0, 1e6),
    "data.limit": Range(0, BIG),  # 0 = every image
    "data.subset_seed": Range(0, 2**63 - 1),
    "train.freeze_d": Range(0, 1000),
    "train.freeze_g": Range(0, 1000),
    "train.init_lr_mult": Range(0, 1e6, lo_open=True),
    "model.blocks_per_stage": Range(1, 64),
    "model.expansion": Range(1, 64),
    "model.group_channels": Range(1, 4096),
    "loss.gamma": Range(0, 1e6),  # 0 = off
    "loss.gamma_decay_to": Range(0, 1e6),
    "optim.schedule_kimg": Range(0, BIG),  # 0 = off
    "optim.warmup_kimg": Range(0, BIG),  # 0 = none
    "optim.beta2_final": Range(0, 1, hi_open=True),  # 0 = constant optim.beta2
    "train.ema_halflife_kimg": Range(0, BIG),  # 0 = off
    "train.ema_rampup": Range(0, BIG),  # 0 = none
    "train.ema_bn_batches": Range(0, BIG),  # 0 = G's statistics copied
    "data.max_side": Range(16, 16384),
    "train.threads": Range(0, 4096),  # 0 = auto
}

CHOICES = {
    "optim.lr_decay": ("none", "linear", "cosine"),
    "model.block": ("basic", "bottleneck"),
    "model.g_norm": ("batch", "none"),
    "train.precision": ("auto", "fp32", "bf16", "fp16"),
    "data.split": ("train", "test", "all"),
    "inpaint.prefill": ("none", "smooth"),
    "inpaint.upsample": ("transposed", "resize"),
    "inpaint.blocks": ("dilated", "fourier"),
    "inpaint.masks": ("center", "boxes", "strokes", "mixed", "thin", "medium", "thick", "lama", "comod",
                      "lama-comod"),
    "data.channels": (1, 3),
}


# DiffAugment policy names (implemented in ganforge.augment, which imports them from here).
AUGMENTATIONS = ("color", "translation", "cutout")

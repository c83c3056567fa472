"""The model presets the harness knows, and the synthetic data each is timed on."""

from __future__ import annotations

from pathlib import Path

PRESETS = {  # name -> config file under configs/
    "dcgan-28": "dcgan-fashion-mnist.yaml",
    "mlp-28": "mlp-fashion-mnist.yaml",
    "resnet-28": "resnet-fashion-mnist.yaml",
    "cresnet-28": "cresnet-fashion-mnist.yaml",
    "resnet-32": "resnet-cifar10.yaml",
    "wgan-gp-28": "wgan-gp-fashion-mnist.yaml",
    "inpaint-64": "inpaint-folder-64.yaml",
    "r3gan-28": "r3gan-fashion-mnist.yaml",
    "r3gan-stacked-28": "r3gan-stacked-fashion-mnist.yaml",
}
DEFAULT_PRESETS = ("dcgan-28", "mlp-28", "resnet-28", "cresnet-28", "resnet-32", "inpaint-64")


def default_config_dir() -> Path:
    """``./configs`` when it exists (a checkout), else the package's built-in presets (also in an installed wheel)."""
    from ganforge.preset_files import PRESET_DIR

    here = Path("configs")
    if here.is_dir():
        return here
    return PRESET_DIR


def load_preset(path: Path, device: str, overrides: list[str], mode: dict):
    """The preset's config with the run-independent overrides and the mode's train.* settings applied.

    EMA is off (``train.ema_decay=0``): its update is not part of the timed iteration.
    The trainers keep the thread count the harness set (``--threads``, else PyTorch's
    default), rather than choosing their own.
    """
    import torch

    from ganforge.config import load_config

    cfg = load_config(path, [f"train.device={device}", "train.ema_decay=0",
                             f"train.threads={torch.get_num_threads()}", *overrides])
    for key, value in mode.items():
        setattr(cfg.train, key, value)  # fields the config does not know yet are read with defaults
    return cfg


def synthetic_dataset(cfg, n: int):
    """``n`` random uint8 images ``(n, C, H, W)`` (and labels) of the preset's training shape, in memory."""
    import torch

    from ganforge.data import ImageDataset
    from ganforge.tasks import task_class

    size = task_class(cfg).load_size(cfg)
    gen = torch.Generator().manual_seed(0)
    images = torch.randint(0, 256, (n, cfg.data.channels, size, size), generator=gen, dtype=torch.uint8)
    k = cfg.model.num_classes
    labels = torch.randint(0, k, (n,), generator=gen) if k else None
    return ImageDataset(images=images, labels=labels, num_classes=k, name="synthetic")

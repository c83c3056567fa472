"""Stacked data sets: three independently drawn grayscale images as the channels of one colour image.

``stacked-fashion-mnist`` follows the StackedMNIST protocol (Metz et al. 2017,
"Unrolled GANs"; Srivastava et al. 2017, VEEGAN; Lin et al. 2018, PacGAN; R3GAN
uses it too) on Fashion-MNIST: each image is ``(3, 28, 28)`` with channels drawn
independently and uniformly from the base split, so the data has 10**3 = 1000
modes of about equal mass, and the label is ``100 a + 10 b + c`` for the classes
``a, b, c`` of the red, green and blue channels. Counting which of the 1000 a
generator reaches (:mod:`ganforge.metrics.mode_coverage`) measures mode coverage
directly, without Inception features.

The draws are fixed by a seed per split (``SPLIT_SEEDS``), so every run and every
evaluation sees the same stacked images: ``train`` stacks the base train split
(60,000 images, as many as Fashion-MNIST has), ``test`` stacks the base test split
(26,000 images: the protocol's sample count, so the real data's own coverage is
measured on as many images as a generator's).
"""

from __future__ import annotations

import torch

from ganforge.data import idx, sources
from ganforge.data.images import ImageDataset

__all__ = ["STACKED", "SPLIT_SEEDS", "stack_images", "load_stacked"]

# name -> (base named dataset, images per split)
STACKED: dict[str, tuple[str, dict[str, int]]] = {
    "stacked-fashion-mnist": ("fashion-mnist", {"train": 60_000, "test": 26_000}),
}
SPLIT_SEEDS = {"train": 0, "test": 1}


def stack_images(images: torch.Tensor, labels: torch.Tensor, count: int, seed: int
                 ) -> tuple[torch.Tensor, torch.Tensor]:
    """Stack ``count`` triples of images drawn with replacement, independently per channel.

    Args:
        images: ``(N, 1, H, W)`` uint8; labels: ``(N,)`` int64 in ``[0, 10)``.
    Returns:
        images ``(count, 3, H, W)`` uint8 and labels ``(count,)`` = ``100 a + 10 b + c``.
    """
    gen = torch.Generator().manual_seed(seed)
    picks = torch.randint(0, images.shape[0], (3, count), generator=gen)  # (channel, image)
    stacked = torch.cat([images[picks[c]] for c in range(3)], dim=1).contiguous()
    stacked_labels = 100 * labels[picks[0]] + 10 * labels[picks[1]] + labels[picks[2]]
    return stacked, stacked_labels


def load_stacked(name: str, split: str, root: str | None = None, download: bool = True) -> ImageDataset:
    """The stacked data set ``name`` (a key of :data:`STACKED`), split ``train``, ``test`` or ``all``."""
    base, sizes = STACKED[name]
    splits = ("train", "test") if split == "all" else (split,)
    images, labels = [], []
    for s in splits:
        directory = sources.locate(base, s, root=root, download=download)
        x, y = idx.load_idx_split(directory, s)
        xs, ys = stack_images(torch.from_numpy(x), torch.from_numpy(y).long(), sizes[s], SPLIT_SEEDS[s])
        images.append(xs)
        labels.append(ys)
    base_names = sources.DATASETS[base].class_names
    return ImageDataset(torch.cat(images), torch.cat(labels), len(base_names) ** 3, f"{name}/{split}")

"""Datasets: loading every supported format into memory, and fast shuffled batching.

Main entry points::

    from ganforge.data import load_dataset, InMemoryBatcher

    ds = load_dataset("fashion-mnist", split="train")      # images (60000, 1, 28, 28) uint8
    batches = InMemoryBatcher(ds, batch_size=64, seed=0)
    images, labels = next(batches)                         # float32 in [-1, 1], int64
"""

from ganforge.data.arrays import load_npz
from ganforge.data.cifar import read_cifar_batch
from ganforge.data.dataset import load_dataset
from ganforge.data.folder import load_image_folder
from ganforge.data.idx import read_idx, write_idx
from ganforge.data.images import ImageDataset, convert_channels, resize_center_crop
from ganforge.data.loader import InMemoryBatcher
from ganforge.data.sources import download_file, list_datasets, locate

__all__ = [
    "ImageDataset",
    "InMemoryBatcher",
    "load_dataset",
    "list_datasets",
    "locate",
    "download_file",
    "load_image_folder",
    "load_npz",
    "read_cifar_batch",
    "read_idx",
    "write_idx",
    "resize_center_crop",
    "convert_channels",
]

"""Subsets of a labelled data set: some classes, and at most ``limit`` images (``data.classes``, ``data.limit``).

"Fine-tune on 500 images of one class" is then a config::

    data: {dataset: fashion-mnist, classes: [9], limit: 500}

Rules (see :func:`select`):

* ``classes`` keeps the images whose label is listed. **Labels are kept as they
  are** (not renumbered): class 9 stays 9, so a class-conditional generator
  pretrained on all ten classes is fine-tuned on the same label ids, and samples
  of a fine-tuned model carry the data set's class names. The subset's
  ``num_classes`` is ``max(classes) + 1``: a conditional model needs at least
  that many classes.
* ``limit`` keeps the first ``limit`` images of a shuffle seeded by ``seed``
  (``data.subset_seed``, separate from ``train.seed`` so that runs with different
  training seeds see the same images). The chosen images are returned in their
  original order; membership alone is what the shuffle decides. The shuffle is
  drawn over the images left after the class filter, so "500 images of class 9"
  means 500 of class 9.

Bad values (an unknown class, a limit larger than what is left, classes on an
unlabelled data set) are one-line :class:`~ganforge.errors.ConfigError`\\ s.
"""

from __future__ import annotations

import torch

from ganforge.data.dataset import ImageDataset
from ganforge.errors import ConfigError

__all__ = ["select", "select_indices"]


def select_indices(labels: torch.Tensor | None, n: int, classes: list[int] | None = None, limit: int = 0,
                   seed: int = 0, name: str = "dataset", num_classes: int = 0) -> torch.Tensor:
    """Indices ``(M,)`` int64, ascending, of the images a subset keeps (see the module doc).

    Args:
        labels: ``(n,)`` int64 class ids, or None for an unlabelled data set.
        n: number of images.
        classes: class ids to keep; None keeps every class.
        limit: keep at most this many images (0: all), chosen by a seeded shuffle.
        seed: seed of that shuffle.
        name, num_classes: for error messages.
    """
    keep = torch.arange(n)
    if classes is not None:
        if labels is None:
            raise ConfigError("data.classes", f"{name} has no labels to select classes from")
        known = num_classes or (int(labels.max()) + 1 if len(labels) else 0)
        unknown = [c for c in classes if not 0 <= c < known]
        if unknown:
            raise ConfigError("data.classes", f"{name} has no class {unknown[0]} (class ids 0..{known - 1})")
        mask = torch.isin(labels, torch.tensor(classes, dtype=labels.dtype))
        keep = keep[mask]
    if limit:
        if limit > len(keep):
            what = f"images of classes {classes}" if classes is not None else "images"
            raise ConfigError("data.limit", f"{limit} is more than the {len(keep)} {what} in {name}")
        order = torch.randperm(len(keep), generator=torch.Generator().manual_seed(seed))
        keep = keep[order[:limit].sort().values]
    return keep


def select(ds: ImageDataset, classes: list[int] | None = None, limit: int = 0, seed: int = 0) -> ImageDataset:
    """The subset of ``ds`` with only ``classes`` and at most ``limit`` images; ``ds`` itself when both are off.

    Returns a new :class:`ImageDataset` named e.g. ``fashion-mnist/train[classes=9,limit=500,seed=0]``.
    """
    if classes is None and not limit:
        return ds
    idx = select_indices(ds.labels, len(ds), classes, limit, seed, ds.name, ds.num_classes)
    tags = []
    if classes is not None:
        tags.append("classes=" + "+".join(str(c) for c in classes))
    if limit:
        tags.append(f"limit={limit},seed={seed}")
    labels = None if ds.labels is None else ds.labels[idx]
    num_classes = max(classes) + 1 if classes is not None else ds.num_classes
    return ImageDataset(images=ds.images[idx], labels=labels, num_classes=num_classes,
                        name=f"{ds.name}[{','.join(tags)}]", class_names=ds.class_names, skipped=list(ds.skipped))


def check_labels(ds, num_classes: int) -> None:
    """Refuse a conditional model (``num_classes > 0``) on data without labels or with more classes."""
    if num_classes and ds.labels is None:
        raise ConfigError("model.num_classes", f"{ds.name} has no labels; set model.num_classes=0")
    if num_classes and ds.num_classes > num_classes:
        raise ConfigError("model.num_classes", f"{ds.name} has {ds.num_classes} classes, "
                          f"more than model.num_classes={num_classes}")


def training_set(cfg, image_size: int, dataset: ImageDataset | None = None) -> ImageDataset:
    """The images a run trains on: ``dataset`` or ``cfg.data`` loaded at ``image_size``, then its subset.

    Checks that a conditional model (``model.num_classes``) gets labels it can hold, and
    refuses the held-out photographs (``photos:test``, ``skimage-photos``) as training data.
    """
    from ganforge.data.dataset import load_dataset

    from ganforge.data import photos

    d = cfg.data
    parsed = photos.parse_spec(d.dataset) if dataset is None else None
    if parsed is not None and (parsed[0] != "photos" or (parsed[1] or d.split) != "train"):
        raise ConfigError("data.dataset", f"{d.dataset} (split {parsed[1] or d.split}) is held out for evaluation; "
                          "train on photos with data.split=train")
    if d.crops and dataset is None:
        return crop_source(cfg, image_size)
    ds = dataset if dataset is not None else load_dataset(d.dataset, split=d.split, image_size=image_size,
                                                          channels=d.channels, root=d.root, download=d.download)
    ds = select(ds, d.classes, d.limit, d.subset_seed)
    check_labels(ds, cfg.model.num_classes)
    return ds


def crop_source(cfg, image_size: int):
    """``data.crops``: the photographs of ``data.dataset`` (``photos[:split]`` or a folder) in a
    :class:`~ganforge.data.crops.PhotoCache`, previewed at ``image_size``."""
    from ganforge.data import photos
    from ganforge.data.crops import PhotoCache

    d = cfg.data
    if d.classes is not None or d.limit or cfg.model.num_classes:
        raise ConfigError("data.crops", "crops are for unlabelled photographs; unset data.classes, data.limit "
                          "and model.num_classes")
    parsed = photos.parse_spec(d.dataset)
    if parsed is not None:
        source, split = parsed
        files = [path for _, path in photos.photo_files(source, split or d.split, install=d.download)]
        cache = PhotoCache(files, channels=d.channels, max_side=d.max_side, name=f"{source}/{split or d.split}")
    else:
        cache = PhotoCache.from_folder(d.dataset, channels=d.channels, max_side=d.max_side)
    cache.preview_size = image_size
    return cache

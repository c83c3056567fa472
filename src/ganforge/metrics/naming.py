"""How evaluation results name and describe their protocol: count tags, split names, the ``protocol`` string.

Names carry the protocol (``fid10k_test``: 10,000 generated images against the
test split). Every evaluation path builds its names and its ``protocol`` entry
here, so one evaluation protocol reads the same wherever it was computed.
"""

from __future__ import annotations

from typing import Iterable

from ganforge.metrics.kid import kid_subset_size

# Below this many images FID is visibly biased upwards (it falls as n grows);
# results are then comparable only at equal n, and say so.
SMALL_SAMPLE = 500


def count_tag(n: int) -> str:
    """``10000 -> "10k"``, ``50000 -> "50k"``, ``2500 -> "2500"``."""
    return f"{n // 1000}k" if n >= 1000 and n % 1000 == 0 else str(n)


def result_split(split: str, n_real: int, n_fake: int) -> str:
    """The split part of result names: ``"test"``, or ``"test5k"`` when fewer real than generated images."""
    return split + (count_tag(n_real) if n_real < n_fake else "")


def class_subset(classes: Iterable[int] | None) -> list[int] | None:
    """``classes`` as evaluation keys and records hold them: sorted ids, or None for every class."""
    return None if classes is None else sorted(int(c) for c in classes)


def small_sample_note(n: int) -> str | None:
    """The note that goes with an FID of only ``n`` images (None from :data:`SMALL_SAMPLE` images up)."""
    if n >= SMALL_SAMPLE:
        return None
    return f"FID from {n} images is biased upwards; compare results only at equal n"


def protocol_string(n_fake: int, real_name: str, n_real: int, seed: int, image_size: int | None,
                    extractor=None, kid_subsets: int = 100, kid_subset_size_: int = 1000, pr_k: int = 3,
                    classifier_desc: str | None = None, classes: Iterable[int] | None = None,
                    fake_source: str = "quantised") -> str:
    """The ``protocol`` entry of a result: generated images, real sample, extractor and metric settings.

    ``classes`` (a class-filtered reference) reads e.g. ``real: fashion-mnist/test (classes [9] only) 1000 images``.
    ``fake_source``: ``"quantised"`` (float images in [-1, 1] quantised to uint8 here) or
    ``"uint8"`` (images that were uint8 already, e.g. files read from a folder).
    """
    classes = class_subset(classes)
    only = f" (classes {classes} only)" if classes is not None else ""
    fake = (f"fake: {n_fake} images quantised to uint8 (floor(x*127.5+128))" if fake_source == "quantised"
            else f"fake: {n_fake} uint8 images as given (no quantisation)")
    parts = [fake, f"real: {real_name}{only} {n_real} images (seed {seed}), image_size={image_size or 'native'}"]
    if extractor is not None:
        parts.append(extractor.protocol)
        m = kid_subset_size(n_real, n_fake, kid_subset_size_)
        kid = f"KID {kid_subsets}x{m}" if m is not None else "KID on all images (too few for subsets)"
        parts.append(f"{kid}, cubic kernel; P/R k={pr_k}")
    if classifier_desc is not None:
        parts.append(classifier_desc)
    return "; ".join(parts)

"""Class names of a run's data set, for labelled outputs (``sample --per-class``).

Named data sets carry their names (Fashion-MNIST's "T-shirt/top" ... "Ankle boot",
CIFAR-10's "airplane" ...); other data sets have class ids only.
"""

from __future__ import annotations

from pathlib import Path


def class_names(dataset: str) -> tuple[str, ...] | None:
    """The class names of a named data set (``data.dataset``), or None when it has none."""
    from ganforge.data.sources import DATASETS, canonical_name

    key = canonical_name(dataset)
    return DATASETS[key].class_names if key else None


def write_row_labels(path: Path, classes: tuple[int, ...], dataset: str) -> Path:
    """A text file beside a per-class grid: one line per row, ``row <i>: class <id> <name>``."""
    names = class_names(dataset)
    lines = []
    for row, k in enumerate(classes):
        name = names[k] if names is not None and 0 <= k < len(names) else ""
        lines.append(f"row {row}: class {k}{' ' + name if name else ''}")
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path

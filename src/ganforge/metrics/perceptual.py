"""A perceptual distance from the FID network: LPIPS's recipe on Inception-v3, no learned weights.

LPIPS (Zhang et al. 2018, "The Unreasonable Effectiveness of Deep Features as a
Perceptual Metric") compares two images by the activations of a pretrained
network at several depths: each spatial feature vector is scaled to unit length
over its channels, the squared difference of the two images' vectors is taken
at every position, averaged over positions and summed over layers (its learned
variant also weights the channels). Its networks (AlexNet, VGG) are downloaded at
run time, so ganforge uses the one network it can check offline, the FID
Inception (:mod:`ganforge.metrics.inception`, SHA-1 verified), with every channel
weighted equally, which is LPIPS's unlearned "baseline" variant; the paper found
such unlearned deep-feature distances already far closer to human judgments than
PSNR or SSIM. The values are not LPIPS values: compare them only with each other.

Protocol (``PerceptualDistance.protocol``):

* uint8 ``(N, C, H, W)`` input, grayscale replicated, scaled ``x / 128 - 1`` as for FID;
* resized (bilinear, antialiased, as for FID) to ``S x S`` with
  ``S = min(299, max(128, 2 * max(H, W)))``: about two network pixels per image
  pixel (64-px crops at 128, 128-px at 256; 299, the network's own size, from
  150 px up), because upsampling a small crop to 299 only feeds the early layers
  smooth interpolation, at five times the cost;
* layers ``conv_2`` (64 channels), ``conv_4`` (192), ``mixed_2`` (288), ``mixed_7``
  (768) and ``mixed_10`` (2048): the stem, and the last block at each of the
  three resolutions of the mixed blocks;
* distance = mean over those layers of ``mean_positions(sum_channels((u - v) ** 2))``
  for the unit-normalised activations ``u``, ``v``; activations are non-negative
  (ReLU), so each term lies in [0, 2]; identical images give exactly 0.
"""

from __future__ import annotations

import torch
from torch import Tensor

from ganforge.metrics.inception import INPUT_SIZE, InceptionFeatures

LAYERS = ("conv_2", "conv_4", "mixed_2", "mixed_7", "mixed_10")
MIN_SIDE = 128  # the smallest input whose 8x-reduced blocks still have 2x2 positions
EPS = 1e-10


def network_side(height: int, width: int) -> int:
    """The side ``S`` both images are resized to: ``min(299, max(128, 2 * max(H, W)))``."""
    return min(INPUT_SIZE, max(MIN_SIDE, 2 * max(height, width)))


class PerceptualDistance:
    """Per-image perceptual distance between uint8 image batches, on an :class:`InceptionFeatures`'s network.

    Args:
        extractor: the FID extractor whose (already verified) network and device are used;
            its precision applies too (fp32 for reported numbers).
        batch_size: images per forward pass.
    """

    def __init__(self, extractor: InceptionFeatures, batch_size: int = 32):
        if not isinstance(extractor, InceptionFeatures):
            raise TypeError(f"needs the Inception network's extractor, got {type(extractor).__name__}")
        self.extractor = extractor
        self.layers = extractor.net.net.layers  # the TorchScript Sequential: named, callable stages
        names = [name for name, _ in self.layers.named_children()]
        missing = [name for name in LAYERS if name not in names]
        if missing:
            raise ValueError(f"the Inception network has no layer {', '.join(missing)} (has {', '.join(names)})")
        self.stop = max(names.index(name) for name in LAYERS)
        self.batch_size = int(batch_size)

    @property
    def protocol(self) -> str:
        """One line that identifies the distance (for results)."""
        return (f"inception-2015-12-05 sha1:{self.extractor.sha1[:10]} layers {','.join(LAYERS)}; channel-unit "
                f"vectors, squared distance summed over channels, mean over positions, mean over layers; input "
                f"bilinear(antialias) to min(299,max(128,2*side)); scale=x/128-1; {self.extractor.precision}")

    def _features(self, images: Tensor) -> list[Tensor]:
        x = self.extractor.preprocess(images, size=network_side(*images.shape[-2:]))  # FID's resize and scale
        out = []
        for i, (name, layer) in enumerate(self.layers.named_children()):
            x = layer(x)
            if name in LAYERS:
                f = x.float()
                out.append(f / (f.pow(2).sum(1, keepdim=True).sqrt() + EPS))
            if i == self.stop:
                break
        return out

    def distances(self, reference: Tensor, others: dict[str, Tensor]) -> dict[str, Tensor]:
        """``{name: (N,) float64}`` distances of each of ``others`` to ``reference``, all uint8 ``(N, C, H, W)``
        (C may be 1 or 3 in each: gray is replicated).

        The reference's activations are computed once per batch for every entry of ``others``.
        """
        n = int(reference.shape[0])
        for name, images in others.items():
            if images.shape[0] != reference.shape[0] or images.shape[-2:] != reference.shape[-2:]:
                raise ValueError(f"{name}: images {tuple(images.shape)} differ from the reference's "
                                 f"{tuple(reference.shape)} in number or size")
        out: dict[str, list[Tensor]] = {name: [] for name in others}
        with torch.inference_mode(), self.extractor._precision_context():
            for s in range(0, n, self.batch_size):
                ref = self._features(reference[s:s + self.batch_size])
                for name, images in others.items():
                    feats = self._features(images[s:s + self.batch_size])
                    per_layer = [(a - b).pow(2).sum(1).mean((1, 2)) for a, b in zip(ref, feats)]
                    out[name].append(torch.stack(per_layer).mean(0).double().cpu())
        return {name: torch.cat(v) if v else torch.zeros(0, dtype=torch.float64) for name, v in out.items()}

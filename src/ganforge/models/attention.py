"""Self-attention over the positions of a feature map (SAGAN, Zhang et al. 2019).

Convolutions see a neighbourhood; a self-attention block lets every position
of a feature map draw on every other one, so that distant parts of an image can
be made consistent with each other. The block is SAGAN's as BigGAN (Brock et al.
2019) uses it (values at C/2 channels and an output convolution back to C)::

    q = Wq x                   (N, C/8, H, W)   every position asks
    k = maxpool2(Wk x)         (N, C/8, H', W') keys and values at a quarter of the positions
    v = maxpool2(Wv x)         (N, C/2, H', W')
    a = softmax_j(q_i . k_j)   (N, HW, H'W')    one distribution over key positions per position
    o = Wo (sum_j a_ij v_j)    (N, C, H, W)
    y = x + gamma * o          gamma a learned scalar, 0 at initialisation

All ``W`` are 1x1 convolutions without bias. ``gamma = 0`` makes the block the
identity when it is added, so a network starts as it would without it and
learns how much non-local evidence to use.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ganforge.models.layers import maybe_sn


def _conv1x1(cin: int, cout: int, spectral_norm: bool) -> nn.Module:
    # Xavier-uniform with gain 1 like the other linear maps of the ResNets (no ReLU
    # precedes them); initialised before spectral norm estimates sigma. No bias, as in
    # BigGAN: a key bias adds the same logit to every key of a query and cancels in the softmax.
    layer = nn.Conv2d(cin, cout, 1, bias=False)
    nn.init.xavier_uniform_(layer.weight)
    return maybe_sn(layer, spectral_norm)


def _pool2(x: Tensor) -> Tensor:
    """2x2 max-pooling of the sides that have at least 2 positions.

    ``ceil_mode`` keeps the last row and column of an odd map (7x7 -> 4x4, not 3x3),
    so that every position can still be attended to. The window depends on the
    (static) shape only, never on values, so the block stays capturable in a CUDA graph.
    """
    kh, kw = (2 if x.shape[2] >= 2 else 1), (2 if x.shape[3] >= 2 else 1)
    if kh == kw == 1:
        return x
    return F.max_pool2d(x, (kh, kw), ceil_mode=True)


class SelfAttention2d(nn.Module):
    """(N, C, H, W) -> (N, C, H, W): ``x + gamma * attention(x)``, the identity at initialisation.

    Args:
        channels: C. Queries and keys have ``C // 8`` channels, values ``C // 2``
            (at least 1 each, for tiny test widths).
        spectral_norm: wrap the four 1x1 convolutions in spectral normalisation
            (as the rest of the network it sits in); ``gamma`` is never wrapped.
    """

    def __init__(self, channels: int, spectral_norm: bool = False):
        super().__init__()
        qk, v = max(channels // 8, 1), max(channels // 2, 1)
        self.query = _conv1x1(channels, qk, spectral_norm)
        self.key = _conv1x1(channels, qk, spectral_norm)
        self.value = _conv1x1(channels, v, spectral_norm)
        self.out = _conv1x1(v, channels, spectral_norm)
        # A 0-dim parameter: multiplying a bf16 tensor by it keeps bf16 under autocast
        # (a shape-(1,) float32 tensor would promote the product to float32).
        self.gamma = nn.Parameter(torch.zeros(()))

    def attend(self, x: Tensor) -> Tensor:
        """(N, C, H, W) -> (N, C, H, W): the attention branch ``o`` before ``gamma``."""
        n, _, h, w = x.shape
        q = self.query(x).flatten(2)  # (N, C/8, HW)
        # Keys and values max-pooled 2x2 as in BigGAN's attention: the attention map is
        # (HW x HW/4), a quarter of the memory and compute of SAGAN's (HW x HW).
        k = _pool2(self.key(x)).flatten(2)  # (N, C/8, H'W')
        v = _pool2(self.value(x)).flatten(2)  # (N, C/2, H'W')
        logits = torch.bmm(q.transpose(1, 2), k)  # (N, HW, H'W'); unscaled, as in SAGAN and BigGAN
        # Softmax in float32: under bf16 autocast on the CPU it would otherwise run in bf16
        # (CUDA's autocast already promotes it); the weights go back to v's dtype for the matmul.
        attn = torch.softmax(logits, dim=-1, dtype=torch.float32).to(v.dtype)
        # (N, HW, H'W') @ (N, H'W', C/2) -> (N, HW, C/2); seen as (N, C/2, H, W) this is a
        # channels_last view, so a channels_last network needs no copy here.
        o = torch.bmm(attn, v.transpose(1, 2)).transpose(1, 2).unflatten(2, (h, w))
        return self.out(o)

    def forward(self, x: Tensor) -> Tensor:
        return x + self.gamma * self.attend(x)

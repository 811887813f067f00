"""Counter-based random numbers: lftaccel's Philox4x32-10 streams.

A stream is keyed by (seed, chain) and countered by (site, step, purpose): the
value drawn for one site of one chain at one step depends on nothing else, so it
is the same for any thread count, launch shape or device (bit-identical integers;
floats to the rounding of the device's log/sin/cos). Chain b of a batch uses
chain = chain_offset + b. Purposes separate independent uses within one step
(e.g. momenta and the accept/reject draw of HMC).
"""

from __future__ import annotations

import math
import operator

import numpy as np
import torch

from . import _C, _kernels

__all__ = ["philox4x32_10", "bits", "uniform", "normal"]


def _words(values, n: int, name: str) -> list:
    try:
        words = [operator.index(v) for v in values]
    except TypeError:
        raise TypeError(f"{name} must be a sequence of {n} integers in [0, 2^32)") from None
    if len(words) != n or any(not 0 <= w < 2**32 for w in words):
        raise ValueError(f"{name} must be {n} integers in [0, 2^32), got {values!r}")
    return words


def philox4x32_10(counter, key) -> tuple:
    """One Philox4x32-10 block from 4 counter words and 2 key words (uint32 each)."""
    return tuple(_C.philox4x32_10(_words(counter, 4, "counter"), _words(key, 2, "key")))


def _count(v, name: str, low: int, high: int = 2**32, high_text: str = "2^32") -> int:
    if isinstance(v, bool):
        raise TypeError(f"{name} must be an integer, got bool")
    try:
        v = operator.index(v)
    except TypeError:
        raise TypeError(f"{name} must be an integer, got {type(v).__name__}") from None
    if not low <= v < high:
        raise ValueError(f"{name} must be in [{low}, {high_text}), got {v}")
    return v


def _stream_words(seed, step, purpose) -> None:
    """seed and purpose are Philox words, step a 64-bit counter (the kernels take it below 2^63)."""
    _count(seed, "seed", 0)
    _count(step, "step", 0, 2**63, "2^63")
    _count(purpose, "purpose", 0)


def _check_chains(batch: int, chain_offset) -> None:
    offset = _count(chain_offset, "chain_offset", 0)
    if offset + batch > 2**32:
        raise ValueError(f"chain_offset + batch must be <= 2^32 (chains would wrap and streams "
                         f"repeat), got {offset + batch}")


def _shape(batch, sites):
    """(batch, *sites), checked before anything is allocated: the kernels draw at most 2^32
    sites per chain (the site is one Philox counter word)."""
    if not isinstance(sites, (tuple, list)):
        sites = (sites,)
    shape = (_count(batch, "batch", 1), *(_count(s, "sites", 0) for s in sites))
    if math.prod(shape[1:]) > 2**32 - 1:
        raise ValueError(f"sites must number at most 2^32 - 1 per chain, got {math.prod(shape[1:])}")
    return shape


def bits(batch: int, sites, *, seed: int, step: int = 0, purpose: int = 0, chain_offset: int = 0,
         device="cpu") -> torch.Tensor:
    """Raw Philox blocks, shape (batch, *sites, 4): the uint32 words, returned as int64
    (torch's uint32 supports few operations)."""
    shape = _shape(batch, sites) + (4,)
    _check_chains(shape[0], chain_offset)
    _stream_words(seed, step, purpose)
    if torch.device(device).type == "cpu":
        out = np.empty(shape, dtype=np.uint32)
        _kernels.philox_fill(out, "bits", seed=seed, step=step, purpose=purpose, chain_offset=chain_offset)
        return torch.from_numpy(out.astype(np.int64))
    out = torch.empty(shape, dtype=torch.uint32, device=device)
    _kernels.philox_fill(out, "bits", seed=seed, step=step, purpose=purpose, chain_offset=chain_offset)
    return out.to(torch.int64)


def _variates(kind, batch, sites, seed, step, purpose, chain_offset, dtype, device):
    shape = _shape(batch, sites)
    _check_chains(shape[0], chain_offset)
    _stream_words(seed, step, purpose)
    out = torch.empty(shape, dtype=dtype, device=device)
    return _kernels.philox_fill(out, kind, seed=seed, step=step, purpose=purpose,
                                chain_offset=chain_offset)


def uniform(batch: int, sites, *, seed: int, step: int = 0, purpose: int = 0, chain_offset: int = 0,
            dtype=torch.float64, device="cpu") -> torch.Tensor:
    """Uniform variates in the open interval (0, 1), one per site."""
    return _variates("uniform", batch, sites, seed, step, purpose, chain_offset, dtype, device)


def normal(batch: int, sites, *, seed: int, step: int = 0, purpose: int = 0, chain_offset: int = 0,
           dtype=torch.float64, device="cpu") -> torch.Tensor:
    """Standard normal variates (Box-Muller), one per site: sites 2j and 2j + 1 take the two
    normals of block j (see philox.hpp). float32 variates come from 23-bit uniforms, so none
    exceeds ~5.77 in magnitude (a tail of 8e-9 of the probability left out); float64 ones
    from 53-bit uniforms reach ~8.6."""
    return _variates("normal", batch, sites, seed, step, purpose, chain_offset, dtype, device)

"""Philox4x32-10 in pure torch (int64 arithmetic, 32-bit words kept in [0, 2^32)).

The 32x32 -> 64-bit products are split in 16-bit halves so nothing overflows int64.
"""

import math

import torch

_M0, _M1 = 0xD2511F53, 0xCD9E8D57
_W0, _W1 = 0x9E3779B9, 0xBB67AE85
_MASK = 0xFFFFFFFF


def _mulhilo(a: int, b: torch.Tensor):
    b_hi, b_lo = b >> 16, b & 0xFFFF
    lo_part = a * b_lo                      # < 2^48
    hi_part = a * b_hi                      # < 2^48, weight 2^16
    low = lo_part + ((hi_part & 0xFFFF) << 16)
    lo = low & _MASK
    hi = (hi_part >> 16) + (low >> 32)
    return hi & _MASK, lo


def philox4x32_10(ctr, key):
    """ctr: 4 int64 tensors (or ints), key: 2 ints/tensors; returns 4 int64 tensors."""
    c = [torch.as_tensor(w, dtype=torch.int64) for w in ctr]
    k0, k1 = (torch.as_tensor(k, dtype=torch.int64) for k in key)
    for r in range(10):
        if r:
            k0, k1 = (k0 + _W0) & _MASK, (k1 + _W1) & _MASK
        hi0, lo0 = _mulhilo(_M0, c[0])
        hi1, lo1 = _mulhilo(_M1, c[2])
        c = [hi1 ^ c[1] ^ k0, lo1, hi0 ^ c[3] ^ k1, lo0]
    return c


def philox_bits(batch, n_sites, seed, step=0, purpose=0, chain_offset=0):
    """Blocks of lftaccel's streams: (batch, n_sites, 4) int64 holding uint32 words."""
    chain = (torch.arange(batch, dtype=torch.int64) + chain_offset).reshape(-1, 1) & _MASK
    site = torch.arange(n_sites, dtype=torch.int64).reshape(1, -1)
    shape = (batch, n_sites)
    ctr = [site.expand(shape), torch.full(shape, step & _MASK), torch.full(shape, step >> 32),
           torch.full(shape, purpose)]
    out = philox4x32_10(ctr, (torch.full(shape, seed), chain.expand(shape)))
    return torch.stack(out, dim=-1)


def _uniform(words, dtype):
    if dtype == torch.float32:
        return ((words[..., 0] >> 9).to(torch.float32) + 0.5) * 2.0**-23, \
               ((words[..., 1] >> 9).to(torch.float32) + 0.5) * 2.0**-23
    u = lambda hi, lo: (((hi << 20) ^ (lo >> 12)).to(torch.float64) + 0.5) * 2.0**-52  # noqa: E731
    return u(words[..., 0], words[..., 1]), u(words[..., 2], words[..., 3])


def philox_uniform(batch, n_sites, seed, step=0, purpose=0, chain_offset=0, dtype=torch.float64):
    return _uniform(philox_bits(batch, n_sites, seed, step, purpose, chain_offset), dtype)[0]


def philox_normal(batch, n_sites, seed, step=0, purpose=0, chain_offset=0, dtype=torch.float64):
    """Sites 2j and 2j + 1 take the two Box-Muller normals of block j."""
    u1, u2 = _uniform(philox_bits(batch, (n_sites + 1) // 2, seed, step, purpose, chain_offset), dtype)
    r, t = torch.sqrt(-2 * torch.log(u1)), 2 * math.pi * u2
    return torch.stack([r * torch.cos(t), r * torch.sin(t)], dim=-1).flatten(1)[:, :n_sites]

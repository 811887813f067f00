"""Philox4x32-10: known answers, streams, kernel against the pure-torch twin, statistics."""

import numpy as np
import pytest
import torch

import lftaccel
from lftaccel import reference as R

# Random123's published known-answer vectors for philox4x32_10 (counter, key, result).
KAT = [
    ((0, 0, 0, 0), (0, 0), (0x6627E8D5, 0xE169C58D, 0xBC57AC4C, 0x9B00DBD8)),
    ((0xFFFFFFFF,) * 4, (0xFFFFFFFF,) * 2, (0x408F276D, 0x41C83B0E, 0xA20BC7C6, 0x6D5451FD)),
    ((0x243F6A88, 0x85A308D3, 0x13198A2E, 0x03707344), (0xA4093822, 0x299F31D0),
     (0xD16CFE09, 0x94FDCCEB, 0x5001E420, 0x24126EA1)),
]


@pytest.mark.parametrize("ctr,key,expected", KAT)
def test_known_answers(ctr, key, expected):
    assert lftaccel.random.philox4x32_10(ctr, key) == expected
    assert tuple(int(w) for w in R.philox4x32_10(ctr, key)) == expected


STREAMS = [dict(seed=0, step=0, purpose=0), dict(seed=12345, step=7, purpose=2, chain_offset=5),
           dict(seed=2**32 - 1, step=2**33 + 3, purpose=2**32 - 1, chain_offset=2**32 - 4)]


@pytest.mark.parametrize("stream", STREAMS)
def test_bits_equal_twin_exactly(stream, device):
    got = lftaccel.random.bits(3, (4, 5), device=device, **stream).cpu()
    ref = R.philox_bits(3, 20, stream["seed"], stream["step"], stream["purpose"],
                        stream.get("chain_offset", 0)).reshape(3, 4, 5, 4)
    assert torch.equal(got, ref)


@pytest.mark.parametrize("stream", STREAMS)
@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])
def test_variates_equal_twin(stream, dtype, device):
    co = stream.get("chain_offset", 0)
    args = (stream["seed"], stream["step"], stream["purpose"], co)
    u = lftaccel.random.uniform(4, 50, dtype=dtype, device=device, **stream).cpu()
    assert torch.equal(u, R.philox_uniform(4, 50, *args, dtype=dtype))
    z = lftaccel.random.normal(4, 50, dtype=dtype, device=device, **stream).cpu()
    tol = 1e-12 if dtype == torch.float64 else 1e-5
    assert torch.allclose(z, R.philox_normal(4, 50, *args, dtype=dtype), rtol=tol, atol=tol)


@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])
def test_long_fills_equal_twin(dtype):
    """Fills longer than the CPU's vectorised groups of Philox blocks (256 sites, in registers
    of 8 taken 4, 2 or 1 at a time), ending inside a register: the same blocks as the twin's
    scalar rounds (the 501 normal blocks reach every path)."""
    args = (99, 2**32 + 5, 4, 3)
    u = lftaccel.random.uniform(2, 1000, seed=99, step=2**32 + 5, purpose=4, chain_offset=3, dtype=dtype)
    assert torch.equal(u, R.philox_uniform(2, 1000, *args, dtype=dtype))
    z = lftaccel.random.normal(2, 1001, seed=99, step=2**32 + 5, purpose=4, chain_offset=3, dtype=dtype)
    tol = 1e-12 if dtype == torch.float64 else 1e-5
    assert torch.allclose(z, R.philox_normal(2, 1001, *args, dtype=dtype), rtol=tol, atol=tol)


def test_streams_are_independent_of_batch_layout():
    """Chain b of a batch with offset o is chain o + b: splitting a batch changes nothing."""
    whole = lftaccel.random.normal(6, 10, seed=3, step=4)
    parts = torch.cat([lftaccel.random.normal(2, 10, seed=3, step=4, chain_offset=o) for o in (0, 2, 4)])
    assert torch.equal(whole, parts)
    assert not torch.equal(whole, lftaccel.random.normal(6, 10, seed=3, step=5))
    assert not torch.equal(whole, lftaccel.random.normal(6, 10, seed=3, step=4, purpose=1))


def test_chains_never_wrap():
    with pytest.raises(ValueError, match="chain_offset"):
        lftaccel.random.normal(3, 4, seed=1, chain_offset=2**32 - 2)


def test_uniform_range_and_moments():
    n = 1 << 20
    u = lftaccel.random.uniform(4, n // 4, seed=99).flatten()
    assert u.min() > 0 and u.max() < 1
    # Mean 1/2 and variance 1/12, each within 5 standard errors.
    assert abs(u.mean().item() - 0.5) < 5 * (1 / 12) ** 0.5 / n**0.5
    assert abs(u.var().item() - 1 / 12) < 5 * (1 / 180) ** 0.5 / n**0.5
    # Chi-squared over 64 equal bins: 63 degrees of freedom, mean 63, sd ~ 11.2.
    counts = torch.histc(u, bins=64, min=0, max=1)
    chi2 = ((counts - n / 64) ** 2 / (n / 64)).sum().item()
    assert chi2 < 63 + 5 * (2 * 63) ** 0.5


@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])
def test_normal_moments(dtype):
    n = 1 << 20
    z = lftaccel.random.normal(8, n // 8, seed=2024, dtype=dtype).double().flatten()
    se = 1 / n**0.5
    assert abs(z.mean().item()) < 5 * se
    assert abs(z.var().item() - 1) < 5 * 2**0.5 * se
    assert abs((z**3).mean().item()) < 5 * 15**0.5 * se
    assert abs((z**4).mean().item() - 3) < 5 * 96**0.5 * se
    # Tail fraction beyond 2 sigma: 0.0455 for a Gaussian.
    p = 0.04550026389635842
    assert abs((z.abs() > 2).double().mean().item() - p) < 5 * (p * (1 - p)) ** 0.5 * se


def test_thread_count_independence():
    old = torch.get_num_threads()
    try:
        torch.set_num_threads(1)
        one = lftaccel.random.normal(8, 1 << 14, seed=5)
        torch.set_num_threads(2)
        two = lftaccel.random.normal(8, 1 << 14, seed=5)
    finally:
        torch.set_num_threads(old)
    assert torch.equal(one, two)


def test_numpy_fill_is_the_same_stream():
    out = np.empty((3, 7), dtype=np.float64)
    lftaccel._kernels.philox_fill(out, "normal", seed=11, step=2, purpose=1)
    assert torch.equal(torch.from_numpy(out), lftaccel.random.normal(3, 7, seed=11, step=2, purpose=1))

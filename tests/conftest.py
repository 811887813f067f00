import pytest
import torch


def pytest_addoption(parser):
    parser.addoption("--runslow", action="store_true", help="also run the tests marked slow (minutes)")


def pytest_collection_modifyitems(config, items):
    if config.getoption("--runslow"):
        return
    skip = pytest.mark.skip(reason="slow: run with --runslow")
    for item in items:
        if "slow" in item.keywords:
            item.add_marker(skip)


def _devices():
    devs = [pytest.param("cpu", id="cpu")]
    devs.append(pytest.param("cuda", id="cuda", marks=[pytest.mark.cuda, pytest.mark.skipif(
        not torch.cuda.is_available(), reason="no CUDA device visible")]))
    return devs


DEVICES = _devices()


@pytest.fixture(params=DEVICES)
def device(request):
    return request.param


def assert_close_scaled(actual, expected, rtol, floor=1.0):
    """|actual - expected| <= rtol * max(max|expected|, floor) elementwise: relative to the
    scale of the result, so entries that happen to cancel to ~0 are not held to a relative
    bound. The floor (the size of one O(1) term) covers results that vanish identically,
    e.g. the XY force on an extent-1 lattice, where the kernel's rounding is ~1e-17."""
    actual = torch.as_tensor(actual).double().cpu()
    expected = torch.as_tensor(expected).double().cpu()
    assert actual.shape == expected.shape
    scale = expected.abs().max().clamp_min(floor)
    err = ((actual - expected).abs().max() / scale).item()
    assert err <= rtol, f"scaled error {err:.3e} > {rtol:.1e}"
    return err


def placed_like(like, offset_bytes):
    """An empty tensor shaped and typed like `like` whose data lie offset_bytes past like's,
    modulo 4096: for tests of 4K aliasing (csrc/cpu/stencil.hpp)."""
    item = like.element_size()
    buf = torch.empty(like.numel() + 4096 // item, dtype=like.dtype)
    skip = ((like.data_ptr() - buf.data_ptr() + offset_bytes) % 4096) // item
    out = buf[skip:skip + like.numel()].view_as(like)
    assert (out.data_ptr() - like.data_ptr()) % 4096 == offset_bytes
    return out

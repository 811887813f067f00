import pytest
import torch


def _devices():
    devs = [pytest.param("cpu", id="cpu")]
    devs.append(pytest.param("cuda", id="cuda", marks=[pytest.mark.cuda, pytest.mark.skipif(
        not torch.cuda.is_available(), reason="no CUDA device visible")]))
    return devs


DEVICES = _devices()


@pytest.fixture(params=DEVICES)
def device(request):
    return request.param


def assert_close_scaled(actual, expected, rtol):
    """|actual - expected| <= rtol * max|expected| elementwise: relative to the scale of
    the result, so entries that happen to cancel to ~0 are not held to a relative bound."""
    actual = torch.as_tensor(actual).double().cpu()
    expected = torch.as_tensor(expected).double().cpu()
    assert actual.shape == expected.shape
    scale = expected.abs().max().clamp_min(1e-300)
    err = ((actual - expected).abs().max() / scale).item()
    assert err <= rtol, f"scaled error {err:.3e} > {rtol:.1e}"
    return err

"""The hopping <-> standard phi^4 conversion and its field rescaling."""

import math

import pytest
import torch

import lftaccel
from lftaccel import reference as R
from conftest import assert_close_scaled


def test_published_point():
    theory = lftaccel.Phi4.from_standard(-4.0, 8.0, ndim=2)
    assert theory.kappa == pytest.approx(0.25, rel=1e-15)
    assert theory.lam == pytest.approx(0.5, rel=1e-15)


@pytest.mark.parametrize("ndim", [1, 2, 3, 4])
@pytest.mark.parametrize("m2,lam", [(-4.0, 8.0), (0.5, 0.0), (-1.0, 0.3), (2.0, 1e-9), (-7.9, 100.0)])
def test_standard_action_equals_hopping_action(ndim, m2, lam):
    if lam == 0 and 2 * ndim + m2 <= 0:
        pytest.skip("free theory needs m2 > -2d")
    theory = lftaccel.Phi4.from_standard(m2, lam, ndim=ndim)
    g = torch.Generator().manual_seed(ndim)
    phi = torch.randn((3,) + (3, 4, 2, 5)[:ndim], generator=g, dtype=torch.float64)
    s_hop = theory.action(phi)
    s_std = R.phi4_standard_action(theory.field_to_standard(phi), m2, lam)
    assert_close_scaled(s_std, s_hop, 1e-12)
    assert torch.allclose(theory.field_from_standard(theory.field_to_standard(phi)), phi, rtol=1e-15)
    m2_back, lam_back = theory.to_standard(ndim)
    assert m2_back == pytest.approx(m2, rel=1e-12, abs=1e-12)
    assert lam_back == pytest.approx(lam, rel=1e-12, abs=1e-300)


def test_a_converted_theory_keeps_its_dimension():
    """The hopping couplings of (m2, lam) in 2D are (m2 - 2, lam) in 3D: a sampler refuses to
    run a 2D conversion on a 3D lattice, which was silently another theory."""
    from lftaccel.mcmc import HMC

    two = lftaccel.Phi4.from_standard(-4.0, 8.0)
    assert two.standard_ndim == 2 and two == lftaccel.Phi4(0.25, 0.5)
    assert two.to_standard() == pytest.approx((-4.0, 8.0))
    assert two.to_standard(3) == pytest.approx((-6.0, 8.0))  # what it is on a 3D lattice
    with pytest.raises(ValueError, match=r"from_standard\(\.\.\., ndim=2\), but shape \(4, 4, 4\) has 3 "
                                         r"dimensions.*convert with ndim=3"):
        HMC(two, (4, 4, 4))
    HMC(two, (4, 4))
    HMC(lftaccel.Phi4.from_standard(-4.0, 8.0, ndim=3), (4, 4, 4))
    HMC(lftaccel.Phi4(0.25, 0.5), (4, 4, 4))  # the hopping form itself holds on any lattice


def test_field_rescaling_is_sqrt_kappa():
    theory = lftaccel.Phi4(0.16, 0.3)
    assert theory.field_to_standard(torch.tensor(2.0)).item() == pytest.approx(2 * math.sqrt(0.16))


def test_bad_conversions():
    with pytest.raises(ValueError, match="m2"):
        lftaccel.Phi4.from_standard(-5.0, 0.0, ndim=2)
    with pytest.raises(ValueError, match="ndim"):
        lftaccel.Phi4.from_standard(-4.0, 8.0, ndim=5)
    with pytest.raises(ValueError, match="kappa"):
        lftaccel.Phi4(-0.1, 0.5).to_standard(2)


def test_extreme_standard_parameters_round_trip():
    """|m2| far beyond 1e154, where b^2 overflows, still gives the right kappa (it gave 0)."""
    theory = lftaccel.Phi4.from_standard(1e155, 1e150, ndim=2)
    assert theory.kappa == pytest.approx(1e-155, rel=1e-12)
    m2, lam = theory.to_standard(2)
    assert m2 == pytest.approx(1e155, rel=1e-12) and lam == pytest.approx(1e150, rel=1e-12)

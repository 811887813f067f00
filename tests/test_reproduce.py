"""The reproductions' whole pipeline at toy scale: HMC, training, neural MCMC, report, plots."""

import json
import math

import pytest

from lftaccel import cli
from lftaccel.reproduce import reproduce


def test_phi4_flow_pipeline(tmp_path):
    summary = reproduce("phi4-flow", tmp_path, device="cpu", lattices=[4], train_seconds={4: 2.0}, proposals=512,
                        hmc_samples=256, hmc_therm=50, broken_seconds=1.0, broken_samples=256)
    s = summary[4]
    assert 0 < s["ess"] <= 1 and 0 <= s["acceptance"] <= 1
    assert set(s["pulls"]) == {"|M|", "chi2", "chi_2pt"}
    assert set(summary["broken"]) == {"plain", "equivariant"}
    text = (tmp_path / "report.md").read_text()
    assert "## Targets (4x4)" in text and "Broken phase" in text
    for png in ("training-4x4.png", "hist-M-4x4.png", "broken-M.png"):
        assert (tmp_path / png).stat().st_size > 1000


def test_oscillator_fflow_pipeline(tmp_path):
    summary = reproduce("oscillator-fflow", tmp_path, device="cpu", f=[1.0, 1.7], train_seconds=2.0, proposals=512)
    assert set(summary) == {1.0, 1.7}
    assert {"E0", "E1-E0", "E2-E0"} <= set(summary[1.0]["pulls"])
    assert {"<x^2>", "<x^4>", "G2(0)"} <= set(summary[1.7]["pulls"])
    # a pull is NaN where there is no estimate: those must be few, and said so in the report
    for f, keys in ((1.0, ("E0", "E1-E0")), (1.7, ("<x^2>", "<x^4>", "G2(0)"))):
        assert all(math.isfinite(summary[f]["pulls"][k]) for k in keys), summary[f]["pulls"]
    if not math.isfinite(summary[1.0]["pulls"]["E2-E0"]):
        assert "no estimate" in (tmp_path / "report.md").read_text()
    for basis in ("fourier", "real"):
        assert 0 <= summary[1.7][basis]["fraction_right_well"] <= 1
    text = (tmp_path / "report.md").read_text()
    assert "Real-space against Fourier-space" in text
    assert (tmp_path / "paths-f1.7.png").stat().st_size > 1000


def test_xy_can_pipeline(tmp_path, monkeypatch):
    import torch

    from lftaccel.reproduce import xy_can

    starts = {}  # each training's starting weights and annealing, by checkpoint name
    original = xy_can._train

    def recording(model, beta, seconds, out, name, *, anneal):
        starts[name] = ({k: v.clone() for k, v in model.state_dict().items()}, anneal)
        return original(model, beta, seconds, out, name, anneal=anneal)

    monkeypatch.setattr(xy_can, "_train", recording)
    summary = reproduce("xy-can", tmp_path, device="cpu", lattices=[4, 6], temperatures=(1.2, 0.9),
                        first_seconds={4: 2.0, 6: 1.0}, next_seconds={4: 1.0, 6: 1.0}, proposals={4: 512, 6: 256},
                        fit_seconds={4: 1.0, 6: 1.0}, hmc_samples=256, compare_seconds=1.0, compare_lattice=4)
    for L in (4, 6):
        rows = summary["lattices"][L]["rows"]
        assert [r["T"] for r in rows] == [1.2, 0.9]
        for r in rows:
            assert 0 < r["ess"] <= 1 and set(r["pulls"]) == {"energy", "helicity"}
            assert len(r["exact_helicity"]) == 2 and r["F_q_err"] > 0
    # the smallest lattice starts from scratch, annealed; the larger one from its network at the
    # hottest temperature, unannealed; colder temperatures continue, unannealed
    assert starts["can-4x4-T1.2"][1] > 0 and starts["can-6x6-T1.2"][1] == 0 and starts["can-6x6-T0.9"][1] == 0
    # each temperature's network is fitted by maximum likelihood after its variational training,
    # and the fitted one is handed over
    assert all(r["fit_steps"] > 0 for s in summary["lattices"].values() for r in s["rows"])
    variational_4 = torch.load(tmp_path / "can-4x4-T1.2.pt", weights_only=False)["model"]
    trained_4 = torch.load(tmp_path / "can-4x4-T1.2-fit.pt", weights_only=False)["model"]
    assert not torch.equal(variational_4["head.weight"], trained_4["head.weight"])
    start_6 = starts["can-6x6-T1.2"][0]
    assert all(torch.equal(start_6[k], trained_4[k]) for k in trained_4)
    assert not torch.equal(starts["can-4x4-T1.2"][0]["head.weight"], trained_4["head.weight"])  # it did train
    assert set(summary["comparison"]) == {"vonmises", "beta"}
    text = (tmp_path / "report.md").read_text()
    assert "Beta against von Mises" in text and "T where Y = 2T/pi" in text
    for png in ("helicity-ess.png", "vortices-4x4-T0.9.png", "vortices-4x4-T1.2.png", "corr-4x4-T1.2.png",
                "vortices-6x6-T1.2.png"):
        assert (tmp_path / png).stat().st_size > 1000


def test_phi4_diffusion_pipeline(tmp_path):
    # a fixed step count, not a time: a model trained 2 s (a few hundred steps, however many the
    # machine managed) could fold the space in an RK4 step, and did on a faster machine
    summary = reproduce("phi4-diffusion", tmp_path, quick=True, device="cpu", L=4, n_train=256, train_seconds=600.0,
                        train_steps=1000,
                        dm_samples=64, sde_steps=10, proposals=64, ode_steps=8, sq_steps=40, sq_record=5,
                        sq_chains=8)
    assert set(summary) == {"settings", "0.21", "0.5"}
    for kappa in ("0.21", "0.5"):
        s = summary[kappa]
        assert set(s["values"]) == {"train HMC", "test HMC", "DM", "corrected DM"}
        assert 0 < s["ess"] <= 1 and s["hutchinson_sd"] == 0.0  # the map's log q: no probe spread
        assert all(0 <= f <= 1 for f in s["sectors"].values())
        assert all(math.isfinite(p) for p in s["pulls"]["DM"].values())
    assert summary["0.21"]["dm_ok"] in (True, False) and summary["0.5"]["dm_ok"] is None
    assert set(summary["0.21"]["stochastic_quantization"]) == {"Langevin, -dS/dphi", "Langevin, learnt score"}
    assert json.loads((tmp_path / "dm-4x4-k0.21.json").read_text())["scale"] == summary["0.21"]["scale"]
    text = (tmp_path / "report.md").read_text()
    assert "kappa = 0.5 (broken phase)" in text and "Stochastic quantization, kappa = 0.21" in text
    for png in ("hist-M-4x4-k0.21.png", "configs-4x4-k0.5.png", "sq-corr-4x4-k0.21.png"):
        assert (tmp_path / png).stat().st_size > 1000
    # a rerun into the folder with other training data does not resume the old network (whose
    # weights were fitted to the old data's scale c)
    with pytest.raises(ValueError, match="other data_sha256, scale"):
        reproduce("phi4-diffusion", tmp_path, quick=True, device="cpu", L=4, n_train=320, train_seconds=600.0,
                  train_steps=1000, dm_samples=64, sde_steps=10, proposals=64, ode_steps=8, sq_steps=40,
                  sq_record=5, sq_chains=8)


def test_unknown_reproduction_is_named(tmp_path, capsys):
    with pytest.raises(ValueError, match="unknown reproduction"):
        reproduce("xy-flow", tmp_path)
    with pytest.raises(SystemExit):
        cli.main(["reproduce", "xy-flow"])
    assert "invalid choice" in capsys.readouterr().err
    json.dumps({})


@pytest.mark.parametrize("name,overrides,match", [
    ("xy-can", {"proposal": {8: 512}}, "unknown setting.s. proposal"),
    ("xy-can", {"lattices": [6]}, "first_seconds has no value for lattice size.s. \\[6\\]"),
    ("xy-can", {"proposals": {8: 100}}, "proposals must be a multiple of 8"),
    ("phi4-flow", {"proposals": 12}, "proposals must be a multiple of 8"),
    ("phi4-flow", {"train_seconds": 5.0}, "train_seconds must map each lattice size"),
    ("oscillator-fflow", {"bogus": 1}, "unknown setting.s. bogus"),
    ("phi4-diffusion", {"proposals": 4}, "proposals must be a multiple of 8"),
])
def test_pipeline_settings_are_checked_before_any_work(tmp_path, name, overrides, match):
    """Found by an audit: unknown keys ran the defaults silently, a lattice without a per-lattice
    value died on a bare KeyError, and a proposal count that does not split into 8 streams was
    refused only after minutes of sampling and training."""
    with pytest.raises(ValueError, match=match):
        reproduce(name, tmp_path, quick=True, device="cpu", **overrides)
    assert not any(p.suffix in (".h5", ".pt") for p in tmp_path.iterdir())


def test_xy_can_stage_restarts_when_the_stage_before_changed(tmp_path):
    """A checkpoint of a stage that started from other weights (the training before a fit ran
    on since) is removed, so the stage runs again from the weights it is given; before, the
    old fit was loaded over the newer training and returned unchanged (found by an audit)."""
    import torch

    from lftaccel.models import can
    from lftaccel.reproduce import xy_can

    torch.manual_seed(0)
    model = can.CAN((3, 3), channels=4, depth=1)
    path = tmp_path / "stage.pt"
    can.train(model, 1.0, steps=2, batch_size=4, anneal=0.0, checkpoint=path, progress=False,
              start=xy_can._resumable(model, path))
    torch.manual_seed(0)
    same = can.CAN((3, 3), channels=4, depth=1)
    xy_can._resumable(same, path)
    assert path.exists()  # the same start: resumed
    with torch.no_grad():
        next(same.parameters()).add_(0.1)
    xy_can._resumable(same, path)
    assert not path.exists()  # another start: the stage runs again
    can.train(model, 1.0, steps=4, batch_size=4, anneal=0.0, checkpoint=tmp_path / "x.pt", progress=False,
              start="a")
    with pytest.raises(ValueError, match="other start"):  # and can.train itself refuses such a resume
        can.train(model, 1.0, steps=4, batch_size=4, anneal=0.0, checkpoint=tmp_path / "x.pt", resume=True,
                  progress=False, start="b")

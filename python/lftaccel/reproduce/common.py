"""What the reproductions share: a markdown report, comparisons with pulls, plots, and the
flow -> neural-MCMC -> observables pipeline."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import torch

from .. import analysis
from ..mcmc import HMC, nmcmc, run

__all__ = ["Report", "pull", "chain_observables", "plot_training", "plot_histograms", "timed_hmc"]


class Report:
    """A markdown report written to OUT/report.md as it grows (a killed run keeps its sections)."""

    def __init__(self, out, title: str):
        self.out = Path(out)
        self.out.mkdir(parents=True, exist_ok=True)
        self.path = self.out / "report.md"
        self.lines = [f"# {title}", ""]
        self.flush()

    def add(self, *lines: str):
        self.lines.extend(lines)
        self.lines.append("")
        self.flush()

    def table(self, header, rows):
        self.add("| " + " | ".join(header) + " |", "|" + "---|" * len(header),
                 *["| " + " | ".join(str(c) for c in r) + " |" for r in rows])

    def image(self, path, caption: str):
        self.add(f"![{caption}]({Path(path).name})")

    def flush(self):
        self.path.write_text("\n".join(self.lines) + "\n")


def fmt(est) -> str:
    """value(error) in the usual notation, the error's two leading digits in parentheses: 1.0260(30)."""
    if not (est.error > 0 and math.isfinite(est.error)):
        return f"{est.value:.6g}"
    digits = max(0, 1 - int(math.floor(math.log10(est.error))))
    return f"{est.value:.{digits}f}({round(est.error * 10 ** digits)})"


def pull(a, b) -> float:
    """(a - b) / sqrt(da^2 + db^2) for two Estimates (or an Estimate and an exact float)."""
    va, ea = a.value, a.error
    vb, eb = (b.value, b.error) if hasattr(b, "value") else (float(b), 0.0)
    den = math.hypot(ea, eb)
    return (va - vb) / den if den > 0 else float("inf")


DISCARD = analysis.NMCMC_DISCARD  # fraction of each neural-MCMC stream dropped as burn-in


def settings(defaults: dict, overrides: dict, *, extra=(), per_lattice=(), streams=()) -> dict:
    """A pipeline's settings: ``defaults`` with ``overrides``, checked before any work. An
    unknown key (a typo ran the defaults silently), a per-lattice setting without a value for
    one of cfg['lattices'] (a bare KeyError mid-run), or a proposal count that does not split
    into the 8 independence-Metropolis streams of >= 2 (refused after minutes of training)
    is a ValueError naming the setting. ``extra``: keys a pipeline reads beyond its defaults."""
    unknown = sorted(set(overrides) - set(defaults) - set(extra))
    if unknown:
        raise ValueError(f"unknown setting(s) {', '.join(unknown)}; the settings are "
                         f"{', '.join(sorted(set(defaults) | set(extra)))}")
    cfg = {**defaults, **overrides}
    for key in per_lattice:
        if not isinstance(cfg[key], dict):
            raise ValueError(f"setting {key} must map each lattice size to a value, got {cfg[key]!r}")
        missing = [L for L in cfg["lattices"] if L not in cfg[key]]
        if missing:
            raise ValueError(f"setting {key} has no value for lattice size(s) {missing} (it has {sorted(cfg[key])})")
    for key in streams:
        values = cfg[key].values() if isinstance(cfg[key], dict) else [cfg[key]]
        bad = [v for v in values if isinstance(v, bool) or not isinstance(v, int) or v < 16 or v % 8]
        if bad:
            raise ValueError(f"setting {key} must be a multiple of 8 and >= 16 (8 streams of >= 2 proposals), "
                             f"got {bad[0]!r}")
    return cfg


def chain_observables(measurements: dict, chain: nmcmc.Chain, fn, *args, discard: float = DISCARD) -> dict:
    """Observables of a neural-MCMC chain: per-proposal measurements taken along the chain
    (n_steps, n_chains, ...), the first ``discard`` of every stream dropped (each starts on
    a draw from q, not p), then ``fn`` (an lftaccel.analysis ``*_observables``) and the
    Gamma method.

    Each error is the larger of the Gamma method's and the spread of the streams' own
    estimates, sd_c / sqrt(n_chains) (kept as ``stream_error``), a check that needs no
    window where rare heavy weights give a long autocorrelation tail (lftaccel.mcmc.nmcmc's
    docstring: at ESS 0.11-0.57 the Gamma errors were 1.01-1.10 of the actual spread, the
    larger of the two 1.04-1.11). An observable that a single stream cannot give (fn fails
    on it, or a non-finite value) keeps the Gamma error alone and ``stream_error`` None;
    ``tau_int`` is always the Gamma method's."""
    if not 0.0 <= discard < 1.0:
        raise ValueError(f"discard must be in [0, 1), got {discard!r}")
    start = int(discard * chain.index.shape[0])
    by_chain = {k: chain.take(v)[start:] for k, v in measurements.items()}
    out = {k: analysis.estimate(o, k) for k, o in fn(by_chain, *args).items()}
    return analysis.with_stream_errors(out, lambda c: fn({k: v[:, c:c + 1] for k, v in by_chain.items()}, *args),
                                       chain.index.shape[1])


def _plt():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def plot_training(histories: dict, path, *, log_z=None):
    """Loss and ESS against step, one line per named training history (smoothed over 20 steps)."""
    plt = _plt()
    fig, (a1, a2) = plt.subplots(1, 2, figsize=(10, 3.6))
    for name, h in histories.items():
        step = np.asarray(h["step"])
        for ax, key in ((a1, "loss"), (a2, "ess")):
            v = np.asarray(h[key], dtype=float)
            k = min(20, len(v))
            smooth = np.convolve(v, np.ones(k) / k, mode="valid") if k else v
            ax.plot(step[k - 1:], smooth, label=name)
    if log_z is not None:
        a1.axhline(-log_z, color="k", ls="--", lw=1, label="-log Z")
    a1.set_xlabel("step")
    a1.set_ylabel("<log q + S>")
    a2.set_xlabel("step")
    a2.set_ylabel("batch ESS")
    a2.set_ylim(0, 1)
    a1.legend(fontsize=8)
    a2.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def plot_histograms(samples: dict, path, *, xlabel: str, bins: int = 60):
    """Normalised histograms of one observable from several samplers."""
    plt = _plt()
    fig, ax = plt.subplots(figsize=(6, 3.6))
    lo = min(float(np.min(v)) for v in samples.values())
    hi = max(float(np.max(v)) for v in samples.values())
    edges = np.linspace(lo, hi, bins + 1)
    for name, v in samples.items():
        ax.hist(np.asarray(v).ravel(), bins=edges, density=True, histtype="step", lw=1.5, label=name)
    ax.set_xlabel(xlabel)
    ax.set_ylabel("density")
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def timed_hmc(theory, L: int, n_samples: int, path: Path, device, *, n_therm: int = 500, seed: int | None = None):
    """HMC ensemble of 8 chains on an (L, L) lattice in ``path`` (resumed when it exists), and the
    seconds the sampling took: the file's wall_seconds, summed over a killed run and its
    resumptions, so a rerun that only loads the ensemble reports what the sampling cost. A file
    from before wall_seconds was recorded falls back on its .seconds.json beside it (NaN without).
    ``seed``: the chains' seed (default L; another seed gives an independent ensemble)."""
    sampler = HMC(theory, (L, L), n_chains=8, seed=L if seed is None else seed, device=device)
    ens = run(sampler, n_samples, n_therm=n_therm, spacing=2, path=path, resume=path.exists(), progress=True)
    seconds = float(ens.attrs.get("wall_seconds", float("nan")))
    legacy = path.with_suffix(".seconds.json")
    if not math.isfinite(seconds) and legacy.exists():
        seconds = float(json.loads(legacy.read_text())["seconds"])
    return ens, seconds


def device_of(requested: str | None) -> torch.device:
    if requested:
        return torch.device(requested)
    return torch.device("cuda" if torch.cuda.is_available() else "cpu")

"""Observables with honest errors: the Gamma method (pyerrors) over chains and along them.

Measurements are arrays of shape (n_per_chain, n_chains): each chain is a replica of
one pyerrors ensemble, so the autocorrelation along each chain (tau_int, in units of
the spacing between saved configurations) enters the error, and the chains combine
as independent replicas, their fluctuations taken about the mean of all chains (see
primary); measure() keeps each error no smaller than the spread of the chains (from 8 chains
on: with_chain_spread). Derived quantities (chi2, Binder cumulant, helicity modulus,
E0, effective masses) are functions of primary observables, and pyerrors propagates
their errors with the autocorrelations.

Conventions (see also DESIGN.md):
  * phi^4: M = volume average of phi; chi2 = V (<M^2> - <M>^2); chi2_abs = V (<M^2> - <|M|>^2);
    U_L = 1 - <M^4> / (3 <M^2>^2); G(t): connected zero-momentum correlator along axis 0,
    G(t) = <Phi(t0) Phi(t0 + t)> / V_s - V_s <M>^2 with Phi(t) the slice sum;
    chi_2pt = sum_t G(t) (equal to chi2 on the same data: a consistency check).
  * XY (J = 1): energy per site e = -(1/V) sum_x sum_mu cos(theta_x - theta_{x+mu});
    helicity modulus Y = (1/(d V)) sum_mu [<sum_x cos(d_mu theta)> - beta <(sum_x sin(d_mu theta))^2>],
    the convention in which the KT jump is Y(T_KT) = 2 T_KT / pi (it is (1/V) d^2 F / d delta^2
    for a twist delta added to every link along mu, tested against that derivative); vortex
    density (2D) = (1/V) sum_plaquettes |winding|; spin correlation G(r) = <cos(theta_x -
    theta_{x + r e_mu})>, averaged over x and mu.
  * oscillator: <x^2>, <x^4>; E0 = <V> + <x V'(x)>/2 (virial) = c0 + 2 c2 <x^2> + 3 c4 <x^4>, for
    the double well 3 lam <x^4> - 4 lam f^2 <x^2> + lam f^4; G2(tau) = <x_n x_{n+tau}>;
    G4(tau) = <x_n^2 x_{n+tau}^2> - <x^2>^2 (connected); E1 - E0 and E2 - E0 from their
    cosh effective masses, each gap over a plateau window of its own (oscillator_observables).

measure() also returns notes: the windows used, what was left out and why, and chains that
disagree (split R-hat). Runs of independence-Metropolis chains (lftaccel generate --exact)
drop a burn-in and take the chains' spread into their errors.
"""

from __future__ import annotations

import dataclasses
import json
import math
import warnings

import numpy as np
import torch

with warnings.catch_warnings():
    warnings.simplefilter("ignore")
    import pyerrors as pe

from .theories import XY, Oscillator, Phi4

__all__ = ["Estimate", "primary", "estimate", "measure", "magnetisation_observables", "phi4_observables",
           "xy_observables", "oscillator_observables", "format_table", "Measurements",
           "split_rhat", "chain_spread", "with_chain_spread", "with_stream_errors"]


@dataclasses.dataclass
class Estimate:
    """A Monte Carlo estimate: value, error and (for primary observables) tau_int."""

    name: str
    value: float
    error: float
    tau_int: float | None = None
    tau_int_error: float | None = None
    stream_error: float | None = None  # from the spread of independent streams, where computed
    n_samples: int | None = None  # measurements behind a primary observable (all chains)
    gamma_error: float | None = None  # the Gamma method's, where ``error`` is the larger stream_error
    n_streams: int | None = None  # the chains (streams) behind stream_error

    @property
    def n_effective(self) -> float | None:
        """N / (2 tau_int): the number of independent measurements the error rests on; where the
        error is the chains' spread, larger than the Gamma method's, the number that error implies,
        N / (2 tau_int) (gamma_error / error)^2."""
        if not (self.n_samples and self.tau_int):
            return None
        n = self.n_samples / (2 * self.tau_int)
        if self.gamma_error is not None and self.error > 0:
            n *= min(1.0, (self.gamma_error / self.error) ** 2)
        return n

    def as_dict(self) -> dict:
        return dataclasses.asdict(self)


MIN_PER_CHAIN = 5  # pyerrors' least number of samples per replica


def primary(values, name: str, ensemble: str = "run") -> "pe.Obs":
    """A pyerrors Obs from measurements (n_per_chain, n_chains): one replica per chain.

    The fluctuations are taken about the mean over all chains, as in Wolff's Gamma method for
    replica (Comput. Phys. Commun. 156 (2004) 143, eq. (31)), not about each chain's own mean
    as pyerrors does for replica it is handed raw samples of. The chains here sample one
    distribution, so the spread of their means belongs in the error; about each chain's mean
    it is lost (Gamma(t) of a chain of n is biased low by ~2 tau_int / n, which the bias
    correction over all N does not restore), and many short chains gave too small errors:
    16 AR(1) chains of 62 at tau_int = 9.5, the pull (estimate - truth) / error had a spread
    of 1.73 and tau_int came out 3.5; about the global mean 1.0 and 9.4 (1 chain of 1000: the
    same either way). The Gamma method still sees only as much of the spread as its
    autocorrelations explain: chains offset from each other add a constant to every Gamma(t),
    and the window stops at a few tau_int. Where the chains disagree more than that (not
    thermalised, or a mode slower than the window sees), measure() takes the error from the
    chains' spread instead (chain_spread).

    Every replica's value (r_values) is therefore the global mean, and the chains' offsets sit
    in the deltas. pyerrors' arithmetic, derived_observable, m_eff and covariance keep them,
    and pickle does; functions that rebuild an Obs from raw replica samples re-centre each
    replica and drop the offsets again (json dump/load, merge_obs, pe.reweight, correlate),
    plot_rep_dist shows nothing, and such an Obs must not be combined with one built the
    plain way on the same replica names."""
    try:
        is_complex = np.iscomplexobj(values)
    except (TypeError, ValueError):  # ragged: said below
        is_complex = False
    if is_complex:
        raise TypeError(f"{name}: measurements must be real, got complex values")
    try:
        v = np.asarray(values, dtype=np.float64)
    except (TypeError, ValueError):
        if isinstance(values, (list, tuple, np.ndarray)) and len(values) and all(np.ndim(c) == 1 for c in values):
            lengths = sorted({len(c) for c in values})
            if len(lengths) > 1:
                raise ValueError(f"{name}: the chains (or rounds) have different lengths {lengths}; pass an array "
                                 "(n_per_chain, n_chains) with the same number of measurements per chain") from None
        raise TypeError(f"{name}: measurements must be real numbers, got {type(values).__name__}") from None
    if v.ndim == 1:
        v = v[:, None]
    if v.ndim != 2 or v.shape[0] < MIN_PER_CHAIN or v.shape[1] < 1:
        raise ValueError(f"{name}: the Gamma method needs at least {MIN_PER_CHAIN} measurements per chain "
                         f"and one chain, got shape (n_per_chain, n_chains) = {v.shape}")
    if not np.isfinite(v).all():
        raise ValueError(f"{name}: measurements contain non-finite values")
    mean = float(v.mean())
    # pyerrors' own constructor for given fluctuations (as its import_jackknife uses it):
    # samples are the deltas, means the replica values, and the value is set after.
    obs = pe.Obs([v[:, c] - mean for c in range(v.shape[1])], [f"{ensemble}|r{c}" for c in range(v.shape[1])],
                 means=[mean] * v.shape[1])
    obs._value = mean
    obs.tag = name
    return obs


def estimate(obs, name: str) -> Estimate:
    """Runs the Gamma method (automatic windowing, S = 2) and returns the numbers."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        obs.gamma_method()
    tau = dtau = n = None
    if getattr(obs, "e_tauint", None):
        key = next(iter(obs.e_tauint))
        tau, dtau, n = float(obs.e_tauint[key]), float(obs.e_dtauint[key]), int(obs.N)
    if obs.dvalue == 0 and obs.deltas:
        warnings.warn(f"{name}: the measurements do not fluctuate, so its error of 0 is no estimate",
                      RuntimeWarning, stacklevel=2)
    return Estimate(name, float(obs.value), float(obs.dvalue), tau, dtau, n_samples=n)


def chain_spread(obs) -> float | None:
    """The error of an Obs of primary() (or a function of such Obs) from the spread of its
    chains alone: each chain one block of a jackknife, from the chain's mean fluctuation
    (pyerrors' deltas, linearised for a derived Obs, so no chain's own small-sample bias
    enters), sqrt(n_c / (n_c - 1) sum_c (n_c-weighted mean fluctuation of chain c / N)^2).
    Independent chains make the blocks independent whatever the autocorrelation, so unlike the
    Gamma method it needs no window, and it contains every offset between the chains; but it
    rests on n_c - 1 degrees of freedom. None for one chain."""
    deltas = [np.asarray(d) for d in obs.deltas.values()]
    nc = len(deltas)
    if nc < 2:
        return None
    N = sum(len(d) for d in deltas)
    block = np.array([d.sum() / N for d in deltas])
    return float(np.sqrt(nc / (nc - 1) * np.sum(block**2)))


def _per_config(configs, chunk: int, fn):
    """Applies fn to configs in chunks (bounded memory), as float64 torch tensors."""
    out = []
    for i in range(0, len(configs), chunk):
        x = torch.as_tensor(np.asarray(configs[i: i + chunk]), dtype=torch.float64)
        out.append(fn(x))
    return {k: torch.cat([o[k] for o in out]).numpy() for k in out[0]}


def phi4_measurements(configs) -> dict:
    """Per-configuration M, and slice sums' correlator along axis 0 (before connecting)."""
    def fn(x):
        V = math.prod(x.shape[1:])
        slices = x.flatten(2).sum(2) if x.dim() > 2 else x  # (n, L0)
        F = torch.fft.rfft(slices, dim=1)
        corr = torch.fft.irfft(F.abs() ** 2, n=slices.shape[1], dim=1) / slices.shape[1]  # sum_t0 / L0
        return {"M": x.flatten(1).mean(1), "slice_corr": corr / (V / x.shape[1])}
    return _per_config(configs, 512, fn)


def magnetisation_observables(M, volume: int) -> dict:
    """Obs of M, |M|, chi2, chi2_abs and U_L from the magnetisation per configuration,
    (n_per_chain, n_chains)."""
    m, am, m2, m4 = (primary(M, "M"), primary(np.abs(M), "|M|"), primary(M**2, "M^2"), primary(M**4, "M^4"))
    out = {"M": m, "|M|": am, "chi2": volume * (m2 - m * m), "chi2_abs": volume * (m2 - am * am)}
    if m2.value > 0:  # (M = 0 in every configuration leaves U_L as 0/0: omitted)
        out["U_L"] = 1 - m4 / (3 * m2 * m2)
    return out


def phi4_observables(by_chain: dict, lattice_shape) -> dict:
    """Obs of phi^4 from measurements reshaped (n_per_chain, n_chains, ...)."""
    V = math.prod(lattice_shape)
    Vs = V // lattice_shape[0]
    out = magnetisation_observables(by_chain["M"], V)
    m = out["M"]
    corr = by_chain["slice_corr"]
    G = [primary(corr[:, :, t], f"C({t})") - Vs * m * m for t in range(corr.shape[2])]
    out["chi_2pt"] = sum(G[1:], G[0])
    out.update({f"G({t})": g for t, g in enumerate(G[: lattice_shape[0] // 2 + 1])})
    return out


def xy_measurements(configs, beta: float) -> dict:
    """Per configuration: the energy per site E/V = -(1/V) sum_links cos(theta_x - theta_{x+mu});
    the helicity modulus Upsilon = (1/(d V)) sum_mu [sum_x cos(d_mu) - beta (sum_x sin(d_mu))^2],
    d_mu = theta_x - theta_{x+mu} (its mean is the modulus in the normalisation where it jumps to
    2 T / pi at the BKT point; <sum sin> = 0 by symmetry, so no connected part is taken); the
    vortex density (1/V) sum |plaquette winding| (2D); and the spin correlation G(r)."""
    def fn(th):
        dims = range(1, th.dim())
        V = math.prod(th.shape[1:])
        # Per direction: the sums over links of cos and sin of the angle difference.
        diffs = [th - torch.roll(th, -1, d) for d in dims]
        cos_mu = [torch.cos(df).flatten(1).sum(1) for df in diffs]
        sin_mu = [torch.sin(df).flatten(1).sum(1) for df in diffs]
        hel = sum(c - beta * s**2 for c, s in zip(cos_mu, sin_mu))
        out = {"energy": -sum(cos_mu) / V, "helicity": hel / (len(dims) * V), "spin_corr": spin_correlation(th)}
        if th.dim() == 3:
            out["vortex"] = vortex_density(th)
        return out
    return _per_config(configs, 512, fn)


def spin_correlation(theta: torch.Tensor) -> torch.Tensor:
    """G(r) = <cos(theta_x - theta_{x + r e_mu})>, averaged over x and the axes mu, for
    r = 0 .. min(extent) // 2, per configuration (n, r_max + 1). By FFT: with s = exp(i theta),
    sum_x Re[conj(s_x) s_{x+r}] is the real part of the periodic autocorrelation of s."""
    dims = list(range(1, theta.dim()))
    r_max = min(theta.shape[1:]) // 2
    s = torch.polar(torch.ones_like(theta), theta)
    F = torch.fft.fftn(s, dim=dims)
    auto = torch.fft.ifftn(F.abs() ** 2, dim=dims).real / math.prod(theta.shape[1:])  # (n, *shape)
    r = torch.arange(r_max + 1)
    lines = [auto[(slice(None),) + tuple(r if e == d else 0 for e in dims)] for d in dims]  # (n, r_max + 1) each
    return torch.stack(lines).mean(0)


def _wrap(d):
    return d - 2 * math.pi * torch.round(d / (2 * math.pi))


def vortex_density(theta: torch.Tensor) -> torch.Tensor:
    """(1/V) sum over plaquettes of |winding|, per 2D configuration (n, L0, L1)."""
    return plaquette_winding(theta).abs().flatten(1).mean(1)


def plaquette_winding(theta: torch.Tensor) -> torch.Tensor:
    """Winding number (+1 vortex, -1 antivortex, 0) of the plaquette with lower corner x, going
    x -> x + e0 -> x + e0 + e1 -> x + e1 -> x, each step's angle difference wrapped to [-pi, pi)."""
    a = theta
    b = torch.roll(theta, -1, 1)          # x + e0
    c = torch.roll(b, -1, 2)              # x + e0 + e1
    d = torch.roll(theta, -1, 2)          # x + e1
    w = (_wrap(b - a) + _wrap(c - b) + _wrap(d - c) + _wrap(a - d)) / (2 * math.pi)
    return w.round()


def xy_observables(by_chain: dict) -> dict:
    """Obs of the XY measurements (xy_measurements, by chain): the energy per site, the helicity
    modulus, the vortex density (2D) and G(r) for r >= 1."""
    # The helicity modulus is linear in per-configuration quantities: a primary observable.
    out = {"energy": primary(by_chain["energy"], "energy"), "helicity": primary(by_chain["helicity"], "helicity")}
    if "vortex" in by_chain:
        out["vortex_density"] = primary(by_chain["vortex"], "vortex_density")
    corr = by_chain.get("spin_corr")
    if corr is not None:
        out.update({f"G({r})": primary(corr[:, :, r], f"G({r})") for r in range(1, corr.shape[2])})
    return out


def oscillator_measurements(configs) -> dict:
    def fn(x):
        N = x.shape[1]
        F = torch.fft.rfft(x, dim=1)
        g2 = torch.fft.irfft(F.abs() ** 2, n=N, dim=1) / N
        x2 = x * x
        F2 = torch.fft.rfft(x2, dim=1)
        g4 = torch.fft.irfft(F2.abs() ** 2, n=N, dim=1) / N
        return {"x": x.mean(1), "x2": x2.mean(1), "x4": (x2 * x2).mean(1), "g2": g2, "g4": g4}
    return _per_config(configs, 4096, fn)


SIGNIFICANT = 5.0  # a correlator value enters a gap's window only above this many errors


def oscillator_observables(by_chain: dict, theory: Oscillator, n_slices: int, window=None,
                           notes: list | None = None) -> dict:
    """Obs of the oscillator path. ``window`` = (t_min, t_max): the plain mean of the effective
    masses of slices t_min <= t < t_max, for both gaps, whose expectation is the same mean of
    the exact masses (an exact reference over the window averages them so; data-dependent
    weights made the target move with the noise: at f = 1.4 the exact E2 - E0 masses of
    t = 4..7 fall from 3.54 to 3.26, and weights 0.61, 0.23, 0.13, 0.03 moved the target from
    their mean 3.42 to 3.50). By default each gap's correlator chooses its own: the
    slices from N/16 on while G(t) > G(t + 1) > SIGNIFICANT errors, up to N/8; or, where
    not even G(N/16 + 1) is, the latest slice t < N/16 for which that holds; those masses are
    averaged with inverse-variance weights. A gap without such a slice is left out. ``notes`` (a
    list), when given, receives a line per gap: the slices used, or why there is no estimate.

    Why per gap: the x^2 correlator (E2 - E0) decays ~3x faster than x's, and a window shared
    with x's reached slices where it is noise. At the command's defaults (N = 64, beta = 10,
    window (4, 8), 16 chains of 256 saved paths, 120 seeds) G4's relative error was 26 % at
    slice 7 and 51 % at slice 8; E2 - E0 was missing in 14 of 120 runs and the others averaged
    4.84 against the exact 4.54 of those slices (pull mean -0.26 +- 0.08, spread 0.86), while
    the windows (2, 5) and (1, 4) were unbiased (pull spread 1.01) and 6-10x more precise. With
    the per-gap windows, on the same 120 seeds: E2 - E0 always estimated (t = 4..5 or 4), pull mean
    -0.10 +- 0.09, spread 0.97, median error 0.42 (was 1.15); E1 - E0 unchanged (t = 4..7, pull
    spread 0.98). On 60 more seeds the E2 - E0 pulls spread 1.15, two of them -4.9 and -3.5: a
    heavier tail than a Gaussian's. Starting the x^2 window earlier would halve its error at a
    contamination of 0.3 % (t = 2) to 1 % (t = 1) here; N/16 is kept for both, as the safe side."""
    if by_chain["g2"].shape[2] != n_slices:
        raise ValueError(f"n_slices = {n_slices} does not match the measurements' {by_chain['g2'].shape[2]} slices")
    a = theory.spacing(n_slices)
    x2, x4 = primary(by_chain["x2"], "<x^2>"), primary(by_chain["x4"], "<x^4>")
    out = {"<x^2>": x2, "<x^4>": x4, "E0": theory.c0 + 2 * theory.c2 * x2 + 3 * theory.c4 * x4}
    if "x" in by_chain:  # <x> = 0 by symmetry: in a double well, a check that the chains cross the barrier
        out = {"<x>": primary(by_chain["x"], "<x>"), **out}
    half = n_slices // 2
    G2 = [primary(by_chain["g2"][:, :, t], f"G2({t})") for t in range(n_slices)]
    G4 = [primary(by_chain["g4"][:, :, t], f"G4({t})") - x2 * x2 for t in range(n_slices)]
    if window is not None:
        t0, t1 = window
        if not 0 <= t0 < t1 < half:
            raise ValueError(f"window must satisfy 0 <= t_min < t_max < N/2 = {half}, got {(t0, t1)}")
    for name, G in (("E1-E0", G2), ("E2-E0", G4)):
        slices, why = _gap_slices(G, n_slices, window)
        if not slices:
            if notes is not None:
                notes.append(f"{name}: no estimate ({why})")
            continue
        # pyerrors' cosh effective mass (root finding with the implicit derivative), per slice.
        # Slices near N/2 (flat correlator) make fsolve warn; only the window is used.
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", RuntimeWarning)
            m_eff = pe.Corr(G).m_eff(variant="cosh")
        masses = [m_eff[t] for t in slices]
        if notes is not None:
            how = "averaged" if window is not None else "inverse-variance weighted"
            at = f"t = {slices[0]}" if len(slices) == 1 else f"t = {slices[0]}..{slices[-1]}, {how}"
            notes.append(f"{name}: cosh effective masses at {at}")
        if len(masses) == 1:
            out[name] = masses[0] / a
            continue
        if window is not None:
            w = np.full(len(masses), 1.0 / len(masses))
        else:
            for m in masses:
                _gamma(m)
            # weights are fixed numbers: pyerrors propagates the masses' full correlations through the sum
            w = np.array([1.0 / m.dvalue**2 if m.dvalue > 0 else 0.0 for m in masses])
            w = w / w.sum() if w.sum() > 0 else np.full(len(masses), 1.0 / len(masses))
        out[name] = sum((float(wi) * m for wi, m in zip(w[1:], masses[1:])), float(w[0]) * masses[0]) / a
    G2, G4 = G2[: half + 1], G4[: half + 1]
    out.update({f"G2({t})": g for t, g in enumerate(G2)})
    out.update({f"G4({t})": g for t, g in enumerate(G4)})
    return out


def _gamma(obs):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        obs.gamma_method()


def _gap_slices(G, n_slices: int, window):
    """The slices t of a gap's effective masses, and why there are none. The cosh effective mass
    solves C(t) / C(t+1) = cosh(m (t - N/2)) / cosh(m (t + 1 - N/2)), which has a root only
    where C(t) > C(t + 1) > 0 (t + 1 <= N/2): where the correlator is not decaying (noise, or a
    constant path) there is no estimate, and fsolve would return a value that is not a root."""
    half = n_slices // 2

    def decays(t):
        return G[t].value > G[t + 1].value > 0

    if window is not None:
        t0, t1 = window
        ok = all(decays(t) for t in range(t0, t1))
        return (list(range(t0, t1)), "") if ok else ([], f"the correlator does not decay over the window {window}")
    t0, t1 = max(1, n_slices // 16), min(max(2, n_slices // 8), half - 1)
    if t0 >= t1:
        return [], f"a path of {n_slices} slices is too short for a plateau"

    def usable(t):
        if not decays(t):
            return False
        _gamma(G[t + 1])
        return G[t + 1].value > SIGNIFICANT * G[t + 1].dvalue

    slices = []
    for t in range(t0, t1):
        if not usable(t):
            break
        slices.append(t)
    if not slices:
        slices = next(([t] for t in range(t0 - 1, 0, -1) if usable(t)), [])
    tried = f"t = 1..{t0}" if t0 > 1 else "t = 1"
    why = "" if slices else f"the correlator is not above {SIGNIFICANT:g} errors and decaying at {tried}"
    return slices, why


class Measurements(dict):
    """name -> Estimate, and ``notes``: lines on how some were estimated, or why they are left out."""

    def __init__(self, estimates: dict, notes=()):
        super().__init__(estimates)
        self.notes = list(notes)


INDEPENDENCE_SAMPLERS = ("diffusion-exact",)  # run files of independence-Metropolis chains
NMCMC_DISCARD = 0.1  # the fraction of such a chain dropped as burn-in: it starts on a draw from q
NMCMC_ESS_WARN, NMCMC_KHAT_WARN = 0.2, 0.5  # below / above these its Gamma errors come out too small


def exact_discard(n_per_chain: int) -> int:
    """Configurations dropped from the start of each independence-Metropolis chain."""
    return int(NMCMC_DISCARD * n_per_chain)


def _observables(theory, by_chain: dict, shape, window, notes) -> dict:
    """The Obs of a theory's measurements (n_per_chain, n_chains, ...), by_chain["action"] included."""
    if isinstance(theory, Phi4):
        obs = phi4_observables(by_chain, shape)
    elif isinstance(theory, XY):
        obs = xy_observables(by_chain)
    elif isinstance(theory, Oscillator):
        obs = oscillator_observables(by_chain, theory, shape[0], window, notes)
    else:  # pragma: no cover
        raise TypeError(f"no observables for {type(theory).__name__}")
    obs["action/V"] = primary(by_chain["action"] / math.prod(shape), "action/V")
    return obs


def measure(ens, window=None) -> Measurements:
    """All observables of an ensemble (lftaccel.io.Ensemble): name -> Estimate (with ``notes``).

    Errors are the Gamma method's; with MIN_CHAINS_FOR_SPREAD (8) chains or more, an error is
    never below the spread of the chains (with_chain_spread), which includes a disagreement
    between chains that the autocorrelation window cannot see. ``notes`` name the observables
    whose chains disagree beyond chance, measurements that never change along any chain, and
    chains that split R-hat finds apart.

    A file of independence-Metropolis chains (``lftaccel generate --exact``) is measured as the
    neural-MCMC reproductions measure theirs: the first NMCMC_DISCARD of every chain dropped
    (it starts on a draw from the model, not from exp(-S)), and each error the larger of the
    Gamma method's and the spread of the chains' own estimates, sd / sqrt(n_chains) (in
    ``stream_error``). Without that, a command-line audit (150 runs with a known answer, ESS
    0.13, k-hat 0.55) found the pulls' spread 1.47 and 24 % of them beyond 2 sigma."""
    theory = ens.theory
    notes = []
    shape = ens.lattice_shape
    if len(ens.configs) == 0:
        raise ValueError(f"the run holds no configurations yet: it stopped after {len(ens.acceptance_history)} "
                         f"updates (thermalisation: {ens.attrs.get('n_therm', '?')}); continue it with --resume")
    if isinstance(theory, Phi4):
        meas = phi4_measurements(ens.configs)
    elif isinstance(theory, XY):
        meas = xy_measurements(ens.configs, theory.beta)
    elif isinstance(theory, Oscillator):
        meas = oscillator_measurements(ens.configs)
    else:  # pragma: no cover
        raise TypeError(f"no observables for {type(theory).__name__}")
    series = {k: ens.by_chain(v) for k, v in meas.items()}
    series["action"] = ens.by_chain(ens.action)
    independence = ens.attrs.get("sampler") in INDEPENDENCE_SAMPLERS
    n_per_chain, n_chains = series["action"].shape
    start = exact_discard(n_per_chain) if independence else 0
    if start:
        series = {k: v[start:] for k, v in series.items()}
    frozen = [k for k, v in series.items() if np.ndim(v) >= 2 and not np.ptp(v, axis=0).any()]
    if frozen:
        acceptance = float(ens.attrs.get("acceptance", np.nan))
        why = (f"the chains are frozen (acceptance {acceptance:.3g})" if acceptance < 0.01 else
               "a quantity that does not fluctuate here, or chains that do not move")
        notes.append(f"measurements constant along every chain: {', '.join(frozen)}; an error computed from no "
                     f"fluctuation (0, or the chains' spread alone) says nothing: {why}")
    obs = _observables(theory, series, shape, window, notes)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # no fluctuation: said once, in the note above
        out = {k: estimate(o, k) for k, o in obs.items()}
    if not independence:
        out, apart = with_chain_spread(out, obs, n_chains)
        if apart:
            fix = ("each of these errors is the chains' spread" if n_chains >= MIN_CHAINS_FOR_SPREAD else
                   f"these errors are too small (with fewer than {MIN_CHAINS_FOR_SPREAD} chains the spread is not "
                   "used)")
            notes.append("chains disagree beyond their Gamma errors: " + ", ".join(apart) + f"; {fix}. A chain "
                         "not thermalised, or autocorrelations longer than the chains: thermalise or sample longer")
    else:
        out = with_stream_errors(out, lambda c: _observables(theory, {k: v[:, c:c + 1] for k, v in series.items()},
                                                             shape, window, None), n_chains)
        settings = json.loads(ens.attrs.get("sampler_settings", "{}"))
        ess, khat = settings.get("ess"), settings.get("pareto_k")
        notes.append(f"independence Metropolis: the first {start} of each chain's {n_per_chain} dropped as burn-in; "
                     f"errors the larger of the Gamma method's and the {n_chains} chains' spread")
        if (ess is not None and ess < NMCMC_ESS_WARN) or (khat is not None and khat > NMCMC_KHAT_WARN):
            shown = [f"ESS {ess:.3g}"] if ess is not None else []
            shown += [f"k-hat {khat:.2f}"] if khat is not None else []
            notes.append(", ".join(shown) + f": below ESS {NMCMC_ESS_WARN} or above k-hat {NMCMC_KHAT_WARN} the "
                         "errors can still be too small (lftaccel.mcmc.nmcmc); train the model longer or use more "
                         "chains")
    if not ens.attrs.get("complete", True):
        notes.append(f"the run is incomplete: {len(ens.configs)} of the {ens.attrs.get('n_target', '?')} "
                     "configurations asked for are saved (it was stopped; continue it with --resume)")
    if ens.attrs.get("sampler") == "langevin":
        notes.extend(langevin_notes(theory, ens.configs, json.loads(ens.attrs.get("sampler_settings", "{}"))))
    drifting = [] if independence else [
        f"{k} ({z:+.1f} sigma)" for k, z in ((k, drift_z(v)) for k, v in series.items()
                                            if np.ndim(v) == 2 and k not in frozen)
        if z is not None and abs(z) > DRIFT_Z]
    if drifting:
        notes.append(f"still drifting (the first fifth of the saved measurements against the last half, over all "
                     f"chains, beyond {DRIFT_Z:g} sigma): " + ", ".join(drifting) + "; thermalise longer")
    double_well = isinstance(theory, Oscillator) and theory.c2 < 0 < theory.c4
    if double_well and "x" in series:
        crossings = int((np.diff(np.sign(series["x"]), axis=0) != 0).sum())
        if crossings < FEW_TUNNELLINGS * n_chains:
            notes.append(f"the path mean changed sign {crossings} times in {n_chains} chains (under "
                         f"{FEW_TUNNELLINGS} a chain): the chains seldom cross the barrier, so <x>, E1-E0 (the "
                         "tunnelling splitting) and anything odd in x rest on few tunnellings, and the chains "
                         "differ in their kinks for longer than they run, which is why they disagree beyond "
                         "their Gamma errors even when thermalised (the errors are then their spread); sample "
                         "longer")
    # (a double well's path mean is left to the tunnelling count above: at the README's f = 1.4 its
    # tau_int, set by tunnelling, put split R-hat at 1.10-1.13 in half of ten sound runs)
    rhat = {k: split_rhat(v) for k, v in series.items()
            if np.ndim(v) == 2 and k not in frozen and not (k == "x" and double_well)}
    high = sorted(((r, k) for k, r in rhat.items() if r is not None and r > RHAT_WARN), reverse=True)
    if high:
        notes.append(f"chains disagree (split R-hat > {RHAT_WARN}): " + ", ".join(f"{k} {r:.3g}" for r, k in high)
                     + "; a chain not thermalised, stuck in one sector, or too short for its tau_int: "
                       "thermalise or sample longer")
    return Measurements(out, notes)


def langevin_notes(theory, configs, settings: dict) -> list:
    """What a Langevin run's table needs said: its O(eps) bias, always, and a step past half the
    Euler bound on its own saved fields (mcmc.samplers.euler_limit_on). Without them a helper
    found the default phi^4 point's S/V 1.05 % high at eps = 0.01 (12 sigma, no note), and at
    kappa = 0.25, lambda = 0.5, eps = 0.05 S/V 25 % high and chi2 21 % low, with no warning."""
    from .mcmc.samplers import euler_limit_on

    eps = settings.get("eps")
    if eps is None:
        return []
    notes = [f"Langevin has no accept/reject step: every average carries a bias of order eps = {eps:g} (at "
             "`lftaccel sample phi4`'s default point, eps = 0.01 puts S/V 1 % high, far beyond its error); rerun "
             "at eps / 2 and extrapolate linearly to eps = 0 (2 f(eps/2) - f(eps)), or sample with HMC, which is "
             "exact"]
    # A Gaussian mode of curvature k under Euler steps has variance 1 / (k (1 - eps k / 2)): inflated
    # 1 / (1 - eps / limit) at k = 2 / limit, twice from eps = limit / 2, without bound at the limit.
    limit = euler_limit_on(theory, configs)
    if limit is not None and eps >= limit / 2:
        how = (f"Euler steps inflate the variance of a mode that stiff {1 / (1 - eps / limit):.2g}-fold"
               if eps < limit else "such a mode grows without bound")
        notes.append(f"eps = {eps:g} is {eps / limit:.2g} times {limit:.3g}, a lower bound on the Euler stability "
                     f"limit at the saved fields (2 / Gershgorin's bound on the action's curvature at their largest "
                     f"|x|): {how}, so the fields may be far from exp(-S); lower eps")
    return notes


MIN_CHAINS_FOR_SPREAD = 8  # from this many chains on, an error is never below the chains' spread
SPREAD_NOTE_P = 1e-3  # the chains' spread exceeding the Gamma error at this significance is noted


def with_chain_spread(out: dict, obs: dict, n_chains: int) -> tuple[dict, list]:
    """Estimates ``out`` (name -> Estimate of the Obs ``obs[name]``) with the chains' spread
    (chain_spread) as ``stream_error``, and, from MIN_CHAINS_FOR_SPREAD chains on, each error
    the larger of the two (the Gamma method's kept as ``gamma_error``). Also the observables
    whose spread exceeds the Gamma error beyond chance: (spread / Gamma error)^2 (n_c - 1) is
    chi^2 with n_c - 1 degrees of freedom when the chains agree, noted below p = SPREAD_NOTE_P
    (correlator slices and observables that do not fluctuate left out).

    Why: on AR(1) chains (tau_int 1.5, 16 chains of 1000) each offset by N(0, s^2), the Gamma
    errors were 0.76, 0.49, 0.32 of the actual spread of the estimates at s = 0.05, 0.1, 0.2 and
    split R-hat stayed below 1.1; the chains' spread follows the offsets. Where the chains agree
    both estimate the same error and the larger is 6-9 % above it on average with 16 to 8 chains
    (the spread's own scatter, 1 / sqrt(2 (n_c - 1)) = 18-27 %). The test compares two estimates,
    and the Gamma error is the one that errs low where the chains are shorter than its window:
    250 chains of 5 at tau_int 9.5, all in equilibrium, were noted in 100 of 100 repetitions,
    rightly, as the Gamma errors were 0.86 of the actual spread. With 250 chains of 5 measurements
    at tau_int 9.5 the Gamma method's window is capped by the chains' length and its errors came
    out 0.86 of the spread; the chains' spread does not depend on their length."""
    from scipy.stats import chi2

    out = dict(out)
    apart = []
    for k, est in out.items():
        spread = chain_spread(obs[k]) if hasattr(obs[k], "deltas") else None
        if spread is None:
            continue
        gamma = est.error
        wider = n_chains >= MIN_CHAINS_FOR_SPREAD and spread > gamma
        out[k] = dataclasses.replace(est, error=spread if wider else gamma, stream_error=spread,
                                     gamma_error=gamma if wider else None, n_streams=n_chains)
        if gamma > 0 and spread > gamma and not k.startswith(("G(", "G2(", "G4(", "C(")):
            p = chi2.sf((spread / gamma) ** 2 * (n_chains - 1), n_chains - 1)
            if p < SPREAD_NOTE_P:
                apart.append(f"{k} (spread {spread / gamma:.2g}x)")
    return out, apart


def with_stream_errors(out: dict, observables_of, n_streams: int) -> dict:
    """Estimates ``out`` (name -> Estimate) with each error raised to the spread of the
    streams' own estimates, sd / sqrt(n_streams) (kept as ``stream_error``), a check that needs
    no window where rare heavy weights give a long autocorrelation tail. observables_of(c) gives
    stream c's Obs (name -> Obs). An observable that a single stream cannot give (it raises, or
    a non-finite value) keeps the Gamma error alone and ``stream_error`` None."""
    if n_streams < 2:
        return out
    per_stream = []
    for c in range(n_streams):
        try:
            per_stream.append({k: float(o.value) for k, o in observables_of(c).items()})
        except (ValueError, ArithmeticError, RuntimeError):  # an observable one stream alone cannot give
            per_stream.append({})
    out = dict(out)
    for k, est in out.items():
        values = np.array([p.get(k, np.nan) for p in per_stream])
        if np.isfinite(values).all():
            spread = float(values.std(ddof=1) / math.sqrt(n_streams))
            out[k] = dataclasses.replace(est, error=max(est.error, spread), stream_error=spread,
                                         gamma_error=est.error if spread > est.error else None,
                                         n_streams=n_streams)
    return out


RHAT_WARN = 1.1
DRIFT_Z = 4.0  # a drift of the mean through the saved measurements beyond this many sigma is noted
DRIFT_MIN_CHAINS = 4  # drift_z needs this many chains (see its docstring)
FEW_TUNNELLINGS = 10  # double well: sign changes of the path mean per chain below which a note says so


def drift_z(values) -> float | None:
    """(mean of the first fifth - mean of the last half) / its error, over all chains, of
    measurements (n_per_chain, n_chains) in order along each chain: Geweke's comparison, pooled
    over chains, each part's error from the Gamma method. A chain still relaxing from its start
    moves its early mean away from the late one; chains all started on one side of equilibrium
    drift together, which neither the chains' spread nor split R-hat need see. None where a part
    is too short (under MIN_PER_CHAIN a chain), there are fewer than DRIFT_MIN_CHAINS chains, or
    a part does not fluctuate.

    Its limits, measured on stationary AR(1) chains of 256: with 16 chains z had spread 1.01-1.05
    and never passed 4 at any tau_int; with 1 chain at tau_int 20 its spread was 2.1 and 6.5 % of
    the runs passed 4 (the Gamma method's error of the first fifth, 51 values, is too small
    there), hence the least number of chains. It is weak against chains that relax from both
    sides at once: on the overdispersed double-well start its drifts cancel (split R-hat and the
    chains' spread see that case)."""
    v = np.asarray(values, dtype=np.float64)
    n = v.shape[0]
    head, tail = v[: n // 5], v[n - n // 2:]
    if len(head) < MIN_PER_CHAIN or v.ndim != 2 or v.shape[1] < DRIFT_MIN_CHAINS:
        return None
    parts = []
    for part in (head, tail):
        obs = primary(part, "drift")
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            obs.gamma_method()
        if not obs.dvalue > 0:
            return None
        parts.append(obs)
    return float((parts[0].value - parts[1].value) / math.hypot(parts[0].dvalue, parts[1].dvalue))


def split_rhat(values) -> float | None:
    """Gelman-Rubin's potential scale reduction of measurements (n_per_chain, n_chains), each
    chain split in halves (Gelman et al., Bayesian Data Analysis, 3rd ed., sec. 11.4):
    sqrt(((n - 1) / n W + B / n) / W), W the mean within-half variance, B / n the variance of
    the halves' means. ~1 when every chain samples the same distribution; well above it when a
    chain sits elsewhere, e.g. an XY chain at low temperature stuck in a winding sector that the
    others are not in. inf for chains each frozen at a different value; None when it is
    undefined (fewer than 4 per chain, or no variance at all)."""
    v = np.asarray(values, dtype=np.float64)
    n = v.shape[0] // 2
    if n < 2:
        return None
    halves = np.concatenate([v[:n], v[n: 2 * n]], axis=1)
    W = halves.var(axis=0, ddof=1).mean()
    B_over_n = halves.mean(axis=0).var(ddof=1)
    if not W > 0:
        return float("inf") if B_over_n > 0 else None
    return float(np.sqrt(((n - 1) / n * W + B_over_n) / W))


FEW_EFFECTIVE = 50  # below this many effective samples the table marks an error as rough
# An error taken from the spread of fewer chains than this is marked too: it rests on n_c - 1
# degrees of freedom, and its pulls follow Student's t, whose spread sqrt(nu / (nu - 2)) passes
# the 1.14 of a Gamma error at ~50 effective samples below nu = 9.
FEW_STREAMS = 10
# The observables whose rows are also marked when one they are built from is: a function of the
# magnetisation's moments rests on as few independent values of M as M's own error does, though
# its own tau_int is shorter (M^2's is about half of M's).
BUILT_FROM = {"chi2": ("M",), "chi2_abs": ("M", "|M|"), "U_L": ("M",), "chi_2pt": ("M",)}


def format_table(estimates: dict, *, skip_prefixes=("G(", "G2(", "G4(")) -> str:
    """A plain-text table of value(error) and tau_int. An observable with fewer than
    FEW_EFFECTIVE effective samples (Estimate.n_effective: N / (2 tau_int), or as many as an error
    from the chains' spread implies), or built from one that has (BUILT_FROM), is marked: its error
    is itself uncertain. (Measured on AR(1) chains at tau_int = 9.5, 300 repetitions: the pull's
    spread is 1.54, 1.33, 1.23, 1.14 for one chain of 5, 11, 21, 53 effective samples, and 1.0-1.1
    for 8 to 40 chains of 10-53 in all. A susceptibility, a variance, is more fragile: its error
    falls with its value. The free field on 8x8 at kappa = 0.23, Metropolis, 40 seeds: chi2's
    pulls spread 1.55 and 1.41 at 33 and 38 effective samples of the magnetisation, 0.95 at 140
    and 500; at 20 the mark missed those. Hence 50, counted on M for the rows built from it: on
    AR(1) magnetisations with 32-42 effective samples, chi2_abs and U_L, whose own counts were
    above 50, covered the truth within 2 errors in only 85-87 % of 400 repetitions.) The Binder
    cumulant's Gamma error runs 5-10 % small at tau_int(M) of 10 and more even with thousands of
    effective samples (AR(1): its error, a fourth moment's, is skewed, with a median 20 % low)."""
    rows = [f"{'observable':<14} {'value':>14} {'error':>11} {'tau_int':>9}"]
    rough = False
    for name, e in estimates.items():
        if name.startswith(skip_prefixes):
            continue
        tau = f"{e.tau_int:9.2f}" if e.tau_int is not None else f"{'-':>9}"
        mark = ""
        counts = [e.n_effective] + [estimates[k].n_effective for k in BUILT_FROM.get(name, ()) if k in estimates]
        few_streams = e.gamma_error is not None and e.n_streams is not None and e.n_streams < FEW_STREAMS
        if few_streams or any(n is not None and n < FEW_EFFECTIVE for n in counts):
            mark, rough = " *", True
        rows.append(f"{name:<14} {e.value:14.6g} {e.error:11.3g} {tau}{mark}")
    if rough:
        of_m = " (of M, for the rows built from it)" if any(k in estimates for k in BUILT_FROM) else ""
        rows.append(f"* fewer than {FEW_EFFECTIVE} effective samples N / (2 tau_int){of_m}, or an error from the "
                    f"spread of fewer than {FEW_STREAMS} chains: the error and tau_int are rough; sample longer")
    return "\n".join(rows)

"""HMC, local Metropolis and Langevin samplers with one interface.

A sampler owns a batch of independent chains, shape (n_chains, *lattice_shape), on
the CPU or a CUDA device. ``update()`` advances every chain by one unit (one HMC
trajectory, one Metropolis sweep, ``n_steps`` Langevin steps) through one fused kernel
call, and returns the acceptance of each chain. The update counter is the Philox
step, so a sampler's whole history is fixed by (seed, chain index): a run resumed
from ``state_dict()`` continues exactly the streams it would have drawn.

Tuning: ``thermalize(n, tune=True)`` adapts the step size (HMC's eps, Metropolis's
delta) toward ``target_acceptance`` with a decreasing gain; it is frozen afterwards,
so the sampling phase is an exact Markov chain.
"""

from __future__ import annotations

import abc
import math
import warnings

import numpy as np
import torch

from .. import _C, fourier
from .._kernels import _mark_written, _nthreads, _raw, check_int, check_param, stencil
from ..theories import XY, Oscillator, Phi4
from . import kernels as K

__all__ = ["Sampler", "HMC", "Metropolis", "Langevin", "make_sampler"]

_JITTER_PURPOSE = 7  # kJitter, csrc/include/lftaccel/mcmc.hpp (6, 8 and 9 are the diffusion models')


def _check_shape(theory, shape):
    shape = tuple(int(s) for s in shape)
    if not (theory.min_dims <= len(shape) <= theory.max_dims) or any(s < 1 for s in shape):
        lo, hi = theory.min_dims, theory.max_dims
        how_many = f"{lo}..{hi} positive extents" if lo < hi else f"{lo} positive extent{'s' * (lo > 1)}"
        what = " (the number of time slices)" if isinstance(theory, Oscillator) else ""
        raise ValueError(f"shape must have {how_many}{what} for {type(theory).__name__}, got {shape}")
    return shape


def _check_bounded(theory, shape):
    """The free field (lambda = 0) is a Gaussian only where its lowest mode has a positive mass
    1 - 2 kappa sum_mu cos p_mu, minimised over the lattice's momenta p_mu = 2 pi k / L_mu:
    p = 0 for kappa > 0 (bounded for kappa < 1/(2d) on every lattice), and for kappa < 0 the
    momentum nearest pi (cos = -1 at even L, -cos(pi/L) at odd L, +1 at L = 1, so a lattice of
    odd or unit extents bounds larger |kappa|). Where that mass is <= 0, exp(-S) cannot be
    normalised and a sampler's fields would run away."""
    if not (isinstance(theory, Phi4) and theory.lam == 0.0):
        return
    kappa = theory.kappa
    cosines = [1.0 if kappa >= 0 else math.cos(2 * math.pi * (L // 2) / L) for L in shape]
    mass = 1.0 - 2.0 * kappa * sum(cosines)
    if mass <= 1e-12:  # (at the bound itself cos(2 pi/3) rounds the mass to +2e-16)
        raise ValueError(f"the free field (lam = 0) at kappa = {kappa} on {'x'.join(map(str, shape))} is "
                         f"unbounded below: its lowest mode has mass 1 - 2 kappa sum cos p = {mass:.3g} <= 0 "
                         f"(|kappa| < 1/(2d) = {1.0 / (2 * len(shape)):g} is bounded on every lattice)")


DEFAULT_THERM = 200  # thermalisation updates of a run that does not say (samplers.default_thermalisation)
THERM_PER_TUNNEL = 10  # double well: updates per e^{S0}, the inverse of the kink rate's suppression
MAX_DEFAULT_THERM = 200_000


def instanton_action(theory) -> float | None:
    """S0 = (4/3) sqrt(2 m c4) x_min^3, the Euclidean action of a kink from one well to the other
    (V - V_min = c4 (x^2 - x_min^2)^2), for an oscillator with two wells; None otherwise. Kinks
    (tunnelling events) are created and die out at rates suppressed by exp(-S0)."""
    well = _double_well(theory)
    if well is None:
        return None
    return 4.0 / 3.0 * math.sqrt(2 * theory.m * theory.c4) * well[0] ** 3


# XY: updates per L^2 (L the largest extent) by sampler. Spin waves relax diffusively under
# updates that refresh the momenta each trajectory or move sites locally (z ~ 2); measured by a
# helper at beta = 1.12 (near the BKT point), L = 32, 16 chains: after 200 updates from a hot
# start HMC's helicity modulus read 0.612 against 0.632(2) in all of 8 runs (7 with no note),
# Metropolis' 0.23; after 2000 (HMC, either start) and 6000 (Metropolis, cold) they agreed.
XY_THERM_PER_L2 = {"hmc": 2, "metropolis": 6, "langevin": 6}


def default_thermalisation(theory, shape=None, sampler: str = "hmc") -> int:
    """The thermalisation of a run that gives none: DEFAULT_THERM updates; for XY on a lattice
    of largest extent L, at least XY_THERM_PER_L2[sampler] L^2; and for a double well
    at least THERM_PER_TUNNEL exp(S0) (instanton_action), rounded up to a hundred: its kink number
    equilibrates only as fast as kinks cross the barrier. Measured at beta = 20, N = 128, 16 chains
    of 256 saved paths 5 updates apart (f = 1.7, S0 = 6.55, exact <x^2> 2.567 from the transfer
    matrix): after 200 updates <x^2> was 4 sigma low in all of 12 runs from a hot start (1.9 kinks a
    path against 0.56 in equilibrium) and 3 sigma high from paths in a well (none); after 4000 (this
    rule: 7000) the pulls of 6 runs averaged -0.07. Calibrated for HMC (10 leapfrog steps, eps
    tuned to 80 %) only: a Metropolis sweep or a Langevin update moves a kink differently, and
    no other sampler was measured. Capped at MAX_DEFAULT_THERM (the rule asks
    for 4e5 at f = 2): past that, set n_therm yourself, and read the notes of measure()."""
    if isinstance(theory, XY) and shape is not None:
        per_l2 = XY_THERM_PER_L2.get(sampler, max(XY_THERM_PER_L2.values()))
        return int(min(MAX_DEFAULT_THERM, max(DEFAULT_THERM, per_l2 * max(shape) ** 2)))
    s0 = instanton_action(theory)
    if s0 is None:
        return DEFAULT_THERM
    return int(min(MAX_DEFAULT_THERM,
                   max(DEFAULT_THERM, 100 * math.ceil(THERM_PER_TUNNEL * math.exp(min(s0, 50.0)) / 100))))


def _double_well(theory):
    """(x_min, harmonic width there) of an oscillator whose potential has two wells, else None.
    The width is that of the harmonic approximation at the minimum at the theory's beta, capped
    at a quarter of x_min so that no slice starts across the barrier."""
    if not (isinstance(theory, Oscillator) and theory.c2 < 0 < theory.c4):
        return None
    position = math.sqrt(-theory.c2 / (2 * theory.c4))
    omega = math.sqrt(-4 * theory.c2 / theory.m)  # V'' = 2 c2 + 12 c4 x_min^2 = -4 c2 at the minimum
    width = math.sqrt(1 / (math.tanh(theory.beta * omega / 2) * 2 * theory.m * omega))
    return position, min(width, position / 4)


class Sampler(abc.ABC):
    """Base of the samplers: state, counters, tuning, checkpoint state.

    ``start``: 'hot' (random; overdispersed for XY and a double well, see _init_field) or 'cold'
    (ordered, _ordered_field). The random numbers depend on (seed, chain) and the update only, not
    on the fields, so two runs of one seed from different starts draw the same momenta and
    accept/reject uniforms, and their HMC chains can coalesce (a helper found phi^4 chains in the
    symmetric phase from either start equal to 6e-16 after 200 updates; chains in opposite wells
    of the broken phase need not). Compare starts under different seeds."""

    name = ""
    target_acceptance = 0.5
    tunable = True

    def __init__(self, theory, shape, *, n_chains: int = 8, seed: int = 0, dtype=torch.float64,
                 device="cpu", start: str = "hot", chain_offset: int = 0):
        if not isinstance(theory, (Phi4, XY, Oscillator)):
            raise TypeError(f"theory must be a Phi4, XY or Oscillator, got {type(theory).__name__}")
        if dtype not in (torch.float32, torch.float64):
            raise TypeError(f"dtype must be torch.float32 or torch.float64, got {dtype}")
        n_chains = check_int(n_chains, "n_chains")
        if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)) or not 0 <= seed < 2**32:
            raise ValueError(f"seed must be an integer in [0, 2^32), got {seed!r}")
        seed = int(seed)
        if start not in ("hot", "cold"):
            raise ValueError(f"start must be 'hot' or 'cold', got {start!r}")
        self.theory = theory
        self.shape = _check_shape(theory, shape)
        ndim = getattr(theory, "standard_ndim", None)
        if ndim is not None and ndim != len(self.shape):
            raise ValueError(f"theory came from Phi4.from_standard(..., ndim={ndim}), but shape {self.shape} has "
                             f"{len(self.shape)} dimensions, on which its couplings are another standard theory: "
                             f"convert with ndim={len(self.shape)}")
        _check_bounded(theory, self.shape)
        self.n_chains, self.seed, self.chain_offset = n_chains, seed, K._int(chain_offset, "chain_offset")
        self.dtype, self.device = dtype, torch.device(device)
        if self.device.type == "cuda" and not torch.cuda.is_available():
            raise ValueError("device is CUDA but no CUDA device is visible")
        self.start = start
        self.n_updates = 0          # also the Philox step of the next update
        self.n_tuned = 0            # updates spent tuning
        self.divergent = 0          # rejected non-finite updates, over all chains
        self.acceptance = []        # mean acceptance of each update
        self.busy = False
        # where the tuning starts: with the seed it fixes the thermalisation, so the file keeps it
        self.initial_step_size = self.step_size
        self._init_field()

    # ---- the state ----
    def _init_field(self):
        # Hot starts depend on (seed, chain_offset): runs split over chain offsets differ.
        rng = np.random.default_rng([self.seed, self.chain_offset, 0x5747])
        full = (self.n_chains, *self.shape)
        well = _double_well(self.theory)
        if well is not None:
            # A path of independent normal slices crosses a high barrier between most pairs of
            # neighbours, and kink-antikink pairs then die out over thousands of trajectories (see
            # default_thermalisation); a path in one well, with the harmonic width there, has none,
            # and kink pairs appear as slowly. Hot: every other chain (by global index) each way,
            # from above and from below the equilibrium kink number, so that chains not yet there
            # disagree, which the chains' spread (the errors) and the notes of measure() see; the
            # well's sign at random. Cold: all chains in the positive well (the barrier top,
            # x = 0, would start every chain full of kinks).
            position, width = well
            sign = np.ones((self.n_chains, 1)) if self.start == "cold" else rng.choice([-1.0, 1.0], (self.n_chains, 1))
            x = sign * position + (0.0 if self.start == "cold" else width) * rng.standard_normal(full)
            if self.start == "hot":
                kinky = (self.chain_offset + np.arange(self.n_chains)) % 2 == 1
                x[kinky] = rng.standard_normal((int(kinky.sum()), *self.shape))
        elif self.start == "cold":
            x = np.broadcast_to(_ordered_field(self.theory, self.shape), full).copy()
        elif isinstance(self.theory, XY):
            # Overdispersed as the double well's: every other chain (by global index) ordered,
            # the others random. At low temperature a random start freezes in vortices and
            # windings, and near the BKT point it relaxes over thousands of updates; chains from
            # both ends that have not met disagree, which the errors and notes then show (a
            # helper found runs from random starts alone biased with no note).
            x = rng.uniform(-math.pi, math.pi, full)
            x[(self.chain_offset + np.arange(self.n_chains)) % 2 == 0] = 0.0
        else:
            x = rng.standard_normal(full)
        self._set_field(torch.from_numpy(x).to(dtype=self.dtype, device=self.device))

    def _set_field(self, x):
        self._x = x.contiguous()

    @property
    def field(self) -> torch.Tensor:
        """The chains' current configurations, (n_chains, *shape), in real space."""
        return self._x

    # ---- updates ----
    @abc.abstractmethod
    def _update(self) -> torch.Tensor:
        """One unit update of every chain; returns acceptance per chain (float64)."""

    @property
    @abc.abstractmethod
    def step_size(self) -> float: ...

    @step_size.setter
    @abc.abstractmethod
    def step_size(self, value: float): ...

    def update(self) -> torch.Tensor:
        # While busy, the field may be ahead of the counters: no checkpoint may be taken.
        self.busy = True
        acc = self._update()
        self.n_updates += 1
        self.acceptance.append(self._mean_acceptance(acc))
        self.busy = False
        return acc

    def _mean_acceptance(self, acc) -> float:
        return float(acc.mean())

    def thermalize(self, n: int, *, tune: bool = True, progress=None):
        """n updates; with tune, adapt the step size toward target_acceptance."""
        for _ in range(n):
            acc = float(self.update().mean())
            if tune and self.tunable:
                self.n_tuned += 1
                gain = 1.0 / (1.0 + self.n_tuned / 10.0) ** 0.6
                self.step_size = self.step_size * math.exp(gain * (acc - self.target_acceptance))
            if progress is not None:
                progress.update(1)
                progress.set_postfix(acc=f"{acc:.2f}", step=f"{self.step_size:.3g}", refresh=False)

    # ---- description and checkpoints ----
    def settings(self) -> dict:
        return {"sampler": self.name, "n_chains": self.n_chains, "seed": self.seed,
                "chain_offset": self.chain_offset, "dtype": str(self.dtype).replace("torch.", ""),
                "start": self.start, "initial_step_size": self.initial_step_size, "step_size": self.step_size,
                "target_acceptance": self.target_acceptance}

    def state_dict(self) -> dict:
        return {"field": self._x.detach().cpu().numpy().copy(), "n_updates": self.n_updates,
                "n_tuned": self.n_tuned, "divergent": self.divergent, "step_size": self.step_size,
                "acceptance": np.asarray(self.acceptance, dtype=np.float64)}

    def load_state_dict(self, state: dict):
        field = torch.as_tensor(np.asarray(state["field"]))
        if tuple(field.shape) != (self.n_chains, *self.shape):
            raise ValueError(f"checkpoint field has shape {tuple(field.shape)}, the sampler "
                             f"{(self.n_chains, *self.shape)}")
        self._set_field(field.to(dtype=self.dtype, device=self.device))
        self.n_updates = int(state["n_updates"])
        if self.n_updates < 0:  # it is the Philox step of the next update
            raise ValueError(f"checkpoint n_updates must be >= 0, got {self.n_updates}")
        self.n_tuned = int(state["n_tuned"])
        self.divergent = int(state["divergent"])
        self.step_size = float(state["step_size"])
        self.acceptance = [float(a) for a in np.asarray(state["acceptance"])]


class HMC(Sampler):
    """Hybrid Monte Carlo: one fused trajectory of ``n_leapfrog`` steps per update.

    The step size of each trajectory is eps (1 + jitter (2u - 1)), u uniform and drawn
    from (seed, update) alone: a fixed trajectory length would leave the modes whose
    period divides it almost unmoved (long autocorrelations of the low modes); the
    jitter breaks that resonance and keeps detailed balance (it does not depend on the
    state). For the oscillator, ``fourier=True`` runs in Matsubara coordinates with
    Fourier acceleration (per-mode masses matched to the modes' stiffness).

    The trajectory is ``n_leapfrog`` steps of eps (default 10), or, with ``trajectory_length``
    tau, tau / eps steps rounded up and shortened to length tau: the length then stays fixed
    while eps is tuned, as lattice codes quote it (the jitter then moves tau by the same factor
    as it moves eps otherwise). With Fourier acceleration every mode oscillates at one frequency
    omega (:func:`kernels.fourier_mode_frequency`), and ``trajectory_length='quarter-period'``
    takes tau = pi / (2 omega): in the quadratic approximation each trajectory then moves every
    mode to its fresh momentum's position. A whole number of half periods leaves the modes where
    they started; the acceptance-tuned eps with 10 steps lands near a whole period at N = 64
    (harmonic oscillator, beta = 10: omega tau = 6.2 rad, tau_int of <x^2> 2.7 against 0.8 at
    the quarter period, with 3 steps a trajectory). In a double well the barrier is crossed by
    the motion the quadratic approximation leaves out, and longer trajectories cross it more
    often (beta = 10, N = 64: tau_int of the path's mean 0.5 at 10 steps, 7.2 at the quarter
    period for f = 1; 27 and 226 for f = 1.4), so the default stays 10 steps."""

    name = "hmc"
    target_acceptance = 0.8
    max_leapfrog = 100_000  # more steps in one trajectory means eps has collapsed

    def __init__(self, theory, shape, *, eps: float = 0.1, n_leapfrog: int | None = None, fourier: bool = False,
                 jitter: float = 0.2, trajectory_length: float | str | None = None, **kw):
        self.eps = check_param(eps, "eps", low=0.0, low_open=True)
        self.jitter = check_param(jitter, "jitter", low=0.0)
        if self.jitter >= 1:
            raise ValueError(f"jitter must be in [0, 1), got {jitter}")
        if fourier and not isinstance(theory, Oscillator):
            raise ValueError("fourier=True is for the Oscillator only")
        self.fourier = bool(fourier)
        if n_leapfrog is not None and trajectory_length is not None:
            raise ValueError("give n_leapfrog or trajectory_length, not both")
        if trajectory_length is None:
            self.n_leapfrog = 10 if n_leapfrog is None else check_int(n_leapfrog, "n_leapfrog")
            self.trajectory_length = None
        else:
            self.n_leapfrog = None  # each trajectory's count: trajectory(update), last_n_leapfrog
            self.trajectory_length = self._length(theory, shape, trajectory_length)
        self.last_n_leapfrog = self.n_leapfrog
        self.leapfrog_steps = 0  # over all trajectories: what a run cost, with a fixed length
        super().__init__(theory, shape, **kw)
        n = (self.n_chains, *self.shape)
        k = 5 if self.fourier else 3
        self._work = torch.empty((k, *n), dtype=self.dtype, device=self.device)
        self._energies = torch.empty((4, self.n_chains), dtype=torch.float64, device=self.device)
        self._accepted = torch.empty(self.n_chains, dtype=torch.uint32, device=self.device)
        if self.fourier:
            N = self.shape[0]
            self._basis = K.fourier_basis(N, dtype=self.dtype, device=self.device)
            self._inv_mass = K.fourier_inverse_masses(theory, N, dtype=self.dtype, device=self.device)

    def _set_field(self, x):
        self._x = x.contiguous()
        if self.fourier:
            self._c = fourier.to_fourier(self._x).contiguous()

    @property
    def field(self):
        if self.fourier:
            self._x = fourier.from_fourier(self._c)
        return self._x

    def state_dict(self):
        self.field  # noqa: B018 (brings the real-space field up to date)
        state = super().state_dict()
        state["leapfrog_steps"] = self.leapfrog_steps
        if self.fourier:  # the coefficients themselves: a round trip through x is not bitwise
            state["coeffs"] = self._c.detach().cpu().numpy().copy()
        return state

    def load_state_dict(self, state: dict):
        super().load_state_dict(state)
        # (a checkpoint from before the count: exact at a fixed step count, unknown otherwise)
        fixed = None if self.n_leapfrog is None else self.n_leapfrog * self.n_updates
        steps = state.get("leapfrog_steps", fixed)
        self.leapfrog_steps = None if steps is None else int(steps)
        if self.fourier:
            if "coeffs" not in state:
                raise ValueError("the checkpoint has no Fourier coefficients (written by a real-space run?)")
            coeffs = torch.as_tensor(np.asarray(state["coeffs"]))
            if tuple(coeffs.shape) != (self.n_chains, *self.shape):
                raise ValueError(f"checkpoint coeffs have shape {tuple(coeffs.shape)}, the sampler "
                                 f"{(self.n_chains, *self.shape)}")
            coeffs = coeffs.to(dtype=self.dtype, device=self.device).contiguous()
            # the field and its coefficients are saved together: they must be one state
            tol = 1e-10 if self.dtype == torch.float64 else 1e-4
            if not torch.allclose(fourier.from_fourier(coeffs), self._x, rtol=tol, atol=tol):
                raise ValueError("checkpoint coeffs are not the Fourier coefficients of its field")
            self._c = coeffs

    def _length(self, theory, shape, value) -> float:
        if isinstance(value, str):
            if value != "quarter-period":
                raise ValueError(f"trajectory_length must be a positive number or 'quarter-period', got {value!r}")
            if not self.fourier:
                raise ValueError("trajectory_length='quarter-period' needs fourier=True (one frequency for all modes)")
            if theory.c2 == 0:
                raise ValueError("trajectory_length='quarter-period' needs a quadratic term (c2 != 0): a pure "
                                 "quartic potential has no frequency to take a quarter period of")
            tau = math.pi / (2 * K.fourier_mode_frequency(theory, _check_shape(theory, shape)[0]))
        else:
            # (shorter than the step-size floor, a trajectory would leave the chains where they are)
            tau = check_param(value, "trajectory_length", low=1e-6)
        if not tau * (1 + self.jitter) / self.eps <= self.max_leapfrog:
            raise ValueError(f"trajectory_length {tau:.4g} is too long: over {self.max_leapfrog} leapfrog steps of "
                             f"eps = {self.eps:.3g} a trajectory")
        return tau

    @property
    def step_size(self):
        return self.eps

    @step_size.setter
    def step_size(self, value):
        # A step longer than a fixed trajectory would be shortened to it: the tuning stops there.
        cap = 10.0 if self.trajectory_length is None else min(10.0, self.trajectory_length)
        self.eps = float(min(max(value, 1e-6), cap))

    def trajectory_eps(self, update: int) -> float:
        """The step size of trajectory ``update``: eps jittered by a uniform of (seed, update),
        the first word of the Philox block (seed, chain_offset, site 0, step update, purpose
        kJitter) (csrc/include/lftaccel/mcmc.hpp). One C call, 0.2 us: numpy's seeded
        generator, used before, cost 9 us, a tenth of a 16 x 32^2 trajectory."""
        w = _C.philox4x32_10([0, update & 0xFFFFFFFF, update >> 32, _JITTER_PURPOSE],
                             [self.seed, self.chain_offset])[0]
        u = (w + 0.5) / 2.0**32
        return self.eps * (1 + self.jitter * (2 * u - 1))

    def trajectory(self, update: int) -> tuple[float, int]:
        """(step size, number of steps) of trajectory ``update``: n_leapfrog steps of
        trajectory_eps(update), or, with a trajectory_length tau, ceil(tau' / eps) steps of
        length tau' = tau trajectory_eps(update) / eps. Both depend on (seed, update) and the
        frozen eps alone, never on the state."""
        eps = self.trajectory_eps(update)
        if self.trajectory_length is None:
            return eps, self.n_leapfrog
        tau = self.trajectory_length * (eps / self.eps)
        if not tau / self.eps <= self.max_leapfrog:  # (the length itself was checked against the initial eps)
            raise ValueError(f"trajectory_length {self.trajectory_length:.4g} takes over {self.max_leapfrog} leapfrog "
                             f"steps of eps = {self.eps:.3g}: eps has collapsed")
        n = math.ceil(tau / self.eps)
        return tau / n, n

    def _update(self):
        eps, n_steps = self.trajectory(self.n_updates)
        self.last_n_leapfrog = n_steps
        if self.leapfrog_steps is not None:
            self.leapfrog_steps += n_steps
        args = dict(eps=eps, n_steps=n_steps, seed=self.seed,
                    step=self.n_updates,
                    chain_offset=self.chain_offset, work=self._work, energies=self._energies,
                    accepted=self._accepted)
        if self.fourier:
            e, acc = K.hmc_fourier_trajectory(self.theory, self._c, basis=self._basis, inv_mass=self._inv_mass,
                                              check_masses=False, **args)
        elif self._direct_cpu():
            self._trajectory_cpu(eps, n_steps)
        else:
            e, acc = K.hmc_trajectory(self.theory, self._x, **args)
        if self.device.type == "cpu":
            # dH and the acceptances through numpy views of the kernel's outputs: five tiny torch
            # ops cost 15 us a trajectory, numpy 4 us.
            _, _, e, accepted = self._cpu_buffers()
            dH = e[2] + e[3] - e[0] - e[1]
            self.last_dH = torch.from_numpy(dH)
            if not math.isfinite(float(dH.sum())):  # (a sum of finite dH overflows only near 1e308)
                self.divergent += int(np.count_nonzero(~np.isfinite(dH)))
            return torch.from_numpy(accepted.astype(np.float64))
        dH = e[2] + e[3] - e[0] - e[1]
        self.last_dH = dH
        self.divergent += int((~torch.isfinite(dH)).sum())
        return acc.to(torch.float64)

    def _direct_cpu(self) -> bool:
        """Whether a trajectory takes _trajectory_cpu: a CPU field as the sampler made it. A field
        that requires grad, has been made non-contiguous or of another dtype in place goes through
        hmc_trajectory, whose errors name what is wrong."""
        x = self._x
        return x.is_cpu and not x.requires_grad and x.dtype == self.dtype and x.is_contiguous()

    def _cpu_buffers(self):
        """numpy views of the CPU trajectory's buffers (field, work, energies, accepted), made
        again when the field is another tensor or has moved (a state loaded). Copies and pickles
        leave them out (__getstate__): a copy's would be copies, not views of its tensors."""
        x = self._x
        key = (id(x), x.data_ptr(), tuple(x.shape), x.stride(), x.dtype)
        if getattr(self, "_cpu_key", None) != key:
            self._cpu_views = tuple(_raw(t, name) for t, name in ((x, "x"), (self._work, "work"),
                                                                 (self._energies, "energies"),
                                                                 (self._accepted, "accepted")))
            self._cpu_key = key
        return self._cpu_views

    def __getstate__(self):
        state = self.__dict__.copy()
        state.pop("_cpu_views", None)
        state.pop("_cpu_key", None)
        return state

    def _trajectory_cpu(self, eps: float, n_steps: int):
        """K.hmc_trajectory on the sampler's own CPU buffers without its views and buffer checks,
        which the sampler's buffers pass by construction (_direct_cpu): they cost 10 us a
        trajectory, 10 % of a 16 x 32^2 one and most of a small lattice's. The numbers are checked
        as there, and the compiled kernel checks the buffers again."""
        kind, params = K._theory_args(self.theory)
        _C.hmc(*self._cpu_buffers(), kind, params, check_param(eps, "eps"), K._int(n_steps, "n_steps", 1),
               K._int(self.seed, "seed"), K._int(self.n_updates, "step"), K._int(self.chain_offset, "chain_offset"),
               True, True, _nthreads(), 0)
        _mark_written([self._x, self._work, self._energies, self._accepted])

    def _mean_acceptance(self, acc) -> float:
        # numpy's mean of a CPU view, 1 us against torch's 4: the same on 0/1 values (an exact
        # integer sum over n), which Metropolis's fractions are not
        return float(acc.numpy().mean() if acc.is_cpu else acc.mean())

    def settings(self):
        out = {**super().settings(), "eps": self.eps, "n_leapfrog": self.n_leapfrog, "fourier": self.fourier,
               "jitter": self.jitter}
        if self.trajectory_length is not None:  # absent otherwise, as in files from before it existed
            out["trajectory_length"] = self.trajectory_length
        return out


class Metropolis(Sampler):
    """Checkerboard local Metropolis (phi^4 and XY, even extents): one sweep per update,
    proposals x -> x + delta (2u - 1)."""

    name = "metropolis"
    target_acceptance = 0.5

    def __init__(self, theory, shape, *, delta: float = 1.0, **kw):
        if not isinstance(theory, (Phi4, XY)):
            raise TypeError(f"Metropolis samples Phi4 or XY, got {type(theory).__name__}")
        if any(s % 2 for s in shape):
            raise ValueError(f"checkerboard Metropolis needs even lattice extents, got shape {tuple(shape)}")
        self.delta = check_param(delta, "delta", low=0.0, low_open=True)
        super().__init__(theory, shape, **kw)
        self._accepted = torch.empty(self.n_chains, dtype=torch.float64, device=self.device)
        self._volume = math.prod(self.shape)

    @property
    def step_size(self):
        return self.delta

    @step_size.setter
    def step_size(self, value):
        # An XY proposal wider than 2 pi is no wider than 2 pi.
        self.delta = float(min(max(value, 1e-6), math.pi if isinstance(self.theory, XY) else 100.0))

    def _update(self):
        acc = K.metropolis_sweeps(self.theory, self._x, delta=self.delta, n_sweeps=1, seed=self.seed,
                                  step=self.n_updates, chain_offset=self.chain_offset, accepted=self._accepted)
        return acc / self._volume

    def settings(self):
        return {**super().settings(), "delta": self.delta}


def _ordered_field(theory, shape) -> np.ndarray:
    """The cold start: phi^4 at the minimum of its action over fields phi0 s(x), s = 1 for kappa
    >= 0 and the staggered (-1)^(x_1 + ... + x_d) for kappa < 0 on even extents (s = 1 for
    kappa < 0 elsewhere, where the staggered pattern does not close): per site, with h = |kappa|
    (staggered) or kappa, (1 - 2 lambda - 2 h d) phi0^2 + lambda phi0^4, least at phi0^2 =
    (2 h d - 1 + 2 lambda) / (2 lambda) where that is positive (the classical, mean-field broken
    phase; fluctuations move the true transition), else at phi0 = 0. A
    field of zeros was the cold start before: the top of the double well in the broken phase, so
    no ordered start (at kappa = 0.3 on 32^2 a helper found |M| 1.62-1.93 after 200 updates from
    it, against 2.087 from phi0). XY: theta = 0; the oscillator: x = 0 (a double well's wells are
    set in _init_field)."""
    field = np.zeros(shape)
    if isinstance(theory, Phi4) and theory.lam > 0:
        staggered = theory.kappa < 0 and all(L % 2 == 0 for L in shape)
        hop = -theory.kappa if staggered else theory.kappa  # s(x) s(x + mu) = -1 for every link
        phi0_sq = (2 * hop * len(shape) - 1 + 2 * theory.lam) / (2 * theory.lam)
        if phi0_sq > 0:
            field[...] = math.sqrt(phi0_sq)
            if staggered:
                field *= (-1.0) ** sum(np.indices(shape))
    return field


def _euler_limit(theory, shape) -> float | None:
    """2 / lambda_max, lambda_max the largest eigenvalue of the action's Hessian at its classical
    minimum on this lattice (phi^4: phi = 0; XY: theta uniform; the oscillator: the potential's
    minimum): an Euler (Langevin) step of eps >= it multiplies that mode by |1 - eps lambda_max|
    >= 1 every step. With c_mu(k) = 2 cos(2 pi k / L_mu):
      phi^4       lambda_max = 2 (1 - 2 lambda) - 2 kappa sum_mu c_mu, c_mu the extreme that
                  maximises it (the staggered mode for kappa > 0);
      XY          beta sum_mu (2 - min_k c_mu), for beta > 0;
      oscillator  (m / a) (2 - min_k c) + a V''(x_min), V'' = 2 c2 at 0 or -4 c2 in a double well.
    None where the point is no minimum (lambda_max <= 0, beta <= 0)."""
    cos_range = [2 * np.cos(2 * math.pi * np.arange(L) / L) for L in shape]
    if isinstance(theory, Phi4):
        hop = sum(float(c.min() if theory.kappa > 0 else c.max()) for c in cos_range)
        lam_max = 2 * (1 - 2 * theory.lam) - 2 * theory.kappa * hop
    elif isinstance(theory, XY):
        lam_max = theory.beta * sum(2 - float(c.min()) for c in cos_range)
    elif isinstance(theory, Oscillator):
        a = theory.spacing(shape[0])
        curvature = -4 * theory.c2 if _double_well(theory) else 2 * theory.c2
        lam_max = theory.m / a * (2 - float(cos_range[0].min())) + a * curvature
    else:
        return None
    return 2.0 / lam_max if lam_max > 0 else None


def euler_limit_on(theory, configs) -> float | None:
    """2 / b, b Gershgorin's bound on the largest eigenvalue of the action's Hessian at the
    fields ``configs`` (n, *lattice): an Euler step of eps >= it can amplify the stiffest local
    modes there. The bound at the classical minimum (_euler_limit) misses the quartic term's
    curvature 12 lambda phi^2 where the fields are large: at kappa = 0.25, lambda = 0.5 on 8^2
    it allowed eps < 1, and a helper's chains ran away from eps = 0.07, while at eps = 0.05
    S/V came out 25 % high. Per site (row sum of |H|):
      phi^4       2 (1 - 2 lambda) + 12 lambda phi^2 + 4 |kappa| d;
      oscillator  4 m / a + a V''(x), V'' = 2 c2 + 12 c4 x^2.
    None for XY (its bound, 4 d beta, is the classical minimum's on even extents) and where the
    bound is not positive."""
    if not isinstance(theory, (Phi4, Oscillator)):
        return None
    configs = np.asarray(configs)
    big_sq = max(float(np.max(configs)), -float(np.min(configs))) ** 2  # (no squared copy of the ensemble)
    if isinstance(theory, Phi4):
        d = np.ndim(configs) - 1
        bound = 2 * (1 - 2 * theory.lam) + 12 * theory.lam * big_sq + 4 * abs(theory.kappa) * d
    else:
        a = theory.spacing(np.shape(configs)[1])
        bound = 4 * theory.m / a + a * (2 * theory.c2 + 12 * theory.c4 * big_sq)
    return 2.0 / bound if bound > 0 else None


class Langevin(Sampler):
    """Stochastic quantization: ``n_steps`` Euler steps x <- x - eps dS/dx + sqrt(2 eps) eta per
    update. There is no accept/reject, so the equilibrium is exp(-S) only up to O(eps).
    A chain whose action becomes non-finite is restored to its state before the update and
    counted as divergent."""

    name = "langevin"
    tunable = False

    def __init__(self, theory, shape, *, eps: float = 0.01, n_steps: int = 10, **kw):
        self.eps = check_param(eps, "eps", low=0.0, low_open=True)
        self.n_steps = check_int(n_steps, "n_steps")
        super().__init__(theory, shape, **kw)
        limit = _euler_limit(theory, self.shape)
        if limit is not None and self.eps >= limit:
            # A finite blow-up is not a divergence (the action stays finite for a while): a helper's
            # free field at kappa = 0.2, eps = 1 reached |phi| ~ 1e115 with 0 divergences counted.
            warnings.warn(f"eps = {self.eps:g} is at or above {limit:.4g}, the Euler stability limit of the "
                          "action at its classical minimum (2 / the largest eigenvalue of its Hessian there): "
                          "the chains' shortest modes grow without bound", RuntimeWarning, stacklevel=2)
        self._work = torch.empty((2, self.n_chains, *self.shape), dtype=self.dtype, device=self.device)
        self._ones = torch.ones(self.n_chains, dtype=torch.float64, device=self.device)

    @property
    def step_size(self):
        return self.eps

    @step_size.setter
    def step_size(self, value):
        self.eps = float(value)

    def _update(self):
        before = self._x.clone()
        # Philox steps n_updates * n_steps ... : every Langevin step draws fresh noise.
        K.langevin_steps(self.theory, self._x, eps=self.eps, n_steps=self.n_steps, seed=self.seed,
                         step=self.n_updates * self.n_steps, chain_offset=self.chain_offset, work=self._work)
        # Divergent: a non-finite action, not only a non-finite field (phi ~ 1e118 is finite, its
        # phi^4 is not). The action pass costs less than one of the update's n_steps Langevin steps.
        bad = ~torch.isfinite(stencil(self.theory.kernel, self._x, self.theory._params(), grad=False)[0])
        if bool(bad.any()):
            self._x[bad] = before[bad]
            self.divergent += int(bad.sum())
        return self._ones

    def settings(self):
        return {**super().settings(), "eps": self.eps, "n_steps": self.n_steps}


SAMPLERS = {"hmc": HMC, "metropolis": Metropolis, "langevin": Langevin}


def make_sampler(name: str, theory, shape, **kw) -> Sampler:
    """The sampler called ``name`` ('hmc', 'metropolis', 'langevin')."""
    try:
        cls = SAMPLERS[name]
    except KeyError:
        raise ValueError(f"sampler must be one of {sorted(SAMPLERS)}, got {name!r}") from None
    return cls(theory, shape, **kw)

"""A sampling run: thermalisation with step-size tuning, then saved configurations,
checkpointed to the run's HDF5 file so that a killed run resumes where it stopped.

The checkpoint is the run file itself, rewritten atomically at most every
``checkpoint_seconds`` and at the end: it holds the configurations saved so far
and the sampler's state (field, update counter, step size, acceptance history).
Because the random numbers are counter-based, a resumed run draws exactly the
numbers the uninterrupted run would have: on the CPU the final file's configurations,
actions and sampler state are bitwise the same
(on a GPU, up to the rare accept decision that the last bits of an atomically summed dH
decide; see mcmc/kernels.py).
"""

from __future__ import annotations

import contextlib
import json
import math
import signal
import sys
import time
import warnings
from pathlib import Path

import numpy as np
import torch
from tqdm.auto import tqdm

from .. import __version__
from .._kernels import stencil
from .._signals import deferred_signals, stop_for
from ..io import Ensemble, read_run, theory_to_dict, write_run, writer_lock
from .samplers import Sampler, default_thermalisation

__all__ = ["run", "RunError", "DivergenceWarning"]


class RunError(ValueError):
    """A run that cannot start or resume as asked (the message says why)."""


def _identity(sampler: Sampler, n_therm: int, spacing: int) -> dict:
    """What must match for --resume to continue a run: everything but a tuned step size (a
    fixed one, Langevin's eps, sets the run's O(eps) bias and must match)."""
    tuned = ("step_size", "eps", "delta") if sampler.tunable else ("step_size",)
    settings = {k: v for k, v in sampler.settings().items() if k not in tuned}
    return {"theory_params": json.dumps(theory_to_dict(sampler.theory), sort_keys=True),
            "lattice_shape": list(sampler.shape), "sampler_identity": json.dumps(settings, sort_keys=True),
            "n_therm": n_therm, "spacing": spacing}


_WHAT = {"theory_params": "the theory's parameters differ", "sampler_identity": "the sampler's settings differ",
         "lattice_shape": "the lattice shape differs", "n_therm": "the thermalisation length differs",
         "spacing": "the spacing differs"}


def _difference(key: str, old, new) -> str:
    """What differs between a file's run and this one, key by key for the JSON-valued ones
    (two long JSON strings side by side hide the one setting that differs)."""
    what = _WHAT.get(key, f"{key} differs")
    try:
        a, b = json.loads(old), json.loads(new)
    except (TypeError, ValueError):
        a = b = None
    if not (isinstance(a, dict) and isinstance(b, dict)):
        return f"{what}: {old!r} in the file, {new!r} in this run"
    if a.get("name") != b.get("name"):  # another theory: its parameters do not compare
        return f"the theory differs: {a.get('name')} in the file, {b.get('name')} in this run"
    if a.get("sampler") != b.get("sampler"):  # another sampler: its settings do not compare
        return f"the sampler differs: {a.get('sampler')} in the file, {b.get('sampler')} in this run"
    def shown(d, name):
        return repr(d[name]) if name in d else "absent"

    parts = [f"{name} {shown(a, name)} in the file, {shown(b, name)} in this run"
             for name in sorted(set(a) | set(b)) if shown(a, name) != shown(b, name)]
    return f"{what}: " + "; ".join(parts)


def _consistent(sampler: Sampler) -> bool:
    return not getattr(sampler, "busy", False)


def _file_n_therm(path) -> int | None:
    """The thermalisation length recorded in a run file, or None (no file, or none recorded)."""
    if path is None or not Path(path).is_file():
        return None
    import h5py

    try:
        with h5py.File(path, "r") as f:
            value = f.attrs.get("n_therm")
    except OSError:
        return None  # not a run file: the resume below says so
    return None if value is None else int(value)


def run(sampler: Sampler, n_samples: int, *, n_therm: int | None = None, spacing: int = 1, path=None,
        resume: bool = False, overwrite: bool = False, checkpoint_seconds: float = 30.0,
        progress: bool = True) -> Ensemble:
    """Thermalise (tuning the step size), then save ``n_samples`` configurations (rounded
    up to whole rounds of all chains), one round every ``spacing`` updates. ``n_therm=None``:
    ``default_thermalisation(theory, shape, sampler.name)``: 200 updates, more for XY on larger
    lattices and for a double well with a high barrier;
    on resume, the thermalisation the file records (so files of an earlier default resume).

    With ``path``, the run is written to that HDF5 file; ``resume=True`` continues the
    run stored there (same theory, lattice, sampler and seed) up to ``n_samples`` (a finished
    run that holds more is returned whole), or starts it where there is no file yet (a run
    killed before its first checkpoint). Updates that diverged while sampling (a non-finite
    energy, rejected and counted) draw a warning: the step size is too large for the theory.

    The file is checkpointed every ``checkpoint_seconds`` (within a round of ``spacing`` updates
    too), so a kill loses at most that much. A Ctrl-C or SIGTERM (in the main thread) is honoured
    between updates: the run is saved, then KeyboardInterrupt or SystemExit(143) is raised. While
    the run writes ``path`` it holds ``.<name>.lock`` beside it (io.writer_lock): another run
    writing the same file is refused.
    """
    kw = dict(n_therm=n_therm, spacing=spacing, resume=resume, overwrite=overwrite,
              checkpoint_seconds=checkpoint_seconds, progress=progress)
    if path is None:
        return _run(sampler, n_samples, path=None, **kw)
    with contextlib.ExitStack() as held:
        try:
            held.enter_context(writer_lock(path, "path"))
        except ValueError as err:
            raise RunError(str(err)) from None
        return _run(sampler, n_samples, path=path, **kw)


def _run(sampler: Sampler, n_samples: int, *, n_therm: int | None = None, spacing: int = 1, path=None,
         resume: bool = False, overwrite: bool = False, checkpoint_seconds: float = 30.0,
         progress: bool = True) -> Ensemble:
    """run(), with the file's lock held."""
    if n_therm is None:
        # a resumed run keeps the thermalisation it was started with (the default may have moved)
        n_therm = _file_n_therm(path) if resume else None
        if n_therm is None:
            n_therm = default_thermalisation(sampler.theory, sampler.shape, sampler.name)
    for name, v, low in (("n_samples", n_samples, 1), ("n_therm", n_therm, 0), ("spacing", spacing, 1)):
        if isinstance(v, bool) or not isinstance(v, (int, np.integer)) or v < low:
            raise RunError(f"{name} must be an integer >= {low}, got {v!r}")
    n_samples, n_therm, spacing = int(n_samples), int(n_therm), int(spacing)
    if not checkpoint_seconds >= 0:
        raise RunError(f"checkpoint_seconds must be >= 0, got {checkpoint_seconds}")
    nc = sampler.n_chains
    rounds = math.ceil(n_samples / nc)
    ident = _identity(sampler, n_therm, spacing)
    # Sampling starts after n_therm updates, or where a sampler that arrives already
    # updated stands: saved rounds are always `spacing` fresh updates apart.
    start = max(n_therm, sampler.n_updates)
    # The saved rounds as (configs, actions, updates): one append per round, so that a Ctrl-C
    # cannot leave the three of different lengths for the save below.
    saved = []
    # divergences up to the start of sampling, so that the file tells them from those of the
    # measured chain (None while thermalising)
    therm_divergent = None
    wall_before = 0.0  # wall seconds that the resumed file's run had taken up to its last save
    path = Path(path) if path is not None else None  # (checked writable by run)
    if path is not None and path.exists():
        if resume:
            ens = read_run(path)
            for k, v in ident.items():
                old = ens.attrs.get(k)
                old = old.tolist() if isinstance(old, np.ndarray) else old  # (Python ints, for the message)
                if old != v:
                    raise RunError(f"cannot resume {path}: {_difference(k, old, v)} (resume with the "
                                   f"settings the run was started with)")
            if ens.state is None:
                raise RunError(f"cannot resume {path}: it holds no sampler state")
            sampler.load_state_dict(ens.state)
            start = int(ens.attrs.get("sampling_start", n_therm))
            if sampler.n_updates >= start:
                # (a file from before the split: every divergence counted as the sampling's)
                therm_divergent = int(ens.attrs.get("divergent_thermalisation", 0))
            # a file written before wall_seconds was recorded: the time it took is unknown
            wall_before = float(ens.attrs.get("wall_seconds", float("nan")))
            done = len(ens.configs) // nc
            if ens.attrs.get("complete") and done >= rounds:
                print(f"{path} is complete with {done * nc} configurations (asked for {rounds * nc}): nothing "
                      "to add", file=sys.stderr)
                _warn_divergent(ens)
                return ens  # nothing to add: the file stands as it is (not rewritten)
            saved = [(ens.configs[i * nc:(i + 1) * nc], ens.action[i * nc:(i + 1) * nc],
                      ens.update[i * nc:(i + 1) * nc]) for i in range(done)]
            # (said without a progress bar too: batch jobs, whose logs should show the resumption)
            print(f"resuming {path}: {done * nc} of {rounds * nc} configurations saved, "
                  f"{sampler.n_updates} updates done", file=sys.stderr)
        elif not overwrite:
            raise RunError(f"{path} exists; pass resume to continue it or overwrite to replace it")
    # resume without a file (a run killed before its first checkpoint): a new run, as asked

    t0 = time.monotonic()

    def wall():
        return wall_before + time.monotonic() - t0

    write_failed = False  # an error in write_run is not followed by another write

    def save(complete: bool):
        nonlocal write_failed
        ens = _ensemble(sampler, saved, ident, start, n_samples, complete, wall(), therm_divergent)
        if path is not None:
            write_failed = True
            write_run(path, ens)
            write_failed = False
        return ens

    total = start + rounds * spacing
    bar = tqdm(total=total, initial=min(sampler.n_updates, total), disable=not progress, unit="upd",
               desc=f"{sampler.name} {type(sampler.theory).__name__}", dynamic_ncols=True)
    last = time.monotonic()

    def checkpoint():
        """A save, where one is due."""
        nonlocal last
        if path is not None and time.monotonic() - last > checkpoint_seconds:
            save(False)
            last = time.monotonic()

    # A thermalisation update and its step-size tuning are one unit for a checkpoint: a state
    # saved between them would resume with the step size of the update before.
    between_units = True
    # A Ctrl-C or SIGTERM is honoured between units, after a save (lftaccel._signals): raised
    # where it landed, it was almost never between units, so it saved nothing.
    stop = []
    try:
        with deferred_signals(stop):
            while sampler.n_updates < n_therm and not stop:
                between_units = False
                sampler.thermalize(1, tune=True, progress=bar)
                between_units = True
                checkpoint()
            if therm_divergent is None and sampler.n_updates >= n_therm:
                therm_divergent = sampler.divergent
            # the bar shows the mean acceptance of the sampling so far, as the file reports it
            # (a resumed run's earlier updates included)
            acc_sum, n_acc = float(np.sum(sampler.acceptance[start:])), len(sampler.acceptance[start:])
            while len(saved) < rounds and not stop:
                target = start + (len(saved) + 1) * spacing
                # A resumed run may stop between saves: finish that round's updates.
                while sampler.n_updates < target and not stop:
                    acc_sum, n_acc = acc_sum + float(sampler.update().mean()), n_acc + 1
                    bar.update(1)
                    bar.set_postfix(acc=f"{acc_sum / n_acc:.2f}", refresh=False)
                    # within a round as well: a round of a large --spacing can take longer than
                    # the interval (a helper's 100000 updates: 11-14 s between saves at 1 s)
                    if sampler.n_updates < target:
                        checkpoint()
                if sampler.n_updates < target:
                    break  # stopped within the round: what is saved resumes it
                x = sampler.field
                a, _ = stencil(sampler.theory.kernel, x, sampler.theory._params(), grad=False)
                saved.append((x.detach().cpu().numpy().copy(), a.detach().cpu().to(torch.float64).numpy(),
                              np.full(nc, sampler.n_updates, dtype=np.int64)))
                checkpoint()
            # the end, or a stop request: saved while a second signal is still deferred
            complete = len(saved) >= rounds
            ens = save(complete)
    except BaseException:
        # An error, or a second Ctrl-C: keep what was done, if the sampler stands between updates
        # (otherwise the last checkpoint stands, as after a SIGKILL), unless writing it failed.
        if path is not None and between_units and not write_failed and _consistent(sampler):
            save(False)
        raise
    finally:
        bar.close()
    if stop and not complete:  # (a signal during the last update or save: the run is whole, returned)
        name = "SIGTERM" if signal.SIGTERM in stop else "SIGINT"
        kept = (f"{len(saved) * nc} configurations and the chains' state saved to {path} (continue it with "
                f"resume)" if path is not None else "nothing kept (no path was given)")
        print(f"stopped by {name} after {sampler.n_updates} updates: {kept}", file=sys.stderr)
        stop_for(stop)
    _warn_divergent(ens)
    return ens


class DivergenceWarning(UserWarning):
    """Updates of a run diverged while sampling (see run)."""


def _warn_divergent(ens) -> None:
    """A warning where updates diverged while sampling: each was rejected, but a step size at
    which they happen can also let fields run away without a non-finite energy (Langevin at
    too large an eps), and the estimates are then meaningless."""
    a = ens.attrs
    if a.get("divergent_thermalisation") is None:  # a file from before the split cannot tell
        return
    n = int(a["divergent"]) - int(a["divergent_thermalisation"])
    if n > 0:
        warnings.warn(f"{n} updates diverged while sampling (non-finite energy, rejected): the step size is "
                      f"too large for this theory; check the fields (largest |x| saved "
                      f"{float(np.abs(ens.configs).max()):.3g}) and lower it", DivergenceWarning,
                      stacklevel=4)  # the caller of run (run -> _run -> here)


def _ensemble(sampler, saved, ident, start, n_target, complete, wall_seconds, therm_divergent=None) -> Ensemble:
    """The run so far as an Ensemble, from its saved rounds (configs, actions, updates).
    ``wall_seconds``: the wall time spent on it, summed over a killed run and its resumptions
    (the part after a kill's last checkpoint is redone, and counted once, when it is).
    ``therm_divergent``: the divergences of the thermalisation (None: it is still running)."""
    from .. import build_info

    if therm_divergent is None:
        therm_divergent = sampler.divergent
    nc = sampler.n_chains
    configs, actions, updates = (list(part) for part in zip(*saved)) if saved else ([], [], [])
    shape = (0, *sampler.shape)
    acc_hist = np.asarray(sampler.acceptance, dtype=np.float64)
    sampling = acc_hist[start:]
    attrs = {
        "version": __version__, "theory": type(sampler.theory).__name__, "theory_params": ident["theory_params"],
        "lattice_shape": np.asarray(sampler.shape, dtype=np.int64), "n_chains": nc, "seed": sampler.seed,
        "sampler": sampler.name, "sampler_settings": json.dumps(sampler.settings(), sort_keys=True),
        "sampler_identity": ident["sampler_identity"], "n_therm": ident["n_therm"], "spacing": ident["spacing"],
        "sampling_start": start, "n_target": n_target, "complete": bool(complete),
        "acceptance": float(sampling.mean()) if len(sampling) else float("nan"),
        "divergent": sampler.divergent, "divergent_thermalisation": therm_divergent,
        "device": str(sampler.device), "wall_seconds": float(wall_seconds),
        # the build the chain came from: bitwise reproducible on the same build (-march=native)
        "build_info": json.dumps(build_info(), sort_keys=True, default=str),
    }
    state = sampler.state_dict()
    return Ensemble(
        configs=np.concatenate(configs) if configs else np.empty(shape, dtype=np.float64),
        chain=np.tile(np.arange(nc, dtype=np.int32), len(configs)),
        update=np.concatenate(updates) if updates else np.empty(0, np.int64),
        action=np.concatenate(actions) if actions else np.empty(0, np.float64),
        acceptance_history=acc_hist, attrs=attrs, state=state)

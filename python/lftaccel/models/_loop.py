"""The optimisation loop every generative model trains with: Adam, a learning-rate schedule,
gradient clipping, a tqdm bar, a history, and atomic checkpoints with resume.

The model supplies ``loss_step(step) -> (loss, metrics)``: a differentiable scalar and a dict
of floats to log (shown on the bar, kept in the history). The loop owns everything else.

Learning rate: Adam at ``lr``, with schedule 'cosine' (default) decaying it to zero over the
run, measured as the larger of step / steps and seconds / time_limit (so a run under a time
limit anneals within it, and a resumed run continues the same schedule), or 'constant'.

Checkpoints hold the model, the optimiser, the step, the history, the torch (and CUDA) RNG
state and that of an optional extra generator, written atomically every
``checkpoint_every`` steps and at the end; ``resume=True`` continues from the file, so a
killed run loses at most one checkpoint interval and continues the same random streams. A
Ctrl-C (SIGINT, in the main thread) loses nothing: the step under way finishes, the state is
saved, and KeyboardInterrupt is raised; a second Ctrl-C stops at once. A SIGTERM is handled
alike and ends in SystemExit(143) (lftaccel._signals).
"""

from __future__ import annotations

import dataclasses
import hashlib
import math
import time
from pathlib import Path

import numpy as np
import torch

from .._kernels import check_int
from .._signals import deferred_signals, stop_for

__all__ = ["TrainResult", "optimise", "data_digest", "weights_digest"]


@dataclasses.dataclass
class TrainResult:
    steps: int
    seconds: float
    history: dict  # step, seconds and each logged metric: lists of floats

    @property
    def final_ess(self) -> float:
        """Mean batch ESS of the last 20 steps: an upper-biased guide where the importance weights
        are heavy-tailed; the ESS of nmcmc.draw over many proposals is the one to trust."""
        tail = self.history.get("ess", [])[-20:]
        return float(np.mean(tail)) if tail else float("nan")


def data_digest(data) -> str:
    """sha256 of a tensor's or array's values (for ``settings``: a resume on other data fails)."""
    if isinstance(data, torch.Tensor):
        data = data.detach().cpu().numpy()
    return hashlib.sha256(np.ascontiguousarray(data).tobytes()).hexdigest()


def weights_digest(model) -> str:
    """sha256 of a model's parameters and buffers, in state_dict order (a training's start)."""
    h = hashlib.sha256()
    for name, t in model.state_dict().items():
        h.update(name.encode())
        h.update(np.ascontiguousarray(t.detach().cpu().numpy()).tobytes())
    return h.hexdigest()


# Metrics shown on the bar under another name. The ESS a model logs is that of one training
# batch, which overstates the ESS of many proposals where the weights have a heavy tail (a
# flow after 600 steps: 0.16-0.23 on batches of 64, 0.011 over 2^14 proposals, k-hat 0.79).
_SHOWN = {"ess": "batch_ess"}


def optimise(model, loss_step, *, checkpoint, **kw) -> TrainResult:
    """_optimise (its docstring), holding the checkpoint's writer lock (io.writer_lock) while it
    runs: a second training writing the same checkpoint is refused, as a second sampling run of
    one file is, instead of the two overwriting each other's checkpoints."""
    if checkpoint is None:
        return _optimise(model, loss_step, checkpoint=None, **kw)
    from ..io import writer_lock  # (h5py comes with io: only where checkpoints are)

    with writer_lock(checkpoint, "checkpoint"):
        return _optimise(model, loss_step, checkpoint=checkpoint, **kw)


def _optimise(model, loss_step, *, steps: int, lr: float, clip: float, seed: int, checkpoint, checkpoint_every: int,
              resume: bool, time_limit: float | None, progress: bool, schedule: str, tag: str, desc: str,
              generator: torch.Generator | None = None, after_step=None, extra: dict | None = None,
              settings: dict | None = None) -> TrainResult:
    """Runs loss_step / backward / clip / Adam until ``steps`` or ``time_limit``. ``tag``
    names the objective in the checkpoint: resuming a file written under another tag fails.
    ``settings`` (plain values: the target's parameters, the batch size, a digest of the data)
    are kept in the checkpoint with lr, clip and schedule, and a resume with other values fails
    (a resumed run must continue the same optimisation; steps and time_limit may grow).
    ``after_step()`` runs after each optimiser step (an EMA update, say); ``extra`` maps names
    to objects with state_dict / load_state_dict (the EMA weights) kept in the checkpoint."""
    extra = extra or {}
    check_int(steps, "steps")
    check_int(seed, "seed", low=0)
    check_int(checkpoint_every, "checkpoint_every")
    if not (lr > 0 and math.isfinite(lr)):
        raise ValueError(f"lr must be finite and > 0, got {lr!r}")
    if schedule not in ("cosine", "constant"):
        raise ValueError(f"schedule must be 'cosine' or 'constant', got {schedule!r}")
    if time_limit is not None and not (time_limit > 0):
        raise ValueError(f"time_limit must be > 0 or None, got {time_limit!r}")
    if not (clip > 0):
        raise ValueError(f"clip must be > 0, got {clip!r}")

    settings = {"lr": lr, "clip": clip, "schedule": schedule, **(settings or {})}
    opt = torch.optim.Adam(model.parameters(), lr=lr)
    history = {"step": [], "seconds": []}
    step, elapsed = 0, 0.0
    path = Path(checkpoint) if checkpoint is not None else None
    device = next(model.parameters()).device
    loaded = False
    if resume:
        if path is None:
            raise ValueError("resume=True needs a checkpoint path")
        if path.exists():
            try:
                state = torch.load(path, weights_only=False, map_location=device)
            except Exception as err:  # not a torch file: pickle, zip or EOF errors, whatever the bytes
                raise ValueError(f"cannot resume {path}: not a training checkpoint "
                                 f"({type(err).__name__}: {str(err).splitlines()[0] if str(err) else ''})") from None
            if not isinstance(state, dict) or "model" not in state:
                raise ValueError(f"cannot resume {path}: not a training checkpoint")
            if state.get("objective") != tag:
                raise ValueError(f"cannot resume {path}: it was trained with objective {state.get('objective')!r}")
            saved = state.get("settings")  # (absent from the checkpoints of older versions)
            if saved is not None and saved != settings:
                differ = sorted(k for k in set(saved) | set(settings) if saved.get(k) != settings.get(k))
                raise ValueError(f"cannot resume {path}: it was trained with other " + ", ".join(
                    f"{k} ({saved.get(k)!r}, now {settings.get(k)!r})" for k in differ))
            try:
                model.load_state_dict(state["model"])
            except RuntimeError as err:  # another architecture: missing, unexpected or mis-shaped weights
                raise ValueError(f"cannot resume {path}: its network is not this one "
                                 f"({str(err).splitlines()[0]})") from None
            opt.load_state_dict(state["optimizer"])
            step, elapsed, history = state["step"], state["seconds"], state["history"]
            torch.set_rng_state(state["torch_rng"].cpu())
            if state.get("cuda_rng") is not None and torch.cuda.is_available():
                torch.cuda.set_rng_state_all([s.cpu() for s in state["cuda_rng"]])
            if generator is not None:
                generator.set_state(state["data_rng"].cpu())
            for name, obj in extra.items():
                obj.load_state_dict(state["extra"][name])
            loaded = True

    def save():
        if path is None:
            return
        from ..io import write_atomic  # h5py comes with io; training without checkpoints needs neither

        state = {"model": model.state_dict(), "optimizer": opt.state_dict(), "step": step, "seconds": elapsed,
                 "history": history, "torch_rng": torch.get_rng_state(),
                 "data_rng": generator.get_state() if generator is not None else None,
                 "cuda_rng": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else None,
                 "objective": tag, "settings": settings,
                 "extra": {name: obj.state_dict() for name, obj in extra.items()}}
        write_atomic(path, lambda tmp: torch.save(state, tmp))

    def progress_fraction():
        fractions = [step / steps] + ([elapsed / time_limit] if time_limit is not None else [])
        return min(1.0, max(fractions))

    if not loaded:  # a fresh run is seeded; a resumed one continues the saved random streams
        torch.manual_seed(seed)
    bar = None
    if progress:
        from tqdm.auto import tqdm

        # under a time limit the step count is open-ended: show steps and rate, not a fake ETA
        bar = tqdm(total=steps if time_limit is None else None, initial=min(step, steps), desc=desc, unit="step")
    t_start = time.perf_counter() - elapsed
    interrupted = []  # a Ctrl-C or SIGTERM received during a step (see lftaccel._signals)
    try:
        with deferred_signals(interrupted):
            while step < steps and (time_limit is None or elapsed < time_limit):
                opt.zero_grad(set_to_none=True)
                if schedule == "cosine":
                    for group in opt.param_groups:
                        group["lr"] = lr * 0.5 * (1.0 + math.cos(math.pi * progress_fraction()))
                loss, metrics = loss_step(step)
                if not torch.isfinite(loss):
                    raise FloatingPointError(f"training loss became {float(loss)} at step {step}: lower lr or clip, "
                                             "and check the training data are finite")
                loss.backward()
                norm = torch.nn.utils.clip_grad_norm_(model.parameters(), clip)
                if not torch.isfinite(norm):  # a step would write NaN weights (the loss was finite)
                    raise FloatingPointError(f"the gradient became non-finite at step {step} (norm {float(norm)}): "
                                             "lower lr or clip")
                opt.step()
                if after_step is not None:
                    after_step()
                step += 1
                elapsed = time.perf_counter() - t_start
                history["step"].append(step)
                history["seconds"].append(elapsed)
                for key, value in metrics.items():
                    history.setdefault(key, []).append(float(value))
                if bar is not None:
                    bar.update(1)
                    bar.set_postfix({_SHOWN.get(k, k): f"{float(v):.3f}" for k, v in metrics.items()})
                if step % checkpoint_every == 0 or interrupted:
                    save()
                if interrupted:  # the step is whole and saved: now stop
                    stop_for(interrupted)
            save()  # the end (still deferring a Ctrl-C, so it cannot cut this save short)
            if interrupted:  # a Ctrl-C after the last step: saved above, and still an interrupt
                stop_for(interrupted)
    finally:
        if bar is not None:
            bar.close()
    return TrainResult(step, elapsed, history)

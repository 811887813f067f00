"""A trained diffusion model as one file, and the two steps of the command line around it:
``lftaccel train diffusion run.h5 -o dm.pt`` and ``lftaccel generate dm.pt -n N -o dm.h5``.

The model file is the training checkpoint (models._loop: weights, optimiser, random streams,
so a killed training resumes) with two extras: the EMA weights, which are what sampling uses,
and ``meta``: the field scale c, the SDE, the network's architecture, the theory and lattice
of the training ensemble and the train/test split. With them a model file is self-contained.

Generated ensembles use the format of lftaccel.io (the one `lftaccel sample` writes), so
``lftaccel measure dm.h5`` and every other tool read them:
  * plain DM: the reverse SDE (fused Euler-Maruyama kernel). The samples are independent
    draws from the model (not from exp(-S)); they are stored as one chain, along which the
    Gamma method finds tau_int ~ 1/2;
  * ``exact=True``: the probability-flow ODE with the log-density of the discretised map as
    the proposal of independence Metropolis (lftaccel.mcmc.nmcmc), ``n_chains`` chains; the
    file's acceptance is the chains' acceptance rate. The configurations follow exp(-S).
"""

from __future__ import annotations

import hashlib
import json
import math
import shutil
import warnings
from pathlib import Path

import numpy as np
import torch

from ..._kernels import check_int

__all__ = ["train_from_ensemble", "load_model", "generate"]

TAG = "diffusion-dsm"


class _Meta:
    """The model file's description, kept in the checkpoint through the training loop's extras.
    Resuming checks that the file was trained on the same data and network."""

    def __init__(self, meta: dict):
        self.meta = meta

    def state_dict(self):
        return dict(self.meta)

    def load_state_dict(self, saved):
        self.check(saved)

    def check(self, saved):
        # the data by content, so a moved or copied ensemble still resumes (files written before
        # the digest existed fall back to the ensemble's path)
        data = "data_sha256" if "data_sha256" in saved else "source"
        # test_chains before the data: another split hashes other configurations, and the
        # split is the clearer message
        for key in ("test_chains", "channels", "emb_dim", "sde", "lattice_shape", data, "scale"):
            if saved.get(key) != self.meta.get(key):
                raise ValueError(f"cannot resume: the model file was trained with {key} = {saved.get(key)!r}, "
                                 f"now {self.meta.get(key)!r}")


def _saved_meta(path):
    """The meta of an existing model file, or a clear error when it is none."""
    try:
        state = torch.load(path, weights_only=False, map_location="cpu")
    except Exception:  # not a torch file at all (an HDF5 ensemble, say): unpickling fails in many ways
        state = None
    if not isinstance(state, dict) or state.get("objective") != TAG or "meta" not in state.get("extra", {}):
        raise ValueError(f"{path} is not a diffusion model file written by `lftaccel train diffusion`")
    return state


def train_from_ensemble(ensemble, output, *, test_chains: int | None = None, channels=(32, 64), emb_dim: int = 64,
                        steps: int = 10**7, minutes: float | None = 10.0, batch_size: int = 64, lr: float = 1e-3,
                        ema: float = 0.999, sigma: float = 25.0, seed: int = 0, device=None, resume: bool = False,
                        progress: bool = True) -> dict:
    """Trains a ScoreUNet on the ensemble file ``ensemble`` (2D phi^4, written by `lftaccel
    sample`), whole chains held out for testing (split_by_chain), and writes the model file
    ``output``. Stops after ``steps`` or ``minutes`` (both totals: a resumed training counts
    what it did before). Returns a summary with the denoising loss of the EMA model on as many
    training as test configurations with the same noise draws, and its standard error, and the
    standard error of test minus train from the paired blocks (gap_err): a test loss above the
    training loss by several gap errors means overfitting."""
    from ...io import read_run
    from ...theories import Phi4
    from .sde import make_sde
    from .train import FieldScale, split_by_chain, train
    from .unet import ScoreUNet, dsm_loss

    if Path(output).exists() and not resume:
        raise ValueError(f"{output} exists: resume its training with --resume, or remove it")
    ens = read_run(ensemble)
    if not isinstance(ens.theory, Phi4) or len(ens.lattice_shape) != 2:
        raise ValueError(f"train diffusion needs a 2D phi^4 ensemble; {ensemble} holds {ens.attrs['theory']} on "
                         f"{'x'.join(map(str, ens.lattice_shape))}")
    if ens.n_chains < 2:
        raise ValueError(f"{ensemble} has one chain: a test set of independent chains needs at least two")
    if not ens.attrs.get("complete", True):
        warnings.warn(f"{ensemble} is an unfinished run ({len(ens.configs)} of {ens.attrs.get('n_target')} "
                      f"configurations): training on what it holds; finish it with lftaccel sample --resume",
                      stacklevel=2)
    train_phi, test_phi = split_by_chain(ens, test_chains)
    device = torch.device(device or ("cuda" if torch.cuda.is_available() else "cpu"))
    scale = FieldScale.fit(train_phi)
    sde = make_sde("ve", sigma=sigma)
    digest = hashlib.sha256()
    for part in (train_phi, test_phi):
        digest.update(np.ascontiguousarray(part, dtype=np.float64).tobytes())
    meta = {"source": str(Path(ensemble).resolve()), "data_sha256": digest.hexdigest(), "scale": scale.c,
            "sde": sde.kernel_args(),
            "channels": [int(c) for c in channels], "emb_dim": int(emb_dim),
            "lattice_shape": [int(s) for s in ens.lattice_shape], "theory": ens.attrs["theory"],
            "theory_params": ens.attrs["theory_params"],
            "test_chains": round(len(test_phi) * ens.n_chains / (len(train_phi) + len(test_phi))),
            "n_train": int(len(train_phi)), "n_test": int(len(test_phi))}
    if resume and Path(output).exists():  # before the weights are loaded: a different network would not fit
        _Meta(meta).check(_saved_meta(output)["extra"]["meta"])
    torch.manual_seed(seed)
    model = ScoreUNet(tuple(ens.lattice_shape), sde, channels=tuple(channels), emb_dim=emb_dim).to(device)
    res, averaged = train(model, scale.encode(torch.as_tensor(train_phi, dtype=torch.float32)), steps=steps,
                          batch_size=batch_size, lr=lr, ema=ema, seed=seed, checkpoint=output, resume=resume,
                          time_limit=None if minutes is None else 60.0 * minutes, progress=progress,
                          extra={"meta": _Meta(meta)})

    n_eval = min(2048, len(train_phi), len(test_phi))

    def losses(phi):  # the loss of 16 blocks (successive configurations of all chains)
        torch.manual_seed(seed + 1)  # the same noise draws and times for both sets
        x = scale.encode(torch.as_tensor(phi[:n_eval], dtype=torch.float32)).to(device)
        with torch.no_grad():
            return torch.stack([dsm_loss(averaged.module, sde, b) for b in x.chunk(16)]).double()

    def mean_err(per):  # mean and standard error over the blocks
        return float(per.mean()), float(per.std() / math.sqrt(len(per)))

    train_per, test_per = losses(train_phi), losses(test_phi)
    (train_loss, train_err), (test_loss, test_err) = mean_err(train_per), mean_err(test_per)
    # The gap's error from the block-wise differences: both sets see the same noise draws, so
    # their losses are correlated and the two errors combined would overstate it.
    _, gap_err = mean_err(test_per - train_per) if len(test_per) == len(train_per) else (0.0, float("nan"))
    return {"output": str(output), "steps": res.steps, "seconds": res.seconds, **meta, "n_eval": n_eval,
            "train_loss": train_loss, "train_loss_err": train_err, "test_loss": test_loss, "test_loss_err": test_err,
            "gap_err": gap_err}


def load_model(path, device=None):
    """(score_fn, sde, scale c, meta) of a model file; score_fn(y, t) is the EMA network's
    score of the scaled field y = phi / c."""
    from torch.optim.swa_utils import AveragedModel

    from .sde import make_sde
    from .unet import ScoreUNet

    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"no such model file: {path}")
    state = _saved_meta(path)
    meta = state["extra"]["meta"]
    kw = dict(meta["sde"])
    sde = make_sde(kw.pop("schedule"), **kw)
    device = torch.device(device or ("cuda" if torch.cuda.is_available() else "cpu"))
    model = ScoreUNet(tuple(meta["lattice_shape"]), sde, channels=tuple(meta["channels"]), emb_dim=meta["emb_dim"])
    averaged = AveragedModel(model)
    averaged.load_state_dict(state["extra"]["ema"])
    module = averaged.module.to(device).eval()

    def score_fn(y, t):
        return module(y.to(module.dtype), t).to(y.dtype)

    return score_fn, sde, float(meta["scale"]), meta


def generate(model, n: int, output, *, exact: bool = False, sde_steps: int = 500, ode_steps: int = 32,
             n_chains: int = 8, batch_size: int = 256, seed: int = 0, device=None, progress: bool = True,
             overwrite: bool = False, resume: bool = False):
    """Samples ``n`` configurations from a model file into the ensemble file ``output`` and
    returns the lftaccel.io.Ensemble. ``exact``: independence Metropolis over ``n``
    probability-flow proposals (``ode_steps`` RK4 steps, the map's log-density), ``n_chains``
    chains; otherwise the reverse SDE in ``sde_steps`` Euler-Maruyama steps. Both run in
    batches of ``batch_size``. ``exact`` costs n_sites backward passes per RK4 step (the
    Jacobian of each step), so it grows as V^2: on 2 CPU cores ~0.05 s per proposal and
    step on 8x8; larger lattices want a GPU.

    After each batch, that batch and then the random state are saved, atomically, into the
    folder ``output`` + '.partial' (a file per batch, so a checkpoint costs one batch's
    bytes, not the run's so far); ``resume`` continues from there after a kill, with the draws
    the uninterrupted run would have made, and the folder goes when the ensemble is written."""
    import time

    from ... import __version__
    from ...io import Ensemble, theory_from_dict, write_atomic, write_run
    from ...mcmc import nmcmc
    from .flow_ode import ODESampler
    from .sde import reverse_sample

    check_int(n, "n")
    check_int(n_chains, "n_chains")
    check_int(batch_size, "batch_size")
    if Path(output).exists() and not overwrite:
        raise ValueError(f"{output} exists: remove it or pass --overwrite")
    partial = Path(str(output) + ".partial")
    if partial.exists() and not resume and not overwrite:
        raise ValueError(f"{partial} holds an interrupted run: pass --resume to continue it or --overwrite "
                         f"to start again")
    score, sde, c, meta = load_model(model, device)
    device = torch.device(device or ("cuda" if torch.cuda.is_available() else "cpu"))
    theory = theory_from_dict(json.loads(meta["theory_params"]))
    shape = tuple(meta["lattice_shape"])
    if exact and (n % n_chains or n // n_chains < 2):
        raise ValueError(f"n = {n} must split into n_chains = {n_chains} chains of >= 2 configurations")
    identity = {"model_sha256": hashlib.sha256(Path(model).read_bytes()).hexdigest(), "n": n, "exact": exact,
                "steps": ode_steps if exact else sde_steps, "batch_size": batch_size, "seed": seed}
    t0 = time.perf_counter()
    torch.manual_seed(seed)  # (the prior draws are Philox streams; this for a score function that draws)
    sampler = ODESampler(score, sde, shape, scale=c, n_steps=ode_steps, divergence="map", seed=seed,
                         device=device) if exact else None
    batches, spent = [], 0.0
    if resume and partial.exists():
        if not (partial / "state.pt").is_file():
            raise ValueError(f"cannot resume {partial}: it is not a checkpoint folder of this version (an older "
                             f"lftaccel kept one file); pass --overwrite to start again")
        state = torch.load(partial / "state.pt", weights_only=False)
        if state["identity"] != identity:
            diff = sorted(k for k in identity if state["identity"].get(k) != identity[k])
            raise ValueError(f"cannot resume {partial}: it was started with other {', '.join(diff)}")
        batches = [torch.load(partial / f"batch-{i:06d}.pt", weights_only=False) for i in range(state["done"])]
        spent = state["seconds"]
        torch.set_rng_state(state["torch_rng"])
        if state["cuda_rng"] is not None and device.type == "cuda":
            torch.cuda.set_rng_state(state["cuda_rng"], device)
        if exact:
            sampler.calls = len(batches)
    if not batches:  # a fresh start (or --overwrite): nothing of an older run may be read back
        if partial.is_dir():
            shutil.rmtree(partial)
        else:
            partial.unlink(missing_ok=True)
        partial.mkdir()
    n_batches = -(-n // batch_size)
    bar = None
    if progress:
        from tqdm.auto import tqdm

        bar = tqdm(total=n_batches, initial=len(batches), desc="generate", unit="batch")
    for b in range(len(batches), n_batches):
        start, k = b * batch_size, min(batch_size, n - b * batch_size)
        if exact:
            try:
                x, log_q = sampler.sample(k)
            except RuntimeError as err:
                if "folds" not in str(err):
                    raise
                raise ValueError(f"an RK4 step folds the space at {ode_steps} steps: increase --ode-steps (if doubling "
                                 f"it does not help, the learnt flow itself folds there, as seen on 2x2 at every step "
                                 f"count: train it longer or on a larger lattice)") from None
            batches.append({"x": x.cpu(), "log_q": log_q.double().cpu(), "S": theory.action(x).double().cpu()})
        else:
            # Philox streams keyed by the sample's index (chain_offset): batching changes no noise
            # (the float32 network's outputs may move in the last bits: torch picks its convolution
            # algorithm by batch size and thread count)
            y = reverse_sample(score, sde, (k, *shape), n_steps=sde_steps, seed=seed, device=device,
                               chain_offset=start, progress=progress)
            phi = (y * c).double()
            batches.append({"x": phi.cpu(), "S": theory.action(phi).double().cpu()})
        # the batch first, then the state that counts it: a kill between the two leaves a batch
        # file the resumed run writes again
        write_atomic(partial / f"batch-{b:06d}.pt", lambda tmp, bt=batches[-1]: torch.save(bt, tmp))
        state = {"identity": identity, "done": len(batches), "seconds": spent + time.perf_counter() - t0,
                 "torch_rng": torch.get_rng_state(),
                 "cuda_rng": torch.cuda.get_rng_state(device) if device.type == "cuda" else None}
        write_atomic(partial / "state.pt", lambda tmp, state=state: torch.save(state, tmp))
        if bar is not None:
            bar.update(1)
    if bar is not None:
        bar.close()
    x = torch.cat([bt["x"] for bt in batches])
    S = torch.cat([bt["S"] for bt in batches])
    if exact:
        log_q = torch.cat([bt["log_q"] for bt in batches])
        chain = nmcmc.independence_metropolis(S, log_q, seed=seed, n_chains=n_chains)
        order = chain.index.reshape(-1)  # step-major: every chain at each step, as the file wants
        configs, action = x.numpy()[order], S.numpy()[order]
        chains, acceptance = n_chains, chain.acceptance
        khat = chain.pareto_k
        settings = {"sampler": "diffusion-exact", "ode_steps": ode_steps, "log_q": "map", "ess": chain.ess,
                    "pareto_k": khat if np.isfinite(khat) else None, "n_proposals": n}
    else:
        configs, action = x.numpy(), S.numpy()
        chains, acceptance = 1, 1.0
        settings = {"sampler": "diffusion", "sde_steps": sde_steps}
    settings.update(model=str(Path(model).resolve()), seed=seed)
    per_chain = len(configs) // chains
    attrs = {"version": __version__, "theory": meta["theory"], "theory_params": meta["theory_params"],
             "lattice_shape": np.asarray(shape, dtype=np.int64), "n_chains": chains, "seed": seed,
             "sampler": settings["sampler"], "sampler_settings": json.dumps(settings, sort_keys=True),
             "n_therm": 0, "spacing": 1, "n_target": n, "complete": True, "acceptance": float(acceptance),
             "divergent": 0, "device": str(device), "seconds": spent + time.perf_counter() - t0}
    ens = Ensemble(configs=configs, chain=np.tile(np.arange(chains, dtype=np.int32), per_chain),
                   update=np.repeat(np.arange(per_chain, dtype=np.int64), chains), action=action,
                   acceptance_history=np.full(1, float(acceptance)), attrs=attrs)
    write_run(output, ens)
    shutil.rmtree(partial, ignore_errors=True)
    return ens

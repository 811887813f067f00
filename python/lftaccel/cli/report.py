"""What the commands share: the table of observables they print, and the device and thread
settings."""

from __future__ import annotations

import json
import math


def report_of(ens, estimates) -> dict:
    from ..analysis import format_table

    a = ens.attrs
    notes = list(getattr(estimates, "notes", ()))
    # the sampling's wall time, summed over a killed run and its resumptions: wall_seconds of a
    # sampler's run, seconds of a generated ensemble (None: a file from before it was recorded)
    seconds = float(a.get("wall_seconds", a.get("seconds", float("nan"))))
    seconds = seconds if math.isfinite(seconds) else None
    sampler = json.loads(a["sampler_settings"])
    return {
        "theory": a["theory"],
        "params": {k: v for k, v in json.loads(a["theory_params"]).items() if k != "name"},
        "lattice_shape": list(ens.lattice_shape),
        "sampler": sampler, "n_samples": int(len(ens.configs)), "n_chains": ens.n_chains,
        # independent draws from a model (plain diffusion) and Langevin steps have no accept/reject: None
        "acceptance": None if sampler.get("sampler") in ("diffusion", "langevin") else float(a["acceptance"]),
        "divergent": int(a["divergent"]),
        # (files from before the split do not say: None)
        "divergent_sampling": (int(a["divergent"]) - int(a["divergent_thermalisation"])
                               if "divergent_thermalisation" in a else None),
        "seconds": seconds, "observables": {k: e.as_dict() for k, e in estimates.items()}, "notes": notes,
        "mean_leapfrog_steps": _mean_leapfrog_steps(ens.state),
        "_table": "\n".join([format_table(estimates)] + notes),
    }


def _mean_leapfrog_steps(state):
    """Leapfrog steps per HMC trajectory over the run (thermalisation included), from the
    checkpoint's count (None where the file has none: not HMC, or from before the count)."""
    if not state or state.get("leapfrog_steps") is None or not state.get("n_updates"):
        return None
    return float(state["leapfrog_steps"]) / float(state["n_updates"])


def print_report(report, as_json):
    table = report.pop("_table")
    if as_json:
        print(json.dumps(report, indent=1))
        return
    s = report["sampler"]
    step = {k: s[k] for k in ("eps", "n_leapfrog", "trajectory_length", "delta", "n_steps", "sde_steps", "ode_steps")
            if s.get(k) is not None}
    print(f"{report['theory']} {report['params']} on {'x'.join(map(str, report['lattice_shape']))}: "
          f"{report['n_samples']} configurations from {report['n_chains']} chains")
    div = report["divergent_sampling"]
    accepted = "" if report["acceptance"] is None else f"  acceptance {report['acceptance']:.3f}"
    print(f"sampler {s['sampler']} {step}{accepted}  divergent {report['divergent']}"
          + (f" ({div} while sampling)" if div is not None and report["divergent"] else "")
          + (f"  time {report['seconds']:.1f} s" if report["seconds"] is not None else "")
          + (f"  {report['mean_leapfrog_steps']:.2f} leapfrog steps a trajectory"
             if report["mean_leapfrog_steps"] is not None and "trajectory_length" in s else ""))
    from ..analysis import INDEPENDENCE_SAMPLERS, MIN_CHAINS_FOR_SPREAD

    nc = report["n_chains"]
    spread = (", no smaller than the chains' spread" if nc >= MIN_CHAINS_FOR_SPREAD
              or (s["sampler"] in INDEPENDENCE_SAMPLERS and nc >= 2) else "")
    print(f"errors: Gamma method (pyerrors){spread}; tau_int in units of the saved spacing")
    print(table)


def check_device(device):
    """A one-line ValueError for a --device that is not cpu or an available cuda[:N] (None: the
    command's default)."""
    import torch

    if device is None:
        return
    try:
        dev = torch.device(device)
    except (RuntimeError, ValueError) as err:
        raise ValueError(f"--device {device!r} is not a torch device ({str(err).splitlines()[0]})") from None
    if dev.type not in ("cpu", "cuda"):
        raise ValueError(f"--device must be cpu or cuda[:N], got {device!r}")
    if dev.type == "cuda":
        if not torch.cuda.is_available():
            raise ValueError(f"--device {device}, but torch sees no CUDA device")
        if dev.index is not None and dev.index >= torch.cuda.device_count():
            raise ValueError(f"--device {device}: torch sees {torch.cuda.device_count()} CUDA device(s)")


def set_threads(n):
    """torch's CPU threads for this command (None: leave torch's default)."""
    if n:
        import torch

        torch.set_num_threads(n)

"""``lftaccel reproduce NAME [--quick] [--out DIR]``: the published experiments, each writing a
markdown report with PNGs to DIR. Trainings checkpoint into DIR, so rerunning a killed
reproduction resumes it."""

from __future__ import annotations

import importlib

REPRODUCTIONS = {
    "phi4-flow": "phi4_flow",
    "oscillator-fflow": "oscillator_fflow",
    "xy-can": "xy_can",
    "phi4-diffusion": "phi4_diffusion",
}

__all__ = ["REPRODUCTIONS", "reproduce"]


def reproduce(name: str, out, quick: bool = False, device: str | None = None, **overrides) -> dict:
    if name not in REPRODUCTIONS:
        raise ValueError(f"unknown reproduction {name!r}; one of {sorted(REPRODUCTIONS)}")
    module = importlib.import_module(f".{REPRODUCTIONS[name]}", __name__)
    return module.run_reproduction(out, quick=quick, device=device, **overrides)

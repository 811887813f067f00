"""The ``lftaccel`` command.

    lftaccel sample {phi4,xy,oscillator} [--shape ...] [parameters] -n N -o run.h5 [--device cuda] [--resume]
    lftaccel measure run.h5 [--json]
    lftaccel spectral data.csv --method {nn,p2p,mem,tikhonov,tsvd} [--omega-min w --omega-max W --n-omega K] -o rho.csv
    lftaccel reproduce NAME [--quick] [--out DIR] [--device cuda]
    lftaccel train diffusion run.h5 -o dm.pt [--minutes M] [--resume]
    lftaccel generate dm.pt -n N -o dm.h5 [--exact]

``sample``, ``measure``, ``train``, ``generate`` and ``reproduce`` take ``--threads N`` (on a
shared machine, the free cores). ``lftaccel sample phi4`` with no options samples 2D phi^4 on
32x32 at kappa = 0.21, lambda = 0.022 (the symmetric-phase point of the diffusion-model work)
with HMC.
The command fixes glibc's malloc thresholds at start (lftaccel.runtime.steady_malloc; torch
training steps ran up to 1.7x faster with them); LFTACCEL_STEADY_MALLOC=0 (or false, no, off)
leaves them alone.

The parser is in parser.py, the commands in sampling.py (sample, measure), spectral.py and
generative.py (reproduce, train, generate), the report they print in report.py.
"""

from __future__ import annotations

import os
import sys

from ..runtime import steady_malloc
from .generative import generate_command, reproduce_command, train_command
from .parser import build_parser
from .sampling import measure_command, sample_command
from .spectral import spectral_command

__all__ = ["main", "build_parser"]

COMMANDS = {"sample": sample_command, "measure": measure_command, "spectral": spectral_command,
            "reproduce": reproduce_command, "train": train_command, "generate": generate_command}


def _parse(argv):
    """parse_args, except that arguments no parser knows are refused by the subcommand's parser
    (argparse leaves them to the top-level one): every one-line error then begins
    "lftaccel <command>: error:"."""
    parser = build_parser()
    args, unknown = parser.parse_known_args(argv)
    if unknown:
        parser.subcommands[args.command].error(f"unrecognized arguments: {' '.join(unknown)}")
    return args


def main(argv=None) -> int:
    args = _parse(argv)
    if os.environ.get("LFTACCEL_STEADY_MALLOC", "1").strip().lower() not in ("0", "false", "no", "off"):
        steady_malloc()  # this process is ours: keep torch's freed tensors in the heap (runtime.py)
    # Prefixed like argparse's own one-line errors ("lftaccel sample: error: ..."), so a bad
    # option and a bad value read the same.
    prog = f"lftaccel {args.command}"
    try:
        COMMANDS[args.command](args)
    except KeyboardInterrupt:
        print(f"{prog}: interrupted", file=sys.stderr)
        return 130
    except (ValueError, TypeError, FileNotFoundError, OSError, FloatingPointError) as err:
        print(f"{prog}: error: {err}", file=sys.stderr)
        return 2
    return 0

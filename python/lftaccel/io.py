"""Ensembles on disk: one HDF5 file per run, readable with plain h5py.

Layout of a run file::

    configs          (n_samples, *lattice_shape)   the saved configurations
    chain            (n_samples,) int32             chain index of each
    update           (n_samples,) int64             Monte Carlo time (updates done) of each
    action           (n_samples,) float64           S of each
    history/acceptance  (n_updates,) float64        mean acceptance of every update
    state/field      (n_chains, *lattice_shape)     the chains' state, for --resume
                                                    (state/coeffs too for Fourier HMC)
    attrs: format, version, theory, theory_params (JSON), lattice_shape, seed, sampler,
           sampler_settings (JSON, with the initial_step_size the tuning started from),
           n_therm, spacing, n_target, complete, acceptance (mean over the sampling phase),
           divergent (all rejected non-finite updates) and divergent_thermalisation (those
           before sampling started), device, wall_seconds (the wall time of the run, summed
           over resumptions), build_info (JSON: lftaccel.build_info() of the build that ran
           it), state (JSON counters)

Samples are stored in the order they were taken: for each measurement, all chains.
Every write goes to a temporary file in the same folder, is flushed to disk, and
replaces the old file with os.replace, so a reader (or a killed run) never sees a
half-written file. Each checkpoint rewrites the whole file (simple and atomic), about
3 ms a MB on this project's 2-core machine (a helper: 0.04 s at 9 MB, 0.38 s at 135 MB), so a
run spends about that times its size over ``checkpoint_seconds`` of its time writing: raise
the interval for ensembles of many GB (which a run also holds in memory). The
acceptance history is a dataset, not an attribute: HDF5 attributes are limited to 64 KiB.
"""

from __future__ import annotations

import dataclasses
import glob
import json
import os
import warnings
from pathlib import Path

import h5py
import numpy as np

from .theories import XY, Oscillator, Phi4

__all__ = ["Ensemble", "write_run", "read_run", "theory_to_dict", "theory_from_dict", "atomic_path", "write_atomic",
           "writer_lock"]

FORMAT = "lftaccel-ensemble-1"


def theory_to_dict(theory) -> dict:
    d = {"name": type(theory).__name__, **theory._params()}
    if isinstance(theory, Oscillator) and theory.lam is not None:
        d.update(lam=theory.lam, f=theory.f)
    return d


def theory_from_dict(d: dict):
    d = dict(d)
    name = d.pop("name")
    if name == "Phi4":
        return Phi4(d["kappa"], d["lam"])
    if name == "XY":
        return XY(d["beta"])
    if name == "Oscillator":
        if d.get("lam") is not None:
            return Oscillator(d["beta"], d["m"], d["lam"], d["f"])
        return Oscillator.quartic(d["beta"], d["m"], d["c0"], d["c2"], d["c4"])
    raise ValueError(f"unknown theory {name!r} in ensemble file")


@dataclasses.dataclass
class Ensemble:
    """A run read back from disk (or about to be written)."""

    configs: np.ndarray
    chain: np.ndarray
    update: np.ndarray
    action: np.ndarray
    acceptance_history: np.ndarray
    attrs: dict
    state: dict | None = None

    @property
    def theory(self):
        return theory_from_dict(json.loads(self.attrs["theory_params"]))

    @property
    def lattice_shape(self) -> tuple:
        return tuple(int(s) for s in self.attrs["lattice_shape"])

    @property
    def n_chains(self) -> int:
        return int(self.attrs["n_chains"])

    def by_chain(self, values: np.ndarray | None = None) -> np.ndarray:
        """values (n_samples, ...) -> (n_per_chain, n_chains, ...): only complete rounds of
        measurements (each chain the same number of samples)."""
        values = self.configs if values is None else values
        nc = self.n_chains
        n = len(values) // nc
        v = values[: n * nc].reshape(n, nc, *values.shape[1:])
        if not np.array_equal(self.chain[: n * nc].reshape(n, nc), np.tile(np.arange(nc), (n, 1))):
            raise ValueError("samples are not stored chain-interleaved; the file is not an lftaccel run")
        return v


def writer_lock(path, what: str = "path"):
    """Holds ``.<name>.lock`` beside ``path`` (an exclusive flock) while a run writes ``path``:
    a second run writing the same file is refused at once, instead of replacing the first's
    output at its next checkpoint with both reporting success (a helper's two runs of one -o,
    started within the first's checkpoint interval). Under the lock, temporary files of earlier
    writers of ``path`` (``.<name>.tmp-<pid>``, left by a kill during a write) are removed.
    Where fcntl is missing (not POSIX) nothing is locked. ``path`` is first checked writable
    (check_writable, naming it ``what``)."""
    check_writable(path, what)
    return _WriterLock(Path(os.path.realpath(path)))  # (a link and its target: one lock)


class _WriterLock:
    def __init__(self, path: Path):
        self.path, self.lock, self.fd = path, path.with_name(f".{path.name}.lock"), None

    def __enter__(self):
        try:
            import fcntl
        except ImportError:  # pragma: no cover
            return self
        while True:
            fd = os.open(self.lock, os.O_RDWR | os.O_CREAT, 0o644)
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                holder = os.pread(fd, 32, 0).decode(errors="replace").strip()
                os.close(fd)
                raise ValueError(f"another process{f' (pid {holder})' if holder else ''} is writing {self.path}: "
                                 f"wait for it to finish, or write elsewhere") from None
            except OSError as err:  # a file system without flock (Lustre -o noflock, NFS without lockd)
                os.close(fd)
                warnings.warn(f"{self.path}: cannot lock {self.lock} ({err.strerror}); writing without the lock, "
                              "so make sure no other run writes this file", RuntimeWarning, stacklevel=3)
                return self
            # A holder that finished unlinks the lock file: if that happened between the open and
            # the flock, this lock is on a file no one else will open; take a fresh one.
            try:
                current = os.stat(self.lock).st_ino == os.fstat(fd).st_ino
            except FileNotFoundError:
                current = False
            if current:
                break
            os.close(fd)
        self.fd = fd
        os.ftruncate(fd, 0)
        os.pwrite(fd, str(os.getpid()).encode(), 0)
        for stale in glob.glob(glob.escape(_tmp_prefix(self.path)) + "*"):
            try:
                os.unlink(stale)
            except OSError:
                pass
        return self

    def __exit__(self, *exc):
        if self.fd is not None:
            try:
                os.unlink(self.lock)  # before the unlock: a waiter then retries on a fresh file
            except OSError:
                pass
            os.close(self.fd)
            self.fd = None
        return False


def atomic_path(path) -> Path:
    path = Path(path)
    return Path(_tmp_prefix(path) + str(os.getpid()))


def _tmp_prefix(path: Path) -> str:
    """The temporary files of writers of ``path`` are this followed by the writer's pid."""
    return str(path.with_name(f".{path.name}.tmp-"))


def check_writable(path, what: str) -> None:
    """A ValueError unless a file can be created at ``path`` (named ``what`` in the message):
    for commands to check before minutes of work, not after."""
    path = Path(path)
    if path.is_dir():
        raise ValueError(f"{what} {path} is a directory")
    if not path.parent.is_dir():
        raise ValueError(f"{what} {path}: the directory {path.parent} does not exist")


def _check_room(path: Path, size: int) -> None:
    """An OSError unless a file of about ``size`` bytes fits beside ``path``: on its disk, and
    under the process's file-size limit (ulimit -f, where the helper's crash was reproduced). A
    disk quota is not seen here: a write that exceeds one can still crash in h5py."""
    need = 1.02 * size + (1 << 20)  # HDF5's own structures besides the arrays
    st = os.statvfs(path.parent)
    free = st.f_bavail * st.f_frsize
    if free < need:
        raise OSError(f"no room to write {path}: about {need / 1e6:.1f} MB needed, {free / 1e6:.1f} MB free on "
                      f"its disk")
    try:
        import resource
    except ImportError:  # pragma: no cover
        return
    limit = resource.getrlimit(resource.RLIMIT_FSIZE)[0]
    if limit != resource.RLIM_INFINITY and limit < need:
        raise OSError(f"cannot write {path}: about {need / 1e6:.1f} MB needed, above this process's file-size "
                      f"limit of {limit / 1e6:.1f} MB (ulimit -f)")


def write_atomic(path, write, size_hint: int | None = None) -> None:
    """Calls write(tmp) on a temporary file beside ``path``, then makes it ``path`` atomically.

    The file is closed, flushed to disk, renamed over the old one, and the rename itself made
    durable: a crash at any point leaves the old or the new file whole, never a mixture. A
    symbolic link at ``path`` is followed: its target is replaced, not the link. With
    ``size_hint`` (bytes), a disk without that much room is refused first with an OSError: HDF5
    running out of space in the middle of a write crashed the process (a helper's checkpoint
    under a file-size limit: a segmentation fault in h5py's close)."""
    path = Path(os.path.realpath(path))
    tmp = atomic_path(path)
    if size_hint is not None:
        _check_room(path, size_hint)
    try:
        write(tmp)
        fd = os.open(tmp, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)
        os.replace(tmp, path)
        dir_fd = os.open(path.parent, os.O_RDONLY)
        try:
            os.fsync(dir_fd)
        finally:
            os.close(dir_fd)
    finally:
        if tmp.exists():
            tmp.unlink()


def write_run(path, ens: Ensemble) -> None:
    """Writes the run atomically (temporary file, fsync, os.replace)."""

    def write(tmp):
        with h5py.File(tmp, "w") as f:
            f.create_dataset("configs", data=ens.configs, chunks=True if len(ens.configs) else None)
            f.create_dataset("chain", data=ens.chain.astype(np.int32))
            f.create_dataset("update", data=ens.update.astype(np.int64))
            f.create_dataset("action", data=ens.action.astype(np.float64))
            f.create_dataset("history/acceptance", data=np.asarray(ens.acceptance_history, np.float64))
            if ens.state is not None:
                arrays = {k: v for k, v in ens.state.items() if isinstance(v, np.ndarray) and k != "acceptance"}
                for k, v in arrays.items():
                    f.create_dataset(f"state/{k}", data=v)
                f.attrs["state"] = json.dumps({k: v for k, v in ens.state.items()
                                               if k not in arrays and k != "acceptance"})
            for k, v in ens.attrs.items():
                f.attrs[k] = v
            f.attrs["format"] = FORMAT

    arrays = [ens.configs, ens.chain, ens.update, ens.action, np.asarray(ens.acceptance_history)]
    arrays += [v for k, v in (ens.state or {}).items() if isinstance(v, np.ndarray) and k != "acceptance"]
    write_atomic(path, write, size_hint=sum(int(a.nbytes) for a in arrays))


def read_run(path) -> Ensemble:
    """Reads a run file written by :func:`write_run` (plain h5py works too)."""
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"no such ensemble file: {path}")
    if path.is_dir():
        raise ValueError(f"{path} is a directory, not an ensemble file")
    try:
        f = h5py.File(path, "r")
    except OSError as err:  # HDF5's message spans lines: the command prints errors on one
        raise ValueError(f"{path} is not an HDF5 file ({' '.join(str(err).split())})") from None
    with f:
        if f.attrs.get("format") != FORMAT:
            raise ValueError(f"{path} is not an lftaccel ensemble (format attribute "
                             f"{f.attrs.get('format')!r}, expected {FORMAT!r})")
        attrs = {k: (v.item() if isinstance(v, np.generic) else v) for k, v in f.attrs.items()}
        missing = [k for k in ("configs", "chain", "update", "action", "history/acceptance") if k not in f]
        if missing or ("state" in f) != ("state" in attrs):
            raise ValueError(f"{path} is an incomplete lftaccel ensemble (missing "
                             f"{', '.join(missing) or 'the state attribute or group'})")
        state = None
        if "state" in f:
            state = json.loads(attrs.pop("state"))
            for k, v in f["state"].items():
                state[k] = v[...]
            state["acceptance"] = f["history/acceptance"][...]
        ens = Ensemble(configs=f["configs"][...], chain=f["chain"][...], update=f["update"][...],
                       action=f["action"][...], acceptance_history=f["history/acceptance"][...],
                       attrs=attrs, state=state)
    _check_run(path, ens)
    return ens


_RUN_ATTRS = ("theory_params", "lattice_shape", "n_chains", "sampler_settings", "acceptance", "divergent")


def _check_run(path, ens: Ensemble) -> None:
    """A one-line ValueError where the attributes that measuring and resuming read are missing
    or disagree with the data (a hand-edited file gave KeyError and ZeroDivisionError
    tracebacks, and a wrong lattice_shape was measured as given)."""
    missing = [k for k in _RUN_ATTRS if k not in ens.attrs]
    if missing:
        raise ValueError(f"{path} is an incomplete lftaccel ensemble (missing the attribute(s) {', '.join(missing)})")
    try:
        theory_from_dict(json.loads(ens.attrs["theory_params"]))
    except (KeyError, TypeError, ValueError, AttributeError) as err:  # (json's errors are ValueErrors)
        raise ValueError(f"{path}: theory_params {ens.attrs['theory_params']!r} describes no theory "
                         f"({type(err).__name__}: {err})") from None
    try:
        settings = json.loads(ens.attrs["sampler_settings"])
        nc = int(ens.attrs["n_chains"])
        shape = tuple(int(s) for s in np.ravel(ens.attrs["lattice_shape"]))
    except (TypeError, ValueError) as err:
        raise ValueError(f"{path}: unreadable sampler_settings, n_chains or lattice_shape ({err})") from None
    if not isinstance(settings, dict):
        raise ValueError(f"{path}: sampler_settings is not a JSON object")
    if nc < 1:
        raise ValueError(f"{path}: n_chains must be >= 1, got {nc}")
    n = len(ens.configs)
    if ens.configs.shape[1:] != shape:
        raise ValueError(f"{path}: configs have shape {ens.configs.shape[1:]} per sample, but lattice_shape "
                         f"says {shape}")
    if not (len(ens.chain) == len(ens.update) == len(ens.action) == n):
        raise ValueError(f"{path}: configs, chain, update and action differ in length "
                         f"({n}, {len(ens.chain)}, {len(ens.update)}, {len(ens.action)})")
    if n and (n % nc or ens.chain.max() >= nc or ens.chain.min() < 0):
        raise ValueError(f"{path}: {n} samples and chain indices {int(ens.chain.min())}..{int(ens.chain.max())} "
                         f"do not fit n_chains = {nc}")

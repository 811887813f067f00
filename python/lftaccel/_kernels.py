"""Thin, validated calls into the compiled module ``lftaccel._C``.

Inputs may be numpy arrays or torch tensors (CPU or CUDA). Outputs are allocated
here, like the input (numpy in, numpy out; torch in, torch out on the same device),
unless the caller passes preallocated ones. Nothing is copied or converted
implicitly: a buffer of the wrong dtype or layout is refused with an error that
names the argument. These functions do not record autograd history; the
differentiable entry points are the custom ops in :mod:`lftaccel.ops`.
"""

from __future__ import annotations

import math
import re

import numpy as np
import torch
from torch.autograd.graph import increment_version

from . import _C

FLOAT_DTYPES = (torch.float32, torch.float64)


_MAX_THREADS = _C.max_nthreads()


def _nthreads() -> int:
    """torch's thread count, so the kernels never oversubscribe what torch uses."""
    return min(torch.get_num_threads(), _MAX_THREADS)


def check_array(x, name: str, *, min_dims: int = 1, max_dims: int = 4):
    """Validates a (batch, *lattice) field and returns it unchanged."""
    if isinstance(x, torch.Tensor):
        if x.dtype not in FLOAT_DTYPES:
            raise TypeError(f"{name} must have dtype torch.float32 or torch.float64, got {x.dtype}")
        if x.device.type not in ("cpu", "cuda"):
            raise ValueError(f"{name} must be on the CPU or a CUDA device, got {x.device}")
        if not x.is_contiguous():
            raise ValueError(f"{name} must be contiguous; call .contiguous() first")
    elif isinstance(x, np.ndarray):
        if x.dtype not in (np.float32, np.float64):
            if x.dtype.kind == "f" and x.dtype.itemsize in (4, 8) and not x.dtype.isnative:  # '>f8' from a file
                raise TypeError(f"{name} must be in native byte order, got {x.dtype}: convert it with "
                                f"{name}.astype({name}.dtype.newbyteorder('='))")
            raise TypeError(f"{name} must have dtype float32 or float64, got {x.dtype}")
        if not x.flags.c_contiguous:
            raise ValueError(f"{name} must be C-contiguous; use numpy.ascontiguousarray first")
    else:
        raise TypeError(f"{name} must be a torch.Tensor or numpy.ndarray, got {type(x).__name__}")
    if not (1 + min_dims <= x.ndim <= 1 + max_dims):
        dims = f"{min_dims}" if min_dims == max_dims else f"{min_dims}..{max_dims}"
        raise ValueError(
            f"{name} must have shape (batch, *lattice) with {dims} lattice dimension(s), "
            f"got shape {tuple(x.shape)}"
        )
    if x.shape[0] < 1:
        raise ValueError(f"{name} has an empty batch: shape {tuple(x.shape)}")
    if any(s < 1 for s in x.shape[1:]):
        raise ValueError(f"{name} has a lattice extent < 1: shape {tuple(x.shape)}")
    return x


def check_param(value, name: str, *, low=None, low_open=False) -> float:
    """A finite real parameter, optionally bounded below; returns it as float."""
    if isinstance(value, bool) or not isinstance(value, (int, float, np.floating, np.integer)):
        if (isinstance(value, torch.Tensor) and value.numel() == 1 and value.device.type != "meta"
                and (value.is_floating_point() or not value.is_complex())):
            value = value.item()
        else:
            raise TypeError(f"{name} must be a real number, got {type(value).__name__}")
    try:
        value = float(value)
    except OverflowError:
        raise ValueError(f"{name} must be finite, got an integer too large for a float") from None
    if not math.isfinite(value):
        raise ValueError(f"{name} must be finite, got {value}")
    if low is not None and (value <= low if low_open else value < low):
        raise ValueError(f"{name} must be {'>' if low_open else '>='} {low}, got {value}")
    return value


def check_int(value, name: str, *, low: int = 1) -> int:
    """An integer count (not a bool) >= low; a ValueError naming it otherwise."""
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < low:
        what = "a positive integer" if low == 1 else f"an integer >= {low}"
        raise ValueError(f"{name} must be {what}, got {value!r}")
    return int(value)


def finite_result(value: float, name: str) -> float:
    """A derived parameter (e.g. lam f^4) must not overflow either."""
    if not math.isfinite(value):
        raise ValueError(f"{name} is too large: a derived coefficient overflows")
    return value


def _written(*pairs) -> list:
    """The torch tensors among (buffer, name) pairs that a kernel is about to overwrite, once
    none of them is recording autograd history: the kernel writes raw memory, which autograd
    cannot see, so a gradient through such a tensor would silently use the new values (torch
    refuses an in-place op on a tensor that requires grad the same way, outside no_grad).
    Hand the list to _mark_written after the call."""
    tensors = []
    for x, name in pairs:
        if isinstance(x, torch.Tensor):
            if x.requires_grad and torch.is_grad_enabled():
                raise ValueError(f"{name} requires grad, and the kernel overwrites it in place, which autograd "
                                 f"cannot record: pass {name}.detach(), or call under torch.no_grad()")
            tensors.append(x)
    return tensors


def _bump_versions_of_sequences():
    """torch._C._increment_version if it takes a sequence (torch >= 2.5: one call for all the
    outputs, inference tensors skipped inside), else None."""
    bump = getattr(torch._C, "_increment_version", None)
    try:
        bump((torch.empty(0),))
    except (TypeError, RuntimeError):
        return None
    return bump


_BUMP_VERSIONS = _bump_versions_of_sequences()


def _mark_written(tensors) -> None:
    """Bumps autograd's version counter of tensors a kernel has overwritten, as torch's own
    in-place ops do: a graph that saved one of them then refuses to backpropagate through
    the stale value instead of using the new one. (One call for all where torch takes a
    sequence; a call per tensor before, as torch before 2.5 takes no list. Inference tensors
    have no counter.)"""
    if _BUMP_VERSIONS is not None:
        _BUMP_VERSIONS(tensors)
        return
    for t in tensors:
        if not t.is_inference():
            increment_version(t)


def _raw(x, name: str):
    """The object handed to _C: a numpy view of a CPU tensor, the CUDA tensor itself
    (read through __cuda_array_interface__), a numpy array as it is. _C validates
    dtype, rank, extents and layout, and names the argument when it refuses."""
    if type(x) is torch.Tensor and x.is_cpu and not x.requires_grad:  # the hot path
        try:
            return x.numpy()
        except (TypeError, RuntimeError):
            pass  # said below
    if isinstance(x, np.ndarray):
        return x
    if isinstance(x, torch.Tensor):
        # is_cpu / is_cuda and a conditional detach cost a fraction of building device objects
        if x.requires_grad:
            x = x.detach()
        if x.is_cpu:
            try:
                return x.numpy()
            except (TypeError, RuntimeError) as err:  # e.g. bfloat16 has no numpy twin
                if x.layout != torch.strided:
                    raise ValueError(f"{name} must be a dense (strided) tensor, got layout {x.layout}") from err
                if x.is_neg() or x.is_conj():
                    raise ValueError(f"{name} carries a lazy negation/conjugation bit; "
                                     f"call .resolve_neg() / .resolve_conj() first") from err
                raise TypeError(f"{name} must have dtype float32 or float64, got {x.dtype}") from err
        if x.is_cuda:
            # __cuda_array_interface__ exports the raw memory: a lazy sign bit would be lost.
            if x.is_neg() or x.is_conj():
                raise ValueError(f"{name} carries a lazy negation/conjugation bit; "
                                 f"call .resolve_neg() / .resolve_conj() first")
            return x
        raise ValueError(f"{name} must be on the CPU or a CUDA device, got {x.device}")
    raise TypeError(f"{name} must be a torch.Tensor or numpy.ndarray, got {type(x).__name__}")


def _stream(x) -> int:
    if isinstance(x, torch.Tensor) and x.is_cuda:
        return torch.cuda.current_stream(x.device).cuda_stream
    return 0


_TORCH_DTYPES = {np.float64: torch.float64, np.uint32: torch.uint32}


def _new(like, shape, dtype=None):
    """An empty array on like's device and of like's kind; dtype (a numpy scalar type)
    defaults to like's."""
    if isinstance(like, torch.Tensor):
        dt = like.dtype if dtype is None else _TORCH_DTYPES[dtype]
        return torch.empty(shape, dtype=dt, device=like.device)
    return np.empty(shape, dtype=like.dtype if dtype is None else dtype)


def _out(out, name, like, shape):
    """A preallocated output (validated by _C), or a new one like the input. Its dtype must be
    the input's: _C also takes a float64 action for a float32 field (_wide_action uses that
    internally), which the public functions do not offer."""
    if out is None:
        return _new(like, shape)
    if isinstance(like, torch.Tensor) != isinstance(out, torch.Tensor):
        kind = "torch.Tensor" if isinstance(like, torch.Tensor) else "numpy.ndarray"
        raise TypeError(f"{name} must be a {kind} like the input, got {type(out).__name__}")
    dtype = getattr(out, "dtype", None)
    if dtype is not None and dtype != like.dtype:
        raise TypeError(f"{name} must have the input's dtype {like.dtype}, got {dtype}")
    return out


_STENCILS = {"phi4": _C.phi4, "xy": _C.xy, "oscillator": _C.oscillator}
# The parameters of each binding, in its positional order (also the ops' schema).
STENCIL_PARAMS = {"phi4": ("kappa", "lam"), "xy": ("beta",), "oscillator": ("beta", "m", "c0", "c2", "c4")}


def stencil(kernel: str, x, params: dict, *, action=True, grad=True, action_out=None, grad_out=None):
    """Runs a lattice kernel ('phi4', 'xy', 'oscillator') and returns (action, grad).

    Either output is None when not requested. This is the hot path of the samplers,
    so it validates only what _C cannot see; _C checks the rest.
    """
    fast = _stencil_cpu_tensors(kernel, x, params, action, grad, action_out, grad_out)
    if fast is not None:
        return fast
    fn = _STENCILS.get(kernel)
    if fn is None:
        raise ValueError(f"kernel must be one of {sorted(_STENCILS)}, got {kernel!r}")
    if not (action or grad):
        raise ValueError("at least one of action and grad must be requested")
    try:
        values = [params[k] for k in STENCIL_PARAMS[kernel]]
    except KeyError:
        raise ValueError(f"params for {kernel!r} need {list(STENCIL_PARAMS[kernel])}, "
                         f"got {sorted(params)}") from None
    xr = _raw(x, "x")
    a = _out(action_out, "action_out", x, x.shape[:1]) if action else None
    g = _out(grad_out, "grad_out", x, x.shape) if grad else None
    written = _written((action_out, "action_out"), (grad_out, "grad_out"))  # the caller's outputs
    wide = _wide_action(x, a, g)
    try:
        # Positional: pybind11's keyword matching costs microseconds per call.
        fn(xr, None if a is None else _raw(a if wide is None else wide, "action_out"),
           None if g is None else _raw(g, "grad_out"), *values, _nthreads(), _stream(x))
    except (ValueError, TypeError) as err:
        # _C names its outputs 'action' and 'grad'; here they are action_out and grad_out.
        msg = str(err)
        for raw, public in (("action", "action_out"), ("grad", "grad_out")):
            if (raw == "action" and action_out is not None) or (raw == "grad" and grad_out is not None):
                # Only where the name is the subject: "grad must ...", "action and grad must ...".
                msg = re.sub(rf"(^|^action(?:_out)? and ){raw}\b(?!_)", rf"\g<1>{public}", msg)
        if msg != str(err):
            raise type(err)(msg) from None
        raise
    if wide is not None:
        _round_into(a, wide)
    _mark_written(written)
    return a, g


def _stencil_cpu_tensors(kernel, x, params, action, grad, action_out, grad_out):
    """stencil() for the common case, with as little Python as can be: CPU tensors of one float
    dtype, none recording autograd history, outputs given or not. Returns None for anything else,
    and on any error, so that stencil's full path runs and names what is wrong. Between kernel
    calls that stream a lattice through the caches the interpreter runs cold, so every line here
    costs about twice what it does in a tight loop: at 64 x 64^2 float64 on 2 threads the full
    path added 10-17 us to a 37 us kernel, this one adds 3-4 us."""
    if _BUMP_VERSIONS is None or type(x) is not torch.Tensor or not (action or grad):
        return None
    dtype = x.dtype
    try:
        if not x.is_cpu or x.requires_grad or (dtype is not torch.float64 and dtype is not torch.float32):
            return None
        outputs = []
        a = g = None
        if action:
            a = torch.empty(x.shape[:1], dtype=dtype) if action_out is None else action_out
            if type(a) is not torch.Tensor or not a.is_cpu or a.requires_grad or a.dtype is not dtype:
                return None
            outputs.append(a)
        if grad:
            g = torch.empty(x.shape, dtype=dtype) if grad_out is None else grad_out
            if type(g) is not torch.Tensor or not g.is_cpu or g.requires_grad or g.dtype is not dtype:
                return None
            outputs.append(g)
        fn = _STENCILS[kernel]
        values = [params[k] for k in STENCIL_PARAMS[kernel]]
        fn(x.numpy(), None if a is None else a.numpy(), None if g is None else g.numpy(), *values,
           min(torch.get_num_threads(), _MAX_THREADS), 0)
    except (TypeError, ValueError, RuntimeError, KeyError, IndexError):
        return None  # _C refused (before writing anything), or numpy() did: the full path says why
    _BUMP_VERSIONS(outputs)
    return a, g


def _wide_action(x, action, *others):
    """A float64 buffer for the action of a float32 CUDA field (None otherwise): the kernels add
    their blocks' double sums into it in double, and the copy into the float32 action rounds
    once. Summed into float32 directly, the atomic adds round at the running total's magnitude
    in an order that changes from run to run (see cuda.hpp). An action buffer that _C would
    refuse (wrong shape, device or layout, overlapping an input or another output) is handed
    to _C as it is, to be named in its error."""
    if not (isinstance(x, torch.Tensor) and x.is_cuda and x.dtype == torch.float32
            and isinstance(action, torch.Tensor)):
        return None
    try:
        if not (action.dtype == torch.float32 and action.device == x.device and action.shape == x.shape[:1]
                and action.is_contiguous() and not any(_overlap(action, t) for t in (x, *others))):
            return None
    except RuntimeError:  # no storage to compare (a FakeTensor under tracing): _C says what is wrong
        return None
    return torch.empty(action.shape, dtype=torch.float64, device=action.device)


def _overlap(a, b) -> bool:
    """Whether two CUDA tensors share memory (False for anything that is not one)."""
    if not (isinstance(b, torch.Tensor) and b.is_cuda) or a.numel() == 0 or b.numel() == 0:
        return False
    a0, b0 = a.data_ptr(), b.data_ptr()
    return a0 < b0 + b.numel() * b.element_size() and b0 < a0 + a.numel() * a.element_size()


def _round_into(action, wide) -> None:
    """action <- wide rounded to float32 (an inference tensor is written in inference mode, as
    _C wrote its raw memory before)."""
    with torch.inference_mode(action.is_inference()):
        action.copy_(wide)


def oscillator_fourier(coeffs, path, params: dict, *, action=True, grad_coeffs=True, grad_path=True,
                       out=None):
    """Matsubara oscillator kernel: (action, kinetic grad in c-space, potential grad in x-space).

    ``out`` may give preallocated (action, grad_coeffs, grad_path); None entries are skipped.
    """
    check_array(coeffs, "coeffs", min_dims=1, max_dims=1)
    check_array(path, "path", min_dims=1, max_dims=1)
    if isinstance(coeffs, torch.Tensor) != isinstance(path, torch.Tensor):
        raise TypeError("coeffs and path must both be torch tensors or both numpy arrays")
    if isinstance(coeffs, torch.Tensor) and coeffs.device != path.device:
        raise ValueError(f"coeffs is on {coeffs.device} but path is on {path.device}")
    written = []
    if out is not None:
        a, gc, gx = (_out(o, n, coeffs, None) if o is not None else None
                     for o, n in zip(out, ("action", "grad_coeffs", "grad_path")))
        written = _written((a, "action"), (gc, "grad_coeffs"), (gx, "grad_path"))
    else:
        a = _new(coeffs, coeffs.shape[:1]) if action else None
        gc = _new(coeffs, tuple(coeffs.shape)) if grad_coeffs else None
        gx = _new(coeffs, tuple(coeffs.shape)) if grad_path else None
    wide = _wide_action(coeffs, a, path, gc, gx)
    _C.oscillator_fourier(_raw(coeffs, "coeffs"), _raw(path, "path"),
                          None if a is None else _raw(a if wide is None else wide, "action"),
                          None if gc is None else _raw(gc, "grad_coeffs"),
                          None if gx is None else _raw(gx, "grad_path"),
                          nthreads=_nthreads(), stream=_stream(coeffs), **params)
    if wide is not None:
        _round_into(a, wide)
    _mark_written(written)
    return a, gc, gx


def philox_fill(out, kind: str, *, seed: int, step: int = 0, purpose: int = 0, chain_offset: int = 0):
    """Fills ``out`` (batch, *sites) from lftaccel's Philox streams; see philox.hpp."""
    written = _written((out, "out"))
    _C.philox_fill(_raw(out, "out"), kind, seed=seed, step=step, purpose=purpose,
                   chain_offset=chain_offset, nthreads=_nthreads(), stream=_stream(out))
    _mark_written(written)
    return out

"""build_info reports what was compiled and what is visible; the CMake options behave."""

import os
import pathlib
import platform
import re
import shutil
import subprocess
import sys

import pytest
import torch

import lftaccel


def test_build_info_keys():
    info = lftaccel.build_info()
    for key in ["version", "cuda", "cuda_architectures", "openmp", "cuda_devices", "compiler", "torch"]:
        assert key in info
    assert info["version"] == lftaccel.__version__
    # the commit built: a git describe (hex, maybe a tag and -dirty), or "unknown" outside a checkout
    assert re.fullmatch(r"unknown|[\w.+-]*[0-9a-f]{7,40}(-dirty)?", info["source_commit"]), info["source_commit"]
    assert isinstance(info["cuda"], bool) and isinstance(info["openmp"], bool)
    if info["cuda"]:
        assert info["cuda_architectures"]
    # The kernels' view of the devices agrees with torch's in count.
    assert len(info["cuda_devices"]) == (torch.cuda.device_count() if torch.cuda.is_available() else 0)


ROOT = pathlib.Path(__file__).resolve().parents[1]


def _configure(tmp_path, *args, path=None, cudacxx=None):
    env = dict(os.environ)
    env.pop("CUDACXX", None)
    if path is not None:
        env["PATH"] = path
    if cudacxx is not None:
        env["CUDACXX"] = cudacxx
    return subprocess.run(["cmake", "-S", str(ROOT), "-B", str(tmp_path / "b"), *args],
                          capture_output=True, text=True, env=env, timeout=300)


@pytest.mark.skipif(shutil.which("cmake") is None, reason="cmake not on PATH")
def test_cuda_on_without_nvcc_fails_clearly(tmp_path):
    # A PATH with cmake and the C++ compiler but no nvcc.
    # Where nvcc sits beside cmake, CUDACXX naming no file hides it from CMake instead.
    path = os.pathsep.join(str(pathlib.Path(shutil.which(t)).parent) for t in ("cmake", "c++"))
    hide = {"path": path} if not shutil.which("nvcc", path=path) else {"cudacxx": str(tmp_path / "no-nvcc")}
    for on in ("ON", "true"):  # any spelling of a CMake switch
        r = _configure(tmp_path, f"-DLFTACCEL_CUDA={on}", **hide)
        assert r.returncode != 0
        assert "LFTACCEL_CUDA=ON but no CUDA compiler (nvcc) was found" in r.stderr
        shutil.rmtree(tmp_path / "b")
    r = _configure(tmp_path, "-DLFTACCEL_CUDA=AUTO", **hide)
    assert r.returncode == 0 and "nvcc not found, building the CPU kernels only" in r.stdout


@pytest.mark.skipif(shutil.which("cmake") is None, reason="cmake not on PATH")
@pytest.mark.parametrize("off", ["OFF", "off", "0"])
def test_cuda_off_builds_cpu_only(tmp_path, off):
    # (compared as the exact string OFF, "off" used to build the CUDA kernels where nvcc was found)
    r = _configure(tmp_path, f"-DLFTACCEL_CUDA={off}")
    assert r.returncode == 0 and "CUDA kernels for" not in r.stdout
    assert "building the CPU kernels only" in r.stdout


@pytest.mark.skipif(shutil.which("cmake") is None, reason="cmake not on PATH")
def test_cuda_option_refuses_other_values(tmp_path):
    r = _configure(tmp_path, "-DLFTACCEL_CUDA=maybe")
    assert r.returncode != 0 and "LFTACCEL_CUDA must be AUTO, ON or OFF, got 'maybe'" in r.stderr


@pytest.mark.skipif(platform.libc_ver()[0] != "glibc", reason="mallopt thresholds are glibc's")
def test_steady_malloc_takes_effect():
    """In a subprocess: the setting lasts for the process, and this one runs other tests."""
    code = "import lftaccel, sys; sys.exit(0 if lftaccel.steady_malloc() is True else 1)"
    assert subprocess.run([sys.executable, "-c", code], timeout=120).returncode == 0


def test_steady_malloc_names_a_bad_threshold():
    for bad in (1000, 2.0e9, True):
        with pytest.raises(ValueError, match="threshold"):
            lftaccel.steady_malloc(bad)


@pytest.mark.parametrize("env,calls", [(None, 1), ("1", 1), ("0", 0), ("off", 0)])
def test_command_fixes_malloc_unless_told_not_to(monkeypatch, tmp_path, env, calls):
    """The lftaccel command owns its process, so it keeps torch's freed tensors in the heap
    (lftaccel.runtime); LFTACCEL_STEADY_MALLOC=0 opts out."""
    from lftaccel import cli

    seen = []
    monkeypatch.setattr(cli, "steady_malloc", lambda: seen.append(True))
    if env is None:
        monkeypatch.delenv("LFTACCEL_STEADY_MALLOC", raising=False)
    else:
        monkeypatch.setenv("LFTACCEL_STEADY_MALLOC", env)
    assert cli.main(["measure", str(tmp_path / "missing.h5")]) == 2  # fails after the setting
    assert len(seen) == calls

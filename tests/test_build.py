"""build_info reports what was compiled and what is visible; the CMake options behave."""

import os
import pathlib
import shutil
import subprocess

import pytest
import torch

import lftaccel


def test_build_info_keys():
    info = lftaccel.build_info()
    for key in ["version", "cuda", "cuda_architectures", "openmp", "cuda_devices", "compiler", "torch"]:
        assert key in info
    assert info["version"] == lftaccel.__version__
    assert isinstance(info["cuda"], bool) and isinstance(info["openmp"], bool)
    if info["cuda"]:
        assert info["cuda_architectures"]
    # The kernels' view of the devices agrees with torch's in count.
    assert len(info["cuda_devices"]) == (torch.cuda.device_count() if torch.cuda.is_available() else 0)


ROOT = pathlib.Path(__file__).resolve().parents[1]


def _configure(tmp_path, *args, path=None):
    env = dict(os.environ)
    env.pop("CUDACXX", None)
    if path is not None:
        env["PATH"] = path
    return subprocess.run(["cmake", "-S", str(ROOT), "-B", str(tmp_path / "b"), *args],
                          capture_output=True, text=True, env=env, timeout=300)


@pytest.mark.skipif(shutil.which("cmake") is None, reason="cmake not on PATH")
def test_cuda_on_without_nvcc_fails_clearly(tmp_path):
    # A PATH with cmake and the C++ compiler but no nvcc.
    path = os.pathsep.join(str(pathlib.Path(shutil.which(t)).parent) for t in ("cmake", "c++"))
    if shutil.which("nvcc", path=path):
        pytest.skip("nvcc sits beside cmake on this machine")
    r = _configure(tmp_path, "-DLFTACCEL_CUDA=ON", path=path)
    assert r.returncode != 0
    assert "LFTACCEL_CUDA=ON but no CUDA compiler (nvcc) was found" in r.stderr
    r = _configure(tmp_path, "-DLFTACCEL_CUDA=AUTO", path=path)
    assert r.returncode == 0 and "building the CPU kernels only" in r.stdout


@pytest.mark.skipif(shutil.which("cmake") is None, reason="cmake not on PATH")
def test_cuda_off_builds_cpu_only(tmp_path):
    r = _configure(tmp_path, "-DLFTACCEL_CUDA=OFF")
    assert r.returncode == 0 and "CUDA kernels" not in r.stdout

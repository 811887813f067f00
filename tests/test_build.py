"""build_info reports what was compiled and what is visible."""

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

#!/usr/bin/env bash
# One prepared run for a lent GPU machine: build there, run the CUDA tests and the
# CUDA kernel and sampler benchmarks, and leave everything under $OUT (default ./gpu-results).
# --no-deps: the GPU box has no network; h5py/pyerrors/tqdm are only needed for runs on disk.
#   OUT=/some/dir bash benchmarks/gpu_check.sh
# The GPU environment has torch, nvcc, pybind11 and scikit-build-core but no network,
# hence --no-build-isolation. Each step keeps going after a failure so one run says all.
set -uo pipefail
OUT=${OUT:-gpu-results}
mkdir -p "$OUT"
nvidia-smi > "$OUT/nvidia-smi.txt" 2>&1
{ time pip install --no-build-isolation --no-deps . ; } > "$OUT/build.log" 2>&1
python -c "import json, lftaccel; print(json.dumps(lftaccel.build_info(), indent=1))" \
    > "$OUT/build_info.json" 2>&1
python -m pytest -q -m cuda -p no:cacheprovider tests/test_lattice_kernels.py tests/test_oscillator.py \
    tests/test_philox.py tests/test_bad_input.py tests/test_mcmc_kernels.py tests/test_can.py \
    > "$OUT/pytest-cuda.log" 2>&1
python benchmarks/bench_kernels.py --device cuda --dtype both --json "$OUT/kernels-cuda.json" \
    > "$OUT/bench-cuda.txt" 2>&1
python benchmarks/bench_samplers.py --device cuda --skip-scaling --json "$OUT/samplers-cuda.json" \
    > "$OUT/bench-samplers-cuda.txt" 2>&1
# the generative samplers on the GPU, short: throughput against batch size, the cache's gain
timeout 300 python benchmarks/bench_flows.py --device cuda --points phi4 --train-seconds 60 --samples 16384 \
    --out "$OUT" > "$OUT/bench-flows-cuda.txt" 2>&1
timeout 300 python benchmarks/bench_can.py --device cuda --train-seconds 90 --samples 8192 --out "$OUT" \
    > "$OUT/bench-can-cuda.txt" 2>&1
timeout 300 python benchmarks/bench_diffusion.py --device cuda --L 8 --train-minutes 2 --samples 1024 --out "$OUT" \
    > "$OUT/bench-diffusion-cuda.txt" 2>&1
tail -n 3 "$OUT/pytest-cuda.log" "$OUT/bench-cuda.txt" "$OUT/bench-samplers-cuda.txt" "$OUT/bench-flows-cuda.txt" \
    "$OUT/bench-can-cuda.txt" "$OUT/bench-diffusion-cuda.txt"

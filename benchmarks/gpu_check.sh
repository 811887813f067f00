#!/usr/bin/env bash
# Prepared runs for a lent GPU machine: build there, run the CUDA tests and benchmarks, and
# leave everything under $OUT (default ./gpu-results).
#
#   OUT=$OUT bash benchmarks/gpu_check.sh core     # build, CUDA tests, kernel + sampler benchmarks
#   OUT=$OUT bash benchmarks/gpu_check.sh models   # flows, CAN and diffusion on the GPU, short
#
# A device call may last 10 minutes and a session has 15 in all, start-up included: each phase's
# step timeouts sum to 540 s, build included. Run core first (it checks the kernels: issues 2
# and 3); run models only if the session has time left (it reuses the build while the machine
# is warm, and rebuilds otherwise). Every step has its own timeout and the script goes on after
# a failure, so one call says all it can.
#
# The GPU box has no network and its python3 (the one that holds torch) lacks pyerrors, which
# the benchmarks' Gamma-method errors need: fetch the wheels here first with
# benchmarks/gpu_wheels.sh and carry them (carry [".whl"]). The package is built with
# --no-build-isolation --no-deps (torch, nvcc, pybind11 and scikit-build-core are there).
set -uo pipefail
PHASE=${1:-core}
OUT=${OUT:-gpu-results}
PY=${PY:-python3}
mkdir -p "$OUT"
case "$PHASE" in core|models) ;; *) echo "usage: gpu_check.sh [core|models]" >&2; exit 2 ;; esac

if [ -d .whl ]; then
    $PY -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site \
        .whl/*.whl > "$OUT/wheels.log" 2>&1 && export PYTHONPATH=/tmp/site${PYTHONPATH:+:$PYTHONPATH}
fi
$PY -c "import pyerrors" >> "$OUT/wheels.log" 2>&1 || echo "pyerrors missing: benchmark errors will fail" | tee -a "$OUT/wheels.log"

if ! $PY -c "import lftaccel, sys; sys.exit(not lftaccel.build_info()['cuda'])" 2>/dev/null; then
    nvidia-smi > "$OUT/nvidia-smi.txt" 2>&1
    { time timeout 240 $PY -m pip install --no-build-isolation --no-deps . ; } > "$OUT/build.log" 2>&1
    tail -n 3 "$OUT/build.log"
fi
$PY -c "import json, lftaccel; print(json.dumps(lftaccel.build_info(), indent=1))" > "$OUT/build_info-$PHASE.json" 2>&1
cat "$OUT/build_info-$PHASE.json"

step() {  # step SECONDS LOGNAME command...: one step under its own timeout, its log in $OUT
    local limit=$1 log=$2
    shift 2
    local t0=$SECONDS
    timeout "$limit" "$@" > "$OUT/$log" 2>&1
    echo "== $log: exit $? in $((SECONDS - t0)) s"
    tail -n 4 "$OUT/$log"
}

if [ "$PHASE" = core ]; then
    step 120 pytest-cuda.log $PY -m pytest -q -m cuda -p no:cacheprovider tests  # the 78 CUDA-device tests
    step 100 bench-kernels-cuda.txt $PY benchmarks/bench_kernels.py --device cuda --dtype both \
        --json "$OUT/kernels-cuda.json"
    step 80 bench-samplers-cuda.txt $PY benchmarks/bench_samplers.py --device cuda --skip-scaling \
        --json "$OUT/samplers-cuda.json"
else
    # the generative samplers on the GPU, short: throughput against batch size, the cache's gain
    step 90 bench-flows-cuda.txt $PY benchmarks/bench_flows.py --device cuda --points phi4 --train-seconds 30 \
        --samples 16384 --out "$OUT"
    step 90 bench-can-cuda.txt $PY benchmarks/bench_can.py --device cuda --train-seconds 30 --samples 8192 \
        --out "$OUT"
    step 120 bench-diffusion-cuda.txt $PY benchmarks/bench_diffusion.py --device cuda --L 8 --train-minutes 1 \
        --samples 1024 --out "$OUT"
fi

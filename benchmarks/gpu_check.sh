#!/usr/bin/env bash
# The prepared run for a lent GPU machine: build there, run the CUDA tests, the kernel and
# sampler benchmarks, then short runs of the generative samplers, in that order of priority,
# and leave everything in $OUT/gpu-results.tgz (the device tool returns at most 8 files, so the
# logs travel as one archive, rewritten after every step: a call cut short still returns what
# it finished) plus $OUT/summary.txt.
#
#   here:        bash benchmarks/gpu_wheels.sh
#   device run:  carry [".whl"], timeout_s 600:  OUT=$OUT DEADLINE=560 bash benchmarks/gpu_check.sh
#   (ONLY=diffusion,flows ... runs those generative benchmarks alone, in that order, after the core;
#    SWEEP="64 128" the stencils' bytes in flight to try besides the default 32, SWEEP= none)
#
# A session has 15 minutes of device time in all, the machine's start included, and a command
# at most 10: DEADLINE (seconds after the script starts) caps every step's own limit, so the
# script ends on its own before the call's timeout. Each step goes on after a failure, so one
# call says all it can.
#
# The GPU box has no network and its python3 (the one that holds torch) lacks pyerrors, which
# the benchmarks' Gamma-method errors need: fetch the wheels here first with
# benchmarks/gpu_wheels.sh and carry them (carry [".whl"]). The package is built with
# --no-build-isolation --no-deps (torch, nvcc, ninja, pybind11 and scikit-build-core are there).
set -uo pipefail
OUT=${OUT:-gpu-results}
PY=${PY:-python3}
DEADLINE=${DEADLINE:-560}
RES=$(mktemp -d /tmp/gpu-res.XXXX)
mkdir -p "$OUT"
export PYTHONUNBUFFERED=1

pack() {  # logs and JSON only: checkpoints and ensembles could push the archive past the 16 MiB a file
    tar czf "$OUT/gpu-results.tgz.part" --exclude='*.pt' --exclude='*.h5' -C "$RES" . &&
        mv "$OUT/gpu-results.tgz.part" "$OUT/gpu-results.tgz"
}
say() { echo "$*" | tee -a "$OUT/summary.txt"; }

step() {  # step SECONDS LOGNAME command...: one step under its own limit (cut to DEADLINE), log in RES
    local limit=$1 log=$2
    shift 2
    local left=$((DEADLINE - SECONDS))
    [ "$left" -lt "$limit" ] && limit=$left
    if [ "$limit" -lt 15 ]; then say "== $log: skipped, ${left} s left"; return; fi
    local t0=$SECONDS
    timeout "$limit" "$@" > "$RES/$log" 2>&1
    local rc=$?
    say "== $log: exit $rc in $((SECONDS - t0)) s (limit $limit s)"
    tail -n 6 "$RES/$log" | tee -a "$OUT/summary.txt"
    pack
}

if [ -d .whl ]; then
    $PY -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site \
        .whl/*.whl > "$RES/wheels.log" 2>&1 && export PYTHONPATH=/tmp/site${PYTHONPATH:+:$PYTHONPATH}
fi
$PY -c "import pyerrors" >> "$RES/wheels.log" 2>&1 || say "pyerrors missing: benchmark errors will fail"
nvidia-smi > "$RES/nvidia-smi.txt" 2>&1
nproc > "$RES/nproc.txt"

# Always (re)build: a warm machine keeps build/ (incremental) but may hold another build
# installed (the sweep's, or older sources). ninja builds on all cores; `real` is the build time.
step 240 build.log env LFTACCEL_CUDA_INFLIGHT_BYTES=32 bash -c "time $PY -m pip install --no-build-isolation --no-deps -v ."
grep -E '^(real|user|sys)' "$RES/build.log" | tee -a "$OUT/summary.txt"
$PY -c "import json, lftaccel; print(json.dumps(lftaccel.build_info(), indent=1))" > "$RES/build_info.json" 2>&1
cat "$RES/build_info.json" | tee -a "$OUT/summary.txt"
pack

# issues 2 and 3: the kernels on the device
step 120 pytest-cuda.log $PY -m pytest -q -m cuda -p no:cacheprovider -rs tests
step 100 bench-kernels-cuda.txt $PY benchmarks/bench_kernels.py --device cuda --dtype both \
    --json "$RES/kernels-cuda.json"
step 70 bench-samplers-cuda.txt $PY benchmarks/bench_samplers.py --device cuda --skip-scaling \
    --json "$RES/samplers-cuda.json"
# issue 2's bandwidth target: rebuild with other bytes in flight per stencil thread (default
# 32, build_info()['cuda_inflight_bytes']), check those kernels and time them again; the
# generative benchmarks below then run on the last build (they barely use these kernels).
for BYTES in ${SWEEP-64}; do
    step 150 "build-$BYTES.log" env LFTACCEL_CUDA_INFLIGHT_BYTES="$BYTES" \
        $PY -m pip install --no-build-isolation --no-deps .
    if ! $PY -c "import lftaccel, sys; sys.exit(lftaccel.build_info()['cuda_inflight_bytes'] != $BYTES)"; then
        say "== the $BYTES-byte build is not the one installed: its checks skipped"
        continue
    fi
    step 60 "pytest-cuda-$BYTES.log" $PY -m pytest -q -m cuda -p no:cacheprovider tests/test_lattice_kernels.py \
        tests/test_oscillator.py
    step 60 "bench-kernels-cuda-$BYTES.txt" $PY benchmarks/bench_kernels.py --device cuda --dtype both \
        --kernels phi4,xy,oscillator,fourier --json "$RES/kernels-cuda-$BYTES.json"
done
# the generative samplers on the GPU, short: ONLY selects which (unset: can,diffusion,flows; empty: none)
ONLY=${ONLY-can,diffusion,flows}
for part in ${ONLY//,/ }; do
    case "$part" in
        can) step 90 bench-can-cuda.txt $PY benchmarks/bench_can.py --device cuda --train-seconds 30 \
                 --samples 8192 --out "$RES" ;;
        diffusion) step 220 bench-diffusion-cuda.txt $PY benchmarks/bench_diffusion.py --device cuda --L 8 \
                 --train-minutes 1 --samples 1024 --out "$RES" ;;
        flows) step 90 bench-flows-cuda.txt $PY benchmarks/bench_flows.py --device cuda --points phi4 \
                 --train-seconds 30 --samples 16384 --out "$RES" ;;
    esac
done
say "== done in $SECONDS s"
pack

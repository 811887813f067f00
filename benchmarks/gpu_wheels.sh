#!/usr/bin/env bash
# Fetch, here (with network), the wheels of the runtime dependencies that the lent GPU
# machine's image lacks (it has numpy, scipy, h5py, tqdm, matplotlib, pandas and lxml, but not
# pyerrors and what pyerrors needs beyond those), for its Python 3.12, into .whl/ (git-ignored
# through .git/info/exclude). Then run gpu_check.sh there with .whl carried:
#   bash benchmarks/gpu_wheels.sh      # here
#   device run, carry [".whl"]: OUT=$OUT bash benchmarks/gpu_check.sh
set -euo pipefail
cd "$(dirname "$0")/.."
grep -qx '/.whl/' .git/info/exclude 2>/dev/null || echo /.whl/ >> .git/info/exclude
for pkg in pyerrors==2.17.0 autograd==1.9.1 numdifftools==0.11.2 iminuit==2.33.0 python-rapidjson==1.25; do
    python3 -m pip download -q --no-deps --only-binary=:all: --python-version 3.12 --implementation cp \
        --platform manylinux_2_28_x86_64 --platform manylinux_2_27_x86_64 --platform manylinux_2_24_x86_64 \
        --platform manylinux_2_17_x86_64 --platform manylinux2014_x86_64 -d .whl "$pkg"
done
ls .whl

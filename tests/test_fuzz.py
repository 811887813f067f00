"""Property tests: malformed input at every entry point never crashes the process.

Each call either succeeds, and then its result has the right shape (and is finite
when the input and parameters are finite and modest) and the input was actually
valid, or it raises ValueError/TypeError. Any other exception fails the test as
it is, so distinct bugs are reported separately. The case builders take a
``draw`` object, so the same cases run under hypothesis in-process and, as a
plain seeded loop, in a subprocess where a segfault or abort shows up as a
non-zero return code instead of killing pytest.
"""

import collections
import os
import random
import subprocess
import sys
import warnings

import pytest
from hypothesis import HealthCheck, Phase, given, note, settings
from hypothesis import strategies as st

from fuzz_cases import FAMILIES, SUBPROCESS_FAMILIES
from fuzz_inputs import ALLOWED, HypothesisDraw, RandomDraw  # noqa: F401


def run_case(desc, call, check):
    """Runs one case: ValueError/TypeError is fine, success is checked, anything else propagates."""
    try:
        result = call()
    except ALLOWED as e:
        assert str(e), f"{type(e).__name__} without a message: {desc}"
        return "refused"
    check(result)
    return "ok"


# --------------------------------------------------------- hypothesis, in-process

# No shrinking: it can take minutes once several distinct bugs are found, and each
# failure already notes the full call that triggered it.
FUZZ = settings(derandomize=True, database=None, max_examples=100, deadline=None,
                phases=[Phase.explicit, Phase.reuse, Phase.generate],
                suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])


@pytest.mark.parametrize("family", list(FAMILIES))
@FUZZ
@given(data=st.data())
def test_fuzz(family, data):
    desc, call, check = FAMILIES[family](HypothesisDraw(data))
    note(desc)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        run_case(desc, call, check)


# ------------------------------------------------------- subprocess: never crash

def fuzz_loop(n_per_family=40, seed=0, big=True):
    """The fuzz loop without hypothesis: prints each case before running it, so the
    last line names the culprit if the process dies; tallies every outcome."""

    warnings.simplefilter("ignore")
    tally = collections.Counter()
    for name, family in SUBPROCESS_FAMILIES.items():
        rng = random.Random(f"{seed}-{name}")
        for i in range(n_per_family):
            desc, call, check = family(RandomDraw(rng), big)
            print(f"CASE {name} {i}: {desc}"[:400], flush=True)
            try:
                tally[run_case(desc, call, check)] += 1
            except Exception as e:  # reported by test_fuzz; here only a crash matters
                tally[f"{type(e).__name__}"] += 1
    print("TALLY", dict(tally), flush=True)


def test_fuzz_loop_never_crashes_the_process():
    here = os.path.dirname(os.path.abspath(__file__))
    code = f"import sys; sys.path.insert(0, {here!r}); import test_fuzz; test_fuzz.fuzz_loop()"
    r = subprocess.run([sys.executable, "-X", "faulthandler", "-c", code], capture_output=True, text=True,
                       timeout=300)
    last = [ln for ln in r.stdout.splitlines() if ln.startswith("CASE")][-1:]
    assert r.returncode == 0 and "TALLY" in r.stdout, (
        f"fuzz subprocess died with return code {r.returncode} at\n{last}\nstderr:\n{r.stderr[-3000:]}")

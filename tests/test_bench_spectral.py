"""benchmarks/bench_spectral.py's bookkeeping: a killed run resumed gives the cells of a run that
was not killed, computing only the fits it lacks; cells follow the seeds asked for."""

import importlib.util
import json
from pathlib import Path

import pytest

SCRIPT = Path(__file__).resolve().parents[1] / "benchmarks" / "bench_spectral.py"


@pytest.fixture(scope="module")
def bench():
    spec = importlib.util.spec_from_file_location("bench_spectral", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def run(bench, out, *extra):
    # TSVD: milliseconds a fit, deterministic; two spectra so cells interleave in the files
    assert bench.main(["--methods", "tsvd", "--spectra", "bw,gaussian", "--out", str(out), *extra]) == 0
    return {(r["spectrum"], r["protocol"], r["method"]): r
            for r in map(json.loads, (out / "spectral-cells.jsonl").read_text().splitlines())}


def numbers(cells):
    """The cells' metrics but the run time."""
    return {k: {m: r[m] for m in r if m not in ("seconds", "code")} for k, r in cells.items()}


def test_a_killed_run_resumed_equals_the_uninterrupted_run(bench, tmp_path):
    full = run(bench, tmp_path / "full", "--seeds", "3")
    assert len(full) == 12 and all(r["n"] == (1 if "exact" in r["protocol"] else 3) for r in full.values())

    # the killed run: the cells file lost, the seeds file cut in the middle of a line
    out = tmp_path / "killed"
    run(bench, out, "--seeds", "3")
    seeds = out / "spectral-seeds.jsonl"
    lines = seeds.read_text().splitlines(keepends=True)
    assert len(lines) == 2 * (1 + 1 + 4) * 3 - 2 * 2  # exact sets have one seed
    kept = lines[:17]
    seeds.write_text("".join(kept) + lines[17][:40])
    (out / "spectral-cells.jsonl").unlink()
    resumed = run(bench, out, "--seeds", "3", "--resume")
    assert numbers(resumed) == numbers(full)
    after = seeds.read_text().splitlines()
    assert len(after) == len(lines) + 1  # the cut line stays behind, skipped; only the lost fits rerun
    assert after[:17] == [x.rstrip("\n") for x in kept]


def test_cells_follow_the_seeds_asked_for_from_the_fits_on_file(bench, tmp_path):
    out = tmp_path / "run"
    three = run(bench, out, "--seeds", "3")
    n_fits = len((out / "spectral-seeds.jsonl").read_text().splitlines())
    two = run(bench, out, "--seeds", "2", "--resume")
    assert len((out / "spectral-seeds.jsonl").read_text().splitlines()) == n_fits  # nothing refitted
    noisy = [k for k in two if "exact" not in k[1]]
    assert noisy and all(two[k]["n"] == 2 and two[k]["seeds"] == [0, 1] for k in noisy)
    assert numbers(run(bench, out, "--seeds", "3", "--resume")) == numbers(three)


def test_fits_of_other_code_are_not_reused(bench, tmp_path):
    out = tmp_path / "run"
    first = run(bench, out, "--seeds", "2")
    seeds = out / "spectral-seeds.jsonl"
    rows = [json.loads(x) for x in seeds.read_text().splitlines()]
    rows[0]["code"] = "another version"
    seeds.write_text("".join(json.dumps(r) + "\n" for r in rows))
    cells = out / "spectral-cells.jsonl"
    key = (rows[0]["spectrum"], rows[0]["protocol"], rows[0]["method"])
    cells.write_text("".join(x + "\n" for x in cells.read_text().splitlines()
                             if tuple(json.loads(x)[k] for k in ("spectrum", "protocol", "method")) != key))
    again = run(bench, out, "--seeds", "2", "--resume")
    assert numbers(again) == numbers(first)
    assert len(seeds.read_text().splitlines()) == len(rows) + 1  # that one fit was made again

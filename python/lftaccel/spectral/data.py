"""Propagator data from text files: the input format of ``lftaccel spectral``.

    from lftaccel.spectral import read_propagator, reconstruct
    p, D, sigma, cov = read_propagator("data.csv")                   # columns p, D, sigma
    p, D, sigma, cov = read_propagator("samples.csv", samples=True)  # momenta, then samples of D
    res = reconstruct(p, D, sigma, cov=cov, method="mem")

With samples, ``cov`` is the covariance of the mean, scaled so that its inverse is unbiased
(``covariance_of_mean``), and ``sigma`` is None.
"""

from __future__ import annotations

import math
import warnings

import numpy as np

COLUMNS = ("p", "D", "sigma")
# A correlator in Euclidean time may name its columns tau, G, sigma.
ALIASES = {"tau": "p", "g": "d"}


def _column(name: str) -> str:
    """A header cell as the column it names: lower case, unquoted, aliases resolved."""
    n = name.strip().strip("\"'").lower()
    return ALIASES.get(n, n)


_WANTED = sorted(c.lower() for c in COLUMNS)


def covariance_of_mean(samples, *, _stacklevel: int = 2) -> np.ndarray:
    """The covariance of the mean of N samples (rows) of n points, scaled by
    (N - 1) / (N - n - 2) so that its inverse, which the chi^2 uses, is unbiased: the inverse of
    a sample covariance overestimates the true inverse by that factor (Hartlap, Simon and
    Schneider 2007). At N = 2n the truth's chi^2 came out twice its expectation without it, and
    a fit to it overfitted. Needs N >= n + 3; warns below N = 4 n, where chi^2 under the
    estimate still scatters widely."""
    S = np.asarray(samples, dtype=float)
    if S.ndim != 2:
        raise ValueError(f"samples must be a 2-d array (samples x points), got shape {S.shape}")
    N, n = S.shape
    if N < n + 3:
        raise ValueError(f"{N} samples cannot estimate the inverse covariance of {n} points "
                         f"(need at least {n + 3}, and several times {n} for a usable one)")
    if N < 4 * n:
        warnings.warn(f"{N} samples for {n} points: the covariance is poorly determined and chi^2 under it "
                      f"scatters widely; use more samples or fewer points", stacklevel=_stacklevel)
    return np.cov(S, rowvar=False) / N * ((N - 1) / (N - n - 2))


def read_propagator(path, *, samples: bool = False):
    """(p, D, sigma, cov) from a text file of comma-separated values.

    Without ``samples``: a header naming the columns p, D, sigma (in any order; numpy.savetxt's
    '# p,D,sigma' too; tau, G, sigma for a correlator in Euclidean time), then one row per
    momentum (or time); cov is None. With ``samples``: the momenta in
    the first row and one sample of D(p) in every further row; D is their mean, cov the
    covariance of the mean (``covariance_of_mean``) and sigma None. Text after a # is a comment;
    blank lines are skipped. A file that does not fit gives a ValueError naming the line."""
    try:
        with open(path, newline="", encoding="utf-8-sig") as f:  # (-sig: the byte-order mark of Excel's CSV)
            text = f.read().splitlines()
    except (OSError, UnicodeDecodeError) as err:
        raise FileNotFoundError(f"cannot read {path}: {err}") from None
    order = None
    # a first line written as a comment that names the columns is the header too
    first = next((k for k, line in enumerate(text) if line.strip()), None)
    if first is not None and text[first].lstrip().startswith("#"):
        named = [_column(c) for c in text[first].lstrip()[1:].split(",")]
        if sorted(named) == _WANTED:
            if samples:  # (read as a comment, its rows would pass for a row of momenta and samples)
                raise ValueError(f"{path}, line {first + 1}: the header names the columns p, D, sigma: read the "
                                 f"file without samples=True (--samples)")
            text[first] = text[first].lstrip()[1:]
    lines = [(k, line.split("#", 1)[0]) for k, line in enumerate(text, 1)]
    lines = [(k, line) for k, line in lines if line.strip()]
    if not lines:
        raise ValueError(f"{path}: the file has no data")
    if not samples:
        k, header = lines.pop(0)
        names = [c.strip().strip("\"'") for c in header.split(",")]
        if sorted(_column(n) for n in names) != _WANTED:
            what = f"{header.strip()!r}"
            if _is_numeric(names):
                what = ("numbers: add the header line, or if the rows are samples of D(p) after a row of "
                        "momenta, read them as samples, samples=True (--samples)")
            raise ValueError(f"{path}: the first line must be the header naming the columns p, D, sigma (or tau, "
                             f"G, sigma), got {what}")
        order = [[_column(n) for n in names].index(c.lower()) for c in COLUMNS]
        if not lines:
            raise ValueError(f"{path}: the file has a header and no data")
    rows = []
    for k, line in lines:
        cells = line.split(",")
        try:
            rows.append([float(c) for c in cells])
        except ValueError:
            bad = next(c for c in cells if not _is_numeric([c]))
            hint = ""
            if samples and not rows and _column(bad) in _WANTED:
                hint = (" (a samples file starts with its row of momenta; a file whose header names p, D, "
                        "sigma is read without samples=True, --samples)")
            raise ValueError(f"{path}, line {k}: {bad.strip()!r} is not a number{hint}") from None
        if not all(math.isfinite(v) for v in rows[-1]):
            bad = next(c for c, v in zip(cells, rows[-1]) if not math.isfinite(v))
            raise ValueError(f"{path}, line {k}: {bad.strip()!r} is not finite (NaN or inf)")
        if len(rows[-1]) != len(rows[0]):
            raise ValueError(f"{path}, line {k}: rows of different lengths ({len(rows[-1])} values, the "
                             f"first row has {len(rows[0])})")
    raw = np.array(rows)
    if samples:
        if raw.shape[0] < 3:
            raise ValueError(f"{path}: need the momenta row and at least 2 sample rows")
        p, S = raw[0], raw[1:]
        flat = np.flatnonzero(np.ptp(S, axis=0) == 0)
        if flat.size:
            raise ValueError(f"{path}: the samples do not vary at p = {p[flat[0]]:g} (every sample equal): "
                             f"that point has no error to weight it by")
        try:
            # (stack level 3: a warning points at read_propagator's caller)
            cov = covariance_of_mean(S, _stacklevel=3)
        except ValueError as err:
            raise ValueError(f"{path}: {err}") from None
        return p, S.mean(0), None, cov
    if raw.shape[1] != 3:
        raise ValueError(f"{path}: expected 3 columns p, D, sigma, got {raw.shape[1]}")
    return raw[:, order[0]], raw[:, order[1]], raw[:, order[2]], None


def _is_numeric(cells) -> bool:
    try:
        [float(c) for c in cells]
    except ValueError:
        return False
    return True

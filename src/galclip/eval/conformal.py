"""Calibrated predictive distributions from k nearest neighbours: plain functions of arrays.

A query's k neighbours (their labels ``y`` (n, k, P) and weights ``w`` (n, k)) define a raw
predictive distribution: the weighted empirical distribution of the neighbours' labels. Its
weighted mean is the point estimate (as ``galclip.eval.knn``) and its weighted quantiles the raw
interval ends. Raw k-NN intervals are not calibrated (neighbours are closer in label than a new
galaxy is to them, or farther), so they are **conformalised** on calibration galaxies that are
not in the neighbour pool (split conformal; Vovk et al. 2005, Lei et al. 2018):

- **Intervals**: conformalised quantile regression (Romano, Patterson & Candès 2019, CQR) with
  the score scaled by the raw interval's width (Sesia & Candès 2020, "CQR-r"): for a calibration
  galaxy with raw interval [lo, hi] and truth y, ``E = max(lo - y, y - hi) / (hi - lo)``; with
  ``Q`` the ⌈(n + 1)(1 - α)⌉-th smallest E of n calibration galaxies, the interval
  ``[lo - Q (hi - lo), hi + Q (hi - lo)]`` holds a new exchangeable galaxy's truth with
  probability >= 1 - α (finite-sample, marginal). Intervals stay asymmetric and as wide as the
  neighbours' spread says, rescaled by one number per level and property.
- **Redshift density**: a Gaussian kernel density of the neighbours' redshifts on a fixed grid
  (linear binning, then per-row Gaussian smoothing by FFT; bandwidth from Silverman's rule on
  the weighted neighbours, at least one grid step, at most a quarter of the grid), recalibrated
  by the probability integral transform (Bordoloi, Lilly & Amara 2010, MNRAS 406, 881): with
  ``G`` the empirical CDF of the calibration galaxies' PIT values u = F_raw(z_true), the
  calibrated CDF is ``G(F_raw(z))``, whose PIT is uniform on the calibration population.
  This is distributional conformal prediction (Chernozhukov, Wüthrich & Zhu 2021, PNAS 118)
  with the PIT as the score. G is applied at the bin edges, so a bin must be narrower than the
  densities it holds: :meth:`Grid.resolving` takes as many bins (within bounds) as put
  :data:`BINS_PER_BANDWIDTH` of them across the median kernel bandwidth of sample neighbour
  sets (on the demo's spectra a 300-bin grid, 0.0045 a bin, left the query PIT KS at 0.08-0.11;
  benchmarks/RESULTS.md, "The redshift grid").

Scores of a density against the truth: PIT values, their KS distance from uniform, and the
continuous ranked probability score CRPS = ∫ (F(z) - 1[z >= z_true])² dz (Gneiting & Raftery
2007; Hersbach 2000), integrated on the grid.
"""
from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass

import numpy as np

LEVELS: tuple[float, ...] = (0.68, 0.95)
MIN_CALIBRATION = 40   # ⌈(n + 1) 0.975⌉ <= n needs n >= 39 calibration galaxies
ROW_BLOCK = 512        # rows of densities smoothed / recalibrated at a time (cache-sized)
MIN_BINS = 300         # the coarsest redshift grid (0.0045 a bin over the simulated 0-1.35)
MAX_BINS = 4000        # the finest grid Grid.resolving takes (16 kB of float32 per density)
BINS_PER_BANDWIDTH = 3.0


# ----------------------------------------------------------------------------- neighbours
def distance_weights(dist: np.ndarray, valid: np.ndarray) -> np.ndarray:
    """Inverse-distance weights (n, k) as ``galclip.eval.knn``: a neighbour at distance 0 takes
    all the weight (shared with other exact matches); invalid neighbours weigh 0."""
    exact = (dist <= 0) & valid
    inv = np.where(valid, 1.0 / np.where(dist > 0, dist, 1.0), 0.0)
    return np.where(exact.any(1, keepdims=True), exact.astype(float), inv)


def weighted_mean(y: np.ndarray, w: np.ndarray) -> np.ndarray:
    """Weighted mean over axis 1 of (n, k, P) labels with (n, k) weights, NaN labels skipped.
    When every label is finite the mask is left out (w * True == w, nan_to_num(y) == y)."""
    if not np.isfinite(y).all():
        ww = w[:, :, None] * np.isfinite(y)
        with np.errstate(invalid="ignore", divide="ignore"):
            return (ww * np.nan_to_num(y)).sum(1) / ww.sum(1)  # (n, P)
    with np.errstate(invalid="ignore", divide="ignore"):
        return (w[:, :, None] * y).sum(1) / _total_weight(w, y.shape[2])


def _total_weight(w: np.ndarray, n_props: int) -> np.ndarray:
    """``(w[:, :, None] * ones(P)).sum(1)`` (n, P or 1), summed as NumPy sums that (n, k, P)
    array over k: term after term when P > 1 (the cumulative sum's last value), pairwise along
    the contiguous k axis when P = 1."""
    if n_props > 1:
        return np.cumsum(w, 1)[:, -1:]
    return w[:, :, None].sum(1)


def weighted_quantiles(y: np.ndarray, w: np.ndarray, qs: Sequence[float]) -> np.ndarray:
    """Weighted quantiles (n, len(qs), P) of (n, k, P) labels; linear between the neighbours'
    mid-weight positions (the weighted Hazen plotting position); NaN labels skipped. Works on
    (n, P, k) copies, each property's k labels contiguous (sorts and counts along the last
    axis); the values are those of the same arithmetic on (n, k, P)."""
    yt = np.ascontiguousarray(np.moveaxis(y, 1, 2))                   # (n, P, k)
    order, ws = _sorted_weights(yt, w)
    ys = np.take_along_axis(yt, order, 2)
    cum = np.cumsum(ws, 2)
    total = _sorted_total(ws, cum)                                    # (n, P, 1)
    with np.errstate(invalid="ignore", divide="ignore"):
        pos = np.divide(np.subtract(cum, ws / 2, out=cum), total, out=cum)  # (n, P, k) in (0, 1)
    if not (ws > 0).all():
        pos = np.where(ws > 0, pos, np.inf)                           # skipped labels sort last
    k = y.shape[1]
    q = np.asarray(qs, float)[None, None, :]                          # (1, 1, Q)
    hi = np.stack([np.count_nonzero(pos < v, axis=2) for v in qs], 2)  # first position >= q
    hi = np.clip(hi, 1, k - 1)
    lo = hi - 1                                                       # (n, P, Q)
    p_lo, p_hi = (np.take_along_axis(pos, i, 2) for i in (lo, hi))
    y_lo, y_hi = (np.take_along_axis(ys, i, 2) for i in (lo, hi))
    with np.errstate(invalid="ignore", divide="ignore"):
        t = np.clip((q - p_lo) / (p_hi - p_lo), 0.0, 1.0)
    t = np.where(np.isfinite(p_hi), t, 0.0)                           # one usable label: its value
    out = np.where(np.isfinite(y_lo), y_lo + t * (np.nan_to_num(y_hi) - y_lo), np.nan)
    return np.moveaxis(out, 2, 1)                                     # (n, Q, P)


def _sorted_weights(yt: np.ndarray, w: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The sort order of (n, P, k) labels along k (NaN last) and the weights (n, P, k) in that
    order (0 for a NaN label). When every label is finite (the usual chunk) the labels are
    sorted as they are and the weights gathered from ``w`` directly: the same order and values
    as masking first (w * True == w)."""
    fin = np.isfinite(yt)
    if fin.all():
        order = np.argsort(yt, axis=2)
        return order, np.take_along_axis(np.broadcast_to(w[:, None, :], yt.shape), order, 2)
    order = np.argsort(np.where(fin, yt, np.inf), axis=2)
    return order, np.take_along_axis(w[:, None, :] * fin, order, 2)


def _sorted_total(ws: np.ndarray, cum: np.ndarray) -> np.ndarray:
    """Each (n, P) row's total weight (n, P, 1), summed as NumPy sums the (n, k, P) layout over
    k: with P > 1 one term after another in sorted order, which is the cumulative sum's last
    value; with P = 1 the k axis is contiguous and NumPy sums it pairwise, so it is summed so."""
    if ws.shape[1] > 1:
        return cum[:, :, -1:].copy()
    return np.ascontiguousarray(np.moveaxis(ws, 2, 1)).sum(1)[:, :, None]


def raw_intervals(y: np.ndarray, w: np.ndarray, levels: Sequence[float] = LEVELS) -> np.ndarray:
    """Raw central intervals (n, len(levels), 2, P) of the neighbours' label distribution."""
    qs = [q for lev in levels for q in ((1 - lev) / 2, (1 + lev) / 2)]
    return weighted_quantiles(y, w, qs).reshape(len(y), len(levels), 2, -1)


# ----------------------------------------------------------------------------- CQR
def cqr_scores(raw: np.ndarray, y_true: np.ndarray, floor: np.ndarray) -> np.ndarray:
    """Conformity scores (n, L, P): ``max(lo - y, y - hi) / max(hi - lo, floor)``."""
    lo, hi = raw[:, :, 0], raw[:, :, 1]                    # (n, L, P)
    width = np.maximum(hi - lo, floor)
    t = y_true[:, None, :]
    return np.maximum(lo - t, t - hi) / width


def conformal_quantile(scores: np.ndarray, level: float) -> float:
    """The ⌈(n + 1) level⌉-th smallest finite score (split conformal); +inf if n is too small."""
    s = np.sort(scores[np.isfinite(scores)])
    rank = int(np.ceil((len(s) + 1) * level))
    return float(s[rank - 1]) if 0 < rank <= len(s) else float("inf")


@dataclass
class IntervalCalibration:
    """One CQR-r factor per level and property: ``q`` (L, P), width ``floor`` (L, P), ``n`` (P,)."""

    levels: tuple[float, ...]
    q: np.ndarray
    floor: np.ndarray
    n: np.ndarray

    @classmethod
    def fit(cls, raw: np.ndarray, y_true: np.ndarray, floor: np.ndarray,
            levels: Sequence[float] = LEVELS) -> IntervalCalibration:
        """From calibration galaxies' raw intervals (n, L, 2, P) and truths (n, P). Widths are
        floored at ``floor`` and at a tenth of the median raw width (per level and property):
        neighbours that all share one label (duplicates, a collapsed embedding) would otherwise
        give near-infinite scores and one huge factor for everyone."""
        with np.errstate(invalid="ignore"):
            typical = np.nanmedian(raw[:, :, 1] - raw[:, :, 0], axis=0)   # (L, P)
        floor = np.fmax(np.asarray(floor, float)[None], 0.1 * typical)    # (L, P)
        scores = cqr_scores(raw, y_true, floor)            # (n, L, P)
        q = np.array([[conformal_quantile(scores[:, i, j], lev) for j in range(scores.shape[2])]
                      for i, lev in enumerate(levels)])
        n = np.isfinite(scores[:, 0]).sum(0)
        return cls(tuple(levels), np.maximum(q, -0.5), floor, n)

    def apply(self, raw: np.ndarray) -> np.ndarray:
        """Calibrated intervals (n, L, 2, P) from raw ones."""
        lo, hi = raw[:, :, 0], raw[:, :, 1]
        pad = self.q[None] * np.maximum(hi - lo, self.floor)
        pad = np.maximum(pad, -(hi - lo) / 2)              # a shrunk interval never inverts
        return np.stack([lo - pad, hi + pad], axis=2)


# ----------------------------------------------------------------------------- redshift density
@dataclass(frozen=True)
class Grid:
    """A fixed grid of ``n`` bins of width ``step`` from ``start``: density values at the bin
    centres, sum(pdf) * step = 1."""

    start: float
    step: float
    n: int

    @property
    def centres(self) -> np.ndarray:
        return self.start + self.step * (np.arange(self.n) + 0.5)

    @property
    def edges(self) -> np.ndarray:
        return self.start + self.step * np.arange(self.n + 1)

    @classmethod
    def covering(cls, values: np.ndarray, n: int) -> Grid:
        """From 0 to 10 % beyond the largest finite value, rounded up to 0.05."""
        top = float(np.nanmax(values)) if np.isfinite(values).any() else 1.0
        stop = np.ceil(max(top, 0.05) * 1.1 / 0.05) * 0.05
        return cls(0.0, stop / n, int(n))

    @classmethod
    def resolving(cls, values: np.ndarray, z: np.ndarray, w: np.ndarray,
                  robust: np.ndarray | None = None, minimum: int = MIN_BINS,
                  maximum: int = MAX_BINS) -> Grid:
        """The :meth:`covering` grid of ``values`` with as many bins (``minimum`` to
        ``maximum``) as put :data:`BINS_PER_BANDWIDTH` bins across the median kernel bandwidth
        (:func:`silverman_bandwidth`) of the neighbour sets ``z``, ``w`` (n, k) of a sample of
        the galaxies to be estimated (``robust`` as there)."""
        coarse = cls.covering(values, minimum)
        bw = silverman_bandwidth(z, w, 0.0, robust) if len(z) else np.empty(0)
        bw = bw[np.isfinite(bw) & (bw > 0)]
        if not len(bw):
            return coarse
        span = coarse.step * coarse.n
        n = np.ceil(span * BINS_PER_BANDWIDTH / float(np.median(bw)))
        return cls.covering(values, int(np.clip(n, minimum, maximum)))

    def to_dict(self) -> dict:
        return {"start": self.start, "step": self.step, "n": self.n,
                "centres": [round(float(c), 8) for c in self.centres]}


def silverman_bandwidth(z: np.ndarray, w: np.ndarray, minimum: float,
                        robust: np.ndarray | None = None) -> np.ndarray:
    """Per-row ``0.9 min(sd, s) n_eff^(-1/5)`` of weighted values (n, k), >= minimum, where
    ``s`` is a robust spread: ``robust`` (n,) when given (e.g. half the 16-84 % range, already
    computed for the intervals), else IQR / 1.34."""
    ok = np.isfinite(z) & (w > 0)
    ww, zz = (w, z) if ok.all() else (np.where(ok, w, 0.0), np.where(ok, z, 0.0))
    tot = np.maximum(ww.sum(1), 1e-300)
    mean = (ww * zz).sum(1) / tot
    sd = np.sqrt(np.maximum((ww * (zz - mean[:, None]) ** 2).sum(1) / tot, 0.0))
    if robust is None:
        q = weighted_quantiles(np.where(ok, z, np.nan)[:, :, None], w, (0.25, 0.75))[:, :, 0]
        robust = (q[:, 1] - q[:, 0]) / 1.34
    robust = np.nan_to_num(robust)
    spread = np.where(robust > 0, np.minimum(sd, robust), sd)
    n_eff = tot ** 2 / np.maximum((ww ** 2).sum(1), 1e-300)
    return np.maximum(0.9 * spread * np.maximum(n_eff, 1.0) ** -0.2, minimum)


def raw_pdf(z: np.ndarray, w: np.ndarray, grid: Grid, robust: np.ndarray | None = None
            ) -> np.ndarray:
    """Kernel density (n, G) of the neighbours' redshifts on ``grid`` (each row sums to
    1 / step; a row without neighbours is NaN); ``robust``: see ``silverman_bandwidth``.
    Rows are binned and smoothed ``ROW_BLOCK`` at a time (:func:`raw_pdf_blocks`)."""
    dens = np.empty((len(z), grid.n))
    for rows, block in raw_pdf_blocks(z, w, grid, robust):
        dens[rows] = block
    return dens


def raw_pdf_blocks(z: np.ndarray, w: np.ndarray, grid: Grid, robust: np.ndarray | None = None
                   ) -> Iterator[tuple[slice, np.ndarray]]:
    """The densities of :func:`raw_pdf`, ``ROW_BLOCK`` rows at a time: (rows, (b, G)). Each
    row's values do not depend on the others' (the FFT length is fixed by the widest kernel of
    all ``n`` rows); a block's histograms stay in the CPU cache, and a caller that maps each
    block on (the PIT recalibration) never holds all n densities."""
    from scipy import fft as sp_fft

    ok = np.isfinite(z) & (w > 0)
    x = (np.where(ok, z, 0.0) - grid.start) / grid.step - 0.5   # position in bin-centre units
    x = np.clip(x, 0.0, grid.n - 1.0)
    i0 = np.minimum(np.floor(x).astype(np.int64), grid.n - 2)
    f = x - i0
    # (n,) in bins; capped at a quarter of the grid (wider kernels are flat across it anyway)
    sigma = np.minimum(silverman_bandwidth(z, w, grid.step, robust) / grid.step, grid.n / 4)
    pad = int(np.ceil(4 * sigma.max())) + 2
    m = sp_fft.next_fast_len(grid.n + 2 * pad, real=True)
    wk = np.where(ok, w, 0.0)
    lower, upper = wk * (1 - f), wk * f                          # (n, k) linear binning
    for lo in range(0, len(z), ROW_BLOCK):
        b = slice(lo, lo + ROW_BLOCK)
        yield b, _smoothed(i0[b] + pad, lower[b], upper[b], sigma[b], m, pad, grid)


def _smoothed(first: np.ndarray, lower: np.ndarray, upper: np.ndarray, sigma: np.ndarray,
              m: int, pad: int, grid: Grid) -> np.ndarray:
    """Normalised densities (b, G) of a block: weights ``lower`` / ``upper`` (b, k) added to
    bins ``first`` / ``first + 1`` of a padded row of ``m`` bins, Gaussian-smoothed by FFT
    (``sigma`` (b,) in bins)."""
    from scipy import fft as sp_fft

    b = len(first)
    at = (np.arange(b) * m)[:, None] + first                     # flat index of each lower bin
    hist = np.bincount(np.concatenate([at.ravel(), at.ravel() + 1]),
                       np.concatenate([lower.ravel(), upper.ravel()]), b * m)
    hist = hist.reshape(b, m).astype(np.float32)
    freq = np.fft.rfftfreq(m).astype(np.float32)                 # cycles per bin
    gain = np.exp(-2 * (np.pi * freq[None] * sigma[:, None].astype(np.float32)) ** 2)
    spec = sp_fft.rfft(hist, axis=1, workers=1)
    smooth = sp_fft.irfft(np.multiply(spec, gain, out=spec), m, axis=1, workers=1)
    dens = np.maximum(smooth[:, pad:pad + grid.n], 0.0, out=np.empty((b, grid.n)))  # clip at 0
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.divide(dens, dens.sum(1, keepdims=True) * grid.step, out=dens)


def cdf_at(pdf: np.ndarray, grid: Grid, z: np.ndarray) -> np.ndarray:
    """CDF of each row's gridded density at z (n,), linear within a bin (the PIT value)."""
    cdf = np.concatenate([np.zeros((len(pdf), 1)), np.cumsum(pdf, 1) * grid.step], axis=1)
    x = np.clip((np.asarray(z, float) - grid.start) / grid.step, 0.0, grid.n)
    i = np.minimum(np.floor(x).astype(np.int64), grid.n - 1)
    f = x - i
    rows = np.arange(len(pdf))
    return cdf[rows, i] * (1 - f) + cdf[rows, i + 1] * f


@dataclass
class PitCalibration:
    """The map G from raw to calibrated CDF values: knots (x, y), monotone, (0,0) to (1,1)."""

    x: np.ndarray
    y: np.ndarray
    n: int

    @classmethod
    def fit(cls, pit: np.ndarray) -> PitCalibration:
        """G = the empirical CDF of calibration PIT values, with Hazen plotting positions."""
        u = np.sort(pit[np.isfinite(pit)])
        n = len(u)
        pos = (np.arange(n) + 0.5) / max(n, 1)
        inner = (u > 0) & (u < 1)          # PIT 0 or 1 (truth off the grid) stays in the ends
        x, keep = np.unique(u[inner], return_index=True)       # ties: keep the first knot
        return cls(np.concatenate([[0.0], x, [1.0]]),
                   np.concatenate([[0.0], pos[inner][keep], [1.0]]), n)

    def apply(self, pdf: np.ndarray, grid: Grid) -> np.ndarray:
        """Calibrated densities (n, G): the bin masses of G(F_raw) at the bin edges
        (``ROW_BLOCK`` rows at a time, so the temporaries stay in the CPU cache)."""
        out = np.empty(pdf.shape)
        for lo in range(0, len(pdf), ROW_BLOCK):
            self._apply(pdf[lo:lo + ROW_BLOCK], grid, out[lo:lo + ROW_BLOCK])
        return out

    def _apply(self, pdf: np.ndarray, grid: Grid, out: np.ndarray) -> np.ndarray:
        """One block's calibrated densities written into ``out`` (b, G) (any float dtype: the
        float64 values cast once)."""
        cdf = np.empty((len(pdf), grid.n + 1))                   # [0, cumsum(pdf) * step]
        cdf[:, 0] = 0.0
        np.multiply(np.cumsum(pdf, 1, out=cdf[:, 1:]), grid.step, out=cdf[:, 1:])
        cal = np.interp(np.clip(cdf, 0.0, 1.0, out=cdf), self.x, self.y)  # exact: G is steep at the ends
        with np.errstate(invalid="ignore"):
            np.divide(np.diff(cal, axis=1), grid.step, out=out)
        bad = ~np.isfinite(pdf).all(1)
        if bad.any():
            out[bad] = np.nan
        return out


def calibrated_pdf(z: np.ndarray, w: np.ndarray, grid: Grid, pit: PitCalibration,
                   robust: np.ndarray | None = None, dtype=np.float32) -> np.ndarray:
    """``pit.apply(raw_pdf(z, w, grid, robust), grid).astype(dtype)``, the same values, a block
    of rows at a time: each block's raw densities are recalibrated while still in the CPU
    cache, and neither they nor the float64 result are held for all rows."""
    out = np.empty((len(z), grid.n), dtype)
    for rows, dens in raw_pdf_blocks(z, w, grid, robust):
        pit._apply(dens, grid, out[rows])
    return out


# ----------------------------------------------------------------------------- scores
def pit_ks(pit: np.ndarray) -> float:
    """KS distance of finite PIT values from the uniform distribution on [0, 1]."""
    u = np.sort(pit[np.isfinite(pit)])
    n = len(u)
    if n == 0:
        return float("nan")
    i = np.arange(1, n + 1)
    return float(max(np.max(i / n - u), np.max(u - (i - 1) / n)))


def pit_histogram(pit: np.ndarray, bins: int = 20) -> list[int]:
    """Counts of finite PIT values in ``bins`` equal bins of [0, 1]."""
    u = pit[np.isfinite(pit)]
    return np.histogram(np.clip(u, 0, 1), bins=bins, range=(0.0, 1.0))[0].tolist()


def crps(pdf: np.ndarray, grid: Grid, z: np.ndarray) -> np.ndarray:
    """CRPS (n,) of gridded densities against truths, ∫ (F - 1[x >= z])² dx on the bin edges
    (trapezoid), in redshift units; truths off the grid add their distance to it."""
    cdf = np.concatenate([np.zeros((len(pdf), 1)), np.cumsum(pdf, 1) * grid.step], axis=1)
    edges = grid.edges
    step = (edges[None] >= np.asarray(z, float)[:, None]).astype(float)
    d2 = (cdf - step) ** 2
    inner = (d2[:, 1:] + d2[:, :-1]).sum(1) * grid.step / 2
    off = np.maximum(edges[0] - z, 0) + np.maximum(z - edges[-1], 0)
    return inner + off


def coverage(intervals: np.ndarray, y_true: np.ndarray) -> np.ndarray:
    """Fraction (L, P) of finite truths inside (n, L, 2, P) intervals."""
    t = y_true[:, None, :]
    inside = (intervals[:, :, 0] <= t) & (t <= intervals[:, :, 1])
    ok = np.isfinite(t) & np.isfinite(intervals).all(2)
    with np.errstate(invalid="ignore"):
        return (inside & ok).sum(0) / ok.sum(0)

r"""How good an unfolding is: posterior calibration and distances between distributions.

* :func:`rank_calibration` — the rank :math:`r = \#\{k : s_k < t\}` of the true value
  :math:`t` among the K posterior samples :math:`s_k` of its event. For a calibrated
  posterior :math:`r` is uniform on :math:`0..K` (Talts et al. 2018, arXiv:1804.06788; the
  thesis' Fig. 2.16 shows the same as a calibration curve). The calibration curve is the
  empirical CDF :math:`F(j) = P(r < j)` against :math:`j/(K+1)`; its largest deviation
  :math:`\max_j |F(j) - j/(K+1)|` is 0 for perfect calibration, and of order
  :math:`1/\sqrt{n}` from statistics alone.
* :func:`distances` — per component, between an unfolded sample (one posterior draw per
  event, or a weighted GEN sample) and the GEN truth, the numbers of Shmakov et al. 2023
  (arXiv:2305.10399) Table 1: Wasserstein-1 and energy distance
  (:func:`scipy.stats.wasserstein_distance`, :func:`scipy.stats.energy_distance`), the
  Kolmogorov–Smirnov statistic and the KL divergence :math:`\sum_b p_b\log(p_b/q_b)` of
  histograms with 64, 128 and 256 bins over the truth's 0.1–99.9 % range (truth :math:`p`,
  unfolded :math:`q`, both with a :math:`10^{-10}` floor so empty bins stay finite).
"""

from __future__ import annotations

import math

import numpy as np
from scipy import stats

__all__ = ["KL_BINS", "distances", "rank_calibration", "sum_distances", "weighted_ks"]

KL_BINS = (64, 128, 256)
_FLOOR = 1e-10


def rank_calibration(samples: np.ndarray, truth: np.ndarray) -> dict:
    """Ranks of ``truth`` (n,) among ``samples`` (n, K); the rank histogram and the largest
    deviation of the calibration curve (NaN-truth events are skipped)."""
    samples = np.asarray(samples, dtype=np.float64)
    truth = np.asarray(truth, dtype=np.float64)
    keep = np.isfinite(truth) & np.all(np.isfinite(samples), axis=1)
    samples, truth = samples[keep], truth[keep]
    k = samples.shape[1]
    if len(truth) == 0:
        return {"n": 0, "samples": k, "histogram": [0] * (k + 1), "max_deviation": math.nan,
                "ranks": np.zeros(0, dtype=np.int64)}
    ranks = np.sum(samples < truth[:, None], axis=1)
    histogram = np.bincount(ranks, minlength=k + 1)
    grid = np.arange(1, k + 1)
    cdf = np.cumsum(histogram)[:-1] / len(ranks)
    return {"n": int(len(ranks)), "samples": int(k), "histogram": histogram.tolist(),
            "max_deviation": float(np.max(np.abs(cdf - grid / (k + 1)))), "ranks": ranks}


def weighted_ks(a: np.ndarray, b: np.ndarray, weights_b: np.ndarray | None = None) -> float:
    """Kolmogorov–Smirnov statistic :math:`\\sup_x |F_a(x) - F_b(x)|` with optional weights
    on ``b`` (scipy's ``ks_2samp`` has none)."""
    weights_b = np.ones(len(b)) if weights_b is None else np.asarray(weights_b, dtype=np.float64)
    grid = np.concatenate([a, b])
    fa = np.searchsorted(np.sort(a), grid, side="right") / len(a)
    order = np.argsort(b)
    cum = np.concatenate([[0.0], np.cumsum(weights_b[order])]) / np.sum(weights_b)
    fb = cum[np.searchsorted(b[order], grid, side="right")]
    return float(np.max(np.abs(fa - fb)))


def distances(unfolded: np.ndarray, truth: np.ndarray,
              weights: np.ndarray | None = None) -> dict[str, float]:
    """W1, energy distance, KS and KL (64/128/256 bins) of one component (see module doc).

    ``weights`` weight the unfolded sample (OmniFold); non-finite values are dropped.
    """
    unfolded = np.asarray(unfolded, dtype=np.float64)
    truth = np.asarray(truth, dtype=np.float64)
    w = np.ones(len(unfolded)) if weights is None else np.asarray(weights, dtype=np.float64)
    ok = np.isfinite(unfolded) & np.isfinite(w)
    unfolded, w, truth = unfolded[ok], w[ok], truth[np.isfinite(truth)]
    if len(unfolded) == 0 or len(truth) == 0:
        return {"W1": math.nan, "energy": math.nan, "KS": math.nan,
                **{f"KL{b}": math.nan for b in KL_BINS}}
    out = {"W1": float(stats.wasserstein_distance(unfolded, truth, u_weights=w)),
           "energy": float(stats.energy_distance(unfolded, truth, u_weights=w)),
           "KS": weighted_ks(truth, unfolded, w)}
    lo, hi = np.quantile(truth, [0.001, 0.999])
    if hi <= lo:
        lo, hi = lo - 0.5, hi + 0.5
    for bins in KL_BINS:
        edges = np.linspace(lo, hi, bins + 1)
        p = np.histogram(np.clip(truth, lo, hi), edges)[0].astype(np.float64)
        q = np.histogram(np.clip(unfolded, lo, hi), edges, weights=w)[0]
        p = np.maximum(p / p.sum(), _FLOOR)
        q = np.maximum(q / max(q.sum(), _FLOOR), _FLOOR)
        out[f"KL{bins}"] = float(np.sum(p * np.log(p / q)))
    return out


def sum_distances(per_component: dict[str, dict[str, float]]) -> dict[str, float]:
    """Each distance summed over components (Table 1 of Shmakov et al. sums them); NaN
    components are skipped, and a distance that is NaN for every component stays NaN."""
    keys = next(iter(per_component.values()), {}).keys()
    out = {}
    for k in keys:
        values = np.array([d[k] for d in per_component.values()], dtype=np.float64)
        out[k] = float(np.nansum(values)) if np.isfinite(values).any() else math.nan
    return out

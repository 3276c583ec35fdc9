"""Numbers that say how close a flash sample is to full simulation.

Every function takes plain numpy arrays (one entry per object or per event) so
that it serves muons, jets, MET and whole events alike:

- :func:`normalised_wasserstein` — :math:`W_1(F, G)/\\sigma_F`, the earth mover's
  distance between the full (F) and flash (G) 1D distributions in units of the
  full-simulation standard deviation (0 = identical; a pure shift by
  :math:`\\delta` gives :math:`|\\delta|/\\sigma_F`);
- :func:`ks_statistic` — :math:`\\sup_x |F(x) - G(x)|` and its p-value;
- :func:`frequency_table` — per-value (or per-bit) fractions of a discrete branch
  and the total-variation distance :math:`\\tfrac12\\sum_v |p_v - q_v|`;
- :func:`correlation_difference` — Pearson correlation matrices and their
  difference;
- :func:`classifier_two_sample_test` — a gradient-boosted classifier trained to
  tell full from flash; its ROC AUC on held-out data is 0.5 when the two samples
  are indistinguishable; its attribution is the AUC each feature carries (permutation
  importance: the AUC lost when that feature is shuffled on the held-out half);
- :func:`roc_points` and :func:`wp_efficiencies` — tagging ROC curves and the
  efficiency of working points with binomial errors.
"""

from __future__ import annotations

import math

import numpy as np
from scipy import stats
from sklearn.ensemble import HistGradientBoostingClassifier
from sklearn.inspection import permutation_importance
from sklearn.metrics import roc_auc_score, roc_curve

__all__ = [
    "ATTRIBUTION_TOP",
    "DEEPJET_2018_WPS",
    "auc_null_sigma",
    "classifier_two_sample_test",
    "correlation_difference",
    "frequency_table",
    "ks_statistic",
    "normalised_wasserstein",
    "roc_points",
    "wp_efficiencies",
]

#: DeepJet (``btagDeepFlavB``) working points of 2018 (loose, medium, tight).
DEEPJET_2018_WPS = {"loose": 0.0494, "medium": 0.2770, "tight": 0.7264}


def _finite(values: np.ndarray) -> np.ndarray:
    values = np.asarray(values, dtype=np.float64)
    return values[np.isfinite(values)]


def normalised_wasserstein(full: np.ndarray, flash: np.ndarray) -> float:
    """Return :math:`W_1(\\text{full}, \\text{flash}) / \\sigma_\\text{full}`.

    Non-finite values are dropped. If the full sample has zero spread the raw
    :math:`W_1` is returned (0 for identical constants); NaN for an empty input.
    """
    full, flash = _finite(full), _finite(flash)
    if full.size == 0 or flash.size == 0:
        return math.nan
    distance = float(stats.wasserstein_distance(full, flash))
    sigma = float(np.std(full))
    return distance / sigma if sigma > 0 else distance


def ks_statistic(full: np.ndarray, flash: np.ndarray) -> tuple[float, float]:
    """Return the two-sample Kolmogorov–Smirnov statistic and its p-value (NaN if empty)."""
    full, flash = _finite(full), _finite(flash)
    if full.size == 0 or flash.size == 0:
        return math.nan, math.nan
    result = stats.ks_2samp(full, flash)
    return float(result.statistic), float(result.pvalue)


def frequency_table(
    full: np.ndarray,
    flash: np.ndarray,
    *,
    bits: dict[int, str] | None = None,
) -> dict:
    """Fractions of each value (or of each set bit, for bit flags) in both samples.

    Returns ``{"values": [...], "full": [...], "flash": [...], "tvd": float}``
    where ``tvd`` is the total-variation distance between the two value
    distributions (0 = identical, 1 = disjoint). For bit flags the rows are the
    bits and ``tvd`` is the largest per-bit difference of the pass fraction.
    """
    full, flash = np.asarray(full), np.asarray(flash)
    if bits:
        keys = sorted(bits)
        p = [float(np.mean((full.astype(np.int64) >> b) & 1)) if full.size else math.nan
             for b in keys]
        q = [float(np.mean((flash.astype(np.int64) >> b) & 1)) if flash.size else math.nan
             for b in keys]
        diff = np.abs(np.subtract(p, q))
        return {"values": [f"bit{b}:{bits[b]}" for b in keys], "full": p, "flash": q,
                "tvd": float(np.nanmax(diff)) if diff.size else math.nan}
    values = np.union1d(np.unique(full), np.unique(flash))
    p = np.array([np.count_nonzero(full == v) for v in values], dtype=np.float64)
    q = np.array([np.count_nonzero(flash == v) for v in values], dtype=np.float64)
    p = p / p.sum() if p.sum() else p
    q = q / q.sum() if q.sum() else q
    return {"values": values.tolist(), "full": p.tolist(), "flash": q.tolist(),
            "tvd": float(0.5 * np.abs(p - q).sum()) if values.size else math.nan}


def correlation_difference(full: np.ndarray, flash: np.ndarray) -> dict:
    """Pearson correlation matrices of ``(n, d)`` feature arrays and their difference.

    Rows with a non-finite value are dropped; a column constant in either sample
    gets NaN correlations (it has none). ``max_abs`` and ``rms`` summarise
    :math:`|C_\\text{flash} - C_\\text{full}|` over the off-diagonal entries.
    """
    def corr(x: np.ndarray) -> np.ndarray:
        x = np.asarray(x, dtype=np.float64)
        x = x[np.all(np.isfinite(x), axis=1)]
        if len(x) < 2:
            return np.full((x.shape[1], x.shape[1]), np.nan)
        sd = x.std(axis=0)
        z = (x - x.mean(axis=0)) / np.where(sd > 0, sd, np.nan)
        return (z.T @ z) / len(x)

    c_full, c_flash = corr(full), corr(flash)
    diff = c_flash - c_full
    off = diff[~np.eye(len(diff), dtype=bool)]
    off = off[np.isfinite(off)]
    return {"full": c_full, "flash": c_flash, "diff": diff,
            "max_abs": float(np.abs(off).max()) if off.size else math.nan,
            "rms": float(np.sqrt(np.mean(off**2))) if off.size else math.nan}


def auc_null_sigma(n_full: int, n_flash: int) -> float:
    """Standard deviation of the ROC AUC of a useless classifier (Mann–Whitney):
    :math:`\\sqrt{(n_1 + n_2 + 1) / (12 n_1 n_2)}`."""
    if n_full == 0 or n_flash == 0:
        return math.nan
    return math.sqrt((n_full + n_flash + 1) / (12.0 * n_full * n_flash))


ATTRIBUTION_TOP = 5
"""How many columns the classifier test's attribution lists."""


def classifier_two_sample_test(
    full: np.ndarray,
    flash: np.ndarray,
    *,
    groups_full: np.ndarray | None = None,
    groups_flash: np.ndarray | None = None,
    repeats: int = 5,
    max_per_class: int = 20_000,
    seed: int = 0,
) -> dict:
    """Classifier two-sample test: can a classifier tell flash from full?

    Each ``(n, d)`` sample is subsampled to at most ``max_per_class`` rows, then ``repeats``
    times split at random in halves: a
    :class:`~sklearn.ensemble.HistGradientBoostingClassifier` (classes weighted to equal
    total weight) is trained on one half and its ROC AUC measured on the other. NaNs are
    allowed (missing features). ``groups_*`` (e.g. the GEN event of each object) keep a
    group in one half for both samples: flash and full twins of the same GEN event then
    never straddle the split, which would let the classifier recognise memorised events
    instead of learning a difference. Returns the mean AUC, its spread over the splits
    (``auc_std``), the per-split values, the Mann–Whitney null spread of the test half and
    ``auc_sigma`` (the larger of the two). 0.5 means indistinguishable; the samples differ
    significantly if ``auc - 0.5`` exceeds a few ``auc_sigma``. ``attribution`` lists the
    :data:`ATTRIBUTION_TOP` columns that carry most of the AUC on the first split as
    ``[column, AUC drop when shuffled]``, largest first (``sklearn`` permutation importance,
    3 shuffles): what a flash sample most needs to improve.
    """
    rng = np.random.default_rng(seed)
    full = np.asarray(full, dtype=np.float64)
    flash = np.asarray(flash, dtype=np.float64)
    if groups_full is None or groups_flash is None:
        groups_full = np.arange(len(full))
        groups_flash = np.arange(len(full), len(full) + len(flash))
    keep_full = rng.permutation(len(full))[:max_per_class]
    keep_flash = rng.permutation(len(flash))[:max_per_class]
    x = np.concatenate([full[keep_full], flash[keep_flash]])
    y = np.concatenate([np.zeros(keep_full.size, np.int8), np.ones(keep_flash.size, np.int8)])
    groups = np.unique(np.concatenate([np.asarray(groups_full)[keep_full],
                                       np.asarray(groups_flash)[keep_flash]]),
                       return_inverse=True)[1].ravel()
    empty = {"auc": math.nan, "auc_std": math.nan, "aucs": [], "auc_null_sigma": math.nan,
             "auc_sigma": math.nan, "attribution": [], "n_full": int(keep_full.size),
             "n_flash": int(keep_flash.size)}
    if min(keep_full.size, keep_flash.size) < 10:
        return empty
    aucs, nulls, attribution = [], [], []
    for _ in range(repeats):
        in_train = rng.random(groups.max() + 1)[groups] < 0.5
        train, test = in_train, ~in_train
        if len(np.unique(y[test])) < 2 or len(np.unique(y[train])) < 2:
            continue
        # a column without any value (no muon in a Z -> ee event) carries nothing, and the
        # classifier cannot bin it
        usable = np.flatnonzero(~np.all(np.isnan(x[train]), axis=0))
        x_train, x_test = x[train][:, usable], x[test][:, usable]
        weight = np.where(y[train] == 1, 1.0 / np.sum(y[train] == 1), 1.0 / np.sum(y[train] == 0))
        model = HistGradientBoostingClassifier(max_iter=100, learning_rate=0.1,
                                               random_state=int(rng.integers(2**31)))
        model.fit(x_train, y[train], sample_weight=weight * train.sum())
        aucs.append(float(roc_auc_score(y[test], model.predict_proba(x_test)[:, 1])))
        nulls.append(auc_null_sigma(int(np.sum(y[test] == 0)), int(np.sum(y[test] == 1))))
        if not attribution:
            drop = permutation_importance(model, x_test, y[test], scoring="roc_auc", n_repeats=3,
                                          random_state=int(rng.integers(2**31))).importances_mean
            attribution = [[int(usable[i]), float(drop[i])]
                           for i in np.argsort(-drop)[:ATTRIBUTION_TOP]]
    if not aucs:
        return empty
    spread = float(np.std(aucs, ddof=1)) if len(aucs) > 1 else math.nan
    null = float(np.mean(nulls))
    return {**empty, "auc": float(np.mean(aucs)), "auc_std": spread, "aucs": aucs,
            "auc_null_sigma": null, "auc_sigma": float(np.nanmax([spread, null])),
            "attribution": attribution}


def roc_points(signal: np.ndarray, background: np.ndarray) -> dict:
    """ROC curve of a score: signal efficiency vs background efficiency, and its AUC.

    Returns ``{"eff_signal", "eff_background", "auc"}`` (arrays ordered by
    decreasing threshold); NaN AUC if either class is empty.
    """
    signal, background = _finite(signal), _finite(background)
    if signal.size == 0 or background.size == 0:
        return {"eff_signal": np.array([]), "eff_background": np.array([]), "auc": math.nan}
    y = np.concatenate([np.ones(signal.size), np.zeros(background.size)])
    score = np.concatenate([signal, background])
    fpr, tpr, _ = roc_curve(y, score)
    return {"eff_signal": tpr, "eff_background": fpr, "auc": float(roc_auc_score(y, score))}


def wp_efficiencies(
    score: np.ndarray,
    flavour: np.ndarray,
    wps: dict[str, float],
    flavours: dict[str, int],
) -> dict:
    """Fraction of objects of each flavour with ``score > wp``, with binomial errors.

    Returns ``{flavour_name: {wp_name: {"eff", "err", "n"}}}``;
    :math:`\\sigma = \\sqrt{\\epsilon(1-\\epsilon)/n}`.
    """
    score, flavour = np.asarray(score), np.asarray(flavour)
    out: dict = {}
    for name, code in flavours.items():
        selected = score[flavour == code]
        n = int(selected.size)
        out[name] = {}
        for wp_name, cut in wps.items():
            eff = float(np.mean(selected > cut)) if n else math.nan
            err = math.sqrt(eff * (1 - eff) / n) if n else math.nan
            out[name][wp_name] = {"eff": eff, "err": err, "n": n}
    return out

"""CMS-style PNG figures for the validation report (hist + mplhep, Agg backend).

Each function draws one figure and writes it to ``path``; none keeps state.
"""

from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")  # no display on batch machines; must precede pyplot
import hist  # noqa: E402
import matplotlib.pyplot as plt  # noqa: E402
import mplhep as hep  # noqa: E402
import numpy as np  # noqa: E402

__all__ = ["FULL_LABEL", "FLASH_LABEL", "binning", "plot_comparison", "plot_matrix",
           "plot_profiles", "plot_roc", "plt", "save_figure", "style_label"]

FULL_LABEL = "Full simulation"
FLASH_LABEL = "FlashSim"
# The emptiest spot, asked for explicitly: left to its default, matplotlib warns whenever the
# search takes over a second, which on a busy machine it does for any figure.
_LEGEND_LOC = "best"
_DPI = 72  # a report holds ~100 figures: small files and fast writes matter more than print quality

plt.style.use(hep.style.CMS)
# Minor ticks triple the drawing time of a CMS-style figure; a report draws ~100 of them.
plt.rcParams.update({"xtick.minor.visible": False, "ytick.minor.visible": False})


def style_label(ax) -> None:
    # CMS style, but not the CMS label: these figures are not CMS results. hep.cms.label
    # draws the whole figure to place its text (~1 s per figure); two plain texts are free.
    ax.text(0.0, 1.01, "flashsim", transform=ax.transAxes, fontsize=20, fontweight="bold",
            va="bottom", ha="left")
    ax.text(0.25, 1.01, "Simulation", transform=ax.transAxes, fontsize=16, style="italic",
            va="bottom", ha="left")


def save_figure(fig, path: Path) -> None:
    # mplhep's CMS style puts axis labels at the figure edges: a tight box keeps them whole
    fig.savefig(path, dpi=_DPI, bbox_inches="tight")
    plt.close(fig)


def binning(full: np.ndarray, flash: np.ndarray, discrete: bool, n_bins: int = 40) -> np.ndarray:
    """Bin edges: one bin per integer value for discrete branches, else the central
    99% of the full sample (both samples if it is empty) in ``n_bins`` bins."""
    both = np.concatenate([np.asarray(full, np.float64), np.asarray(flash, np.float64)])
    both = both[np.isfinite(both)]
    if both.size == 0:
        return np.linspace(0.0, 1.0, n_bins + 1)
    if discrete:
        lo, hi = np.floor(both.min()), np.ceil(both.max())
        if hi - lo <= 100:
            return np.arange(lo - 0.5, hi + 1.5)
    ref = np.asarray(full, np.float64)
    ref = ref[np.isfinite(ref)] if np.isfinite(ref).any() else both
    lo, hi = np.quantile(ref, [0.005, 0.995])
    if hi <= lo:
        lo, hi = lo - 0.5, hi + 0.5
    return np.linspace(lo, hi, n_bins + 1)


def _hist(values: np.ndarray, edges: np.ndarray, weights: np.ndarray | None) -> hist.Hist:
    h = hist.Hist(hist.axis.Variable(edges, flow=False), storage=hist.storage.Weight())
    values = np.asarray(values, np.float64)
    h.fill(np.clip(values, edges[0], edges[-1] - 1e-9 * (edges[-1] - edges[0])),
           weight=weights)  # over/underflow folded into the edge bins, so nothing is hidden
    return h


def plot_comparison(
    full: np.ndarray,
    flash: np.ndarray,
    edges: np.ndarray,
    xlabel: str,
    path: Path,
    *,
    full_weights: np.ndarray | None = None,
    flash_weights: np.ndarray | None = None,
    logy: bool = False,
    note: str = "",
    flash_band: tuple[np.ndarray, np.ndarray] | None = None,
) -> None:
    """Unit-normalised full vs flash histograms with a flash/full ratio panel; ``flash_band``
    (lower, upper unit-normalised bin contents) is the model band of Bayesian flash models."""
    h_full, h_flash = _hist(full, edges, full_weights), _hist(flash, edges, flash_weights)
    fig, (ax, rax) = plt.subplots(2, 1, figsize=(8, 8), sharex=True,
                                  gridspec_kw={"height_ratios": (3, 1), "hspace": 0.05})
    norm_full = h_full.sum().value or 1.0
    norm_flash = h_flash.sum().value or 1.0
    v_full, e_full = h_full.values() / norm_full, np.sqrt(h_full.variances()) / norm_full
    v_flash, e_flash = h_flash.values() / norm_flash, np.sqrt(h_flash.variances()) / norm_flash
    hep.histplot(v_full, edges, yerr=e_full, ax=ax, label=FULL_LABEL, histtype="fill",
                 alpha=0.4, color="tab:blue")
    hep.histplot(v_flash, edges, yerr=e_flash, ax=ax, label=FLASH_LABEL, histtype="errorbar",
                 color="black", markersize=4)
    if flash_band is not None:
        ax.stairs(flash_band[1], edges, baseline=flash_band[0], fill=True, alpha=0.35,
                  color="tab:orange", label=f"{FLASH_LABEL} model band (1σ)")
    ax.set_ylabel("Fraction")
    if logy:
        ax.set_yscale("log")
    ax.legend(loc=_LEGEND_LOC, title=note or None, fontsize=14, title_fontsize=12)
    style_label(ax)
    filled = v_full > 0  # empty full-sim bins have no ratio: drawn as 0 ± 0
    ratio = np.divide(v_flash, v_full, out=np.zeros_like(v_flash), where=filled)
    ratio_err = np.divide(e_flash, v_full, out=np.zeros_like(e_flash), where=filled)
    hep.histplot(ratio, edges, yerr=ratio_err,
                 ax=rax, histtype="errorbar", color="black", markersize=4)
    if flash_band is not None:
        lower, upper = (np.divide(b, v_full, out=np.ones_like(b), where=filled)
                        for b in flash_band)
        rax.stairs(upper, edges, baseline=lower, fill=True, alpha=0.35, color="tab:orange")
    rax.axhline(1.0, color="tab:blue", lw=1)
    rax.set_ylim(0.5, 1.5)
    rax.set_ylabel("Flash/Full")
    rax.set_xlabel(xlabel)
    save_figure(fig, path)


def plot_profiles(
    x_edges: np.ndarray,
    series: dict[str, tuple[np.ndarray, np.ndarray]],
    xlabel: str,
    ylabel: str,
    path: Path,
    *,
    logx: bool = False,
    flash_band: tuple[np.ndarray, np.ndarray] | None = None,
) -> None:
    """Points with error bars per x bin, one series per label (e.g. full and flash);
    ``flash_band`` (lower, upper per bin) is the model band of Bayesian flash models."""
    centers = 0.5 * (x_edges[1:] + x_edges[:-1])
    half = 0.5 * np.diff(x_edges)
    fig, ax = plt.subplots(figsize=(8, 6))
    if flash_band is not None:  # bins without a value (NaN) get no bar
        lower, upper = flash_band
        ax.bar(centers, upper - lower, width=2 * half, bottom=lower, alpha=0.35,
               color="tab:orange", label=f"{FLASH_LABEL} model band (1σ)")
    for offset, (label, (y, yerr)) in zip((-0.1, 0.1, 0.0, 0.2), series.items(), strict=False):
        ax.errorbar(centers + offset * half, y, yerr=yerr, xerr=half, fmt="o", ms=4, label=label)
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    if logx:
        ax.set_xscale("log")
    ax.legend(loc=_LEGEND_LOC, fontsize=14)
    style_label(ax)
    save_figure(fig, path)


def plot_roc(curves: dict[str, tuple[np.ndarray, np.ndarray]], title: str, path: Path) -> None:
    """ROC curves: background efficiency (log) vs signal efficiency."""
    fig, ax = plt.subplots(figsize=(8, 6))
    for label, (eff_s, eff_b) in curves.items():
        keep = eff_b > 0
        ax.plot(eff_s[keep], eff_b[keep], label=label)
    ax.set_yscale("log")
    ax.set_xlabel("Signal efficiency")
    ax.set_ylabel("Background efficiency")
    ax.legend(loc=_LEGEND_LOC, title=title, fontsize=12, title_fontsize=12)
    style_label(ax)
    save_figure(fig, path)


def plot_matrix(matrix: np.ndarray, labels: list[str], title: str, path: Path) -> None:
    """A correlation(-difference) matrix as a heat map on [-1, 1] (NaN shown blank)."""
    size = max(6.0, 0.35 * len(labels) + 3)
    fig, ax = plt.subplots(figsize=(size, size))
    image = ax.imshow(np.ma.masked_invalid(matrix), cmap="RdBu_r", vmin=-1, vmax=1)
    ax.set_xticks(range(len(labels)), labels, rotation=90, fontsize=8)
    ax.set_yticks(range(len(labels)), labels, fontsize=8)
    ax.set_title(title, fontsize=14)
    fig.colorbar(image, ax=ax, fraction=0.046)
    save_figure(fig, path)

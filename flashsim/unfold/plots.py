"""Figures of ``flashsim unfold validate`` (matplotlib with the project's mplhep style)."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from flashsim.unfold.task import UnfoldingTask
from flashsim.validation.plots import binning, plt, save_figure, style_label

__all__ = ["plot_calibration", "plot_distributions", "plot_posteriors"]


def plot_calibration(calibration: dict[str, dict], path: Path) -> None:
    """Calibration curves (CDF of the normalised rank vs the nominal level), one per target."""
    fig, ax = plt.subplots(figsize=(8, 8))
    for name, c in calibration.items():
        histogram = np.asarray(c["histogram"], dtype=np.float64)
        if histogram.sum() == 0:
            continue
        levels = np.arange(len(histogram) + 1) / len(histogram)
        cdf = np.concatenate([[0.0], np.cumsum(histogram) / histogram.sum()])
        ax.plot(levels, cdf, lw=1, label=name)
    ax.plot([0, 1], [0, 1], color="black", ls="--", lw=1)
    ax.set_xlabel("nominal quantile of the posterior")
    ax.set_ylabel("fraction of events with a lower true value")
    ax.legend(loc="best", fontsize=9, ncol=2)
    style_label(ax)
    save_figure(fig, path)


def plot_distributions(task: UnfoldingTask, truth: dict[str, np.ndarray],
                       unfolded: dict[str, tuple[dict[str, np.ndarray], np.ndarray | None]],
                       ibu_histograms: dict[str, dict] | None, output: Path) -> None:
    """Per target: the GEN truth and every method's unfolded distribution, unit-normalised."""
    for target in task.targets:
        values = truth[target.name]
        edges = binning(values, values, False)
        centres = 0.5 * (edges[1:] + edges[:-1])
        fig, ax = plt.subplots(figsize=(8, 6))
        h = np.histogram(np.clip(values, edges[0], edges[-1]), edges)[0]
        ax.fill_between(centres, h / h.sum(), step="mid", alpha=0.3, label="GEN truth")
        for label, (columns, weights) in unfolded.items():
            x = np.clip(columns[target.name], edges[0], edges[-1])
            u = np.histogram(x, edges, weights=weights)[0]
            ax.step(centres, u / max(u.sum(), 1e-12), where="mid", label=label)
        if ibu_histograms and target.name in ibu_histograms:
            ib = ibu_histograms[target.name]
            ib_centres = 0.5 * (ib["edges"][1:] + ib["edges"][:-1])
            scale = np.diff(edges)[0] / np.diff(ib["edges"])[0] / max(ib["unfolded"].sum(), 1e-12)
            ax.plot(ib_centres, ib["unfolded"] * scale, "o", ms=3, color="black", label="IBU")
        unit = f" [{target.unit}]" if target.unit else ""
        ax.set_xlabel(f"{target.name}{unit}")
        ax.set_ylabel("fraction of events")
        ax.legend(loc="best", fontsize=11)
        style_label(ax)
        save_figure(fig, output / f"distribution_{target.name}.png")


def plot_posteriors(task: UnfoldingTask, posterior: dict[str, np.ndarray],
                    truth: dict[str, np.ndarray], n_events: int, output: Path) -> None:
    """For the first ``n_events`` events, the posterior of every target with the truth."""
    names = task.target_names
    columns = min(4, len(names))
    rows = int(np.ceil(len(names) / columns))
    for event in range(min(n_events, len(truth[names[0]]))):
        fig, axes = plt.subplots(rows, columns, figsize=(4 * columns, 3 * rows), squeeze=False)
        for ax, name in zip(axes.flat, names, strict=False):
            ax.hist(posterior[name][event], bins=30, histtype="stepfilled", alpha=0.5)
            ax.axvline(truth[name][event], color="black", lw=2)
            ax.set_title(name, fontsize=10)
            ax.tick_params(labelsize=8)
        for ax in list(axes.flat)[len(names):]:
            ax.set_visible(False)
        fig.suptitle(f"event {event}: posterior samples, true value (line)", fontsize=12)
        save_figure(fig, output / f"posterior_event{event}.png")

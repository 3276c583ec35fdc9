r"""Method ``ibu``: iterative Bayesian unfolding of 1-D histograms (D'Agostini 1995,
NIM A 362, 487), the binned baseline, with ``pyunfold`` (Bourbeau & Hampel-Arias 2018,
JOSS 3, 741).

For every target that has a detector-level counterpart (the task's RECO proxies, e.g. the
dimuon mass for ``Z_m``), training histograms the selected simulated events in
:data:`BINS` equal bins over the truth's 0.5–99.5 % range (values outside go to the edge
bins) and stores the response :math:`R_{ji} = P(\text{reco bin } j \mid \text{gen bin } i)`
with its counts, and the simulated truth spectrum (the prior). Unfolding iterates Bayes'
theorem :math:`\hat n_i \leftarrow \sum_j \frac{R_{ji}\,p_i}{\sum_k R_{jk} p_k}\, d_j`,
:math:`p \leftarrow \hat n / \sum \hat n`, from the simulated prior, and stops when the
Kolmogorov–Smirnov distance between successive iterations falls below
:data:`TS_STOPPING` (pyunfold's test statistic). The efficiency is 1 by construction:
IBU here unfolds the events that pass the selection, like the other methods.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import numpy as np

from flashsim.nanoaod.writer import RootFileWriter
from flashsim.unfold.stored import load_arrays, save_arrays
from flashsim.unfold.task import TaskEvents, UnfoldingTask, iter_events

__all__ = ["BINS", "TS_STOPPING", "load", "train", "apply", "unfold_histogram", "unfold_events"]

BINS = 64
TS_STOPPING = 0.01
MAX_ITERATIONS = 100


def train(task: UnfoldingTask, events: TaskEvents, out_dir: str | Path,
          provenance: dict[str, Any] | None = None) -> dict[str, Any]:
    """Response matrices and priors of every target with a RECO proxy; saved to
    ``TASK_ibu.npz``."""
    arrays: dict[str, np.ndarray] = {}
    names = [t for t in task.target_names if t in events.reco_targets]
    for name in names:
        truth, reco = events.truth_targets[name], events.reco_targets[name]
        lo, hi = np.quantile(truth, [0.005, 0.995])
        edges = np.linspace(lo, hi, BINS + 1)
        gen_bin, reco_bin = _bin(truth, edges), _bin(reco, edges)
        counts = np.zeros((BINS, BINS))
        np.add.at(counts, (reco_bin, gen_bin), events.weight)
        arrays[f"{name}/edges"] = edges
        arrays[f"{name}/counts"] = counts
    meta = {"task": task.name, "targets": names, "bins": BINS, "events": len(events),
            "training": provenance or {}}
    save_arrays(task.name, "ibu", out_dir, meta, **arrays)
    return {"targets": len(names)}


def _bin(values: np.ndarray, edges: np.ndarray) -> np.ndarray:
    return np.clip(np.searchsorted(edges, values, side="right") - 1, 0, len(edges) - 2)


def load(task: UnfoldingTask, model_dir: str | Path) -> tuple[dict, dict[str, np.ndarray]]:
    """Metadata and arrays of ``TASK_ibu.npz``."""
    return load_arrays(task.name, "ibu", model_dir)


def unfold_histogram(measured: np.ndarray, counts: np.ndarray) -> dict[str, Any]:
    """IBU of a measured histogram with the response ``counts[reco, gen]`` (prior = the
    simulated truth spectrum). Returns the unfolded counts, their errors and iterations."""
    from pyunfold import iterative_unfold

    truth = counts.sum(axis=0)
    filled = truth > 0
    response = np.divide(counts, truth, out=np.zeros_like(counts), where=filled)
    response_err = np.divide(np.sqrt(counts), truth, out=np.zeros_like(counts), where=filled)
    prior = np.where(filled, truth, 0.0)
    prior = prior / prior.sum()
    # bins without simulated truth cannot be unfolded into: keep them out of the system
    result = iterative_unfold(
        data=measured, data_err=np.sqrt(measured), response=response[:, filled],
        response_err=response_err[:, filled], efficiencies=np.ones(filled.sum()),
        efficiencies_err=np.zeros(filled.sum()), prior=prior[filled], ts="ks",
        ts_stopping=TS_STOPPING, max_iter=MAX_ITERATIONS, return_iterations=False)
    unfolded, error = np.zeros(len(truth)), np.zeros(len(truth))
    unfolded[filled] = result["unfolded"]
    error[filled] = result["stat_err"]
    return {"unfolded": unfolded, "error": error, "iterations": int(result["num_iterations"])}


def unfold_events(task: UnfoldingTask, events: TaskEvents,
                  model_dir: str | Path) -> dict[str, dict[str, Any]]:
    """Per target: bin edges, measured, unfolded (and true, if known) histograms."""
    _, arrays = load(task, model_dir)
    names = sorted({k.split("/")[0] for k in arrays})
    out = {}
    for name in [t for t in task.target_names if t in names]:
        edges, counts = arrays[f"{name}/edges"], arrays[f"{name}/counts"]
        measured = np.bincount(_bin(events.reco_targets[name], edges), minlength=BINS)
        result = unfold_histogram(measured.astype(np.float64), counts)
        out[name] = {"edges": edges, "measured": measured, **result}
        if events.truth_targets is not None:
            truth = events.truth_targets[name]
            out[name]["true"] = np.bincount(_bin(truth[np.isfinite(truth)], edges),
                                            minlength=BINS)
    return out


def apply(task: UnfoldingTask, inputs: list[str | Path], output: str | os.PathLike,
          model_dir: str | Path, has_gen: bool, provenance: dict[str, Any]) -> dict[str, int]:
    """Unfold the inputs' selected events; write TH1D ``<target>`` (unfolded),
    ``<target>_reco`` (measured) and, with GEN, ``<target>_true`` into ``output``."""
    from flashsim.unfold.task import concatenate_events

    load(task, model_dir)  # a missing response fails before any reading
    parts = list(iter_events(task, list(inputs)))
    events = concatenate_events(parts)
    histograms = unfold_events(task, events, model_dir)
    iterations = {n: h["iterations"] for n, h in histograms.items()}
    with RootFileWriter(output, {**provenance, "iterations": iterations}) as writer:
        for name, h in histograms.items():
            writer.file[name] = (h["unfolded"], h["edges"])
            writer.file[f"{name}_reco"] = (h["measured"].astype(np.float64), h["edges"])
            if has_gen:
                writer.file[f"{name}_true"] = (h["true"].astype(np.float64), h["edges"])
    return {"events_in": sum(p.source["entries"] for p in parts), "events_out": len(events)}

r"""Method ``omnifold``: unbinned unfolding by iterated classifier reweighting (Andreassen
et al. 2020, arXiv:1911.09107; the thesis' §1.3.2), in torch.

The simulation (GEN :math:`y_i`, RECO :math:`x_i`, weights :math:`w_i`) is reweighted to
the data :math:`x^{\rm data}`. Starting from :math:`\nu_0 = 1`, each iteration

1. *pulls* at detector level: a classifier :math:`D_1` separates data from simulation
   weighted by :math:`w\nu_{n-1}`; :math:`\omega_n = \nu_{n-1}\,D_1/(1 - D_1)` at the
   simulated :math:`x_i`;
2. *pushes* to particle level: a classifier :math:`D_2` separates the simulated GEN events
   weighted by :math:`w\omega_n` from the same weighted by :math:`w\nu_{n-1}`;
   :math:`\nu_n = \nu_{n-1}\,D_2/(1 - D_2)` at :math:`y_i`.

The result is the weights :math:`w\nu_N` on the simulated GEN events (not per-event
posteriors). Classifiers: :class:`flashsim.models.classifier.Classifier` on the task's
standardised RECO features (step 1) and latent GEN coordinates (step 2), trained with the
class-balanced weighted binary cross-entropy; :math:`D` is clipped to
:math:`[10^{-3}, 1 - 10^{-3}]` so that one event cannot take all the weight.

``flashsim unfold train --method omnifold`` stores the simulated pairs
(``TASK_omnifold.npz``); the classifiers are fitted when the data are unfolded.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import numpy as np
import torch

from flashsim.errors import FlashSimError
from flashsim.models.classifier import Classifier
from flashsim.unfold.output import UnfoldedWriter
from flashsim.unfold.stored import load_arrays, save_arrays
from flashsim.unfold.task import TaskEvents, UnfoldingTask, concatenate_events, iter_events

__all__ = ["ITERATIONS", "apply", "load", "reweight", "train"]

ITERATIONS = 3
EPOCHS = 15
_CLIP = 1e-3


def train(task: UnfoldingTask, events: TaskEvents, out_dir: str | Path,
          provenance: dict[str, Any] | None = None) -> dict[str, Any]:
    """Store the simulated (GEN, RECO) pairs of ``events`` in ``TASK_omnifold.npz``."""
    def matrix(columns, names):
        return np.stack([columns[n] for n in names], axis=1).astype(np.float32)

    meta = {"task": task.name, "events": len(events), "training": provenance or {},
            "features": [c.name for c in task.features],
            "latent": [c.name for c in task.latent], "targets": task.target_names}
    save_arrays(
        task.name, "omnifold", out_dir, meta,
        features=matrix(events.features, meta["features"]),
        latent=matrix(events.truth, meta["latent"]),
        targets=matrix(events.truth_targets, meta["targets"]),
        weight=events.weight.astype(np.float32),
        **{k: v for k, v in events.ids.items()})
    return {"stored_events": len(events)}


def load(task: UnfoldingTask, model_dir: str | Path) -> tuple[dict, dict[str, np.ndarray]]:
    """Metadata and arrays of ``TASK_omnifold.npz``."""
    meta, arrays = load_arrays(task.name, "omnifold", model_dir)
    if meta["features"] != [c.name for c in task.features]:
        raise FlashSimError(f"{model_dir}/{task.name}_omnifold.npz was stored with other features than task {task.name} of "
                            f"this flashsim computes: store it again with `flashsim unfold "
                            f"train {task.name} --method omnifold`")
    return meta, arrays


def _standardise(*matrices: np.ndarray) -> list[np.ndarray]:
    """Every matrix standardised with the mean and width of the first."""
    mean, std = matrices[0].mean(axis=0), matrices[0].std(axis=0)
    std = np.where(std > 0, std, 1.0)
    return [((m - mean) / std).astype(np.float32) for m in matrices]


def _likelihood_ratio(x1: np.ndarray, w1: np.ndarray, x0: np.ndarray, w0: np.ndarray,
                      evaluate: np.ndarray, generator: torch.Generator) -> np.ndarray:
    """:math:`D/(1-D)` at ``evaluate`` of a classifier of class 1 (``x1``, weights ``w1``)
    against class 0; each class normalised to equal total weight."""
    x = torch.from_numpy(np.concatenate([x1, x0]))
    y = torch.from_numpy(np.concatenate([np.ones(len(x1)), np.zeros(len(x0))]).astype(np.float32))
    w = np.concatenate([w1 / w1.sum(), w0 / w0.sum()]) * len(x) / 2
    w = torch.from_numpy(w.astype(np.float32))
    model = Classifier(x.shape[1], (64, 64))
    optimiser = torch.optim.Adam(model.parameters(), lr=2e-3)
    for _ in range(EPOCHS):
        order = torch.randperm(len(x), generator=generator)
        for start in range(0, len(x), 512):
            batch = order[start:start + 512]
            loss = torch.nn.functional.binary_cross_entropy_with_logits(
                model.logits(x[batch]), y[batch], weight=w[batch])
            optimiser.zero_grad()
            loss.backward()
            optimiser.step()
    with torch.no_grad():
        d = model(torch.from_numpy(evaluate)).numpy().astype(np.float64)
    d = np.clip(d, _CLIP, 1 - _CLIP)
    return d / (1 - d)


def reweight(sim_reco: np.ndarray, sim_gen: np.ndarray, sim_weight: np.ndarray,
             data_reco: np.ndarray, *, iterations: int = ITERATIONS,
             seed: int = 1) -> np.ndarray:
    """OmniFold (module doc): the weights :math:`w\\nu_N` of the simulated GEN events."""
    torch.manual_seed(seed)
    generator = torch.Generator().manual_seed(seed)
    sim_reco, data_reco = _standardise(sim_reco, data_reco)
    (sim_gen,) = _standardise(sim_gen)
    w = np.asarray(sim_weight, dtype=np.float64)
    nu = np.ones(len(w))
    data_weight = np.ones(len(data_reco))
    for _ in range(iterations):
        omega = nu * _likelihood_ratio(data_reco, data_weight, sim_reco, w * nu, sim_reco,
                                       generator)
        nu = nu * _likelihood_ratio(sim_gen, w * omega, sim_gen, w * nu, sim_gen, generator)
    return w * nu


def apply(task: UnfoldingTask, inputs: list[str | Path], output: str | os.PathLike,
          model_dir: str | Path, seed: int, provenance: dict[str, Any]) -> dict[str, int]:
    """Reweight the stored simulation to the inputs' selected events; write the simulated
    GEN events with their ``weight`` and target values as the ``Unfolded`` tree."""
    meta, sim = load(task, model_dir)
    parts = list(iter_events(task, list(inputs)))
    data = concatenate_events(parts)
    if len(data) < 2:
        raise FlashSimError(f"only {len(data)} event(s) of the inputs pass the selection of "
                            f"task {task.name}: OmniFold needs a data sample")
    data_reco = np.stack([data.features[n] for n in meta["features"]], axis=1)
    weights = reweight(sim["features"], sim["latent"], sim["weight"],
                       data_reco.astype(np.float32), seed=seed)
    weights *= len(data) / weights.sum()  # normalised to the number of unfolded events
    targets = {n: sim["targets"][:, i] for i, n in enumerate(meta["targets"])}
    ids = {k: sim[k] for k in ("run", "luminosityBlock", "event")}
    provenance = {**provenance, "simulation": meta["training"], "iterations": ITERATIONS}
    with UnfoldedWriter(output, task.targets, 1, truth=False, weight=True,
                        provenance=provenance) as writer:
        writer.write(ids, targets, weight=weights)
    return {"events_in": sum(p.source["entries"] for p in parts), "events_out": len(weights)}

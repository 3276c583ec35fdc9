r"""Classifier refinement of a conditional flow: DCTR weights and the latent refiner (LaSeR).

A flow :math:`y = f_c^{-1}(z)`, :math:`z \sim \mathcal{N}(0, I)`, trained by maximum likelihood
leaves differences to the full simulation :math:`p_\text{full}(y \mid c)` that a classifier can
see: correlations it did not learn, thin structures, and topological obstructions (a
diffeomorphism of a Gaussian cannot put zero density into a gap between two modes).
Refinement corrects them after training, without touching the flow (Bellagente, "Go with the
Flow", PhD thesis, Heidelberg 2022, ch. 4; Winterhalder et al., "Latent Space Refinement for
Deep Generative Models", arXiv:2106.00792):

1. **DCTR classifier** (Andreassen & Nachman, arXiv:1907.08209). An MLP :math:`f(y, c)` is
   trained with binary cross-entropy to tell full-simulation rows (label 1) from flash rows
   (label 0) of the *same* GEN contexts :math:`c`, one flash row per full row, both in the flow's
   standardised target space. For the optimal classifier
   :math:`w(y, c) = f/(1 - f) = e^{\text{logit}} = p_\text{full}(y \mid c)/p_\text{flash}(y \mid c)`,
   so :math:`E_\text{flash}[w] = 1` (the check of a calibrated classifier). Weights are clipped
   at :attr:`RefineConfig.weight_clip`. The weights written by ``flashsim simulate --weights``
   are :math:`s \min(w, w_\text{max})` with :math:`s` = 1 / their mean on the refinement's
   flash rows (``weight_scale``), so that a classifier's residual miscalibration does not change
   the sample's normalisation (which the product of an event's weights would compound).
2. **Weighted latent points.** Each flash row's latent point :math:`z` (the noise that produced it)
   gets the weight :math:`w(f_c^{-1}(z), c)`: the weighted points sample
   :math:`p_\text{ref}(z \mid c) \propto w\,\mathcal{N}(z; 0, I)`, whose push-forward through the
   unchanged flow is :math:`p_\text{full}` wherever the classifier is right.
3. **Refiner.** A small conditional NSF :math:`q_\phi(z \mid c)` (:func:`~flashsim.models.flows.build_flow`)
   is fitted by weighted maximum likelihood,
   :math:`L = -\sum_i w_i \log q_\phi(z_i \mid c_i) / \sum_i w_i` (times the rows' event
   weights when given). It starts as the identity, :math:`q_\phi = \mathcal{N}(0, I)` exactly
   (:func:`identity_flow`: the last layer of every hypernetwork zero, the zero initialisation
   of Glow, Kingma & Dhariwal, arXiv:1807.03039), and its early stopping keeps that start
   unless training beats it on the stopping rows. A refiner started at random adds its own
   fit error to an 8–46-dimensional Gaussian: on the v3 flows that made the held-out AUC of 6
   of 10 flows worse where the weights carry little (fake muons 0.576 → 0.665). At simulation
   time the
   standard-normal noise :math:`u` goes through the refiner's sampling path,
   :math:`z = g_c^{-1}(u) \sim q_\phi(z \mid c)`, then through the flow: the output stays
   unweighted. With the refiner switched off the same :math:`u` goes into the flow directly, so
   the output is bit for bit the flow's.

Events are split by a hash of the event key (:func:`~flashsim.models.training.validation_mask`)
into refinement-training rows, rows that stop the training early, and held-out rows. On the
held-out rows a *different* classifier family, sklearn's histogram gradient boosting, trained on
one half of the held-out events and scored on the other, measures the ROC AUC of full vs flash
without refinement, with the refiner, and with the DCTR weights (weighted AUC), plus the
effective sample size :math:`(\sum w)^2 / (n \sum w^2)` of the weights. The refinement is thus
never graded by its own classifier nor on its own events. The refined held-out rows reuse the
flash rows' noise, so the two AUCs differ by the refinement alone, and ``auc_null_sigma`` is
their statistical spread. The latent refiner is used for sampling (``latent_refiner`` in the
artifact's metrics) only where it lowers the held-out AUC by more than :data:`MIN_GAIN_SIGMAS`
times that spread; elsewhere the flow samples alone (and costs no refiner pass), and the artifact still
gives its DCTR weights.

A refiner artifact is a :class:`~flashsim.models.artifact.Model` of kind ``refiner`` whose network
is a :class:`LatentRefiner` (the refiner and the DCTR classifier; the flow's context
preprocessing, ``latent_features``, ``compared_targets``, ``classifier_hidden``, ``weight_clip``,
the SHA-256 of the flow's weights it was fitted to), stored as ``refiners/FLOW.pt`` /
``refiners/FLOW.json`` in the model directory. Its sampling path (``forward``, what ONNX exports)
is the refiner's; :meth:`LatentRefiner.log_weight` gives the DCTR weights that ``flashsim
simulate --weights`` writes for the flow alone.
"""

from __future__ import annotations

import hashlib
import json
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
import zuko
from sklearn.ensemble import HistGradientBoostingClassifier
from sklearn.metrics import roc_auc_score
from threadpoolctl import threadpool_limits

from flashsim.errors import FlashSimError
from flashsim.models.artifact import (
    REFINERS,
    Model,
    library_versions,
    save_model,
    write_manifest,
)
from flashsim.models.classifier import Classifier
from flashsim.models.flows import FlowSampler, build_flow
from flashsim.models.training import validation_mask
from flashsim.models.transforms import Preprocessor
from flashsim.seeds import seeded_rng
from flashsim.validation.metrics import auc_null_sigma, effective_sample_size

__all__ = ["DEFAULT_REFINER", "MIN_GAIN_SIGMAS", "MIN_ROWS", "LatentRefiner", "RefineConfig",
           "dctr_weights", "dctr_flow_weights", "fit_dctr_classifier", "fit_refiner",
           "identity_flow", "refine_model", "save_refiner",
           "weighted_held_out_auc"]

MIN_ROWS = 10
"""Fewest rows of each split (training, early stopping, held out) a refinement needs."""
MIN_GAIN_SIGMAS = 2.0
"""A latent refiner samples only where it lowers the held-out AUC by more than this many times
the AUC's statistical spread (module doc)."""
DEFAULT_REFINER: dict[str, Any] = {"transforms": 2, "bins": 8, "hidden_features": [64, 64],
                                   "passes": 2}
"""The refiner's NSF: smaller than the flows, it only moves mass in the latent space."""


class LatentRefiner(torch.nn.Module):
    r"""A flow's refiner :math:`q_\phi(z \mid c)` and its DCTR classifier, saved together.

    ``forward(context, noise)`` is the refined latent point :math:`z = g_c^{-1}(u)` (the sampling
    path); :meth:`log_weight` the DCTR log-weight :math:`\log w = \text{logit} f(y, c)` of the
    flow's standardised compared targets ``y``."""

    def __init__(self, latent_features: int, context: int, arch: dict[str, Any],
                 compared: int, classifier_hidden: list[int]) -> None:
        super().__init__()
        self.refiner = FlowSampler(build_flow(latent_features, context, arch))
        self.classifier = Classifier(compared + context, classifier_hidden)

    def log_prob(self, z: torch.Tensor, context: torch.Tensor) -> torch.Tensor:
        r""":math:`\log q_\phi(z \mid c)` per row."""
        return self.refiner.log_prob(z, context)

    def log_weight(self, y: torch.Tensor, context: torch.Tensor) -> torch.Tensor:
        r"""DCTR :math:`\log w` per row, unclipped."""
        return self.classifier.logits(torch.cat([y, context], dim=1))

    def forward(self, context: torch.Tensor, noise: torch.Tensor) -> torch.Tensor:
        """The refined latent point for standard-normal ``noise``."""
        return self.refiner(context, noise)


@dataclass
class RefineConfig:
    """Settings of one refinement (classifier and refiner training, splits, weight clipping)."""

    classifier_hidden: list[int] = field(default_factory=lambda: [64, 64])
    refiner: dict[str, Any] = field(default_factory=lambda: dict(DEFAULT_REFINER))
    epochs: int = 40
    batch_size: int = 1024
    lr: float = 1e-3
    patience: int = 5
    held_out_fraction: float = 0.25
    stop_fraction: float = 0.15
    weight_clip: float = 20.0
    seed: int = 1


def _fit(module: torch.nn.Module, loss, train: tuple[torch.Tensor, ...],
         stop: tuple[torch.Tensor, ...], config: RefineConfig, generator: torch.Generator) -> dict:
    """AdamW on ``loss(module, *rows)`` with early stopping on the ``stop`` rows; keeps the best
    weights. Returns the history summary."""
    optimizer = torch.optim.AdamW(module.parameters(), lr=config.lr, weight_decay=1e-5)
    module.eval()
    with torch.no_grad():  # the start competes too: training must beat it to replace it
        best = float(loss(module, *stop))
    best_state = {k: v.detach().clone() for k, v in module.state_dict().items()}
    bad, epochs, best_epoch = 0, 0, 0
    n = len(train[0])
    for epoch in range(config.epochs):
        module.train()
        order = torch.randperm(n, generator=generator)
        for start in range(0, n, config.batch_size):
            batch = order[start:start + config.batch_size]
            value = loss(module, *(t[batch] for t in train))
            optimizer.zero_grad()
            value.backward()
            torch.nn.utils.clip_grad_norm_(module.parameters(), 5.0)
            optimizer.step()
        module.eval()
        with torch.no_grad():
            stop_loss = float(loss(module, *stop))
        epochs = epoch + 1
        if stop_loss < best:
            best, bad, best_epoch = stop_loss, 0, epochs
            best_state = {k: v.detach().clone() for k, v in module.state_dict().items()}
        else:
            bad += 1
            if bad >= config.patience:
                break
    module.load_state_dict(best_state)
    module.eval()
    return {"stop_loss": best, "epochs_run": epochs, "best_epoch": best_epoch}


def _bce(module: Classifier, x: torch.Tensor, label: torch.Tensor,
         weight: torch.Tensor) -> torch.Tensor:
    per_row = torch.nn.functional.binary_cross_entropy_with_logits(module.logits(x), label,
                                                                   reduction="none")
    return (weight * per_row).sum() / weight.sum()


def _weighted_nll(module: FlowSampler, z: torch.Tensor, context: torch.Tensor,
                  weight: torch.Tensor) -> torch.Tensor:
    return -(weight * module.log_prob(z, context)).sum() / weight.sum().clamp_min(1e-12)


def _tensor(x: np.ndarray) -> torch.Tensor:
    return torch.from_numpy(np.ascontiguousarray(x, dtype=np.float32))


def fit_dctr_classifier(full: np.ndarray, flash: np.ndarray, train: np.ndarray,
                        stop: np.ndarray, config: RefineConfig,
                        weight: np.ndarray | None = None) -> tuple[Classifier, dict]:
    """The DCTR classifier on ``(n, d)`` feature rows (standardised targets and context):
    full = 1, flash = 0, row ``i`` of both from the same GEN context; rows ``train`` fit it,
    rows ``stop`` stop it early. ``weight``: per-row event weight (default 1)."""
    weight = np.ones(len(full)) if weight is None else np.asarray(weight, dtype=np.float64)
    torch.manual_seed(config.seed)
    classifier = Classifier(full.shape[1], config.classifier_hidden)

    def rows(mask: np.ndarray) -> tuple[torch.Tensor, ...]:
        x = np.concatenate([full[mask], flash[mask]])
        label = np.repeat([1.0, 0.0], int(mask.sum()))
        return _tensor(x), _tensor(label), _tensor(np.tile(weight[mask], 2))

    generator = torch.Generator().manual_seed(config.seed)
    summary = _fit(classifier, _bce, rows(train), rows(stop), config, generator)
    return classifier, summary


def dctr_weights(classifier: Classifier, x: np.ndarray, clip: float) -> np.ndarray:
    r""":math:`w = f/(1-f) = e^{\text{logit}}` per row of ``x``, clipped to ``[0, clip]``."""
    with torch.no_grad():
        logit = classifier.logits(_tensor(x)).numpy().astype(np.float64)
    return np.exp(np.minimum(logit, np.log(clip)))


def fit_refiner(latent: np.ndarray, context: np.ndarray, weight: np.ndarray, train: np.ndarray,
                stop: np.ndarray, config: RefineConfig) -> tuple[FlowSampler, dict]:
    r"""The refiner :math:`q_\phi(z \mid c)`: an NSF fitted by weighted maximum likelihood to the
    latent points ``latent`` with weights ``weight`` (rows ``train``; rows ``stop`` stop it)."""
    torch.manual_seed(config.seed)
    refiner = FlowSampler(identity_flow(build_flow(latent.shape[1], context.shape[1],
                                                   config.refiner)))

    def rows(mask: np.ndarray) -> tuple[torch.Tensor, ...]:
        return _tensor(latent[mask]), _tensor(context[mask]), _tensor(weight[mask])

    generator = torch.Generator().manual_seed(config.seed)
    summary = _fit(refiner, _weighted_nll, rows(train), rows(stop), config, generator)
    return refiner, summary


def identity_flow(flow: zuko.flows.NSF) -> zuko.flows.NSF:
    r"""``flow`` with the last layer of each transform's hypernetwork set to zero: every
    spline then has uniform bins and unit derivatives, the identity, so the flow's density is
    its base :math:`\mathcal{N}(0, I)` for every context until training moves it."""
    with torch.no_grad():
        for transform in flow.transform.transforms:
            last = transform.hyper[-1]
            last.weight.zero_()
            last.bias.zero_()
    return flow


def weighted_held_out_auc(full: np.ndarray, flash: np.ndarray, halves: np.ndarray,
                          flash_weight: np.ndarray | None = None, seed: int = 0) -> float:
    """ROC AUC of full vs flash by a histogram gradient-boosting classifier fitted on the rows
    where ``halves`` is True and scored on the others, flash rows weighted by ``flash_weight``
    (in the fit and in the AUC; default 1). Not the DCTR classifier's family."""
    flash_weight = np.ones(len(flash)) if flash_weight is None else flash_weight
    x = np.concatenate([full, flash])
    label = np.repeat([1, 0], [len(full), len(flash)])
    weight = np.concatenate([np.ones(len(full)), flash_weight])
    fit = np.concatenate([halves, halves])
    if len(np.unique(label[fit])) < 2 or len(np.unique(label[~fit])) < 2:
        return float("nan")
    model = HistGradientBoostingClassifier(max_iter=100, learning_rate=0.1, random_state=seed)
    with threadpool_limits(1):
        model.fit(x[fit], label[fit], sample_weight=weight[fit])
        score = model.predict_proba(x[~fit])[:, 1]
    return float(roc_auc_score(label[~fit], score, sample_weight=weight[~fit]))


def refine_model(flow: Model, context: dict[str, np.ndarray], target: dict[str, np.ndarray],
                 event: np.ndarray, config: RefineConfig | None = None,
                 weight: np.ndarray | None = None) -> Model:
    """Fit the DCTR classifier and the latent refiner of the flow model ``flow`` on full-simulation
    rows (named NanoAOD ``context`` and ``target`` columns, as the object's training table has
    them; ``event`` keys for the splits; ``weight`` event weights) and measure both on held-out
    events (module doc). Returns the refiner as a :class:`Model` of kind ``refiner`` whose
    ``metrics`` hold the held-out AUCs, the weights' mean and effective sample size."""
    config = config or RefineConfig()
    if flow.kind != "flow":
        raise FlashSimError(f"{flow.name} is a {flow.kind}, not a flow: only flows are refined")
    if flow.refiner is not None:
        raise FlashSimError(f"{flow.name} is already refined: load it without its refiner")
    started = time.perf_counter()
    rng = seeded_rng(config.seed, "refine", flow.name)
    # targets the files lack (branches that newer code computes instead of sampling, which
    # older flows still generate) are left out of the comparison; the refiner moves them too
    present = [i for i, column in enumerate(flow.target.columns) if column.spec.name in target]
    if not present:
        raise FlashSimError(f"{flow.name}: the files have none of its targets "
                            f"{flow.target.names}: refine on NANOAODSIM with its RECO branches")
    compared = Preprocessor([flow.target.columns[i] for i in present])
    c = flow.standardised_context(context)
    y_full = compared.forward(target, rng)
    latent = rng.standard_normal((len(c), len(flow.target.columns))).astype(np.float32)
    y_flash = flow.run(c, latent)[:, present]
    held = validation_mask(event, config.held_out_fraction)
    stop = validation_mask(event, config.held_out_fraction + config.stop_fraction) & ~held
    train = ~held & ~stop
    if train.sum() < MIN_ROWS or stop.sum() < MIN_ROWS or held.sum() < MIN_ROWS:
        raise FlashSimError(f"{flow.name}: {len(event)} rows are too few to refine (need at "
                            f"least {MIN_ROWS} rows in each split): give more events")
    full_x, flash_x = np.hstack([y_full, c]), np.hstack([y_flash, c])
    classifier, classifier_fit = fit_dctr_classifier(full_x, flash_x, train, stop, config, weight)
    w = dctr_weights(classifier, flash_x, config.weight_clip)
    fitted = train | stop
    weight_scale = 1.0 / float(np.average(w[fitted], weights=None if weight is None
                                          else np.abs(np.asarray(weight)[fitted])))
    # the flash rows share the full rows' GEN contexts, hence their event weights
    event_weight = w if weight is None else w * np.asarray(weight, dtype=np.float64)
    refiner, refiner_fit = fit_refiner(latent[fitted], c[fitted], event_weight[fitted],
                                       train[fitted], stop[fitted], config)

    # the flash rows' own noise through the refiner: the two samples differ only by the
    # refinement (an identity refiner gives the same rows), not by a second draw
    with torch.no_grad():
        refined_latent = refiner(_tensor(c[held]), _tensor(latent[held])).numpy()
    y_refined = flow.run(c[held], refined_latent)[:, present]
    halves = validation_mask(event[held] ^ np.uint64(0x5DEECE66D), 0.5)
    held_full = full_x[held]
    metrics = {
        "auc_flash": weighted_held_out_auc(held_full, flash_x[held], halves, seed=config.seed),
        "auc_refined": weighted_held_out_auc(held_full, np.hstack([y_refined, c[held]]), halves,
                                             seed=config.seed),
        "auc_dctr_weighted": weighted_held_out_auc(held_full, flash_x[held], halves, w[held],
                                                   seed=config.seed),
        "weight_mean": float(np.mean(w[held])),
        "weight_mean_error": float(np.std(w[held]) / np.sqrt(held.sum())),
        "effective_sample_size": effective_sample_size(w[held]),
        # the AUCs' spread from the scored half alone (0.5 ± this for identical samples)
        "auc_null_sigma": auc_null_sigma(int((~halves).sum()), int((~halves).sum())),
        "rows_held_out": int(held.sum()),
    }
    metrics["latent_refiner"] = bool(metrics["auc_flash"] - metrics["auc_refined"]
                                     > MIN_GAIN_SIGMAS * metrics["auc_null_sigma"])
    meta = {
        "name": flow.name, "object": flow.meta["object"], "kind": "refiner",
        "flow": flow.name, "flow_sha256": None,  # set by save_refiner
        "latent_features": int(latent.shape[1]),
        "compared_targets": compared.names,
        "classifier_hidden": list(config.classifier_hidden),
        "weight_clip": config.weight_clip,
        "weight_scale": weight_scale,
        "architecture": dict(config.refiner),
        "context": flow.context.to_dict(), "target": None,
        "metrics": metrics,
        "training": {"config": asdict(config), "rows": int(len(event)),
                     "rows_train": int(train.sum()), "rows_stop": int(stop.sum()),
                     "classifier": classifier_fit, "refiner": refiner_fit,
                     "seconds": round(time.perf_counter() - started, 1)},
        "versions": library_versions(),
    }
    module = LatentRefiner(latent.shape[1], c.shape[1], config.refiner, len(present),
                           config.classifier_hidden)
    module.refiner.load_state_dict(refiner.state_dict())
    module.classifier.load_state_dict(classifier.state_dict())
    return Model(meta, module.eval(), flow.context, None)


def dctr_flow_weights(refiner: Model, flow: Model, context: np.ndarray,
                      y: np.ndarray) -> np.ndarray:
    """The DCTR weights, clipped to ``[0, weight_clip]`` and scaled by ``weight_scale`` (module
    doc), of the flow's standardised samples ``y`` (all its targets) given the standardised
    ``context``: what ``--weights`` writes."""
    compared = [flow.target.names.index(name) for name in refiner.meta["compared_targets"]]
    with torch.no_grad():
        log_w = refiner.module.log_weight(_tensor(y[:, compared]).to(refiner.device),
                                          _tensor(context).to(refiner.device)).cpu().numpy()
    clipped = np.exp(np.minimum(log_w.astype(np.float64), np.log(refiner.meta["weight_clip"])))
    return refiner.meta["weight_scale"] * clipped


def save_refiner(refiner: Model, directory: str | Path) -> None:
    """Write ``refiner`` into the model directory ``directory`` that holds its flow
    (``refiners/FLOW.pt``, ``refiners/FLOW.json``), record the SHA-256 of the flow's weights it
    was fitted to, and rewrite ``manifest.json`` (key ``refiners``)."""
    directory = Path(directory)
    flow_weights = directory / f"{refiner.meta['flow']}.pt"
    if not flow_weights.is_file():
        raise FlashSimError(f"{directory} has no {flow_weights.name}: save the refiner of "
                            f"{refiner.meta['flow']} beside its flow")
    refiner.meta["flow_sha256"] = hashlib.sha256(flow_weights.read_bytes()).hexdigest()
    save_model(refiner, directory / REFINERS)
    manifest = directory / "manifest.json"
    names = list(json.loads(manifest.read_text())["models"]) if manifest.is_file() else None
    write_manifest(directory, names)

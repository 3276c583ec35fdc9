r"""Training loop for flows, efficiency classifiers and the multiplicity model.

Losses (all weighted by the per-row event weight :math:`w`, i.e. ``genWeight`` with its
sign, normalised to mean :math:`|w| = 1`), :math:`L = \sum_i w_i \ell_i / \sum_i w_i`:

* flow, cinn: :math:`\ell = -\log p_\theta(y \mid c)` (negative log-likelihood of the NSF,
  for the cINN of its summary network and NSF together),
  with the dequantisation/spike noise of :mod:`flashsim.models.transforms` redrawn
  every epoch; a Bayesian flow (``bayesian: true``) adds
  :math:`\mathrm{KL}(q_\phi \| p) / N_\text{train}` to every batch's loss, the negative
  ELBO per training row of :mod:`flashsim.models.bayesian` (validated with the mean weights),
  and is trained in three phases: the means (widths frozen narrow, early stopping as usual),
  a solve of the widths for the ELBO's stationary point, a short ELBO fine-tune of the means
  under those widths; ``training.bayesian`` in the artifact records them;
* classifier: binary cross-entropy on the logit;
* multiplicity: categorical cross-entropy.

A flow target that takes one value in every training row (:func:`constant_targets`) is not
given to the flow (a cINN keeps all its targets: its task maps them all); the artifact records it in ``target_constants`` and sampling returns it.

Rows are split into training and validation **by event** (a 64-bit hash of
``(run, luminosityBlock, event)``), so the objects of one event never straddle the
split. AdamW with a cosine (or plateau) learning-rate schedule; early stopping on the
validation loss, keeping the best weights. After every epoch a checkpoint
``MODEL_DIR/checkpoint/NAME.pt`` is written; a later run with the same configuration
resumes from it. The loss curve goes to ``MODEL_DIR/NAME_loss.png``. The artifact's
``training`` metadata records how to reproduce it: the sample files (name, process, seed),
the git commit of the code and its dirty flag, the configuration, epochs run, wall time
(summed over resumed runs) and device.
"""

from __future__ import annotations

import hashlib
import json
import time
from dataclasses import asdict, dataclass, field, fields
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import numpy as np
import torch

from flashsim.errors import FlashSimError
from flashsim.models.artifact import (
    GENERATIVE_KINDS,
    Model,
    build_module,
    code_version,
    device_description,
    library_versions,
    save_model,
    training_samples,
)
from flashsim.models.bayesian import (
    DEFAULT_PRIOR_SIGMA,
    bayesian_layers,
    is_bayesian,
    kl_divergence,
    solve_widths,
    width_summary,
)
from flashsim.models.flows import DEFAULT_CINN, DEFAULT_FLOW
from flashsim.models.spec import ModelSpec, TrainingTable
from flashsim.models.transforms import Preprocessor
from flashsim.seeds import seeded_rng

__all__ = ["MIN_ROWS", "RELATION_TOLERANCE", "TrainConfig", "constant_targets", "exact_relations",
           "load_config", "train_model", "validation_mask"]

MIN_ROWS = 2
"""The fewest training rows a model can be fitted (and validated) on."""

_DEFAULT_ARCH = {
    "flow": DEFAULT_FLOW,
    "cinn": DEFAULT_CINN,
    "classifier": {"hidden_features": [64, 64]},
    "multiplicity": {"hidden_features": [64, 64]},
}


@dataclass
class TrainConfig:
    r"""Training settings of one model (YAML: ``defaults`` + ``models.NAME`` overrides).

    ``bayesian``: a flow gets Gaussian weights and is trained on the ELBO
    (:mod:`flashsim.models.bayesian`); classifiers and the multiplicity model ignore it.
    After ``epochs`` of the means, a Bayesian flow's widths are solved in ``width_passes``
    passes over the training rows (each a step of at most ``width_step`` towards the ELBO's
    stationary point, in :math:`\log\sigma^2`), then the means are trained on the ELBO under
    those widths for ``elbo_epochs`` epochs at learning rate ``elbo_lr`` (the module
    docstring of :mod:`flashsim.models.bayesian` says why and cites the method).
    """

    epochs: int = 50
    batch_size: int = 2048
    lr: float = 1e-3
    weight_decay: float = 1e-5
    schedule: str = "cosine"
    patience: int = 8
    val_fraction: float = 0.2
    seed: int = 1
    device: str = "cpu"
    bayesian: bool = False
    width_passes: int = 12
    width_step: float = 0.5
    elbo_epochs: int = 3
    elbo_lr: float = 1e-3
    architecture: dict[str, Any] = field(default_factory=dict)


def load_config(path: str | Path | None, name: str, **overrides: Any) -> TrainConfig:
    """The :class:`TrainConfig` of model ``name`` from a YAML file plus CLI overrides."""
    data: dict[str, Any] = {}
    if path is not None:
        import yaml

        try:
            raw = yaml.safe_load(Path(path).read_text()) or {}
        except (OSError, yaml.YAMLError) as error:
            raise FlashSimError(f"cannot read training config {path}: {error}") from error
        data = {**raw.get("defaults", {}), **raw.get("models", {}).get(name, {})}
    data.update({k: v for k, v in overrides.items() if v is not None})
    known = {f.name for f in fields(TrainConfig)}
    unknown = sorted(set(data) - known)
    if unknown:
        raise FlashSimError(f"unknown training option(s) {unknown} in {path}: use {sorted(known)}")
    return TrainConfig(**data)


def validation_mask(keys: np.ndarray, fraction: float) -> np.ndarray:
    """True for rows of validation events: splitmix64 hash of the event key < fraction."""
    with np.errstate(over="ignore"):
        z = np.asarray(keys, dtype=np.uint64) + np.uint64(0x9E3779B97F4A7C15)
        z = (z ^ (z >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)
        z = (z ^ (z >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)
        z = z ^ (z >> np.uint64(31))
    return (z >> np.uint64(11)).astype(np.float64) / 2.0**53 < fraction


def _loss(module: torch.nn.Module, kind: str, c: torch.Tensor, y: torch.Tensor,
          w: torch.Tensor, kl_scale: float = 0.0) -> torch.Tensor:
    """Weighted mean loss of the rows, plus ``kl_scale`` times the KL of a Bayesian module."""
    if kind in GENERATIVE_KINDS:
        per_row = -module.log_prob(y, c)
    elif kind == "classifier":
        per_row = torch.nn.functional.binary_cross_entropy_with_logits(
            module.logits(c), y, reduction="none")
    else:
        per_row = torch.nn.functional.cross_entropy(module.logits(c), y.long(), reduction="none")
    loss = (w * per_row).sum() / w.sum().clamp_min(1e-12)
    return loss + kl_scale * kl_divergence(module) if kl_scale else loss


def constant_targets(table: TrainingTable, names: list[str]) -> dict[str, float]:
    """The targets among ``names`` that take one value in every row of ``table`` (at least two
    rows), with that value: a flow would only blur them, so the artifact stores them as
    ``target_constants`` and :meth:`~flashsim.models.artifact.Model.sample` returns them
    exactly."""
    out = {}
    for name in names:
        values = np.asarray(table.target[name], dtype=np.float64)
        if len(values) > 1 and np.all(values == values[0]):
            out[name] = float(values[0])
    return out


RELATION_TOLERANCE = 0.01
"""Largest deviation of a training row from a rule of :func:`exact_relations` (NanoAOD
values): the storage rounding with 6 mantissa bits (the jet energy fractions) moves a value by
up to 0.008; a rule a detector does not follow misses by far more in some rows."""


def exact_relations(table: TrainingTable, relations: dict, names: list[str]) -> dict[str, str]:
    """The targets among ``names`` that a rule of ``relations`` (:attr:`ModelSpec.relations`)
    fixes in every row of ``table``, with the first such rule's name: each row's value lies
    within :data:`RELATION_TOLERANCE` of the rule applied to the row's context and target
    columns. A flow would only approximate such a target (and spend its capacity on a
    density that is a thin sheet), so the artifact lists it in ``derived_targets`` and the
    object module computes it. A rule that needs a column the table lacks does not hold."""
    columns = {**table.context, **table.target}
    out = {}
    for name in names:
        value = np.asarray(table.target[name], np.float64)
        for rule, function in relations.get(name, {}).items():
            try:
                derived = np.asarray(function(columns), np.float64)
            except KeyError:
                continue
            if len(value) > 1 and np.all(np.abs(derived - value) <= RELATION_TOLERANCE):
                out[name] = rule
                break
    return out


def region_constants(table: TrainingTable, names: list[str], *, purity: float = 0.995,
                     min_rows: int = 100) -> dict[str, dict[str, float]]:
    """Per region of ``table.regions``, the targets among ``names`` that one value fills in at
    least ``purity`` of its rows (and at least ``min_rows`` rows), with that value: what a rule
    of the detector fixes there (a jet outside the tracker has no track-based tagger, so the
    reference detector gives every such jet the taggers' defaults). Sampling sets them
    exactly where the object module finds the region (``region_constants`` in the artifact);
    the purity below 1 allows for the rows at the region's edge that the storage rounding of
    the region's variable moves across it. Data without such a rule (real CMS NanoAOD: 57% of
    jets beyond :math:`|\\eta| = 2.5` with ``qgl`` = -1) give none."""
    out: dict[str, dict[str, float]] = {}
    for region, mask in table.regions.items():
        mask = np.asarray(mask, dtype=bool)
        if mask.sum() < min_rows:
            continue
        fixed = {}
        for name in names:
            values, counts = np.unique(np.asarray(table.target[name], np.float64)[mask],
                                       return_counts=True)
            if counts.max() >= purity * mask.sum():
                fixed[name] = float(values[np.argmax(counts)])
        if fixed:
            out[region] = fixed
    return out


def train_model(spec: ModelSpec, table: TrainingTable, out_dir: str | Path, config: TrainConfig,
                provenance: dict[str, Any] | None = None, *, progress: bool = True) -> Model:
    """Fit preprocessing and network of model ``spec`` on ``table``; save the artifact."""
    out_dir = Path(out_dir)
    if len(table) < MIN_ROWS:
        raise FlashSimError(f"{spec.name}: only {len(table)} training rows; give more events "
                            "with --data / --max-events")
    kind = spec.kind
    constants: dict[str, float] = {}
    derived: dict[str, str] = {}
    regional: dict[str, dict[str, float]] = {}
    torch.manual_seed(config.seed)
    rng = seeded_rng(config.seed, "training_batches")
    val = validation_mask(table.event, config.val_fraction)
    if val.all() or not val.any():  # tiny samples: validate on the training rows
        val = np.ones(len(table), dtype=bool)
        train = val
    else:
        train = ~val

    def rows(data: dict[str, np.ndarray], mask: np.ndarray) -> dict[str, np.ndarray]:
        return {k: v[mask] for k, v in data.items()}

    context = Preprocessor.fit(list(spec.context), rows(table.context, train), context=True)
    target = None
    if kind in GENERATIVE_KINDS:
        targets = [t for t in spec.targets if t.name in table.target]
        if not targets:
            raise FlashSimError(f"{spec.name}: the training files have none of the target "
                                f"branches {[t.name for t in spec.targets]}")
        missing = [name for name in spec.required if name not in table.target]
        if missing:
            raise FlashSimError(f"{spec.name}: the training files lack {', '.join(missing)}, "
                                "which the simulation needs; train on NANOAODSIM that has it")
        if kind == "flow":  # a cINN's latent targets all enter its task's mapping
            constants = constant_targets(table, [t.name for t in targets])
            derived = exact_relations(table, spec.relations,
                                      [t.name for t in targets if t.name not in constants])
            # derived targets too: a rule applied to a region's constant inputs need not give
            # the stored value (rounded from the detector's unrounded inputs), the constant does
            regional = region_constants(table, [t.name for t in targets
                                                if t.name not in constants])
        targets = [t for t in targets if t.name not in constants | derived]
        if not targets:
            raise FlashSimError(f"{spec.name}: every target is constant in the training files "
                                f"({constants}); a flow has nothing to learn: train on more "
                                "events with --data / --max-events")
        target = Preprocessor.fit(targets, rows(table.target, train))
    arch = {**_DEFAULT_ARCH[kind], **config.architecture}
    if kind == "multiplicity":
        arch["max_count"] = spec.max_count
    if kind == "flow" and config.bayesian:
        arch = {"prior_sigma": DEFAULT_PRIOR_SIGMA, **arch, "bayesian": True}
    meta: dict[str, Any] = {
        "name": spec.name, "object": spec.object, "kind": kind, "architecture": arch,
        "context": context.to_dict(), "target": target.to_dict() if target else None,
    }
    if constants:
        meta["target_constants"] = constants
    if derived:
        meta["derived_targets"] = derived
    if regional:
        meta["region_constants"] = regional
    device = torch.device(config.device)
    if device.type == "cuda" and not torch.cuda.is_available():
        raise FlashSimError("--device cuda but no CUDA GPU is visible: use --device cpu")
    module = build_module(meta).to(device)
    kl_scale = 1.0 / int(train.sum()) if is_bayesian(module) else 0.0
    _freeze_widths(module, True)  # the mean phase fits the means; the widths come after

    def tensors(mask: np.ndarray, noise_rng: np.random.Generator):
        c = torch.from_numpy(context.forward(rows(table.context, mask)))
        if kind in GENERATIVE_KINDS:
            y = torch.from_numpy(target.forward(rows(table.target, mask), noise_rng))
        else:
            label = next(iter(table.target.values()))[mask]
            y = torch.from_numpy(np.asarray(label, dtype=np.float32))
        w = torch.from_numpy(np.asarray(table.weight[mask], dtype=np.float32))
        return c.to(device), y.to(device), w.to(device)

    val_data = tensors(val, seeded_rng(config.seed, "validation_dequantization"))
    optimizer = torch.optim.AdamW(module.parameters(), lr=config.lr,
                                  weight_decay=config.weight_decay)
    if config.schedule == "cosine":
        scheduler = torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, max(config.epochs, 1))
    elif config.schedule == "plateau":
        scheduler = torch.optim.lr_scheduler.ReduceLROnPlateau(optimizer, factor=0.5, patience=3)
    else:
        raise FlashSimError(f"unknown schedule {config.schedule!r}; use cosine or plateau")

    digest = hashlib.sha256(json.dumps([asdict(config), meta["target"], len(table)],
                                       sort_keys=True, default=str).encode()).hexdigest()
    checkpoint = out_dir / "checkpoint" / f"{spec.name}.pt"
    state = {"epoch": 0, "best": float("inf"), "best_epoch": -1, "bad": 0, "history": [],
             "best_state": None, "seconds": 0.0}
    if checkpoint.is_file():
        saved = torch.load(checkpoint, map_location=device, weights_only=False)
        if saved.get("digest") == digest:
            module.load_state_dict(saved["module"])
            optimizer.load_state_dict(saved["optimizer"])
            scheduler.load_state_dict(saved["scheduler"])
            rng.bit_generator.state = saved["rng"]
            torch.set_rng_state(saved["torch_rng"])
            state = saved["state"]

    from tqdm import tqdm

    started, seconds_before = time.perf_counter(), state.get("seconds", 0.0)
    bar = tqdm(range(state["epoch"], config.epochs), desc=spec.name, unit="epoch",
               disable=not progress, leave=False)
    for epoch in bar:
        train_loss = _train_epoch(module, kind, optimizer, tensors(train, rng), config.batch_size,
                                  kl_scale, f"{spec.name}: training loss", epoch)
        module.eval()
        with torch.no_grad():
            val_loss = float(_loss(module, kind, *val_data, kl_scale))
        if config.schedule == "plateau":
            scheduler.step(val_loss)
        else:
            scheduler.step()
        state["history"].append({"epoch": epoch, "train": train_loss, "val": val_loss})
        if val_loss < state["best"]:
            state.update(best=val_loss, best_epoch=epoch, bad=0,
                         best_state={k: v.detach().cpu().clone()
                                     for k, v in module.state_dict().items()})
        else:
            state["bad"] += 1
        state["epoch"] = epoch + 1
        state["seconds"] = seconds_before + time.perf_counter() - started
        bar.set_postfix(train=f"{train_loss:.4f}", val=f"{val_loss:.4f}")
        checkpoint.parent.mkdir(parents=True, exist_ok=True)
        torch.save({"digest": digest, "module": module.state_dict(),
                    "optimizer": optimizer.state_dict(), "scheduler": scheduler.state_dict(),
                    "rng": rng.bit_generator.state, "torch_rng": torch.get_rng_state(),
                    "state": state}, checkpoint)
        if state["bad"] >= config.patience:
            break
    bar.close()

    if state["best_state"] is not None:
        module.load_state_dict(state["best_state"])
    widths = None
    if kl_scale:
        widths = _fit_widths(module, config, tensors(train, rng), val_data, int(train.sum()),
                             spec.name, state)
        module.eval()
        with torch.no_grad():
            state["best"] = float(_loss(module, kind, *val_data, kl_scale))
    module.cpu().eval()
    pileup = table.context.get("pileup")
    meta["training"] = {
        **(provenance or {}),
        "rows_train": int(train.sum()), "rows_validation": int(val.sum()),
        "samples": training_samples(provenance),
        "code": code_version(),
        "config": asdict(config), "device": device_description(device),
        "epochs_run": state["epoch"],
        # the training loop's wall time, summed over the runs a checkpoint resumed
        "seconds": round(seconds_before + time.perf_counter() - started, 1),
        "finished": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "history": state["history"],
        **({"bayesian": widths} if widths else {}),
        "pileup_nTrueInt": None if pileup is None else {
            "mean": float(np.mean(pileup)), "min": float(np.min(pileup)),
            "max": float(np.max(pileup))},
    }
    meta["metrics"] = {"validation_loss": state["best"], "best_epoch": state["best_epoch"],
                       "epochs_run": state["epoch"],
                       "loss": _loss_name(kind, kl_scale > 0)}
    meta["versions"] = library_versions()
    model = Model(meta, module, context, target)
    save_model(model, out_dir)
    _plot(state["history"], out_dir / f"{spec.name}_loss.png", spec.name)
    checkpoint.unlink(missing_ok=True)
    return model


def _train_epoch(module: torch.nn.Module, kind: str, optimizer: torch.optim.Optimizer,
                 data: tuple[torch.Tensor, torch.Tensor, torch.Tensor], batch_size: int,
                 kl_scale: float, what: str, epoch: int) -> float:
    """One pass over ``data`` in shuffled batches; returns the weighted mean training loss."""
    module.train()
    c, y, w = data
    order = torch.randperm(len(c), device=c.device)
    total, norm = 0.0, 0.0
    for start in range(0, len(c), batch_size):
        batch = order[start:start + batch_size]
        loss = _loss(module, kind, c[batch], y[batch], w[batch], kl_scale)
        if not torch.isfinite(loss):
            raise FlashSimError(f"{what} became {loss.item()} at epoch {epoch}; lower --lr or "
                                "check the input files")
        optimizer.zero_grad()
        loss.backward()
        torch.nn.utils.clip_grad_norm_(module.parameters(), 5.0)
        optimizer.step()
        total += loss.item() * float(w[batch].sum())
        norm += float(w[batch].sum())
    return total / norm if norm else float("nan")


def _fit_widths(module: torch.nn.Module, config: TrainConfig,
                data: tuple[torch.Tensor, torch.Tensor, torch.Tensor],
                val_data: tuple[torch.Tensor, torch.Tensor, torch.Tensor], n_train: int,
                name: str, state: dict[str, Any]) -> dict[str, Any]:
    """The width phases of a Bayesian flow after its mean phase (module docstring of
    :mod:`flashsim.models.bayesian`): ``width_passes`` passes solving the widths, then
    ``elbo_epochs`` epochs of the ELBO on the means under those widths; returns what was
    done, for the artifact."""
    c, y, w = data
    size = config.batch_size
    module.train()
    solved = solve_widths(
        module, lambda: ((-module.log_prob(y[s:s + size], c[s:s + size]), w[s:s + size])
                         for s in range(0, len(c), size)),
        n_train, config.width_passes, config.width_step)
    _freeze_widths(module, True)
    optimizer = torch.optim.AdamW([p for p in module.parameters() if p.requires_grad],
                                  lr=config.elbo_lr, weight_decay=config.weight_decay)
    first = len(state["history"])
    for epoch in range(first, first + config.elbo_epochs):
        loss = _train_epoch(module, "flow", optimizer, data, size, 1.0 / n_train,
                            f"{name}: ELBO fine-tune loss", epoch)
        module.eval()
        with torch.no_grad():
            val_loss = float(_loss(module, "flow", *val_data, 1.0 / n_train))
        state["history"].append({"epoch": epoch, "train": loss, "val": val_loss,
                                 "phase": "elbo"})
    _freeze_widths(module, False)
    return {"solve_rows": solved[0]["rows"] if solved else 0,
            "width_passes": config.width_passes, "width_step": config.width_step,
            "solved_median_log_var": [s["median_log_var"] for s in solved],
            "elbo_epochs": config.elbo_epochs, "elbo_lr": config.elbo_lr,
            **width_summary(module)}


def _freeze_widths(module: torch.nn.Module, frozen: bool) -> None:
    """Exclude (or include) the Bayesian widths from the optimizer's gradients."""
    for layer in bayesian_layers(module):
        layer.weight_log_var.requires_grad_(not frozen)
        layer.bias_log_var.requires_grad_(not frozen)


def _loss_name(kind: str, bayesian: bool) -> str:
    if kind in GENERATIVE_KINDS:
        return "nll+kl/n" if bayesian else "nll"
    return "bce" if kind == "classifier" else "ce"


def _plot(history: list[dict], path: Path, title: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(5, 3.5))
    epochs = [h["epoch"] for h in history]
    ax.plot(epochs, [h["train"] for h in history], label="train")
    ax.plot(epochs, [h["val"] for h in history], label="validation")
    ax.set_xlabel("epoch")
    ax.set_ylabel("weighted loss")
    ax.set_title(title)
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=80)
    plt.close(fig)

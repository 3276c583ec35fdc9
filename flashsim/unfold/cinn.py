r"""Method ``cinn``: per-event posteriors :math:`p(y_{\rm GEN} \mid x_{\rm RECO})` from a
conditional INN (Bellagente et al. 2020, arXiv:2006.06685; "Go with the Flow", ch. 2).

Training maximises :math:`\sum_i w_i \log p_\theta(y_i \mid s_\phi(x_i))` over the
(GEN, RECO) pairs of the training sample, where :math:`y` are the task's latent coordinates
(:mod:`~flashsim.unfold.task`) and :math:`s_\phi` a summary network trained jointly with the
NSF (:class:`flashsim.models.flows.ConditionalINN`). The network, preprocessing, early
stopping, checkpoints and the artifact (``TASK_cinn.pt`` + ``.json``) are the project's
(:func:`flashsim.models.training.train_model`). Every training event also enters as its
mirror image under :math:`z \to -z` (:func:`flashsim.unfold.task.mirrored`). Unfolding an event draws K latent samples
:math:`y = f^{-1}_{s(x)}(z)`, :math:`z \sim \mathcal N(0, 1)`, and maps them to the targets.
Because the flow is trained on the prior of the training sample, its posterior is
calibrated for events drawn from that prior; how far it moves for another prior is what
the validation's model-dependence test measures.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from flashsim.errors import FlashSimError
from flashsim.models.artifact import Model, load_model, write_manifest
from flashsim.models.spec import ModelSpec, TrainingTable
from flashsim.models.training import TrainConfig, train_model
from flashsim.unfold.task import TaskEvents, UnfoldingTask, mirrored

__all__ = ["load", "model_name", "sample_posterior", "train"]

_BATCH_ROWS = 100_000


def model_name(task: UnfoldingTask) -> str:
    """Artifact name of a task's cINN, e.g. ``dimuon_cinn``."""
    return f"{task.name}_cinn"


def train(task: UnfoldingTask, events: TaskEvents, out_dir: str | Path, config: TrainConfig,
          provenance: dict[str, Any] | None = None, *, progress: bool = True) -> Model:
    """Fit the cINN of ``task`` on training events (with GEN); save it into ``out_dir``."""
    spec = ModelSpec(model_name(task), f"unfold:{task.name}", "cinn", task.features,
                     task.latent)
    events = mirrored(task, events)
    table = TrainingTable(events.features, events.truth, events.weight, events.key)
    model = train_model(spec, table, out_dir, config, provenance, progress=progress)
    write_manifest(out_dir)
    return model


def load(task: UnfoldingTask, model_dir: str | Path) -> Model:
    """The task's cINN from ``model_dir``, checked against the task's features."""
    name = model_name(task)
    if not (Path(model_dir) / f"{name}.json").is_file():
        raise FlashSimError(f"{model_dir} has no cINN for task {task.name} ({name}.json): train "
                            f"one with `flashsim unfold train {task.name} --data FILE -o "
                            f"{model_dir}` or give --models")
    model = load_model(model_dir, name)
    expected = [c.name for c in task.features]
    if model.context.names != expected or model.target.names != [c.name for c in task.latent]:
        raise FlashSimError(f"{model_dir}/{model_name(task)} was trained on other features or "
                            f"targets than task {task.name} of this flashsim computes: re-train "
                            f"it with `flashsim unfold train {task.name}`")
    return model


def sample_posterior(model: Model, task: UnfoldingTask, events: TaskEvents, samples: int,
                     rng: np.random.Generator) -> dict[str, np.ndarray]:
    """``{target: (n_events, samples)}`` posterior samples, in batches of bounded size."""
    n = len(events)
    context = model.standardised_context(events.features)
    per_batch = max(1, _BATCH_ROWS // samples)
    parts: list[dict[str, np.ndarray]] = []
    for start in range(0, n, per_batch):
        stop = min(start + per_batch, n)
        rows = np.repeat(context[start:stop], samples, axis=0)
        noise = rng.standard_normal((len(rows), len(model.target.columns)))
        latent = model.target.inverse(model.run(rows, noise.astype(np.float32)))
        frame = np.repeat(events.frame[start:stop], samples)
        values = task.samples_from_latent(latent, frame)
        parts.append({k: v.reshape(stop - start, samples) for k, v in values.items()})
    if not parts:
        return {t: np.zeros((0, samples)) for t in task.target_names}
    return {k: np.concatenate([p[k] for p in parts]) for k in parts[0]}

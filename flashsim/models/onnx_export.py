"""ONNX export of every model's network (``flashsim export-onnx``).

Flows are exported as their sampling path ``(context, noise) -> standardised targets``
(:class:`~flashsim.models.flows.FlowSampler`), latent refiners (``refiners/onnx/FLOW.onnx``)
as theirs, ``(context, noise) -> refined latent point``, classifiers as ``context -> probability``
and the multiplicity model as ``context -> class probabilities``; the numpy
preprocessing of :mod:`flashsim.models.transforms` stays outside the graph (it snaps
to allowed values, which ONNX need not know about). The legacy TorchScript exporter
(``dynamo=False``) is used: it traces zuko's spline ops (gather, cumsum, where, sqrt)
at opset 17 without extra dependencies; the batch axis is dynamic.
"""

from __future__ import annotations

import io
import shutil
import warnings
from pathlib import Path

import numpy as np
import torch

from flashsim.errors import FlashSimError
from flashsim.models.artifact import GENERATIVE_KINDS, REFINERS, Model, load_model

__all__ = ["OPSET", "export_model", "export_onnx", "onnx_parity"]

OPSET = 17


def _example(model: Model, rows: int = 4) -> tuple[tuple[torch.Tensor, ...], list[str]]:
    context = torch.zeros(rows, len(model.context.columns))
    if model.kind in GENERATIVE_KINDS or model.kind == "refiner":
        return (context, torch.zeros(rows, _noise_width(model))), ["context", "noise"]
    return (context,), ["context"]


def _noise_width(model: Model) -> int:
    """Columns of a flow's or refiner's standard-normal noise."""
    if model.kind == "refiner":
        return int(model.meta["latent_features"])
    return len(model.target.columns)


def export_model(model: Model, path: str | Path | None = None) -> bytes:
    """Export ``model``'s network to ONNX; write it to ``path`` if given; return the bytes."""
    inputs, names = _example(model)
    axes = {n: {0: "rows"} for n in [*names, "output"]}
    buffer = io.BytesIO()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # tracer warnings about data-dependent Python bools
        torch.onnx.export(model.module.eval(), inputs, buffer, input_names=names,
                          output_names=["output"], dynamic_axes=axes, opset_version=OPSET,
                          dynamo=False)
    data = buffer.getvalue()
    if path is not None:
        Path(path).write_bytes(data)
    return data


def onnx_parity(model: Model, session, rows: int = 512, seed: int = 0) -> float:
    """Max |torch - onnxruntime| on the same random standardised context and noise."""
    rng = np.random.default_rng(seed)
    context = rng.standard_normal((rows, len(model.context.columns))).astype(np.float32)
    noise = (rng.standard_normal((rows, _noise_width(model))).astype(np.float32)
             if model.kind in GENERATIVE_KINDS or model.kind == "refiner" else None)
    with torch.no_grad():
        args = [torch.from_numpy(context)] + ([torch.from_numpy(noise)] if noise is not None else [])
        reference = model.module(*args).numpy()
    feeds = {"context": context, **({"noise": noise} if noise is not None else {})}
    return float(np.max(np.abs(session.run(None, feeds)[0] - reference)))


def export_onnx(model_dir: str | Path, output: str | Path, *, tolerance: float = 1e-4) -> dict:
    """Export every model of ``model_dir`` into ``output`` (``NAME.onnx`` + artifacts copy).

    ``output`` becomes a complete model directory usable with ``--backend onnx``: the
    artifacts and manifest are copied next to ``onnx/``. Every export is checked against
    torch on identical inputs; returns ``{name: max abs difference}``.
    """
    import onnxruntime as ort

    from flashsim.models.artifact import _read_manifest

    model_dir, output = Path(model_dir), Path(output)
    manifest = _read_manifest(model_dir)
    # (source directory, output directory, artifact name, key in the returned parity)
    jobs = [(model_dir, output, name, name) for name in manifest["models"]]
    jobs += [(model_dir / REFINERS, output / REFINERS, name, f"{REFINERS}/{name}")
             for name in manifest.get("refiners", {})]
    parity = {}
    for source, target, name, key in jobs:
        (target / "onnx").mkdir(parents=True, exist_ok=True)
        model = load_model(source, name)
        if target.resolve() != source.resolve():
            for suffix in (".pt", ".json"):
                shutil.copyfile(source / f"{name}{suffix}", target / f"{name}{suffix}")
        data = export_model(model, target / "onnx" / f"{name}.onnx")
        parity[key] = onnx_parity(model, ort.InferenceSession(data))
        if parity[key] > tolerance:
            raise FlashSimError(f"ONNX export of {key} differs from torch by {parity[key]:.2e} "
                                f"(> {tolerance}): report this with your torch/onnx versions")
    if output.resolve() != model_dir.resolve():
        shutil.copyfile(model_dir / "manifest.json", output / "manifest.json")
    return parity

"""Model building blocks: preprocessing, flows, classifiers, artifacts, training, ONNX.

Public entry points: :func:`load_models` (what ``simulate`` needs), :func:`model_provenance`,
:func:`~flashsim.models.training.train_object` and
:func:`~flashsim.models.onnx_export.export_onnx` (imported lazily by the CLI).
"""

from __future__ import annotations

from flashsim.models.artifact import PRETRAINED, Model, ModelSet, load_models, model_provenance

__all__ = ["PRETRAINED", "Model", "ModelSet", "load_models", "model_provenance"]

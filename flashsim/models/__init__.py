"""Model building blocks: preprocessing, flows, classifiers, specs, artifacts, training, ONNX.

Generic: nothing here knows which objects are simulated. The object modules
(:mod:`flashsim.objects`) declare :class:`ModelSpec` objects and call into this package;
:func:`flashsim.objects.load_models` loads the models the simulation needs with
:func:`load_model_set`, :func:`flashsim.objects.training.train_object` trains them with
:func:`~flashsim.models.training.train_model`. Also public: :func:`model_provenance` and
:func:`~flashsim.models.onnx_export.export_onnx` (imported lazily by the CLI).
"""

from __future__ import annotations

from flashsim.models.artifact import (
    PRETRAINED,
    Model,
    ModelSet,
    load_model_set,
    model_provenance,
)
from flashsim.models.spec import ModelSpec, TrainingTable

__all__ = ["PRETRAINED", "Model", "ModelSet", "ModelSpec", "TrainingTable", "load_model_set",
           "model_provenance"]

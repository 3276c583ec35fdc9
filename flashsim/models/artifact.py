"""Model artifacts: weights + JSON metadata, a model directory, and the runtime models.

One artifact = ``NAME.pt`` (the torch ``state_dict``, saved with ``torch.save``) and
``NAME.json`` (object, kind, the fitted context/target preprocessing, architecture,
library versions, final validation metrics, ``target_constants`` (flow targets constant in
the training data: returned, not sampled; optional), and under ``training``: the sample files with
their processes and seeds, the git commit of the code and whether it had uncommitted
changes, epochs run, training wall time and device; see :func:`code_version` and
:func:`training_samples`). A
model directory holds one artifact per model and a ``manifest.json`` listing them with
the SHA-256 of every weights file; ``onnx/NAME.onnx`` files are optional (written by
``flashsim export-onnx``). Loading needs only this module: the network is rebuilt
from the architecture in the metadata and the weights are loaded into it, so a
round trip reproduces the same samples for the same noise bit for bit.

:func:`load_model_set` returns a :class:`ModelSet` (name -> :class:`Model`) for the
``torch`` or ``onnx`` (onnxruntime) backend; every :class:`Model` maps named NanoAOD
context columns and numpy noise to named NanoAOD target columns.

A Bayesian flow (:mod:`flashsim.models.bayesian`) loads with its mean weights;
:meth:`ModelSet.use_weight_draw` ``(k)`` switches every Bayesian model to its weight draw
``k``, a pure function of ``(k, model name)``: draw ``k`` is the same model in every run,
whatever the run's seed, so that variation ``k`` is correlated across the samples of an
analysis like any named systematic variation. The ONNX backend runs the mean weights.
"""

from __future__ import annotations

import hashlib
import io
import json
import platform
import subprocess
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from flashsim.errors import FlashSimError
from flashsim.models.bayesian import set_weight_draw
from flashsim.models.classifier import Classifier, MultiplicityModel
from flashsim.models.flows import ConditionalINN, FlowSampler, build_flow
from flashsim.models.spec import ModelSpec
from flashsim.models.transforms import Preprocessor
from flashsim.seeds import seeded_rng

__all__ = [
    "FORMAT_VERSION",
    "GENERATIVE_KINDS",
    "PRETRAINED",
    "REFINERS",
    "Model",
    "ModelSet",
    "DEVICES",
    "build_module",
    "check_device",
    "code_version",
    "device_description",
    "library_versions",
    "load_model",
    "load_model_set",
    "load_refiner",
    "model_provenance",
    "save_model",
    "training_samples",
    "write_manifest",
]

FORMAT_VERSION = 1
GENERATIVE_KINDS = ("flow", "cinn")
REFINERS = "refiners"
"""Sub-directory of a model directory with the latent refiners of its flows
(:mod:`flashsim.models.refinement`): ``refiners/FLOW.pt`` and ``refiners/FLOW.json``."""
"""Model kinds that sample targets from noise (they have a target preprocessor)."""
PRETRAINED = Path(__file__).resolve().parent.parent / "pretrained"
_BATCH = 65536
DEVICES = ("cpu", "cuda")
"""Where the torch backend runs the networks."""


def library_versions() -> dict[str, str]:
    """Versions of the libraries an artifact depends on."""
    import zuko

    from flashsim import __version__

    return {"flashsim": __version__, "torch": torch.__version__, "zuko": zuko.__version__,
            "numpy": np.__version__, "python": platform.python_version()}


def code_version() -> dict[str, Any]:
    """The git commit of the flashsim code that runs (``"unknown"`` outside a git checkout,
    e.g. an installed wheel, or without git) and whether tracked files differ from it
    (``dirty``; None when unknown): an artifact trained with uncommitted changes cannot be
    reproduced from its commit alone."""
    source = Path(__file__).resolve().parent

    def git(*args: str) -> str | None:
        try:
            done = subprocess.run(["git", "-C", str(source), *args], capture_output=True,
                                  text=True, timeout=30, check=False)
        except (OSError, subprocess.SubprocessError):
            return None
        return done.stdout.strip() if done.returncode == 0 else None

    commit = git("rev-parse", "HEAD")
    if not commit:
        return {"commit": "unknown", "dirty": None}
    status = git("status", "--porcelain", "--untracked-files=no")
    return {"commit": commit, "dirty": None if status is None else bool(status)}


def device_description(device: torch.device) -> str:
    """The device a model was trained on, in words: ``cpu (N torch threads)`` or
    ``cuda (GPU name)``."""
    if device.type == "cuda":
        return f"cuda ({torch.cuda.get_device_name(device)})"
    return f"{device.type} ({torch.get_num_threads()} torch threads)"


def training_samples(provenance: dict[str, Any] | None) -> list[dict[str, Any]]:
    """Name, process, seed and events of each training file, from the provenance that
    :func:`flashsim.objects.common.read_training_chunk` collects (process and seed None for
    files flashsim did not write, such as real CMS NANOAODSIM)."""
    samples = []
    for entry in (provenance or {}).get("files", []):
        made = entry.get("provenance") or {}
        samples.append({"name": Path(entry["path"]).name, "process": made.get("process"),
                        "seed": made.get("seed"), "events": entry.get("events")})
    return samples


def build_module(meta: dict[str, Any]) -> nn.Module:
    """The network described by an artifact's metadata (untrained weights)."""
    n_context = len(meta["context"]["columns"])
    arch = meta["architecture"]
    if meta["kind"] == "flow":
        return FlowSampler(build_flow(len(meta["target"]["columns"]), n_context, arch))
    if meta["kind"] == "refiner":
        from flashsim.models.refinement import LatentRefiner

        return LatentRefiner(int(meta["latent_features"]), n_context, arch,
                             len(meta["compared_targets"]), meta["classifier_hidden"])
    if meta["kind"] == "cinn":
        return ConditionalINN(len(meta["target"]["columns"]), n_context, arch)
    if meta["kind"] == "classifier":
        return Classifier(n_context, arch["hidden_features"])
    if meta["kind"] == "multiplicity":
        return MultiplicityModel(n_context, int(arch["max_count"]), arch["hidden_features"])
    raise FlashSimError(f"unknown model kind {meta['kind']!r} in artifact {meta.get('name')}: "
                        "re-train or re-download the model directory")


@dataclass
class Model:
    """A loaded model: preprocessing + network, on the torch or onnx backend."""

    meta: dict[str, Any]
    module: nn.Module
    context: Preprocessor
    target: Preprocessor | None
    backend: str = "torch"
    session: Any = field(default=None, repr=False)
    device: str = "cpu"
    refiner: Model | None = None
    """The flow's latent refiner (:mod:`flashsim.models.refinement`), when it is used."""
    weighted: bool = False
    """Whether :meth:`sample` adds the DCTR weight ``flashsimWeight`` of every row (1 without
    :attr:`dctr`)."""
    dctr: Model | None = None
    """The refiner artifact whose DCTR classifier gives the weights of a weighted flow."""

    @property
    def name(self) -> str:
        """Model name, e.g. ``muon_flow``."""
        return self.meta["name"]

    @property
    def kind(self) -> str:
        """``flow``, ``cinn``, ``classifier``, ``multiplicity`` or ``refiner``."""
        return self.meta["kind"]

    @property
    def bayesian(self) -> bool:
        """Whether the network's weights are distributions (:mod:`flashsim.models.bayesian`)."""
        return bool(self.meta["architecture"].get("bayesian", False))

    def use_weight_draw(self, draw: int | None) -> None:
        """Run the torch network with weight draw ``draw`` (``None``: the mean weights); the
        draw's weights come from the stream keyed by ``(draw, "weight_draw", name)``."""
        if draw is not None and self.backend != "torch":
            raise FlashSimError(f"weight draws of {self.name} need the torch backend; the "
                                f"{self.backend} backend runs the mean weights")
        set_weight_draw(self.module, None if draw is None
                        else seeded_rng(int(draw), "weight_draw", self.name))

    def run(self, context: np.ndarray, noise: np.ndarray | None = None) -> np.ndarray:
        """The raw network on standardised inputs (batched), on this model's backend."""
        n = len(context)
        if n == 0:
            width = (len(self.target.columns) if self.kind in GENERATIVE_KINDS
                     else self.meta["architecture"].get("max_count", -1) + 1)
            return np.zeros((0, width) if width > 0 else (0,), dtype=np.float32)
        parts = []
        for start in range(0, n, _BATCH):
            inputs = [context[start:start + _BATCH].astype(np.float32)]
            if noise is not None:
                inputs.append(noise[start:start + _BATCH].astype(np.float32))
            if self.backend == "onnx":
                names = [i.name for i in self.session.get_inputs()]
                parts.append(self.session.run(None, dict(zip(names, inputs, strict=True)))[0])
            else:
                # copies into torch's 64-byte-aligned memory: MKL's float32 GEMM may round
                # differently with the alignment of a numpy buffer, which depends on the
                # process's heap, and the output must not depend on the process
                with torch.no_grad():
                    tensors = (torch.from_numpy(x).clone().to(self.device) for x in inputs)
                    parts.append(self.module(*tensors).cpu().numpy())
        return np.concatenate(parts)

    def standardised_context(self, columns: dict[str, np.ndarray]) -> np.ndarray:
        """Named context columns -> the standardised context matrix."""
        return self.context.forward(columns)

    def sample(self, columns: dict[str, np.ndarray], rng: np.random.Generator,
               noise: np.ndarray | None = None) -> dict[str, np.ndarray]:
        """Flow or cINN: one sample of every target per row, as NanoAOD values (float64), and
        the :attr:`constants`. ``noise`` (default: drawn from ``rng``) is standard normal; with
        a :attr:`refiner` it is first mapped to the refined latent point :math:`z \\sim q(z|c)`."""
        context = self.standardised_context(columns)
        if noise is None:
            noise = rng.standard_normal((len(context), len(self.target.columns)))
        latent = noise.astype(np.float32)
        if self.refiner is not None and len(context):
            latent = self.refiner.run(context, latent)
        y = self.run(context, latent)
        out = self.target.inverse(y)
        if self.weighted:
            from flashsim.models.refinement import dctr_flow_weights

            out["flashsimWeight"] = (np.ones(len(context)) if self.dctr is None
                                     else dctr_flow_weights(self.dctr, self, context, y))
        out.update({name: np.full(len(context), value)
                    for name, value in self.constants.items()})
        return out

    @property
    def constants(self) -> dict[str, float]:
        """Targets that were constant in the training data, with their value: returned
        by :meth:`sample`, not sampled (artifacts trained before record none)."""
        return self.meta.get("target_constants", {})

    @property
    def derived_targets(self) -> dict[str, str]:
        """Targets that a rule of the spec's ``relations`` fixed in the training data, with the
        rule's name (:func:`flashsim.models.training.exact_relations`): not sampled; the object
        module computes them from the sampled columns (artifacts trained before: none)."""
        return self.meta.get("derived_targets", {})

    @property
    def region_constants(self) -> dict[str, dict[str, float]]:
        """Per region of the object module (``outside_tracker``), the targets one value filled
        there in the training data (:func:`flashsim.models.training.region_constants`); the
        object module sets them where it finds the region (artifacts trained before: none)."""
        return self.meta.get("region_constants", {})

    def probability(self, columns: dict[str, np.ndarray]) -> np.ndarray:
        """Classifier: :math:`P(\\text{reco} \\mid c)` per row; multiplicity: class probabilities."""
        return self.run(self.standardised_context(columns)).astype(np.float64)

    def state_bytes(self) -> bytes:
        """The serialised ``state_dict`` (what ``NAME.pt`` holds)."""
        buffer = io.BytesIO()
        torch.save(self.module.state_dict(), buffer)
        return buffer.getvalue()


class ModelSet(dict):
    """Loaded models by name, with the directory, backend and manifest they came from, and
    the optional groups of models (objects) the directory has none of (``skipped``)."""

    def __init__(self, models: dict[str, Model], directory: Path, backend: str,
                 manifest: dict[str, Any], skipped: dict[str, tuple[str, ...]] | None = None,
                 trained_by: dict[str, str] | None = None) -> None:
        super().__init__(models)
        self.directory = directory
        self.backend = backend
        self.manifest = manifest
        self.skipped = tuple(skipped or ())
        self._skipped_models = dict(skipped or {})
        self._trained_by = dict(trained_by or {})  # skipped group -> `flashsim train` object
        self.event_classifier: Model | None = None
        """The event classifier whose weight is the event's ``flashsimWeight`` when the flows
        are weighted (:mod:`flashsim.objects.event`); None: the product of the objects'."""

    @property
    def weighted(self) -> bool:
        """Whether the flows' samples carry DCTR weights (``flashsimWeight``)."""
        return any(model.weighted for model in self.values())

    @property
    def refined(self) -> list[str]:
        """Names of the flows that sample through a latent refiner."""
        return [name for name, model in self.items() if model.refiner is not None]

    @property
    def bayesian(self) -> list[str]:
        """Names of the Bayesian models of the set."""
        return [name for name, model in self.items() if model.bayesian]

    def use_weight_draw(self, draw: int | None) -> None:
        """Every Bayesian model to its weight draw ``draw`` (``None``: the mean weights)."""
        for name in self.bayesian:
            self[name].use_weight_draw(draw)

    @property
    def notes(self) -> list[str]:
        """What a user should know about this model set: one line per skipped group."""
        return [f"{self.directory} has no {name} models ({', '.join(models)}): no {name}s are "
                f"simulated; train them with `flashsim train {self._trained_by.get(name, name)}`"
                for name, models in self._skipped_models.items()]


def save_model(model: Model, directory: str | Path) -> None:
    """Write ``NAME.pt`` and ``NAME.json`` into ``directory`` (created if needed)."""
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    meta = dict(model.meta)
    meta["format_version"] = FORMAT_VERSION
    meta["context"] = model.context.to_dict()
    meta["target"] = model.target.to_dict() if model.target is not None else None
    (directory / f"{model.name}.pt").write_bytes(model.state_bytes())
    (directory / f"{model.name}.json").write_text(json.dumps(meta, indent=1) + "\n")


def check_device(device: str, backend: str = "torch") -> None:
    """Raise :class:`FlashSimError` unless the networks can run on ``device`` here:
    ``cuda`` needs the torch backend and a GPU that torch sees."""
    if device not in DEVICES:
        raise FlashSimError(f"unknown device {device!r}; choose {' or '.join(DEVICES)}")
    if device == "cuda":
        if backend != "torch":
            raise FlashSimError("--device cuda runs the torch backend; drop --backend onnx")
        if not torch.cuda.is_available():
            raise FlashSimError("--device cuda: torch finds no CUDA GPU on this machine "
                                "(torch.cuda.is_available() is False); run on a GPU node "
                                "or use --device cpu")


def load_model(directory: str | Path, name: str, backend: str = "torch",
               device: str = "cpu") -> Model:
    """Load one artifact; ``backend="onnx"`` also opens an onnxruntime session, ``device``
    (torch backend) is where the network runs (see :func:`check_device`)."""
    directory = Path(directory)
    meta_path, weights = directory / f"{name}.json", directory / f"{name}.pt"
    if not meta_path.is_file() or not weights.is_file():
        raise FlashSimError(f"model {name!r} is missing from {directory} ({name}.json/{name}.pt): "
                            f"train it with `flashsim train` or point --models to a complete directory")
    meta = json.loads(meta_path.read_text())
    if meta.get("format_version") != FORMAT_VERSION:
        raise FlashSimError(f"{meta_path} has artifact format {meta.get('format_version')}, this "
                            f"flashsim reads format {FORMAT_VERSION}: re-train the model")
    module = build_module(meta)
    try:
        module.load_state_dict(torch.load(weights, map_location="cpu", weights_only=True))
    except RuntimeError as error:
        raise FlashSimError(f"{weights} does not match the architecture in {meta_path.name}: "
                            "re-train or re-export the model") from error
    check_device(device, backend)
    module.eval().to(device)
    try:
        target = Preprocessor.from_dict(meta["target"]) if meta.get("target") else None
        context = Preprocessor.from_dict(meta["context"])
    except FlashSimError as error:
        raise FlashSimError(f"{meta_path}: {error}") from None
    model = Model(meta, module, context, target, backend, device=device)
    if backend == "onnx":
        model.session = _onnx_session(model, directory / "onnx" / f"{name}.onnx")
    elif backend != "torch":
        raise FlashSimError(f"unknown backend {backend!r}; choose torch or onnx")
    return model


def _onnx_session(model: Model, path: Path) -> Any:
    import onnxruntime as ort

    from flashsim.models.onnx_export import export_model

    options = ort.SessionOptions()
    options.intra_op_num_threads = 1
    options.log_severity_level = 3
    source = str(path) if path.is_file() else export_model(model)  # in-memory export
    return ort.InferenceSession(source, options, providers=["CPUExecutionProvider"])


def write_manifest(directory: str | Path, names: list[str] | None = None) -> dict[str, Any]:
    """Write ``manifest.json`` for the artifacts in ``directory`` (all ``*.json`` by default)."""
    directory = Path(directory)
    if names is None:
        names = sorted(p.stem for p in directory.glob("*.json") if p.name != "manifest.json")
    models = {}
    for name in names:
        meta = json.loads((directory / f"{name}.json").read_text())
        models[name] = {
            "object": meta["object"], "kind": meta["kind"],
            "context": [c["spec"]["name"] for c in meta["context"]["columns"]],
            "sha256": hashlib.sha256((directory / f"{name}.pt").read_bytes()).hexdigest(),
            "metrics": meta.get("metrics", {}),
            "training": meta.get("training", {}),
        }
    manifest = {"format_version": FORMAT_VERSION, "versions": library_versions(), "models": models}
    refiners = {}
    for path in sorted((directory / REFINERS).glob("*.json")):
        meta = json.loads(path.read_text())
        refiners[path.stem] = {
            "flow_sha256": meta.get("flow_sha256"),
            "sha256": hashlib.sha256(path.with_suffix(".pt").read_bytes()).hexdigest(),
            "metrics": meta.get("metrics", {}),
        }
    if refiners:  # optional key: directories without refiners keep their manifest as it was
        manifest["refiners"] = refiners
    (directory / "manifest.json").write_text(json.dumps(manifest, indent=1) + "\n")
    return manifest


def _read_manifest(directory: Path) -> dict[str, Any]:
    path = directory / "manifest.json"
    if not directory.is_dir():
        raise FlashSimError(f"model directory {directory} does not exist: pass an existing "
                            "directory to --models (or omit it to use the shipped models)")
    if not path.is_file():
        raise FlashSimError(f"{directory} has no manifest.json, so it is not a flashsim model "
                            "directory: train one with `flashsim train all -o DIR`")
    manifest = json.loads(path.read_text())
    if manifest.get("format_version") != FORMAT_VERSION:
        raise FlashSimError(f"{path} has format {manifest.get('format_version')}, this flashsim "
                            f"reads format {FORMAT_VERSION}: re-train with `flashsim train all`")
    return manifest


def load_model_set(directory: str | Path | None, specs: Mapping[str, ModelSpec],
                   backend: str = "torch", device: str = "cpu",
                   optional: Mapping[str, Sequence[str]] | None = None,
                   refine: bool = True, weights: bool = False) -> ModelSet:
    """The models named in ``specs`` from ``directory`` (default: the shipped models),
    with their networks on ``device`` (:func:`check_device`). With ``refine``, every flow that
    has a latent refiner in the directory (manifest key ``refiners``) samples through it
    (:attr:`Model.refiner`), unless the refinement found it no better than the flow alone
    (``latent_refiner`` false in its metrics: :data:`~flashsim.models.refinement.MIN_GAIN_SIGMAS`);
    without, or without refiners, the flows sample as trained. With
    ``weights`` (only without ``refine``) every flow's samples carry their DCTR weight
    (:attr:`Model.weighted`; 1 for a flow without a refiner).

    ``optional`` maps group names (objects) to model names the directory may lack
    altogether: such a group is left out and listed in ``ModelSet.skipped``; a directory
    with part of a group lacks models.

    Raises :class:`FlashSimError` when the directory is missing, has no manifest or lacks
    one of the models, when an artifact's context features differ from its spec's (the
    features the code computes), or when it does not generate a target its spec
    requires (:attr:`ModelSpec.required`). :func:`flashsim.objects.load_models` calls it
    with the specs of the simulated objects.
    """
    check_device(device, backend)  # before reading anything: one message, no traceback
    if refine and weights:
        raise FlashSimError("--weights reweights the flows alone, not refined ones: use it with "
                            "--no-refine")
    directory = Path(directory) if directory is not None else PRETRAINED
    manifest = _read_manifest(directory)
    skipped = {group: tuple(names) for group, names in (optional or {}).items()
               if not any(n in manifest["models"] for n in names)}
    trained_by = {group: specs[names[0]].object for group, names in skipped.items()
                  if names and names[0] in specs}
    specs = {n: spec for n, spec in specs.items()
             if not any(n in names for names in skipped.values())}
    missing = [n for n in specs if n not in manifest["models"]]
    if missing:
        raise FlashSimError(f"{directory} lacks the models {', '.join(missing)}: train them with "
                            f"`flashsim train all -o {directory}`")
    models = {}
    for name, spec in specs.items():
        model = load_model(directory, name, backend, device)
        expected = [c.name for c in spec.context]
        if model.context.names != expected:
            raise FlashSimError(f"model {name} in {directory} was trained on features "
                                f"{model.context.names}, this flashsim computes {expected}: "
                                "re-train it with this version (`flashsim train`)")
        unknown = {t: rule for t, rule in model.derived_targets.items()
                   if rule not in spec.relations.get(t, {})}
        if unknown:
            raise FlashSimError(f"model {name} in {directory} derives {unknown} by rules this "
                                "flashsim does not have: re-train it with this version "
                                "(`flashsim train`)")
        generated = [*(model.target.names if model.target is not None else []),
                     *model.constants, *model.derived_targets]
        absent = [t for t in spec.required if t not in generated]
        if absent:
            raise FlashSimError(f"model {name} in {directory} does not generate "
                                f"{', '.join(absent)}, which the simulation needs: re-train it "
                                "on NANOAODSIM that has it (`flashsim train`)")
        digest = hashlib.sha256((directory / f"{name}.pt").read_bytes()).hexdigest()
        if digest != manifest["models"][name]["sha256"]:
            raise FlashSimError(f"{directory / (name + '.pt')} does not match manifest.json: "
                                "re-run training or restore the directory")
        if (refine or weights) and name in manifest.get("refiners", {}):
            refiner = load_refiner(directory, name, manifest, backend, device)
            if not refine:
                model.dctr = refiner
            elif refiner.meta["metrics"].get("latent_refiner", True):  # older refiners sample
                model.refiner = refiner
        model.weighted = weights and model.kind == "flow"
        models[name] = model
    return ModelSet(models, directory, backend, manifest, skipped, trained_by)


def load_refiner(directory: Path, name: str, manifest: dict[str, Any], backend: str = "torch",
                 device: str = "cpu") -> Model:
    """The artifact ``name`` of the model directory's ``refiners/`` (a flow's refiner, or the
    event classifier), checked against the manifest and, for a refiner, its flow's weights."""
    entry = manifest["refiners"][name]
    refiner = load_model(directory / REFINERS, name, backend, device)
    weights = directory / REFINERS / f"{name}.pt"
    if hashlib.sha256(weights.read_bytes()).hexdigest() != entry["sha256"]:
        raise FlashSimError(f"{weights} does not match manifest.json: re-run `flashsim refine` "
                            "or restore the directory")
    if (refiner.meta.get("flow") is not None
            and refiner.meta.get("flow_sha256") != manifest["models"][name]["sha256"]):
        raise FlashSimError(f"the refiner of {name} in {directory} was fitted to other weights "
                            f"of {name}: re-run `flashsim refine` on this directory, or simulate "
                            "with --no-refine")
    return refiner


def model_provenance(directory: str | Path | None = None) -> dict[str, Any]:
    """What a simulation output should record about the models it used."""
    directory = Path(directory) if directory is not None else PRETRAINED
    manifest = _read_manifest(directory)
    return {"directory": str(directory), "versions": manifest["versions"],
            "models": {n: {"sha256": m["sha256"], "training": m["training"]}
                       for n, m in manifest["models"].items()}}

"""Simulated objects: one module per object, a registry, and the one-call simulation.

Registry: :data:`OBJECTS` (object name -> module with ``MODELS``, ``TRAINING_NAMES``,
``training_tables``) and :data:`MODEL_SPECS` (model name -> :class:`ModelSpec`);
:func:`load_models` loads the models they declare, :mod:`.training` trains them.

What the processor calls::

    from flashsim.objects import load_models, simulate_reco

    models = load_models(model_dir, backend="torch")   # or "onnx"
    reco = simulate_reco(gen_chunk, models, np.random.default_rng(seed))
    # {"Muon", "Electron", "Jet", "MET", "PV", "fixedGridRhoFastjetAll"} in the writer's format

Electrons and fake muons are optional (:data:`OPTIONAL_MODELS`): a model directory without
any electron model (such as one trained before electrons existed) simulates everything else
as before and writes no ``Electron`` collection; one without the fake-muon models (trained
before they existed) writes the muons of GEN muons alone. ``load_models(...).notes`` says so.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Iterator
from pathlib import Path

import awkward as ak
import numpy as np

from flashsim.errors import FlashSimError
from flashsim.models.artifact import ModelSet, load_model_set, load_refiner
from flashsim.models.spec import ModelSpec
from flashsim.objects import crossref, electron, event, fake_jet, jet, met, muon

__all__ = ["EVENT_WEIGHT_CLIP", "MODEL_SPECS", "OBJECTS", "OPTIONAL_MODELS", "event_weight",
           "load_models", "simulate_reco"]

OBJECTS = {"muon": muon, "electron": electron, "jet": jet, "fake_jet": fake_jet, "met": met}
EVENT_WEIGHT_CLIP = 100.0
"""Upper bound of the DCTR event weight ``flashsimWeight`` (``flashsim simulate --weights``)."""
OPTIONAL_MODELS = {"electron": tuple(electron.MODELS), "fake muon": tuple(muon.FAKE_MODELS)}
"""Groups of models a model directory may lack entirely (then they are not simulated); part
of a group is an error. Fake muons are optional because model sets trained before they
existed (the shipped one until it is retrained) are otherwise complete, and without them
flashsim simulates what it did then."""
MODEL_SPECS: dict[str, ModelSpec] = {name: spec for module in OBJECTS.values()
                                     for name, spec in module.MODELS.items()}


def load_models(directory: str | Path | None = None, backend: str = "torch",
                required: list[str] | None = None, device: str = "cpu",
                refine: bool = True, weights: bool = False) -> ModelSet:
    """Every model :func:`simulate_reco` needs (or those named in ``required``), from
    ``directory`` (default: the shipped models), checked against :data:`MODEL_SPECS`, with
    their networks on ``device`` (``cpu`` or ``cuda``). With ``refine`` the flows that have a
    latent refiner in the directory (``flashsim refine``) sample through it; with ``weights``
    (and not ``refine``) the flows' samples carry their DCTR weights instead.

    The model groups of :data:`OPTIONAL_MODELS` are loaded when the directory has them and left
    out (``ModelSet.skipped``, ``ModelSet.notes``) when it has none of them.

    Raises :class:`~flashsim.errors.FlashSimError` when the directory is missing, has no
    manifest, lacks a required model (or part of an optional object's models), when an artifact's context features differ from the
    features the object modules of this flashsim version compute, or when it does not
    generate a target the simulation requires (``ModelSpec.required``); see
    :func:`flashsim.models.artifact.load_model_set`.

    >>> from flashsim.objects import load_models
    >>> models = load_models()  # the shipped models, on the torch backend
    >>> {"muon_efficiency", "muon_flow", "jet_flow", "met_flow"} <= set(models)
    True
    >>> models.backend, models["muon_flow"].kind, models["muon_efficiency"].kind
    ('torch', 'flow', 'classifier')
    >>> models["muon_efficiency"].context.names[:3]
    ['gen_pt', 'gen_eta', 'gen_phi']
    >>> load_models("no/such/directory")
    Traceback (most recent call last):
    flashsim.errors.FlashSimError: model directory no/such/directory does not exist: ...
    """
    names = list(MODEL_SPECS) if required is None else required
    optional = OPTIONAL_MODELS if required is None else None
    models = load_model_set(directory, {name: MODEL_SPECS[name] for name in names}, backend,
                            device, optional, refine, weights)
    if models.weighted and not refine and event.EVENT_WEIGHT_MODEL in models.manifest.get(
            "refiners", {}):
        classifier = load_refiner(models.directory, event.EVENT_WEIGHT_MODEL, models.manifest,
                                  backend, device)
        if classifier.meta["models_sha256"] != event.models_digest(models.manifest):
            raise FlashSimError(f"the event classifier in {models.directory} was fitted to other "
                                "models: re-run `flashsim refine` on this directory")
        models.event_classifier = classifier
    return models


def simulate_reco(gen: dict, models, rng: np.random.Generator,
                  timings: dict[str, float] | None = None) -> dict:
    """Flash RECO collections for a GEN chunk.

    Order: muons, the pileup observables, electrons when ``models`` has them (their working
    points need the simulated rho), matched jets (given the electrons), fake jets (each
    efficiency -> flow -> post-processing), jets merged and pT-ordered, the muon-jet
    cross-references rebuilt (and the jet variables of muons in no jet and ``multiIsoId`` set,
    :func:`~flashsim.objects.muon.with_jet_variables`) and the electron-jet ones, then MET
    (given the flash objects).
    Electrons and fake muons draw from streams of their own (``rng.spawn``), so the muons,
    pileup observables and fake jets do not depend on whether electrons are simulated (the
    GEN-matched jets do, through their electron context, and MET through them), nor the
    GEN-matched muons on whether fake muons are (the jets' muon counts and MET do, as they
    should). ``Muon_genPartIdx`` and
    ``Electron_genPartIdx`` point into ``gen["GenPart"]``, ``Jet_genJetIdx`` into
    ``gen["GenJet"]``; -1 = no match.

    With DCTR-weighted models (``load_models(..., weights=True)``) every object carries its
    ``flashsimWeight`` and the output the event's: the event classifier's where the models have
    one (:mod:`flashsim.objects.event`), else the product (:func:`event_weight`).

    ``timings``, if given, accumulates the seconds spent per stage (``muon``, ``jet``,
    ``fake_jet``, ``assembly``, ``met_pv``, ``electron``) for ``flashsim benchmark``.
    """
    def stage(name: str):
        return _timed(timings, name)

    electron_rng, fake_muon_rng = rng.spawn(2)
    with stage("muon"):
        muons = muon.simulate(gen, models, rng, fake_muon_rng)
    with stage("met_pv"):
        pv, rho = met.simulate_pv(gen, models, rng)
    electrons = None
    if all(name in models for name in electron.MODELS):
        with stage("electron"):
            electrons = electron.simulate(gen, models, electron_rng, rho)
    with stage("jet"):
        matched = jet.simulate(gen, models, rng, electrons)
    with stage("fake_jet"):
        fakes = fake_jet.simulate(gen, models, rng)
    with stage("assembly"):
        muons, jets = crossref.link(muons, crossref.merge_jets(matched, fakes))
        muons = muon.with_jet_variables(muons)
        if electrons is not None:
            electrons, jets = crossref.link(electrons, jets, "electron")
    with stage("met_pv"):
        missing = met.simulate_met(gen, models, rng, muons, jets)
    out = {"Muon": muons, "Jet": jets, "MET": missing, "PV": pv, "fixedGridRhoFastjetAll": rho}
    if electrons is not None:
        out["Electron"] = electrons
    if models.weighted:
        written = [out[name] for name in ("Muon", "Electron", "Jet", "MET", "PV") if name in out]
        out["flashsimWeight"] = (event_weight(written) if models.event_classifier is None else
                                 event.event_dctr_weights(models.event_classifier, {**gen, **out}))
    return out


def event_weight(sampled: list[ak.Array]) -> np.ndarray:
    """The product DCTR event weight: the product of the ``flashsimWeight`` of every object the
    event's output holds (jagged collections or one record per event; jets sampled below the
    storage cut have no full-simulation counterpart and do not count), clipped to ``[0,``
    :data:`EVENT_WEIGHT_CLIP` ``]``. The flows sample independently given the GEN event, so the
    density ratio of the event is the product of theirs where each classifier is exact
    (Andreassen & Nachman, arXiv:1907.08209); its spread grows with the number of objects (the
    event classifier of :mod:`flashsim.objects.event` does not)."""
    weight = np.ones(len(sampled[0]))
    for part in sampled:
        factor = part.flashsimWeight
        if factor.ndim > 1:
            factor = ak.prod(factor, axis=1)
        weight = weight * ak.to_numpy(factor).astype(np.float64)
    return np.minimum(weight, EVENT_WEIGHT_CLIP)


@contextlib.contextmanager
def _timed(timings: dict[str, float] | None, name: str) -> Iterator[None]:
    if timings is None:
        yield
        return
    started = time.perf_counter()
    try:
        yield
    finally:
        timings[name] = timings.get(name, 0.0) + time.perf_counter() - started

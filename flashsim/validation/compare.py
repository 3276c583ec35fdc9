"""Full simulation vs flash simulation of the same GEN events.

:func:`load_sample` reads the RECO objects (``Muon``, ``Jet``, ``MET``) and the GEN
record they are matched to from NanoAOD files; :func:`match_events` pairs every
flash event with its full-simulation twin by ``(run, luminosityBlock, event)``
(oversampled flash files: replica ``flashsimReplica == 0`` is the twin, all
replicas enter the distributions). Flash files of Bayesian models with several weight draws
(``flashsimModelDraw``) are compared through draw 0, and every continuous or integer branch
gets the model band of all draws and its coverage of the full simulation
(:func:`flashsim.validation.metrics.model_band`). Flash files with DCTR weights (``flashsim
simulate --weights``) have the classifier test of each view measure the *weighted* flash
sample: objects by their ``<Collection>_flashsimWeight``, MET and whole events by the event's
``flashsimWeight`` (the MET is computed from every object of the event); the branch
distances and figures stay those of the unweighted sample. The ``compare_*`` functions compute one
section of the validation each and return ``(metrics, figures)`` where figures
are drawn by :mod:`flashsim.validation.plots`; :func:`run_validation` (the
``flashsim validate`` command) runs them all and writes the report, and :func:`compare_view`
computes one view's metrics and classifier test the same way (``training/model_size_study.py``).

Everything is columnar: objects are flattened with awkward, binned with numpy;
the only Python loops run over branches and histogram bins.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, replace
from pathlib import Path

import awkward as ak
import numpy as np
import uproot

from flashsim.errors import FlashSimError
from flashsim.nanoaod.schema import FLASH_ONLY_FIELDS, load_schema, reco_branches
from flashsim.validation import metrics, plots

__all__ = [
    "GEN_CONTEXT",
    "OBJECTS",
    "VIEW_SCALARS",
    "Sample",
    "compare_branches",
    "compare_efficiency",
    "compare_events",
    "compare_pileup_jets",
    "compare_response",
    "compare_tagging",
    "compare_view",
    "jets_gen_matched",
    "load_sample",
    "match_events",
    "object_views",
    "paired_events",
    "run_validation",
    "shared_fields",
]

#: RECO collections that flashsim simulates and that validation compares.
OBJECTS = ("Muon", "Electron", "Jet", "MET", "PV")
#: Event-level RECO scalars compared in a collection's view: rho beside the vertex counts,
#: the pileup observables (one flow, ``pv_flow``, samples both).
VIEW_SCALARS = {"PV": ("fixedGridRhoFastjetAll",)}
_GEN_BRANCHES = (
    "run", "luminosityBlock", "event", "genWeight", "flashsimReplica", "flashsimModelDraw",
    "Pileup_nTrueInt", "Pileup_nPU",
    "GenPart_pt", "GenPart_eta", "GenPart_phi", "GenPart_pdgId", "GenPart_status",
    "GenJet_pt", "GenJet_eta", "GenJet_phi", "GenJet_mass", "GenJet_hadronFlavour",
    "GenMET_pt", "GenMET_phi",
)
#: GEN features that the classifier sees beside a matched object's RECO branches (the
#: conditional test: what the flow conditions on), per view: (GEN collection, index
#: branch, fields). Views not listed (unmatched jets, whole events) have no GEN partner.
GEN_CONTEXT = {
    "Muon": ("GenPart", "genPartIdx", ("pt", "eta", "phi", "pdgId")),
    "Electron": ("GenPart", "genPartIdx", ("pt", "eta", "phi", "pdgId")),
    "Jet_matched": ("GenJet", "genJetIdx", ("pt", "eta", "phi", "mass", "hadronFlavour")),
    "MET": ("GenMET", None, ("pt", "phi")),
    "PV": ("Pileup", None, ("nTrueInt", "nPU")),
}
_CONTEXT_PREFIX = "_gen_"
_WEIGHT = "flashsimWeight"  # the DCTR weight branch: per object and per event
_DISCRETE = ("integer", "boolean", "bitflags", "index", "categorical")
_PU_JET_PT = 15.0  # GeV; reco threshold below which jets are not compared as pileup jets
_MUON_PT_EDGES = np.array([5, 10, 15, 20, 30, 40, 50, 70, 100, 150, 300], dtype=float)
_LEPTON_ETA_EDGES = {"Muon": np.linspace(-2.4, 2.4, 9), "Electron": np.linspace(-2.5, 2.5, 11)}
_JET_PT_EDGES = np.array([15, 20, 30, 40, 50, 70, 100, 150, 250, 500, 1000], dtype=float)


@dataclass(frozen=True)
class Sample:
    """Events read for validation: ``events`` holds the collections Muon, Electron, Jet, MET,
    PV (with the :data:`VIEW_SCALARS` rho), GenPart, GenJet, GenMET, Pileup (records; Electron
    and PV without fields when the files have none) and the flat fields run, luminosityBlock,
    event, genWeight, replica, draw (``flashsimModelDraw``), nTrueInt, and ``flashsimWeight`` (the
    DCTR event weight) when the files have it; ``fields`` lists the RECO fields per collection
    present in the files (with ``flashsimWeight`` where the files carry object weights)."""

    events: ak.Array
    fields: dict[str, tuple[str, ...]]
    paths: tuple[str, ...]


def _open_events(path: Path, role: str):
    if not path.is_file():
        raise FlashSimError(f"{role} file {path} does not exist: check the path given to --{role}")
    try:
        tree = uproot.open(path)["Events"]
    except (KeyError, uproot.KeyInFileError) as error:
        raise FlashSimError(f"{role} file {path} has no Events TTree: pass a NanoAOD file") from error
    except Exception as error:  # uproot raises several types for non-ROOT input
        raise FlashSimError(f"{role} file {path} is not a readable ROOT file ({error}); "
                            "pass a NanoAOD .root file") from error
    if not isinstance(tree, uproot.TTree):
        raise FlashSimError(f"{role} file {path}: Events is not a TTree; pass a NanoAOD file")
    return tree


def _collection(arrays: dict, prefix: str, jagged: bool) -> ak.Array:
    fields = {name[len(prefix) + 1:]: arrays[name] for name in arrays
              if name.startswith(prefix + "_")}
    if not fields:
        return ak.Array([[]] * len(arrays["event"])) if jagged else ak.Array([{}] * len(arrays["event"]))
    return ak.zip(fields, depth_limit=None if jagged else 1)


def _with_scalars(collection: ak.Array, arrays: dict, scalars: Sequence[str]) -> ak.Array:
    """The one-per-event ``collection`` with the event scalars ``scalars`` as fields."""
    for scalar in scalars:
        collection = ak.with_field(collection, arrays[scalar], scalar)
    return collection


def _check_weights(arrays: dict, path: Path, role: str) -> None:
    """Raise :class:`FlashSimError` if a DCTR weight branch of one file holds a negative or
    non-finite value: weights are density ratios :math:`p_\\text{full}/p_\\text{flash} \\ge 0`
    and the weighted classifier test draws rows with probability proportional to them."""
    for name in (b for b in arrays if b == _WEIGHT or b.endswith("_" + _WEIGHT)):
        values = np.asarray(ak.flatten(arrays[name], axis=None), dtype=np.float64)
        bad = ~(np.isfinite(values) & (values >= 0))
        if bad.any():
            raise FlashSimError(
                f"{role} file {path}: {np.count_nonzero(bad)} values of {name} are negative or "
                f"not finite (first: {values[bad][0]}); DCTR weights are density ratios >= 0: "
                "write the file again with `flashsim simulate --weights`, or pass a file "
                f"without {_WEIGHT} branches for an unweighted validation")


def load_sample(paths: Sequence[str | Path], role: str) -> Sample:
    """Read the validation columns of NanoAOD ``paths``; ``role`` ('full' or 'flash') names the
    option in error messages. Raises :class:`FlashSimError` for missing/unreadable files,
    files without event ids, files whose RECO or weight branches differ from each other and
    DCTR weights (``flashsimWeight`` branches) that are negative or not finite."""
    if not paths:
        raise FlashSimError(f"no --{role} files given: pass one or more NanoAOD files")
    parts, fields, names_seen = [], None, None
    for path in map(Path, paths):
        tree = _open_events(path, role)
        keys = set(tree.keys())
        missing = {"run", "luminosityBlock", "event"} - keys
        if missing:
            raise FlashSimError(f"{role} file {path} lacks the event-id branches {sorted(missing)}; "
                                "pass NanoAOD files with run, luminosityBlock and event")
        scalars = {obj: tuple(s for s in VIEW_SCALARS.get(obj, ()) if s in keys) for obj in OBJECTS}
        reco = sorted(k for k in keys if k.split("_", 1)[0] in OBJECTS and "_" in k)
        reco += [s for names in scalars.values() for s in names]
        event_weight = [_WEIGHT] if _WEIGHT in keys else []
        if names_seen is not None and [*reco, *event_weight] != names_seen:
            raise FlashSimError(f"{role} file {path} has different RECO or {_WEIGHT} branches "
                                f"than {paths[0]}; pass files produced by the same "
                                "flashsim/CMSSW configuration")
        names_seen = [*reco, *event_weight]
        arrays = tree.arrays([*reco, *event_weight, *(b for b in _GEN_BRANCHES if b in keys)],
                             how=dict)
        _check_weights(arrays, path, role)
        n = tree.num_entries
        record = {
            "run": arrays["run"], "luminosityBlock": arrays["luminosityBlock"],
            "event": arrays["event"],
            "genWeight": arrays.get("genWeight", np.ones(n, np.float32)),
            "replica": arrays.get("flashsimReplica", np.zeros(n, np.uint32)),
            "draw": arrays.get("flashsimModelDraw", np.zeros(n, np.uint32)),
            "nTrueInt": arrays.get("Pileup_nTrueInt", np.full(n, np.nan, np.float32)),
            "Muon": _collection(arrays, "Muon", True),
            "Electron": _collection(arrays, "Electron", True),
            "Jet": _collection(arrays, "Jet", True),
            "MET": _collection(arrays, "MET", False),
            "PV": _with_scalars(_collection(arrays, "PV", False), arrays, scalars["PV"]),
            "GenPart": _collection(arrays, "GenPart", True),
            "GenJet": _collection(arrays, "GenJet", True),
            "GenMET": _collection(arrays, "GenMET", False),
            "Pileup": _collection(arrays, "Pileup", False),
        }
        if event_weight:
            record[_WEIGHT] = arrays[_WEIGHT]
        parts.append(ak.zip(record, depth_limit=1))
        fields = {obj: (*(k.split("_", 1)[1] for k in reco if k.startswith(obj + "_")),
                        *scalars[obj]) for obj in OBJECTS}
    return Sample(ak.concatenate(parts) if len(parts) > 1 else parts[0], fields,
                  tuple(map(str, paths)))


def _ids(events: ak.Array) -> np.ndarray:
    ids = np.empty(len(events), dtype=[("run", "u4"), ("lumi", "u4"), ("event", "u8")])
    ids["run"] = ak.to_numpy(events.run)
    ids["lumi"] = ak.to_numpy(events.luminosityBlock)
    ids["event"] = ak.to_numpy(events.event)
    return ids


def match_events(full: ak.Array, flash: ak.Array) -> tuple[np.ndarray, np.ndarray]:
    """Pair flash events with full events by (run, luminosityBlock, event).

    Returns ``(full_index, flash_source)``: for each flash event (every replica), the row of its
    full twin, and for each replica-0 flash event the same (aligned event-by-event lists).
    Raises :class:`FlashSimError` if a flash event has no twin or ids repeat.
    """
    if len(flash) == 0:
        raise FlashSimError("the --flash files hold no events: pass a non-empty flash NANOAOD")
    keys_full, keys_flash = _ids(full), _ids(flash)
    unique, inverse = np.unique(np.concatenate([keys_full, keys_flash]), return_inverse=True)
    inv_full, inv_flash = inverse[: len(full)], inverse[len(full):]
    if np.unique(inv_full).size != len(full):
        raise FlashSimError("the --full files repeat (run, luminosityBlock, event) ids: pass each "
                            "full-simulation file once")
    position = np.full(len(unique), -1, dtype=np.int64)
    position[inv_full] = np.arange(len(full))
    full_index = position[inv_flash]
    orphans = np.flatnonzero(full_index < 0)
    if orphans.size:
        first = keys_flash[orphans[0]]
        raise FlashSimError(
            f"{orphans.size} of {len(flash)} flash events have no event with the same "
            f"(run, luminosityBlock, event) in the --full files (first: {first['run']}:"
            f"{first['lumi']}:{first['event']}); pass as --full the NANOAODSIM files whose GEN "
            "events were flash-simulated")
    replica0 = ak.to_numpy(flash.replica) == 0
    if np.unique(full_index[replica0]).size != np.count_nonzero(replica0):
        raise FlashSimError("the --flash files repeat (run, luminosityBlock, event) ids within "
                            "replica 0: pass each flash file once")
    return full_index, np.flatnonzero(replica0)


def paired_events(full_sample: Sample, flash_sample: Sample
                  ) -> tuple[ak.Array, ak.Array, np.ndarray, np.ndarray]:
    """The events compared: ``(full, flash, full_index, flash0_rows)``, the full events that
    have a flash twin and every flash event, each with the field ``source``, the row of its
    GEN event in the full files (the group of twins and replicas, which the classifier
    split keeps together), then the :func:`match_events` indices."""
    full_index, flash0_rows = match_events(full_sample.events, flash_sample.events)
    matched_rows = np.unique(full_index)
    full = ak.with_field(full_sample.events[matched_rows], matched_rows, "source")
    flash = ak.with_field(flash_sample.events, full_index, "source")
    return full, flash, full_index, flash0_rows


def jets_gen_matched(full_sample: Sample, flash_sample: Sample) -> bool:
    """Whether both samples have ``Jet_genJetIdx``, so that jets split into the views
    ``Jet_matched`` and ``Jet_unmatched`` (:func:`object_views`)."""
    return all("genJetIdx" in s.fields["Jet"] for s in (full_sample, flash_sample))


def shared_fields(collection: str, full_sample: Sample, flash_sample: Sample) -> list[str]:
    """The schema's RECO branches of ``collection`` that both samples have, in schema order:
    the branches a view of that collection compares (never flashsim's own, such as the DCTR
    weight ``flashsimWeight``: :data:`~flashsim.nanoaod.schema.FLASH_ONLY_FIELDS`)."""
    known = [*reco_branches(collection), *VIEW_SCALARS.get(collection, ())]
    return [f for f in known if f in full_sample.fields[collection]
            and f in flash_sample.fields[collection]]


def compare_view(view: str, full_sample: Sample, flash_sample: Sample, *,
                 seed: int = 0) -> dict:
    """:func:`compare_branches` of one object view (``Muon``, ``Jet_matched``, ...) without
    figures, exactly as :func:`run_validation` computes it: its ``classifier`` entry is the
    conditional classifier two-sample test and attribution that ``flashsim validate``
    reports for the view. Raises :class:`FlashSimError` for a view the samples lack."""
    full, flash, _, _ = paired_events(full_sample, flash_sample)
    has_match = jets_gen_matched(full_sample, flash_sample)
    views_full, views_flash = object_views(full, has_match), object_views(flash, has_match)
    if view not in views_full or view not in views_flash:
        raise FlashSimError(f"the samples have no {view} view (they have "
                            f"{', '.join(v for v in views_full if v in views_flash)}): pass "
                            "NanoAOD files with that collection")
    fields = shared_fields(view.split("_")[0], full_sample, flash_sample)
    return compare_branches(view, views_full[view], views_flash[view], fields, None, seed=seed)


def _with_gen_context(view: str, objects: ak.Array, events: ak.Array) -> ak.Array:
    """``objects`` with the fields ``_gen_<field>`` of :data:`GEN_CONTEXT` [view]: the GEN
    partner's features, NaN for objects without a (readable) partner or files without them."""
    gen_name, index, gen_fields = GEN_CONTEXT[view]
    gen = events[gen_name]
    if index is None:
        partner = gen
    elif index in objects.fields:
        partner = gen[ak.mask(objects[index], _valid_index(objects[index], gen))]
    else:
        partner = None
    for field in gen_fields:
        if partner is not None and field in gen.fields:
            value = ak.values_astype(ak.fill_none(partner[field], np.nan), np.float64)
        else:
            value = ak.values_astype(ak.zeros_like(objects["_group"]), np.float64) + np.nan
        objects = ak.with_field(objects, value, _CONTEXT_PREFIX + field)
    return objects


def object_views(events: ak.Array, has_gen_match: bool) -> dict[str, ak.Array]:
    """The per-object populations compared: muons, electrons (when the files have them),
    matched and unmatched jets (by ``Jet_genJetIdx``; all jets if the files lack it), MET
    and, when the files have them, the pileup observables ``PV`` (the main vertex, the vertex
    counts and rho; both one per event). Every object carries ``_group``, the ``source`` (GEN event) of its
    event, for the classifier split, and the views of :data:`GEN_CONTEXT` carry the GEN
    partner's features as ``_gen_<field>`` (the context of the conditional classifier). Where
    the files have DCTR weights, every object carries ``_weight``, the weight of its view's
    classifier test: its own ``flashsimWeight`` (the PV's, ``PV_flashsimWeight``); for MET,
    the event's."""
    def tagged(objects: ak.Array) -> ak.Array:
        group = (events.source if objects.ndim == 1  # one per event
                 else ak.broadcast_arrays(events.source, objects.pt)[0])
        objects = ak.with_field(objects, group, "_group")
        if _WEIGHT in objects.fields:
            objects = ak.with_field(objects, objects[_WEIGHT], "_weight")
        return objects

    muons, jets = tagged(events.Muon), tagged(events.Jet)
    views = {"Muon": muons}
    if "pt" in events.Electron.fields:
        views["Electron"] = tagged(events.Electron)
    if has_gen_match:
        views["Jet_matched"] = jets[jets.genJetIdx >= 0]
        views["Jet_unmatched"] = jets[jets.genJetIdx < 0]
    else:
        views["Jet"] = jets
    views = {name: ak.flatten(_with_gen_context(name, objects, events)
                              if name in GEN_CONTEXT else objects)
             for name, objects in views.items()}
    met = ak.with_field(events.MET, events.source, "_group")
    if _WEIGHT in events.fields:
        met = ak.with_field(met, events[_WEIGHT], "_weight")
    views["MET"] = _with_gen_context("MET", met, events) if "pt" in met.fields else met
    if events.PV.fields:  # the vertices and rho: one row per event, given the true pileup
        views["PV"] = _with_gen_context("PV", tagged(events.PV), events)
    return views


def _column(objects: ak.Array, field: str) -> np.ndarray:
    return ak.to_numpy(objects[field])


def compare_branches(
    name: str,
    full: ak.Array,
    flash: ak.Array,
    fields: Sequence[str],
    outdir: Path | None,
    *,
    plot_fields: Sequence[str] | None = None,
    seed: int = 0,
    flash_draws: Sequence[ak.Array] | None = None,
) -> dict:
    """Per-branch metrics, correlation difference and classifier test for one object view.

    ``name`` is the view ('Muon', 'Jet_matched', ...), ``full``/``flash`` flat record arrays,
    ``fields`` the branches to compare; figures of ``plot_fields`` (default all) go to
    ``outdir`` (None: no figures). ``flash_draws``, the view in every weight draw of Bayesian
    models, adds ``model_band`` (bins, 1σ/2σ coverage, median model σ over the flash value) to
    the continuous and integer branches and the band to their figures. Returns ``{"n_full",
    "n_flash", "branches": {...}, "correlation": {...}, "classifier": {...}}``.
    """
    collection = name.split("_")[0]
    schema = load_schema()
    specs = {**schema.collections[collection].branches,
             **{s: schema.scalars[s] for s in VIEW_SCALARS.get(collection, ())}}
    out: dict = {"n_full": len(full), "n_flash": len(flash), "branches": {}}
    continuous, features = [], []
    for field in fields:
        spec = specs[field]
        a, b = _column(full, field), _column(flash, field)
        entry: dict = {"kind": spec.kind}
        if spec.kind in ("continuous", "integer"):
            entry["w1_norm"] = metrics.normalised_wasserstein(a, b)
            entry["ks"], entry["ks_pvalue"] = metrics.ks_statistic(a, b)
        if spec.kind in _DISCRETE and (spec.kind != "integer" or spec.allowed is not None):
            entry["frequencies"] = metrics.frequency_table(
                a, b, bits=spec.bits if spec.kind == "bitflags" else None)
            entry["tvd"] = entry["frequencies"]["tvd"]
        out["branches"][field] = entry
        if spec.kind == "continuous":
            continuous.append(field)
        if spec.kind != "index":
            features.append(field)
        edges = plots.binning(a, b, spec.kind != "continuous")
        band = None
        if flash_draws is not None and spec.kind in ("continuous", "integer"):
            band = metrics.model_band(a, [_column(d, field) for d in flash_draws], edges)
            relative = np.divide(band["model_sigma"], band["flash"],
                                 out=np.full_like(band["flash"], np.nan), where=band["flash"] > 0)
            entry["model_band"] = {
                "bins": band["bins"], "coverage_1sigma": band["coverage_1sigma"],
                "coverage_2sigma": band["coverage_2sigma"],
                "median_relative_model_sigma": (float(np.nanmedian(relative))
                                                if np.isfinite(relative).any() else math.nan)}
        if outdir is not None and (plot_fields is None or field in plot_fields):
            note = (f"W1/σ = {entry['w1_norm']:.3f}" if "w1_norm" in entry
                    else f"TVD = {entry.get('tvd', math.nan):.3f}")
            plots.plot_comparison(a, b, edges, f"{name} {field}", outdir / f"{name}_{field}.png",
                                  logy=field in ("pt", "sumEt") or "Iso" in field, note=note,
                                  flash_band=None if band is None else
                                  (band["flash"] - band["model_sigma"],
                                   band["flash"] + band["model_sigma"]))
    if len(continuous) >= 2:
        matrix_full = np.column_stack([_column(full, f) for f in continuous]) if len(full) else \
            np.empty((0, len(continuous)))
        matrix_flash = np.column_stack([_column(flash, f) for f in continuous]) if len(flash) else \
            np.empty((0, len(continuous)))
        corr = metrics.correlation_difference(matrix_full, matrix_flash)
        out["correlation"] = {"fields": continuous, "max_abs_diff": corr["max_abs"],
                              "rms_diff": corr["rms"], "diff": corr["diff"]}
        if outdir is not None:
            plots.plot_matrix(corr["diff"], continuous, f"{name}: corr(flash) − corr(full)",
                              outdir / f"{name}_correlation_diff.png")
    if features:
        out["classifier"] = _classifier_tests(full, flash, features, seed)
    return out


def _matrix(objects: ak.Array, fields: Sequence[str]) -> np.ndarray:
    return np.column_stack([_column(objects, f).astype(np.float64) for f in fields]) \
        if fields else np.empty((len(objects), 0))


def _ranked(names: Sequence[str], values: Sequence[float]) -> list[list]:
    """``[[name, value], ...]`` largest first, NaN (no value) last."""
    order = sorted(range(len(names)), key=lambda i: (not math.isfinite(values[i]), -values[i]
                                                     if math.isfinite(values[i]) else 0.0))
    return [[names[i], values[i]] for i in order]


def _classifier_tests(full: ak.Array, flash: ak.Array, features: Sequence[str],
                      seed: int) -> dict:
    """Classifier two-sample test of the RECO ``features`` beside the GEN context columns
    (``_gen_*``, conditional test; none for views without a GEN partner), split by GEN event
    (``_group``), of the flash sample weighted by ``_weight`` where it has one, and :func:`~flashsim.validation.metrics.branch_attribution` of the
    features, ranked: ``attribution`` = {``alone``, ``dropped``: ``[[branch, AUC], ...]``
    largest first, ``auc_all``, ``auc_context``, ...}."""
    context = [f for f in full.fields if f.startswith(_CONTEXT_PREFIX)]
    context_full, context_flash = _matrix(full, context), _matrix(flash, context)
    x_full, x_flash = _matrix(full, features), _matrix(flash, features)
    groups = {"groups_full": _column(full, "_group"), "groups_flash": _column(flash, "_group"),
              "weights_flash": _column(flash, "_weight") if "_weight" in flash.fields else None}
    test = metrics.classifier_two_sample_test(np.hstack([x_full, context_full]),
                                              np.hstack([x_flash, context_flash]),
                                              seed=seed, **groups)
    attribution = metrics.branch_attribution(
        x_full, x_flash, context_full=context_full if context else None,
        context_flash=context_flash if context else None, seed=seed, **groups)
    attribution["alone"] = _ranked(features, attribution["alone"])
    attribution["dropped"] = _ranked(features, attribution["dropped"])
    return {**test, "features": list(features),
            "context": [f[len(_CONTEXT_PREFIX):] for f in context], "attribution": attribution}


def _valid_index(index: ak.Array, target: ak.Array) -> ak.Array:
    """index >= 0 and inside the target collection (real NanoAOD stores GenJets above 10 GeV
    only, but Jet_genJetIdx may point at a GenJet below that: matched, yet not readable)."""
    return (index >= 0) & (index < ak.num(target, axis=1))


def _gen_matched(events: ak.Array, reco: str, gen: str, index: str) -> ak.Array:
    """For each reco object with a GEN match: the reco object and its GEN partner."""
    objects = events[reco]
    objects = objects[_valid_index(objects[index], events[gen])]
    return ak.zip({"reco": objects, "gen": events[gen][objects[index]]}, depth_limit=2)


def _binned_quantiles(x: np.ndarray, y: np.ndarray, edges: np.ndarray) -> dict:
    """Median and resolution (half the 16–84% interval over the median) of y in x bins,
    with the asymptotic errors 1.25 σ/√n and σ/√(2n)."""
    which = np.digitize(x, edges) - 1
    med, med_err, res, res_err, count = (np.full(len(edges) - 1, np.nan) for _ in range(5))
    for i in range(len(edges) - 1):
        values = y[which == i]
        count[i] = values.size
        if values.size < 5:
            continue
        q16, q50, q84 = np.quantile(values, [0.16, 0.5, 0.84])
        sigma = 0.5 * (q84 - q16)
        med[i], med_err[i] = q50, 1.2533 * sigma / math.sqrt(values.size)
        res[i] = sigma / q50 if q50 else np.nan
        res_err[i] = res[i] / math.sqrt(2 * values.size)
    return {"median": med, "median_err": med_err, "resolution": res,
            "resolution_err": res_err, "n": count}


def _response_profiles(events: ak.Array, reco: str, gen: str, index: str,
                       pt_edges: np.ndarray, eta_edges: np.ndarray) -> dict:
    """Median and resolution of the pT response of ``reco`` objects vs GEN pT and η."""
    pairs = ak.flatten(_gen_matched(events, reco, gen, index))
    gen_pt, gen_eta = ak.to_numpy(pairs.gen.pt), ak.to_numpy(pairs.gen.eta)
    response = ak.to_numpy(pairs.reco.pt) / gen_pt
    return {"pt": _binned_quantiles(gen_pt, response, pt_edges),
            "eta": _binned_quantiles(gen_eta, response, eta_edges)}


def _spread(profiles: list[dict], axis: str, quantity: str) -> np.ndarray:
    """Standard deviation over weight draws of one profile (NaN where fewer than 2 draws have
    a value)."""
    values = np.array([p[axis][quantity] for p in profiles])
    enough = np.isfinite(values).sum(axis=0) >= 2
    out = np.full(values.shape[1], np.nan)
    out[enough] = np.nanstd(values[:, enough], axis=0, ddof=1)
    return out


def compare_response(full: ak.Array, flash: ak.Array, outdir: Path | None,
                     flash_draws: Sequence[ak.Array] | None = None) -> dict:
    """pT response (reco/GEN) median and resolution vs GEN pT and η: muons, electrons (GEN
    electron or photon partner) and matched jets. ``flash_draws`` (the events of every weight
    draw of Bayesian models) adds ``flash_model_sigma``, the spread of each profile over the
    draws, drawn as a band around the flash points."""
    out: dict = {}
    setups = (*((name, "GenPart", "genPartIdx", _MUON_PT_EDGES, _LEPTON_ETA_EDGES[name])
                for name in ("Muon", "Electron")),
              ("Jet", "GenJet", "genJetIdx", _JET_PT_EDGES, np.linspace(-4.7, 4.7, 11)))
    for reco, gen, index, pt_edges, eta_edges in setups:
        if index not in full[reco].fields or index not in flash[reco].fields:
            continue
        views = {label: _response_profiles(events, reco, gen, index, pt_edges, eta_edges)
                 for label, events in ((plots.FULL_LABEL, full), (plots.FLASH_LABEL, flash))}
        out[reco] = {"pt_edges": pt_edges, "eta_edges": eta_edges,
                     "full": views[plots.FULL_LABEL], "flash": views[plots.FLASH_LABEL]}
        if flash_draws is not None:
            profiles = [_response_profiles(events, reco, gen, index, pt_edges, eta_edges)
                        for events in flash_draws]
            out[reco]["flash_model_sigma"] = {
                axis: {q: _spread(profiles, axis, q) for q in ("median", "resolution")}
                for axis in ("pt", "eta")}
        if outdir is None:
            continue
        for axis, edges, xlabel in (("pt", pt_edges, f"GEN {reco} $p_T$ [GeV]"),
                                    ("eta", eta_edges, f"GEN {reco} $\\eta$")):
            for quantity, ylabel in (("median", "median $p_T$/$p_T^{GEN}$"),
                                     ("resolution", "$\\sigma(p_T/p_T^{GEN})$ / median")):
                series = {label: (v[axis][quantity], v[axis][quantity + "_err"])
                          for label, v in views.items()}
                band = None
                if flash_draws is not None:
                    centre = views[plots.FLASH_LABEL][axis][quantity]
                    sigma = out[reco]["flash_model_sigma"][axis][quantity]
                    band = (centre - sigma, centre + sigma)
                plots.plot_profiles(edges, series, xlabel, ylabel,
                                    outdir / f"{reco}_{quantity}_vs_gen_{axis}.png",
                                    logx=axis == "pt", flash_band=band)
    return out


def _efficiency(passed: np.ndarray, x: np.ndarray, edges: np.ndarray) -> tuple:
    total = np.histogram(x, edges)[0].astype(float)
    hits = np.histogram(x[passed], edges)[0].astype(float)
    with np.errstate(divide="ignore", invalid="ignore"):
        eff = hits / total
        err = np.sqrt(eff * (1 - eff) / total)
    return eff, err


def _reconstructed(events: ak.Array, reco: str, gen: str, index: str, gen_mask: ak.Array):
    """Flat arrays (gen pt, gen eta, reconstructed?) of the GEN objects selected by gen_mask."""
    counts = ak.to_numpy(ak.num(events[gen]))
    offsets = np.concatenate([[0], np.cumsum(counts)])
    idx = events[reco][index]
    idx = idx[_valid_index(idx, events[gen])]
    flat = ak.to_numpy(ak.flatten(idx + offsets[:-1]))
    hit = np.zeros(offsets[-1], dtype=bool)
    hit[flat] = True
    mask = ak.to_numpy(ak.flatten(gen_mask))
    return (ak.to_numpy(ak.flatten(events[gen].pt))[mask],
            ak.to_numpy(ak.flatten(events[gen].eta))[mask], hit[mask])


def compare_efficiency(full: ak.Array, flash: ak.Array, outdir: Path | None) -> dict:
    """Reconstruction efficiency of GEN muons (|pdgId| = 13, status 1, |η| < 2.4), GEN
    electrons (|pdgId| = 11, status 1, |η| < 2.5) and GenJets (pT > 15) vs GEN pT and η:
    fraction pointed to by a reco object's genPartIdx/genJetIdx."""
    out: dict = {}

    def gen_lepton(pdg_id: int, eta_max: float):
        return lambda ev: ((abs(ev.GenPart.pdgId) == pdg_id) & (ev.GenPart.status == 1)
                           & (abs(ev.GenPart.eta) < eta_max))

    setups = (("Muon", "GenPart", "genPartIdx", _MUON_PT_EDGES, _LEPTON_ETA_EDGES["Muon"],
               gen_lepton(13, 2.4)),
              ("Electron", "GenPart", "genPartIdx", _MUON_PT_EDGES, _LEPTON_ETA_EDGES["Electron"],
               gen_lepton(11, 2.5)),
              ("Jet", "GenJet", "genJetIdx", _JET_PT_EDGES, np.linspace(-4.7, 4.7, 11),
               lambda ev: ev.GenJet.pt > _PU_JET_PT))
    for reco, gen, index, pt_edges, eta_edges, select in setups:
        if index not in full[reco].fields or index not in flash[reco].fields:
            continue
        result = {"pt_edges": pt_edges, "eta_edges": eta_edges}
        for role, events in (("full", full), ("flash", flash)):
            pt, eta, hit = _reconstructed(events, reco, gen, index, select(events))
            result[role] = {"pt": _efficiency(hit, pt, pt_edges),
                            "eta": _efficiency(hit, eta, eta_edges),
                            "overall": float(hit.mean()) if hit.size else math.nan}
        out[reco] = result
        if outdir is not None:
            for axis, edges, xlabel in (("pt", pt_edges, f"GEN {reco} $p_T$ [GeV]"),
                                        ("eta", eta_edges, f"GEN {reco} $\\eta$")):
                series = {plots.FULL_LABEL: result["full"][axis],
                          plots.FLASH_LABEL: result["flash"][axis]}
                plots.plot_profiles(edges, series, xlabel, "Reconstruction efficiency",
                                    outdir / f"{reco}_efficiency_vs_gen_{axis}.png",
                                    logx=axis == "pt")
    return out


def compare_pileup_jets(full: ak.Array, flash: ak.Array, outdir: Path | None) -> dict:
    """Mean number of unmatched (pileup) jets with pT > 15 GeV per event vs Pileup_nTrueInt."""
    if "genJetIdx" not in full.Jet.fields or "genJetIdx" not in flash.Jet.fields:
        return {}
    true_int = ak.to_numpy(full.nTrueInt)
    if not np.isfinite(true_int).any():
        return {}
    edges = np.unique(np.quantile(true_int[np.isfinite(true_int)], np.linspace(0, 1, 7)))
    edges[-1] += 1e-3
    out: dict = {"edges": edges}
    for role, events in (("full", full), ("flash", flash)):
        jets = events.Jet
        n_pu = ak.to_numpy(ak.sum((jets.genJetIdx < 0) & (jets.pt > _PU_JET_PT), axis=1))
        x = ak.to_numpy(events.nTrueInt)
        which = np.digitize(x, edges) - 1
        valid = (which >= 0) & (which < len(edges) - 1)
        count = np.bincount(which[valid], minlength=len(edges) - 1).astype(float)
        total = np.bincount(which[valid], n_pu[valid], minlength=len(edges) - 1)
        total2 = np.bincount(which[valid], n_pu[valid] ** 2.0, minlength=len(edges) - 1)
        with np.errstate(divide="ignore", invalid="ignore"):
            mean = total / count
            err = np.sqrt(np.maximum(total2 / count - mean**2, 0) / count)
        out[role] = {"mean": mean, "err": err, "overall": float(n_pu.mean())}
    if outdir is not None:
        plots.plot_profiles(edges, {plots.FULL_LABEL: (out["full"]["mean"], out["full"]["err"]),
                                    plots.FLASH_LABEL: (out["flash"]["mean"], out["flash"]["err"])},
                            "Pileup_nTrueInt", "unmatched jets ($p_T$ > 15 GeV) / event",
                            outdir / "Jet_pileup_multiplicity_vs_nTrueInt.png")
    return out


def _event_features(events: ak.Array, electrons: bool) -> dict[str, np.ndarray]:
    """Event-level features by name: multiplicities, leading objects (NaN when absent), HT,
    MET (when the files have it), and with ``electrons`` the electron multiplicity and
    leading electron."""
    def leading(collection: ak.Array, field: str, i: int) -> np.ndarray:
        padded = ak.pad_none(collection[field], i + 1, axis=1)[:, i]
        return ak.to_numpy(ak.fill_none(padded, np.nan)).astype(np.float64)

    mu, jet = events.Muon, events.Jet
    columns = {"nMuon": ak.to_numpy(ak.num(mu)), "nJet": ak.to_numpy(ak.num(jet)),
               "mu1_pt": leading(mu, "pt", 0), "mu1_eta": leading(mu, "eta", 0),
               "mu2_pt": leading(mu, "pt", 1), "jet1_pt": leading(jet, "pt", 0),
               "jet1_eta": leading(jet, "eta", 0), "jet2_pt": leading(jet, "pt", 1),
               "jet2_eta": leading(jet, "eta", 1), "HT": ak.to_numpy(ak.sum(jet.pt, axis=1))}
    columns |= {f"MET_{f}": ak.to_numpy(events.MET[f]) for f in ("pt", "phi")
                if f in events.MET.fields}
    if electrons:
        ele = events.Electron
        columns |= {"nElectron": ak.to_numpy(ak.num(ele)), "e1_pt": leading(ele, "pt", 0),
                    "e1_eta": leading(ele, "eta", 0)}
    return {name: np.asarray(value, dtype=np.float64) for name, value in columns.items()}


def compare_events(full: ak.Array, flash: ak.Array, full_twin: ak.Array, flash0: ak.Array,
                   seed: int = 0) -> dict:
    """Event-level classifier test (all replicas) and event-by-event agreement of twins.

    ``full`` and ``flash`` carry ``source`` (the GEN event's row in the full files); ``full_twin`` and ``flash0`` are aligned: row i of both is the same GEN event.
    """
    electrons = all("pt" in events.Electron.fields for events in (full, flash))
    tables = [ak.zip({"_group": ak.to_numpy(events.source),
                      **_event_features(events, electrons)}) for events in (full, flash)]
    if _WEIGHT in flash.fields:  # the DCTR event weight: the test of the weighted flash events
        tables[1] = ak.with_field(tables[1], flash[_WEIGHT], "_weight")
    names = [f for f in tables[0].fields if f != "_group" and f in tables[1].fields]
    out = {"classifier": _classifier_tests(*tables, names, seed)}
    n_mu_full, n_mu_flash = ak.to_numpy(ak.num(full_twin.Muon)), ak.to_numpy(ak.num(flash0.Muon))
    n_jet_full, n_jet_flash = ak.to_numpy(ak.num(full_twin.Jet)), ak.to_numpy(ak.num(flash0.Jet))
    out["twins"] = {
        "n_events": len(flash0),
        "nMuon_equal_fraction": float(np.mean(n_mu_full == n_mu_flash)),
        "nJet_equal_fraction": float(np.mean(n_jet_full == n_jet_flash)),
        "nJet_mean_difference": float(np.mean(n_jet_flash.astype(float) - n_jet_full)),
    }
    if "pt" in full_twin.MET.fields and "pt" in flash0.MET.fields and len(flash0) > 2:
        met_full, met_flash = ak.to_numpy(full_twin.MET.pt), ak.to_numpy(flash0.MET.pt)
        out["twins"]["MET_pt_correlation"] = float(np.corrcoef(met_full, met_flash)[0, 1])
        if "pt" in full_twin.GenMET.fields:
            gen = ak.to_numpy(full_twin.GenMET.pt)
            out["twins"]["MET_pt_GenMET_correlation_full"] = float(np.corrcoef(met_full, gen)[0, 1])
            out["twins"]["MET_pt_GenMET_correlation_flash"] = float(np.corrcoef(met_flash, gen)[0, 1])
    return out


def _jet_flavour(events: ak.Array) -> tuple[ak.Array, ak.Array]:
    """Matched jets and their GEN hadron flavour (GenJet_hadronFlavour via genJetIdx, else
    Jet_hadronFlavour)."""
    jets = events.Jet
    jets = jets[_valid_index(jets.genJetIdx, events.GenJet) & (abs(jets.eta) < 2.5)
                & (jets.pt > 20)]
    if "hadronFlavour" in events.GenJet.fields:
        return jets, events.GenJet.hadronFlavour[jets.genJetIdx]
    return jets, jets.hadronFlavour


def compare_tagging(full: ak.Array, flash: ak.Array, outdir: Path | None) -> dict:
    """b/c tagging: ROC curves per GEN flavour and DeepJet 2018 WP efficiencies, full vs flash.

    Jets: GEN-matched, pT > 20 GeV, |η| < 2.5. b tagging: btagDeepFlavB for b vs light (udsg)
    and b vs c; c tagging: btagDeepFlavC for c vs light and c vs b.
    """
    needed = {"genJetIdx", "btagDeepFlavB"}
    if not needed <= set(full.Jet.fields) or not needed <= set(flash.Jet.fields):
        return {}
    flavours = {"b": 5, "c": 4, "light": 0}
    out: dict = {"wps": metrics.DEEPJET_2018_WPS, "roc_auc": {}, "wp_efficiency": {}}
    curves: dict[str, dict] = {}
    for role, events in (("full", full), ("flash", flash)):
        jets, flavour = _jet_flavour(events)
        flavour = ak.to_numpy(ak.flatten(flavour)).astype(np.int64)
        for tagger, sig, bkgs in (("btagDeepFlavB", "b", ("light", "c")),
                                  ("btagDeepFlavC", "c", ("light", "b"))):
            if tagger not in jets.fields:
                continue
            score = ak.to_numpy(ak.flatten(jets[tagger]))
            for bkg in bkgs:
                roc = metrics.roc_points(score[flavour == flavours[sig]],
                                         score[flavour == flavours[bkg]])
                key = f"{tagger}:{sig}_vs_{bkg}"
                out["roc_auc"].setdefault(key, {})[role] = roc["auc"]
                curves.setdefault(key, {})[f"{role}"] = (roc["eff_signal"], roc["eff_background"])
        out["wp_efficiency"][role] = metrics.wp_efficiencies(
            ak.to_numpy(ak.flatten(jets.btagDeepFlavB)), flavour, metrics.DEEPJET_2018_WPS,
            flavours)
    if outdir is not None:
        for key, by_role in curves.items():
            if all(len(v[0]) for v in by_role.values()):
                label = {"full": plots.FULL_LABEL, "flash": plots.FLASH_LABEL}
                plots.plot_roc({label[r]: v for r, v in by_role.items()}, key,
                               outdir / f"tagging_roc_{key.replace(':', '_')}.png")
    return out


#: Fields drawn with --plots key (the rest still get metrics).
KEY_FIELDS = ("pt", "eta", "btagDeepFlavB", "pfRelIso04_all")


def run_validation(
    full_paths: Sequence[str | Path],
    flash_paths: Sequence[str | Path],
    outdir: str | Path,
    *,
    plots_mode: str = "all",
    seed: int = 0,
    progress: bool = False,
) -> dict:
    """``flashsim validate``: compare flash NANOAOD with the full simulation of the same GEN
    events; write PNGs, ``summary.md`` and ``metrics.json`` to ``outdir``; return the metrics.

    ``plots_mode``: 'all' (a figure per branch), 'key' (pT, η, b tag, isolation plus all
    resolution/efficiency/ROC views) or 'none'. ``progress`` shows a bar of the comparison
    steps (one per object view, then the response, efficiency, pileup-jet, event and tagging
    comparisons), each of which trains classifiers or draws figures for several seconds.
    """
    from tqdm import tqdm

    from flashsim.validation.report import write_validation_report

    if plots_mode not in ("all", "key", "none"):
        raise FlashSimError(f"unknown plots mode {plots_mode!r}: use all, key or none")
    full_sample, flash_sample = load_sample(full_paths, "full"), load_sample(flash_paths, "flash")
    all_draws = flash_sample.events
    draw = ak.to_numpy(all_draws.draw)
    n_draws = int(draw.max()) + 1 if draw.size else 1
    if n_draws > 1:  # Bayesian models: draw 0 is the flash sample, all draws give the band
        flash_sample = replace(flash_sample, events=all_draws[draw == 0])
    full, flash, full_index, flash0_rows = paired_events(full_sample, flash_sample)
    outdir = Path(outdir)
    outdir.mkdir(parents=True, exist_ok=True)
    figdir = None if plots_mode == "none" else outdir
    plot_fields = KEY_FIELDS if plots_mode == "key" else None
    full_twin = full_sample.events[full_index[flash0_rows]]
    flash0 = flash[flash0_rows]

    result: dict = {
        "inputs": {"full": list(full_sample.paths), "flash": list(flash_sample.paths),
                   "full_events": len(full_sample.events), "full_events_matched": len(full),
                   "flash_events": len(flash), "flash_replicas":
                   int(ak.max(flash.replica)) + 1 if len(flash) else 0,
                   "flash_model_draws": n_draws},
        "objects": {}, "not_simulated": {}, "not_in_full": {},
    }
    has_match = jets_gen_matched(full_sample, flash_sample)
    views_full, views_flash = object_views(full, has_match), object_views(flash, has_match)
    views = [v for v in views_full if v in views_flash]
    draw_events = draw_views = None
    if n_draws > 1:
        draw_events = []
        for k in range(n_draws):
            events = all_draws[draw == k]
            source, _ = match_events(full_sample.events, events)
            draw_events.append(ak.with_field(events, source, "source"))
        draw_views = [object_views(events, has_match) for events in draw_events]
    steps = {"response": lambda: compare_response(full, flash, figdir, draw_events),
             "efficiency": lambda: compare_efficiency(full, flash, figdir),
             "pileup_jets": lambda: compare_pileup_jets(full, flash, figdir),
             "events": lambda: compare_events(full, flash, full_twin, flash0, seed=seed),
             "tagging": lambda: compare_tagging(full, flash, figdir)}
    bar = tqdm(total=len(views) + len(steps), unit="step", desc="validate", dynamic_ncols=True,
               disable=not progress)
    for view in views:
        bar.set_postfix_str(view)
        collection = view.split("_")[0]
        both = shared_fields(collection, full_sample, flash_sample)
        result["not_simulated"][collection] = sorted(
            set(full_sample.fields[collection]) - set(flash_sample.fields[collection]))
        result["not_in_full"][collection] = sorted(
            set(flash_sample.fields[collection]) - set(full_sample.fields[collection])
            - FLASH_ONLY_FIELDS)
        result["objects"][view] = compare_branches(
            view, views_full[view], views_flash[view], both, figdir, plot_fields=plot_fields,
            seed=seed, flash_draws=None if draw_views is None else [v[view] for v in draw_views])
        bar.update()
    for name, step in steps.items():
        bar.set_postfix_str(name)
        result[name] = step()
        bar.update()
    bar.close()
    if draw_views is not None:
        result["model_band"] = _band_coverage(result["objects"], n_draws)
    write_validation_report(result, outdir)
    return result


def _band_coverage(objects: dict, n_draws: int) -> dict:
    """The 1σ/2σ coverage of the model band over the bins of every branch of every view."""
    bands = [entry["model_band"] for view in objects.values()
             for entry in view["branches"].values() if "model_band" in entry]
    bins = np.array([b["bins"] for b in bands], dtype=np.float64)
    total = bins.sum()

    def pooled(key: str) -> float:
        return float(np.nansum(bins * [b[key] for b in bands]) / total) if total else math.nan

    return {"draws": n_draws, "branches": len(bands), "bins": int(total),
            "coverage_1sigma": pooled("coverage_1sigma"),
            "coverage_2sigma": pooled("coverage_2sigma")}

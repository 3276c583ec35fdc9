"""data_schemas/nanoaod.yaml: internal consistency and agreement with real CMS NanoAOD."""

from __future__ import annotations

import numpy as np
import pytest
import uproot

from flashsim.errors import FlashSimError
from flashsim.nanoaod.precision import FULL_PRECISION, mantissa_bits_used, reduce_mantissa
from flashsim.nanoaod.schema import (
    KINDS,
    _branch,
    branch_dtype,
    collection_branches,
    load_schema,
)

DISCRETE = {"integer", "boolean", "bitflags", "index", "categorical"}


def test_load_schema_is_cached_and_complete():
    schema = load_schema()
    assert schema is load_schema()
    for name in (
        "GenPart",
        "GenJet",
        "GenMET",
        "Pileup",
        "Generator",
        "Muon",
        "Electron",
        "Jet",
        "MET",
        "RawMET",
        "PV",
    ):
        assert name in schema.collections
    for name in (
        "run",
        "luminosityBlock",
        "event",
        "genWeight",
        "fixedGridRhoFastjetAll",
        "flashsimReplica",
        "flashsimModelDraw",
    ):
        assert name in schema.scalars
    assert list(schema.runs) == ["run", "genEventCount", "genEventSumw", "genEventSumw2"]
    assert [schema.runs[n].dtype for n in schema.runs] == [
        np.dtype(t) for t in ("uint32", "int64", "float64", "float64")
    ]


def test_contract_dtypes_and_helpers():
    assert branch_dtype("event") == np.uint64
    assert branch_dtype("nMuon") == np.uint32
    assert branch_dtype("GenJet_hadronFlavour") == np.uint8
    assert branch_dtype("GenJet_partonFlavour") == np.int32
    assert branch_dtype("Jet_btagDeepFlavCvL") == np.float32
    assert branch_dtype("Jet_btagDeepFlavCvB") == np.float32
    assert branch_dtype("flashsimReplica") == np.uint32
    assert branch_dtype("flashsimModelDraw") == np.uint32
    assert collection_branches("Muon")["pt"].name == "Muon_pt"
    with pytest.raises(FlashSimError, match="Muon_bogus"):
        branch_dtype("Muon_bogus")
    assert branch_dtype("Electron_lostHits") == np.uint8
    assert branch_dtype("Electron_vidNestedWPBitmap") == np.int32
    with pytest.raises(FlashSimError, match="Photon"):
        collection_branches("Photon")


def test_kinds_allowed_targets_bits_are_consistent():
    schema = load_schema()
    for spec in schema.branches.values():
        assert spec.kind in KINDS, spec.name
        if spec.kind == "continuous":
            assert spec.dtype.kind == "f" and spec.allowed is None, spec.name
        else:
            assert spec.kind in DISCRETE and spec.dtype.kind in "iub", spec.name
        if spec.allowed is not None:
            assert np.array(spec.allowed).astype(spec.dtype).tolist() == list(spec.allowed)
        if spec.target is not None:
            assert spec.kind == "index" and spec.target in schema.collections, spec.name
        if spec.kind == "bitflags":
            assert spec.bits, spec.name
            if spec.allowed is not None:  # every allowed value is made of declared bits
                mask = sum(1 << b for b in spec.bits)
                assert all(v & ~mask == 0 for v in spec.allowed), spec.name
    statusflags = schema.branch("GenPart_statusFlags")
    assert sorted(statusflags.bits) == list(range(15))
    assert statusflags.bits[13] == "isLastCopy"
    targets = {n: s.target for n, s in schema.branches.items() if s.kind == "index"}
    assert targets["Muon_genPartIdx"] == "GenPart"
    assert targets["Muon_jetIdx"] == "Jet"
    assert targets["Jet_muonIdx1"] == targets["Jet_muonIdx2"] == "Muon"
    assert targets["Jet_genJetIdx"] == "GenJet"
    assert targets["GenPart_genPartIdxMother"] == "GenPart"
    assert targets["Jet_electronIdx1"] == targets["Jet_electronIdx2"] == "Electron"
    assert targets["Electron_genPartIdx"] == "GenPart"
    assert targets["Electron_jetIdx"] == "Jet"
    assert targets["Electron_photonIdx"] is None  # flashsim writes no Photon collection
    assert schema.branch("Electron_genPartFlav").allowed == (0, 1, 3, 4, 5, 15, 22)
    assert schema.branch("Electron_cutBased").allowed == (0, 1, 2, 3, 4)
    heep = schema.branch("Electron_vidNestedWPBitmapHEEP").bits
    assert len(heep) == 12 and heep[11] == "GsfEleEcalDrivenCut"
    assert schema.branch("Electron_vidNestedWPBitmap").bits[29] == "GsfEleMissingHitsCut:2"
    assert schema.branch("Muon_genPartFlav").allowed == (0, 1, 3, 4, 5, 15)
    assert schema.branch("Jet_hadronFlavour").allowed == (0, 4, 5)
    assert schema.branch("Jet_jetId").allowed == (0, 2, 6)
    assert schema.branch("Jet_puId").allowed == (0, 4, 6, 7)
    assert schema.branch("Muon_isGlobal").allowed == (False, True)


def _reference_branches(tree):
    """{name: (numpy dtype, title)} of a real TTree's flat and jagged numeric branches."""
    out = {}
    for branch in tree.branches:
        interp = branch.interpretation
        content = getattr(interp, "content", interp)
        if isinstance(content, uproot.AsDtype):
            out[branch.name] = (content.to_dtype.newbyteorder("="), branch.title)
    return out


def test_schema_matches_real_nanoaod(reference_nano, reference_branch_names):
    schema = load_schema()
    with uproot.open(reference_nano) as file:
        events = _reference_branches(file["Events"])
        runs = _reference_branches(file["Runs"])
    common = sorted(set(events) & set(schema.branches))
    assert len(common) >= 150
    mismatched = [
        (name, events[name], (schema.branch(name).dtype, schema.branch(name).doc))
        for name in common
        if events[name] != (schema.branch(name).dtype, schema.branch(name).doc)
    ]
    assert mismatched == []
    # every Electron branch of the real file is in the schema, with its dtype and title
    electron = sorted(n for n in events if n.startswith("Electron_"))
    assert len(electron) == 61
    assert sorted(set(electron) - set(schema.branches)) == []
    # every listed reference branch of the collections flashsim writes is in the schema
    assert sorted(set(reference_branch_names) - set(schema.branches)) == []
    # Runs: NanoAODv6 spells the sums with a trailing underscore
    for name, spec in schema.runs.items():
        real = runs.get(name) or runs[name + "_"]
        assert real == (spec.dtype, spec.doc), name


def test_every_float_branch_records_its_nanoaod_precision():
    schema = load_schema()
    floats = {n: s for n, s in schema.branches.items() if s.dtype == np.float32}
    assert len(floats) > 100
    assert all(1 <= s.precision <= FULL_PRECISION for s in floats.values())
    assert all(s.precision is None for s in schema.branches.values() if s.dtype != np.float32)
    # the values the issue quotes from CMSSW's cff files / nano_dy.root
    quoted = {"GenPart_pt": 8, "GenPart_eta": 8, "GenPart_phi": 8, "Muon_eta": 12, "Muon_phi": 12,
              "Jet_pt": 10, "Jet_btagDeepFlavB": 10, "Jet_chHEF": 6, "Muon_dxy": 10,
              "Muon_pt": 23, "MET_pt": 23}
    assert {n: floats[n].precision for n in quoted} == quoted


def test_schema_rejects_float_branch_without_precision():
    with pytest.raises(FlashSimError, match="precision"):
        _branch("Muon_x", "x", {"dtype": "float32", "kind": "continuous", "doc": "x"})
    with pytest.raises(FlashSimError, match="precision"):
        _branch("Muon_n", "n", {"dtype": "int32", "kind": "integer", "doc": "n", "precision": 8})
    with pytest.raises(FlashSimError, match="precision"):
        _branch("Muon_x", "x", {"dtype": "float32", "kind": "continuous", "doc": "x",
                                "precision": 24})


def test_real_nanoaod_values_carry_the_schema_precision(reference_nano):
    """Rounding nano_dy.root's values to the schema precision changes nothing; where a branch
    has 100+ values (so each of its mantissa bits is used by chance), it uses exactly that many
    bits, so no recorded precision is larger than CMS's either."""
    schema = load_schema()
    with uproot.open(reference_nano) as file:
        tree = file["Events"]
        names = [n for n, s in schema.branches.items() if s.dtype == np.float32 and n in tree]
        arrays = tree.arrays(names, library="np")
    assert len(names) > 90
    exact = []
    for name in names:
        values = np.concatenate([np.atleast_1d(v) for v in arrays[name]]).astype(np.float32)
        precision = schema.branch(name).precision
        rounded = reduce_mantissa(values, precision)
        assert np.array_equal(rounded.view(np.uint32), values.view(np.uint32)), name
        if len(np.unique(values)) >= 100:
            assert mantissa_bits_used(values) == precision, name
            exact.append(name)
    assert {"GenPart_eta", "GenJet_pt", "Jet_pt", "Jet_chHEF"} <= set(exact)

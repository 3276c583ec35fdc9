"""flashsim.nanoaod reader and writer: round trips through uproot, coffea and ROOT."""

from __future__ import annotations

import os

import awkward as ak
import numpy as np
import pytest
import uproot

from flashsim.errors import FlashSimError
from flashsim.nanoaod import (
    GEN_COLLECTIONS,
    NanoAODWriter,
    load_schema,
    num_entries,
    open_events,
    read_chunk,
    read_provenance,
    read_runs,
    write_nanoaod,
)
from flashsim.nanoaod.precision import (
    FULL_PRECISION,
    dequantize,
    mantissa_bits_used,
    reduce_mantissa,
    rounding_cell,
)

# 4 events; event 2 has no Muon/Jet/GenPart, event 1 no GenJet/Jet. Indices use -1 = no match.
GENPART = {
    "pt": [[0.5, 40.0, 35.0], [0.1, 20.0], [], [12.0]],
    "eta": [[0.0, 1.0, -1.0], [2.0, 0.5], [], [0.3]],
    "phi": [[0.0, 0.5, -2.5], [1.0, 1.5], [], [3.0]],
    "mass": [[91.0, 0.1, 0.1], [0.0, 0.1], [], [0.1]],
    "pdgId": [[23, 13, -13], [21, 13], [], [-13]],
    "status": [[62, 1, 1], [21, 1], [], [1]],
    "statusFlags": [[8449, 8449 | 256, 8449 | 256], [0, 1], [], [1]],
    "genPartIdxMother": [[-1, 0, 0], [-1, 0], [], [-1]],
}
GENJET = {
    "pt": [[50.0, 25.0], [], [30.0], []],
    "eta": [[1.0, -2.0], [], [0.0], []],
    "phi": [[0.1, 2.0], [], [-1.0], []],
    "mass": [[5.0, 3.0], [], [4.0], []],
    "hadronFlavour": [[5, 0], [], [4], []],
    "partonFlavour": [[5, 21], [], [-4], []],
}
MUON = {
    "pt": [[36.0, 41.0], [19.0], [], [11.5]],
    "eta": [[-1.0, 1.0], [0.5], [], [0.3]],
    "phi": [[-2.5, 0.5], [1.5], [], [3.0]],
    "mass": [[0.1057, 0.1057], [0.1057], [], [0.1057]],
    "charge": [[1, -1], [-1], [], [1]],
    "pdgId": [[-13, 13], [13], [], [-13]],
    "genPartIdx": [[2, 1], [-1], [], [0]],
    "genPartFlav": [[1, 1], [0], [], [3]],
    "jetIdx": [[-1, 0], [-1], [], [-1]],
    "isGlobal": [[True, True], [False], [], [True]],
    "tightId": [[True, False], [False], [], [True]],
    "pfRelIso04_all": [[0.01, 0.2], [0.5], [], [0.0]],
}
JET = {
    "pt": [[55.0, 18.0], [], [28.0], []],
    "eta": [[1.0, 3.0], [], [0.1], []],
    "phi": [[0.1, -0.5], [], [-1.0], []],
    "mass": [[6.0, 2.0], [], [4.5], []],
    "genJetIdx": [[0, -1], [], [0], []],
    "muonIdx1": [[1, -1], [], [-1], []],
    "muonIdx2": [[-1, -1], [], [-1], []],
    "jetId": [[6, 2], [], [6], []],
    "puId": [[7, 0], [], [4], []],
    "hadronFlavour": [[5, 0], [], [4], []],
    "btagDeepFlavCvL": [[0.2, 0.9], [], [0.5], []],
}
N_EVENTS = 4


def assert_jagged_close(actual, expected, rtol: float = 1e-6) -> None:
    """Same per-event counts and (float32-precision) values; None only where expected."""
    actual, expected = ak.Array(actual), ak.Array(expected)
    assert ak.to_list(ak.num(actual, axis=1)) == ak.to_list(ak.num(expected, axis=1))
    got, want = ak.flatten(actual, axis=None), ak.flatten(expected, axis=None)
    assert ak.to_list(ak.is_none(got, axis=0)) == ak.to_list(ak.is_none(want, axis=0))
    np.testing.assert_allclose(
        ak.to_numpy(ak.drop_none(got)).astype(float),
        ak.to_numpy(ak.drop_none(want)).astype(float),
        rtol=rtol,
    )


def as_written(values, spec) -> np.ndarray:
    """What the writer stores for ``values``: the schema dtype, floats at NanoAOD precision."""
    array = np.asarray(values).astype(spec.dtype)
    return reduce_mantissa(array, spec.precision) if spec.precision else array


def leaf_dtype(array) -> np.dtype:
    return ak.flatten(array, axis=None).layout.dtype


def make_chunk() -> dict:
    """A small NANOAODSIM chunk in the writer's format (python floats: the writer casts)."""
    return {
        "run": np.array([1, 1, 2, 2]),
        "luminosityBlock": np.array([7, 7, 8, 9]),
        "event": np.array([101, 102, 2**40, 5]),
        "genWeight": np.array([1.5, -0.5, 2.0, 1.0]),
        "fixedGridRhoFastjetAll": np.array([20.0, 31.0, 12.0, 25.0]),
        "GenPart": ak.zip(GENPART),
        "GenJet": ak.zip(GENJET),
        "Muon": ak.zip(MUON),
        "Jet": ak.zip(JET),
        "GenMET": ak.zip({"pt": [5.0, 3.0, 1.0, 8.0], "phi": [0.0, 1.0, 2.0, 3.0]}),
        "MET": ak.zip({"pt": [30.0, 25.0, 10.0, 40.0], "phi": [0.5, 1.5, -2.0, 3.0]}),
        "PV": ak.zip({"npvs": [30, 25, 10, 40], "z": [0.1, -2.0, 3.0, 0.0]}),
    }


@pytest.fixture(scope="module")
def written(tmp_path_factory):
    path = tmp_path_factory.mktemp("nano") / "out.root"
    write_nanoaod(path, make_chunk())
    return path


def test_written_branches_have_schema_dtypes_titles_and_counters(written):
    schema = load_schema()
    chunk = make_chunk()
    with uproot.open(written) as file:
        tree = file["Events"]
        assert tree.classname.startswith("TTree") and tree.num_entries == N_EVENTS
        counters = sorted(k for k in tree.keys() if k.startswith("n"))
        assert counters == ["nGenJet", "nGenPart", "nJet", "nMuon"]
        for branch in tree.branches:
            spec = schema.branch(branch.name)
            interp = branch.interpretation
            assert getattr(interp, "content", interp).to_dtype == spec.dtype
            assert branch.title == spec.doc, branch.name
        for name in ("GenPart", "GenJet", "Muon", "Jet"):
            np.testing.assert_array_equal(tree[f"n{name}"].array(library="np"), ak.num(chunk[name]))
    assert num_entries(written) == N_EVENTS
    umask = os.umask(0)
    os.umask(umask)
    assert written.stat().st_mode & 0o777 == 0o666 & ~umask  # a normal file, not a 0600 temp


def test_every_counter_has_the_dtype_of_the_real_cms_file(tmp_path, reference_nano):
    """Counters are uint32 in CMS NANOAODSIM; uproot alone would write int32."""
    schema = load_schema()
    jagged = {name: coll for name, coll in schema.collections.items() if coll.jagged}
    chunk = {name: np.zeros(2, dtype=np.uint32) for name in ("run", "luminosityBlock", "event")}
    for name, coll in jagged.items():
        spec = next(iter(coll.branches.values()))
        chunk[name] = ak.zip({spec.field: ak.Array([[1, 2], []])})
    path = tmp_path / "counters.root"
    write_nanoaod(path, chunk)
    with uproot.open(path) as ours, uproot.open(reference_nano) as real:
        tree, cms = ours["Events"], real["Events"]
        counters = {b.count_branch.name for b in tree.branches if b.count_branch is not None}
        assert counters == {coll.counter for coll in jagged.values()}
        for name in sorted(counters):
            assert tree[name].typename == cms[name].typename == "uint32_t", name
            assert tree[name].interpretation == cms[name].interpretation, name
            assert tree[name].array(library="np").tolist() == [2, 0]


def test_writer_fails_loudly_without_uproot_internals(tmp_path, monkeypatch):
    from uproot.writing._cascadetree import Tree

    monkeypatch.delattr(Tree, "_relocate")
    with pytest.raises(FlashSimError, match="uint32 counters"):
        write_nanoaod(tmp_path / "out.root", make_chunk())
    assert list(tmp_path.iterdir()) == []


def test_round_trip_values_through_read_chunk(written):
    chunk = make_chunk()
    back = read_chunk(written, list(chunk))
    assert set(back) == set(chunk)
    schema = load_schema()
    for name, value in chunk.items():
        if name in schema.scalars:
            assert back[name].dtype == schema.scalars[name].dtype
            np.testing.assert_allclose(back[name].astype(float), np.asarray(value, float))
            continue
        assert sorted(ak.fields(back[name])) == sorted(ak.fields(value))
        for field in ak.fields(value):
            got = back[name][field]
            spec = schema.collections[name].branches[field]
            assert leaf_dtype(got) == spec.dtype
            counts = ak.num(got, axis=1) if got.ndim == 2 else None
            assert counts is None or ak.to_list(counts) == ak.to_list(ak.num(value[field]))
            # floats come back exactly as CMSSW would have rounded them (Muon_mass: 10 bits)
            np.testing.assert_array_equal(
                ak.to_numpy(ak.flatten(got, axis=None)),
                as_written(ak.to_numpy(ak.flatten(value[field], axis=None)), spec),
            )
    assert back["Muon"].mass[0, 0] != np.float32(0.1057)  # 10-bit grid: 0.10571289


def test_coffea_reads_values_and_cross_references(written):
    events = open_events(written)
    assert len(events) == N_EVENTS
    assert ak.to_list(ak.num(events.Muon)) == [2, 1, 0, 1]
    assert_jagged_close(events.Muon.pt, MUON["pt"])
    # 10 mantissa bits: within half a unit in the 10th place (2**-11 relative)
    assert_jagged_close(events.Jet.btagDeepFlavCvL, JET["btagDeepFlavCvL"], rtol=2**-11)
    assert ak.to_list(events.event) == [101, 102, 2**40, 5]
    # Muon.genPartIdx -> GenPart of the same event; -1 -> None
    gen_pt = ak.to_list(events.Muon.matched_gen.pt)
    assert gen_pt == [[35.0, 40.0], [None], [], [12.0]]
    assert ak.to_list(events.Muon.matched_gen.pdgId) == [[-13, 13], [None], [], [-13]]
    assert ak.to_list(events.Jet.matched_gen.pt) == [[50.0, None], [], [30.0], []]
    assert ak.to_list(events.Jet.matched_muons.pt) == [
        [[41.0, None], [None, None]],
        [],
        [[None, None]],
        [],
    ]
    assert ak.to_list(events.GenPart.parent.pdgId) == [[None, 23, 23], [None, 21], [], [None]]
    np.testing.assert_allclose(ak.to_numpy(events.MET.pt), [30.0, 25.0, 10.0, 40.0])


def test_runs_tree_accumulates_gen_weights(written):
    runs = read_runs(written)
    chunk = make_chunk()
    np.testing.assert_array_equal(runs["run"], [1, 2])
    np.testing.assert_array_equal(runs["genEventCount"], [2, 2])
    w, r = chunk["genWeight"], chunk["run"]
    np.testing.assert_allclose(runs["genEventSumw"], [w[r == 1].sum(), w[r == 2].sum()])
    np.testing.assert_allclose(
        runs["genEventSumw2"], [(w[r == 1] ** 2).sum(), (w[r == 2] ** 2).sum()]
    )
    schema = load_schema()
    assert {k: v.dtype for k, v in runs.items()} == {k: s.dtype for k, s in schema.runs.items()}


def test_runs_passed_through_and_chunks_appended(tmp_path):
    runs = {"run": [1], "genEventCount": [1000], "genEventSumw": [12.5], "genEventSumw2": [40.0]}
    path = tmp_path / "two.root"
    with NanoAODWriter(path, runs=runs) as writer:
        writer.write(make_chunk())
        writer.write({k: v[:0] for k, v in make_chunk().items()})
        writer.write(make_chunk())
    assert num_entries(path) == 2 * N_EVENTS
    assert_jagged_close(read_chunk(path, ["Muon"])["Muon"].pt[N_EVENTS:], MUON["pt"])
    back = read_runs(path)
    assert {k: v.tolist() for k, v in back.items()} == runs
    assert back["genEventCount"].dtype == np.int64


def test_provenance_round_trip(tmp_path, reference_nano):
    record = {"producer": "flashsim generate", "process": "dy_mumu", "seed": 5,
              "settings": ["Tune:pp = 14"]}
    path = tmp_path / "with_provenance.root"
    write_nanoaod(path, make_chunk(), provenance=record)
    assert read_provenance(path) == record
    assert read_provenance(reference_nano) is None


@pytest.mark.slow  # PyROOT's interpreter start-up alone takes seconds
def test_root_reads_written_file(written):
    ROOT = pytest.importorskip("ROOT", reason="PyROOT is not installed (pip install root)")
    frame = ROOT.RDataFrame("Events", str(written))
    count = frame.Count()
    jet_sum = frame.Sum("Jet_pt")  # RDataFrame sums every element of a jagged column
    n_muon = frame.Sum("nMuon")
    assert count.GetValue() == N_EVENTS
    expected = ak.sum(read_chunk(written, ["Jet_pt"])["Jet_pt"])
    assert jet_sum.GetValue() == pytest.approx(float(expected))
    assert n_muon.GetValue() == 4
    file = ROOT.TFile.Open(str(written))
    try:
        tree = file.Get("Events")
        schema = load_schema()
        assert tree.GetBranch("Muon_pt").GetTitle() == schema.branch("Muon_pt").doc
        assert tree.GetBranch("nMuon").GetTitle() == schema.collections["Muon"].doc
        assert tree.GetLeaf("Muon_pt").GetTitle() == "Muon_pt[nMuon]"
        assert file.Get("Runs").GetEntries() == 2
    finally:
        file.Close()


def test_exception_inside_with_leaves_no_file(tmp_path):
    path = tmp_path / "out.root"
    for error in (RuntimeError, KeyboardInterrupt):
        with pytest.raises(error), NanoAODWriter(path) as writer:
            writer.write(make_chunk())
            raise error("stop")
        assert list(tmp_path.iterdir()) == []


def test_unknown_field_and_collection_are_rejected(tmp_path):
    chunk = make_chunk()
    chunk["Muon"] = ak.with_field(chunk["Muon"], chunk["Muon"].pt, "fancyPt")
    chunk["Electron"] = chunk["Muon"]
    with pytest.raises(FlashSimError, match="Muon_fancyPt") as info:
        write_nanoaod(tmp_path / "out.root", chunk)
    assert "Electron" in str(info.value)
    assert list(tmp_path.iterdir()) == []


def test_inconsistent_chunks_are_rejected(tmp_path):
    chunk = make_chunk()
    chunk["run"] = chunk["run"][:3]
    with pytest.raises(FlashSimError, match="event counts"):
        write_nanoaod(tmp_path / "a.root", chunk)
    del chunk["event"]
    with pytest.raises(FlashSimError, match="event"):
        write_nanoaod(tmp_path / "b.root", chunk)
    with pytest.raises(FlashSimError, match="first chunk"), NanoAODWriter(tmp_path / "c.root") as w:
        w.write(make_chunk())
        w.write({k: v for k, v in make_chunk().items() if k != "Jet"})
    assert list(tmp_path.iterdir()) == []


def test_unwritable_output_is_rejected_before_any_work(tmp_path):
    with pytest.raises(FlashSimError, match="does not exist"):
        NanoAODWriter(tmp_path / "missing" / "out.root")
    blocker = tmp_path / "file"
    blocker.write_text("x")
    with pytest.raises(FlashSimError):
        NanoAODWriter(blocker / "out.root")
    with pytest.raises(FlashSimError, match="directory"):
        NanoAODWriter(tmp_path)


def test_zero_events_give_valid_empty_file(tmp_path):
    path = tmp_path / "empty.root"
    write_nanoaod(path, {k: v[:0] for k, v in make_chunk().items()})
    with uproot.open(path) as file:
        assert file["Events"].num_entries == 0
        assert {"nMuon", "Muon_pt", "Jet_genJetIdx", "MET_pt", "event"} <= set(
            file["Events"].keys()
        )
        assert file["Runs"].num_entries == 0
    events = open_events(path)
    assert len(events) == 0 and ak.to_list(events.Muon.pt) == []
    # a writer that never saw a chunk still leaves a readable file with the event ids
    with NanoAODWriter(tmp_path / "none.root"):
        pass
    assert read_chunk(tmp_path / "none.root", ["run", "event"])["event"].dtype == np.uint64


def test_all_empty_jagged_collections(tmp_path):
    chunk = make_chunk()
    chunk["Muon"] = chunk["Muon"][:, :0]
    path = tmp_path / "nomuon.root"
    write_nanoaod(path, chunk)
    assert ak.to_list(read_chunk(path, ["Muon"])["Muon"].pt) == [[], [], [], []]
    assert ak.to_list(open_events(path).Muon.matched_gen.pt) == [[], [], [], []]


def test_reader_errors(tmp_path, written):
    with pytest.raises(FlashSimError, match="does not exist"):
        read_chunk(tmp_path / "nope.root", ["run"])
    text = tmp_path / "text.root"
    text.write_text("not a ROOT file\n" * 100)
    with pytest.raises(FlashSimError, match="not a readable ROOT file"):
        read_chunk(text, ["run"])
    with pytest.raises(FlashSimError, match="does not exist"):
        open_events(tmp_path / "nope.root")
    with pytest.raises(FlashSimError) as info:
        read_chunk(written, ["Muon", "Pileup", "GenVisTau_pt", "flashsimReplica"])
    message = str(info.value)
    assert all(name in message for name in ("Pileup_*", "GenVisTau_pt", "flashsimReplica"))
    assert "Muon" not in message.replace(str(written), "")
    no_events = tmp_path / "runs_only.root"
    with uproot.recreate(no_events) as file:
        file.mktree("Runs", {"run": np.uint32}).extend({"run": np.array([1], np.uint32)})
    with pytest.raises(FlashSimError, match="no 'Events' tree"):
        num_entries(no_events)
    assert read_runs(no_events) is None


def test_real_file_gen_read_and_rewrite(reference_nano, tmp_path):
    reco_names = ["Muon", "Jet", "MET", "PV", "fixedGridRhoFastjetAll"]
    chunk = read_chunk(
        reference_nano, [*GEN_COLLECTIONS, *reco_names], entry_start=5, entry_stop=25
    )
    assert set(chunk) == {*GEN_COLLECTIONS, *reco_names}
    assert len(chunk["event"]) == 20 and chunk["event"].dtype == np.uint64
    assert {"pt", "eta", "phi", "mass", "pdgId", "statusFlags"} <= set(ak.fields(chunk["GenPart"]))
    assert leaf_dtype(chunk["GenJet"].hadronFlavour) == np.uint8
    assert leaf_dtype(chunk["Muon"].isGlobal) == np.bool_
    runs = read_runs(reference_nano)
    assert runs["genEventSumw"].dtype == np.float64 and runs["genEventCount"][0] == 850098
    path = tmp_path / "copy.root"
    write_nanoaod(path, chunk, runs=runs)
    back = read_chunk(path, ["GenPart", "Muon", "Jet"])
    for name in back:
        assert ak.to_list(back[name]) == ak.to_list(chunk[name])
    events = open_events(path)
    for reco, gen, index in (("Muon", "GenPart", "genPartIdx"), ("Jet", "GenJet", "genJetIdx")):
        idx = chunk[reco][index]
        # real NanoAOD has -1 and, for jets, indices past the pT-thresholded GenJet list
        valid = (idx >= 0) & (idx < ak.num(chunk[gen]))
        expected = chunk[gen].pt[ak.mask(idx, valid)]
        assert ak.to_list(getattr(events, reco).matched_gen.pt) == ak.to_list(expected)
    assert ak.any(chunk["Jet"].genJetIdx < 0)  # the real file exercises the no-match case


def _float32(bits: int) -> np.float32:
    return np.array([bits], np.uint32).view(np.float32)[0]


def test_reduce_mantissa_rounds_as_cmssw():
    """Bit patterns of MiniFloatConverter::reduceMantissaToNbitsRounding (8 bits: shift 15)."""
    one = 0x3F800000
    cases = {
        one | (1 << 14): one | (1 << 15),  # first dropped bit set: rounds up
        one | (1 << 13) | 1: one,  # below half: rounds down
        one | (3 << 14): one | (1 << 16),  # 1.5 ulp -> 2 ulp
        one | (254 << 15) | (1 << 14): one | (254 << 15),  # top two mantissas: no round-up ...
        one | 0x7FFFFF: one | (255 << 15),  # ... so no carry into the exponent
        0x80000000 | one | (1 << 14): 0x80000000 | one | (1 << 15),  # sign kept, |x| rounded up
        0: 0,
    }
    values = np.array([_float32(k) for k in cases], np.float32)
    expected = np.array(list(cases.values()), np.uint32)
    rounded = reduce_mantissa(values, 8)
    np.testing.assert_array_equal(rounded.view(np.uint32), expected)
    np.testing.assert_array_equal(reduce_mantissa(rounded, 8), rounded)  # idempotent
    np.testing.assert_array_equal(values.view(np.uint32)[0], one | (1 << 14))  # input untouched
    np.testing.assert_array_equal(reduce_mantissa(values, FULL_PRECISION), values)
    assert mantissa_bits_used(rounded) == 8 and mantissa_bits_used(np.array([1.0, 0.5])) == 0
    with pytest.raises(ValueError, match="1..23"):
        reduce_mantissa(values, 0)


@pytest.mark.parametrize("bits", [1, 2, 6, 10, 14])
def test_rounding_cell_is_exactly_what_rounds_to_each_value(bits):
    """Just inside either end of the cell rounds to the value, just outside does not, at every
    mantissa of a binade (the top two, which truncate, and the power of two included); a
    negative value's cell is the mirror of its magnitude's."""
    kept = np.arange(1 << bits, dtype=np.uint32) << np.uint32(FULL_PRECISION - bits)
    stored = (np.uint32(0x3F800000) | kept).view(np.float32)
    low, high = (end.astype(np.float32) for end in rounding_cell(stored, bits))
    below, top = np.float32(0), np.float32(np.inf)
    np.testing.assert_array_equal(reduce_mantissa(low, bits), stored)
    np.testing.assert_array_equal(reduce_mantissa(np.nextafter(high, below), bits), stored)
    assert not np.any(reduce_mantissa(np.nextafter(low, below), bits) == stored)
    assert not np.any(reduce_mantissa(high, bits) == stored)
    assert np.all(np.nextafter(low, top) <= np.nextafter(high, below))
    mirror_low, mirror_high = rounding_cell(-stored, bits)
    np.testing.assert_array_equal(mirror_low, -rounding_cell(stored, bits)[1])
    np.testing.assert_array_equal(mirror_high, -rounding_cell(stored, bits)[0])


@pytest.mark.parametrize("bits", [1, 6, 10, 14])
def test_dequantize_draws_uniformly_in_the_cell_and_rounds_back(bits):
    rng = np.random.default_rng(7)
    special = [0.0, -0.0, np.inf, -np.inf, np.nan, 1e-40]  # kept: no cell to fill
    stored = reduce_mantissa(np.r_[rng.normal(0, 3, 50_000), special].astype(np.float32), bits)
    drawn = dequantize(stored, bits, np.random.default_rng(1))
    np.testing.assert_array_equal(reduce_mantissa(drawn, bits), stored)  # NaN == NaN here
    np.testing.assert_array_equal(drawn[-len(special):], stored[-len(special):])
    low, high = rounding_cell(stored[:-len(special)], bits)
    position = (drawn[:-len(special)] - low) / (high - low)
    assert abs(position.mean() - 0.5) < 0.01 and abs(position.var() - 1 / 12) < 0.005
    assert len(np.unique(drawn)) > 0.99 * len(drawn)
    again = dequantize(stored, bits, np.random.default_rng(1))
    np.testing.assert_array_equal(drawn, again)
    np.testing.assert_array_equal(dequantize(stored, FULL_PRECISION, rng), stored)


def test_every_float_branch_is_written_at_nanoaod_precision(tmp_path):
    """Random values in every float branch of every collection come back on NanoAOD's grid."""
    schema = load_schema()
    rng = np.random.default_rng(5)
    n = 50
    chunk = {"run": np.ones(n), "luminosityBlock": np.ones(n), "event": np.arange(n)}
    for name, spec in schema.scalars.items():
        if spec.dtype == np.float32:
            chunk[name] = rng.normal(0.0, 30.0, n)
    for name, coll in schema.collections.items():
        floats = {f: s for f, s in coll.branches.items() if s.dtype == np.float32}
        if coll.jagged:
            counts = rng.integers(0, 4, n)
            chunk[name] = ak.unflatten(
                ak.zip({f: rng.normal(0.0, 30.0, counts.sum()) for f in floats}), counts)
        else:
            chunk[name] = ak.zip({f: rng.normal(0.0, 30.0, n) for f in floats})
    path = tmp_path / "floats.root"
    write_nanoaod(path, chunk)
    arrays = uproot.open(path)["Events"].arrays(library="np")
    checked = 0
    for name, spec in schema.branches.items():
        if spec.dtype != np.float32 or name not in arrays:
            continue
        values = np.concatenate([np.atleast_1d(v) for v in arrays[name]])
        assert mantissa_bits_used(values) == spec.precision, name  # 50+ values use every bit
        checked += 1
    assert checked == sum(s.dtype == np.float32 for s in schema.branches.values())

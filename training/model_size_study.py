r"""Model-size study of one object flow: held-out fidelity and sampling speed as a function of
the flow's size and of the training-set size, so that the shipped configuration can be picked
from a table (issue 14, item 3).

For every grid point (architecture x fraction of the training events) the script

1. **trains** the flow with the code path of ``flashsim train``: the object module's
   ``training_tables`` on :func:`~flashsim.objects.common.read_training_chunk` of ``--data``,
   :func:`~flashsim.models.training.load_config` of ``--config`` (the model's settings there,
   its ``architecture`` updated by the grid point's keys, ``--epochs`` if given) and
   :func:`~flashsim.models.training.train_model`. A fraction :math:`f` keeps
   :math:`\mathrm{round}(f N)` of the :math:`N` training events, drawn at random once
   (stream ``study_training_events`` of the config's seed), so smaller fractions are subsets of
   larger ones, every process of ``--data`` keeps its share, and the training/validation split
   stays by event (``train_model`` splits the kept events by their hash);
2. **measures fidelity**: flash-simulates the GEN events of the held-out NANOAODSIM file
   ``--heldout`` (:func:`flashsim.simulation.simulate`) with this flow and the shipped models
   (``flashsim/pretrained``, flows without refiners) for everything else, and runs the
   classifier two-sample test of ``flashsim validate`` on the flow's view
   (:func:`flashsim.validation.compare.compare_view`: gradient-boosted classifier, split by GEN
   event, the GEN partner's features beside the RECO branches for matched objects). The table
   gives its AUC (0.5: indistinguishable) ± its spread over the classifier's splits, and the
   three branches whose removal costs the classifier most AUC;
3. **measures speed**: objects per second of CPU time of the flow's ``sample`` on one torch
   thread (:func:`flashsim.runtime.one_torch_thread`,
   :func:`flashsim.benchmark.cpu_ms`), on the contexts of the objects of the held-out file.

Views: ``muon_flow`` -> ``Muon``, ``electron_flow`` -> ``Electron`` (all RECO electrons),
``jet_flow`` -> ``Jet_matched``, ``fake_jet_flow`` -> ``Jet_unmatched``, ``met_flow`` ->
``MET`` (MET given GenMET; it also depends on the simulated muons and jets).

Output in ``--out``: ``study.json`` (inputs and every point: architecture, fraction, events and
rows, parameters, epochs run, best validation loss, training seconds, held-out AUC and its
spread, objects/s), ``study.md`` (the points as a markdown table sorted by AUC) and
``models/POINT/`` (each point's artifact and loss curve). Both files are rewritten after every
point; a rerun with the same inputs skips the points already in ``study.json`` (and
``train_model`` resumes an interrupted training from its checkpoint).

The full study (samples of ``training/train_defaults.sh``, a held-out ``vbf_hmumu`` sample of a
seed no recipe uses; about 20 minutes to 3 hours per point on one CPU core, so run it in the
background or on a GPU machine with ``--device cuda``)::

    S=training/samples R=refdet3
    flashsim generate vbf_hmumu -n 20000 --seed 1000314 --refsim -o $S/vbf_hmumu_20000_seed1000314_$R.root
    OMP_NUM_THREADS=1 python training/model_size_study.py --object muon_flow \
        --data $S/dy_mumu_60000_seed101_$R.root --data $S/ttbar_20000_seed102_$R.root \
        --data $S/ggh_hmumu_20000_seed103_$R.root \
        --heldout $S/vbf_hmumu_20000_seed1000314_$R.root \
        --architecture transforms=5,hidden=96x96,bins=8,passes=2 \
        --architecture transforms=8,hidden=256x256,bins=16,passes=2 \
        --architecture transforms=5,hidden=128x128,bins=8,passes=null \
        --fractions 0.1 0.3 1.0 --out runs/study_muon_flow
    OMP_NUM_THREADS=1 python training/model_size_study.py --object jet_flow \
        --data $S/dy_mumu_60000_seed101_$R.root --data $S/ttbar_20000_seed102_$R.root \
        --data $S/ggh_hmumu_20000_seed103_$R.root --data $S/dy_ee_12000_seed104_$R.root \
        --data $S/ttbar_6000_seed105_$R.root \
        --heldout $S/vbf_hmumu_20000_seed1000314_$R.root \
        --architecture transforms=5,hidden=96x96,bins=8,passes=2 \
        --architecture transforms=8,hidden=256x256,bins=16,passes=2 \
        --fractions 0.1 0.3 1.0 --out runs/study_jet_flow

An ``--architecture`` is ``KEY=VALUE`` pairs separated by commas: ``transforms`` (number of
spline transforms), ``hidden`` (hidden layer widths, ``96x96``), ``bins`` (spline bins),
``passes`` (2: coupling, ``null``: autoregressive); keys left out keep the config's value.
Without ``--architecture`` the grid has the config's architecture only.
"""

from __future__ import annotations

import argparse
import math
import shutil
import sys
import tempfile
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from flashsim.errors import FlashSimError

__all__ = ["FLOW_VIEWS", "architecture_label", "main", "parse_architecture", "run_study"]

FLOW_VIEWS = {"muon_flow": "Muon", "electron_flow": "Electron", "jet_flow": "Jet_matched",
              "fake_jet_flow": "Jet_unmatched", "met_flow": "MET"}
"""The flows the study can measure, with the ``flashsim validate`` view that shows each."""

_ARCHITECTURE_KEYS = {"transforms": "transforms", "hidden": "hidden_features", "bins": "bins",
                      "passes": "passes"}
_EXAMPLE = "transforms=5,hidden=96x96,bins=8,passes=2"


def parse_architecture(text: str) -> dict[str, Any]:
    """``"transforms=5,hidden=96x96,bins=8,passes=2"`` -> the flow architecture keys of
    ``training/configs/default.yaml`` (``passes=null``: autoregressive). Raises
    :class:`FlashSimError` naming the problem for a malformed string.

    >>> parse_architecture("transforms=3,hidden=64x32,passes=null")
    {'transforms': 3, 'hidden_features': [64, 32], 'passes': None}
    """
    architecture: dict[str, Any] = {}
    for pair in text.split(","):
        key, equals, value = (part.strip() for part in pair.partition("="))
        problem = None
        if not equals or not value:
            problem = f"{pair.strip()!r} is not KEY=VALUE"
        elif key not in _ARCHITECTURE_KEYS:
            problem = f"unknown key {key!r} (keys: {', '.join(_ARCHITECTURE_KEYS)})"
        elif _ARCHITECTURE_KEYS[key] in architecture:
            problem = f"{key} is given twice"
        else:
            try:
                architecture[_ARCHITECTURE_KEYS[key]] = _architecture_value(key, value)
            except ValueError:
                problem = f"{key}={value} is not a positive integer" + (
                    "s joined by x" if key == "hidden" else " or null" if key == "passes" else "")
        if problem:
            raise FlashSimError(f"malformed --architecture {text!r}: {problem}; write it like "
                                f"{_EXAMPLE}")
    return architecture


def _architecture_value(key: str, value: str) -> int | list[int] | None:
    if key == "passes" and value.lower() in ("null", "none"):
        return None
    numbers = [int(v) for v in value.split("x")] if key == "hidden" else [int(value)]
    if min(numbers) < 1:
        raise ValueError(value)
    return numbers if key == "hidden" else numbers[0]


def architecture_label(architecture: dict[str, Any]) -> str:
    """The architecture in the ``--architecture`` syntax (for tables and directory names)."""
    parts = []
    for key, name in _ARCHITECTURE_KEYS.items():
        if name in architecture:
            value = architecture[name]
            parts.append(f"{key}={'x'.join(map(str, value)) if key == 'hidden' else value}"
                         if value is not None else f"{key}=null")
    return ",".join(parts)


def _point_name(label: str, fraction: float) -> str:
    """Directory name of a grid point: ``transforms5_hidden96x96_bins8_passes2_f0.3``."""
    return f"{label.replace('=', '').replace(',', '_')}_f{fraction:g}"


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="model_size_study.py", description=__doc__.splitlines()[0],
        epilog=f"--architecture example: {_EXAMPLE}")
    parser.add_argument("--object", required=True, dest="flow",
                        help=f"the flow to study: {', '.join(FLOW_VIEWS)}")
    parser.add_argument("--data", action="append", required=True, type=Path,
                        help="NANOAODSIM training file (repeatable)")
    parser.add_argument("--heldout", required=True, type=Path,
                        help="held-out NANOAODSIM file (a process and seed never trained on)")
    parser.add_argument("--architecture", action="append", default=None,
                        help="grid point, e.g. transforms=5,hidden=96x96,bins=8,passes=2 "
                             "(repeatable; default: the config's architecture)")
    parser.add_argument("--fractions", nargs="+", type=float, default=[1.0],
                        help="fractions of the training events (default: 1.0)")
    parser.add_argument("--epochs", type=int, default=None,
                        help="maximum epochs (default: the config's)")
    parser.add_argument("--config", type=Path, default=Path("training/configs/default.yaml"),
                        help="training config (default: training/configs/default.yaml)")
    parser.add_argument("--bayesian", action="store_true",
                        help="train Bayesian flows (config key bayesian); the held-out AUC "
                             "and speed are those of the mean weights")
    parser.add_argument("--device", choices=["cpu", "cuda"], default=None,
                        help="where the flows train (default: the config's)")
    parser.add_argument("--seed", type=int, default=1,
                        help="seed of the flash simulation and of the classifier test")
    parser.add_argument("--timing-repeats", type=int, default=5,
                        help="sampling calls timed per point (after one warm-up call)")
    parser.add_argument("--out", required=True, type=Path, help="output directory")
    parser.add_argument("--quiet", action="store_true", help="no progress bars")
    return parser


def run_study(args: argparse.Namespace) -> dict[str, Any]:
    """Train, simulate and measure every grid point of ``args`` (see the module docstring);
    return the study as written to ``args.out / "study.json"``."""
    from flashsim.models.flows import DEFAULT_FLOW
    from flashsim.models.training import load_config
    from flashsim.objects import MODEL_SPECS, OBJECTS
    from flashsim.objects.common import read_training_chunk
    from flashsim.seeds import seeded_rng
    from flashsim.validation.compare import load_sample

    if args.flow not in FLOW_VIEWS:
        raise FlashSimError(f"unknown --object {args.flow!r}: the study measures the flows "
                            f"{', '.join(FLOW_VIEWS)}")
    grid = [parse_architecture(text) for text in args.architecture or []]
    wrong = [f for f in args.fractions if not 0.0 < f <= 1.0]
    if wrong:
        raise FlashSimError(f"--fractions {wrong} are outside (0, 1]: give fractions of the "
                            "training events, such as 0.1 0.3 1.0")
    if (args.epochs is not None and args.epochs < 1) or args.timing_repeats < 1:
        raise FlashSimError("--epochs and --timing-repeats must be at least 1")
    if not args.heldout.is_file():
        raise FlashSimError(f"held-out file {args.heldout} does not exist: make one with "
                            "`flashsim generate vbf_hmumu -n N --seed S --refsim -o FILE`")
    spec = MODEL_SPECS[args.flow]
    module = OBJECTS[spec.object]
    base = load_config(args.config, args.flow)
    # every key spelt out, so that labels and directory names say the whole architecture
    base_architecture = {**DEFAULT_FLOW, **base.architecture}
    grid = [{**base_architecture, **point} for point in grid] or [base_architecture]

    chunk, provenance = read_training_chunk(list(args.data), module.TRAINING_NAMES)
    heldout_chunk, _ = read_training_chunk([args.heldout], module.TRAINING_NAMES)
    contexts = module.training_tables(heldout_chunk)[args.flow].context
    n_heldout = len(next(iter(contexts.values())))
    if n_heldout == 0:
        raise FlashSimError(f"{args.heldout} has no object that {args.flow} simulates: pass a "
                            "held-out NANOAODSIM file with them")
    full_sample = load_sample([args.heldout], "full")
    n_events = len(chunk["event"])
    order = seeded_rng(base.seed, "study_training_events").permutation(n_events)

    inputs = {"object": args.flow, "view": FLOW_VIEWS[args.flow],
              "data": [str(p) for p in args.data], "heldout": str(args.heldout),
              "config": str(args.config), "epochs": args.epochs, "device": args.device,
              "bayesian": args.bayesian,
              "seed": args.seed, "training_events": n_events,
              "heldout_objects": n_heldout}
    out = Path(args.out)
    study = _previous_study(out, inputs)
    done = {(p["architecture"], p["fraction"]) for p in study["points"]}
    progress = not args.quiet and sys.stderr.isatty()
    for architecture in grid:
        label = architecture_label(architecture)
        for fraction in args.fractions:
            if (label, fraction) in done:
                continue
            keep = np.zeros(n_events, dtype=bool)
            keep[order[:max(1, round(fraction * n_events))]] = True
            subset = {name: values[keep] for name, values in chunk.items()}
            table = module.training_tables(subset)[args.flow]
            config = load_config(args.config, args.flow, architecture=architecture,
                                 epochs=args.epochs, device=args.device,
                                 bayesian=args.bayesian or None)
            point = _measure_point(spec, table, config, contexts, full_sample, args,
                                   out / "models" / _point_name(label, fraction),
                                   {**provenance, "events": int(keep.sum()),
                                    "study_fraction": fraction}, progress)
            point.update(architecture=label, fraction=fraction, events=int(keep.sum()))
            study["points"].append(point)
            _write(study, out)
            print(f"{label} fraction {fraction:g}: AUC {_auc_text(point)}, "
                  f"{point['objects_per_s']:.0f} objects/s, "
                  f"{point['training_seconds']:.0f} s training", flush=True)
    _write(study, out)
    return study


def _previous_study(out: Path, inputs: dict[str, Any]) -> dict[str, Any]:
    """The study already in ``out`` with the same inputs (its points are skipped), else a new
    one; a study of other inputs is an error, not overwritten."""
    import json

    path = out / "study.json"
    if not path.is_file():
        return {"inputs": inputs, "points": []}
    study = json.loads(path.read_text())
    if study.get("inputs") != inputs:
        raise FlashSimError(f"{path} holds a study of other inputs ({study.get('inputs')}): "
                            "pass another --out, or the same options to resume it")
    return study


def _measure_point(spec, table, config, contexts: dict[str, np.ndarray], full_sample,
                   args: argparse.Namespace, model_dir: Path, provenance: dict[str, Any],
                   progress: bool) -> dict[str, Any]:
    """Train one grid point into ``model_dir``; its held-out AUC and sampling speed."""
    from flashsim.benchmark import cpu_ms
    from flashsim.models.artifact import PRETRAINED, save_model, write_manifest
    from flashsim.models.training import train_model
    from flashsim.runtime import one_torch_thread
    from flashsim.seeds import seeded_rng
    from flashsim.simulation import simulate
    from flashsim.validation.compare import compare_view, load_sample

    model = train_model(spec, table, model_dir, config, provenance, progress=progress)
    checkpoints = model_dir / "checkpoint"  # train_model leaves it empty after a full run
    if checkpoints.is_dir() and not any(checkpoints.iterdir()):
        checkpoints.rmdir()
    args.out.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=args.out, prefix="simulation_") as scratch:
        models = Path(scratch) / "models"
        models.mkdir()
        for path in PRETRAINED.glob("*.json"):
            if path.stem not in ("manifest", spec.name):
                shutil.copy2(path, models / path.name)
                shutil.copy2(path.with_suffix(".pt"), models / f"{path.stem}.pt")
        save_model(model, models)
        write_manifest(models)
        flash = Path(scratch) / "flash.root"
        simulate([args.heldout], flash, models=models, seed=args.seed, refine=False)
        test = compare_view(FLOW_VIEWS[spec.name], full_sample, load_sample([flash], "flash"),
                            seed=args.seed)["classifier"]
    rng = seeded_rng(args.seed, "study_sampling")
    with one_torch_thread():
        ms = cpu_ms(args.timing_repeats, model.sample, contexts, rng)
    n_objects = len(next(iter(contexts.values())))
    training = model.meta["training"]
    return {
        "config": {"epochs": config.epochs, "batch_size": config.batch_size, "lr": config.lr,
                   "seed": config.seed, "architecture": model.meta["architecture"]},
        "rows_train": training["rows_train"], "rows_validation": training["rows_validation"],
        "parameters": sum(p.numel() for p in model.module.parameters()),
        "epochs_run": model.meta["metrics"]["epochs_run"],
        "best_validation_loss": model.meta["metrics"]["validation_loss"],
        "training_seconds": training["seconds"], "device": training["device"],
        "auc": test["auc"], "auc_std": test["auc_std"], "auc_sigma": test["auc_sigma"],
        "classifier_rows": [test["n_full"], test["n_flash"]],
        "auc_lost_without": test["attribution"]["dropped"][:3],
        "objects_per_s": n_objects / (ms / 1e3) if ms > 0 else math.nan,
        "timed_objects": n_objects,
    }


def _auc_text(point: dict[str, Any]) -> str:
    auc, spread = point["auc"], point["auc_std"]
    if auc is None or not math.isfinite(auc):
        return "n/a"
    return f"{auc:.3f}" + (f" ± {spread:.3f}" if spread is not None and math.isfinite(spread)
                           else "")


def _markdown(study: dict[str, Any]) -> str:
    inputs = study["inputs"]

    def by_auc(point: dict[str, Any]) -> tuple[bool, float]:
        auc = point["auc"]
        finite = auc is not None and math.isfinite(auc)
        return (not finite, auc if finite else 0.0)

    lines = [f"# Model-size study of {inputs['object']} (view {inputs['view']})", "",
             f"Trained on {inputs['training_events']} events of {', '.join(inputs['data'])}; "
             f"held out: {inputs['heldout']} ({inputs['heldout_objects']} objects). AUC: "
             "classifier two-sample test of `flashsim validate` on the held-out events "
             "(0.5: indistinguishable), ± its spread over the classifier's splits; objects/s: "
             "sampling on one CPU thread.", "",
             "| architecture | fraction | events | rows (+ validation) | parameters | epochs | "
             "best validation loss | held-out AUC | AUC lost without | objects/s | "
             "training s |",
             "|---|---|---|---|---|---|---|---|---|---|---|"]
    for p in sorted(study["points"], key=by_auc):
        lost = ", ".join(f"{name} {value:.3f}" for name, value in p["auc_lost_without"]
                         if value is not None)
        lines.append(
            f"| {p['architecture']} | {p['fraction']:g} | {p['events']} | {p['rows_train']} "
            f"(+{p['rows_validation']}) | {p['parameters']} | {p['epochs_run']} | "
            f"{p['best_validation_loss']:.4f} | {_auc_text(p)} | {lost} | "
            f"{'n/a' if p['objects_per_s'] is None else format(p['objects_per_s'], '.0f')} | "
            f"{p['training_seconds']:.0f} |")
    return "\n".join(lines) + "\n"


def _write(study: dict[str, Any], out: Path) -> None:
    """``study.json`` and ``study.md``, each written to a temporary name and renamed."""
    import json

    from flashsim.validation.report import jsonable

    out.mkdir(parents=True, exist_ok=True)
    study = jsonable(study)
    for name, text in (("study.json", json.dumps(study, indent=1, allow_nan=False) + "\n"),
                       ("study.md", _markdown(study))):
        staging = out / f".{name}.partial"
        staging.write_text(text, encoding="utf-8")
        staging.replace(out / name)


def main(argv: Sequence[str] | None = None) -> int:
    """Command-line entry: run the study; a user error is one line on stderr, exit status 2."""
    args = _parser().parse_args(argv)
    try:
        run_study(args)
    except FlashSimError as error:
        print(f"model_size_study.py: error: {' '.join(str(error).split())}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())

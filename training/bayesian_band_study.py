r"""Band width of Bayesian flows versus their training-set size, and its coverage of the full
simulation (issue 17: reproduce the finding of Bellagente's thesis "Go with the Flow", ch. 3,
and of Bellagente et al., SciPost Phys. 13, 003 (2022), on our data).

For each model directory (``--models``, e.g. the Bayesian points of
``training/model_size_study.py --bayesian --fractions 0.1 0.3 1.0``) the script takes the
flow's held-out rows: the GEN contexts and the full-simulation targets of the objects of
``--heldout`` (a NANOAODSIM file of a process and seed the flows never saw), read as training
reads them (:func:`~flashsim.objects.common.read_training_chunk`, the object module's
``training_tables``). It samples the flow once per weight draw :math:`k = 0..K-1`
(:meth:`~flashsim.models.artifact.Model.use_weight_draw`, the draws of
``flashsim simulate --model-draws K``), every draw with the same latent noise, so the draws
differ by their weights alone. Per observable (a target column of the flow: for
``muon_flow`` the pT response :math:`p_T^{reco}/p_T^{gen}` and ``pfRelIso04_all`` by default)
and per bin :math:`i` of the unit-normalised histogram,
:func:`flashsim.validation.metrics.model_band` gives the flash value :math:`\bar q_i` (mean
over draws), the model uncertainty :math:`\sigma_i` (standard deviation over draws) and
whether the full simulation lies within :math:`\sigma_i` ⊕ statistical (1σ, 2σ coverage). The
relative uncertainty :math:`\sigma_i / \bar q_i` is the band width of the thesis' figures.

The bins are shared by all models: the central 99.8% of the full simulation (a ``log``
target, such as an isolation, in logarithmic bins, below them a bin :math:`[0, x_{min})` for
its zeros), over- and underflow folded into the edge bins. The table splits them into
the *core* (bins inside the central 68% of the full simulation) and the *tails* (bins outside
its central 95%), where training rows are few and the thesis finds the band widest.

Output in ``--out``: ``bands.json`` (per model and observable: the bin edges and every per-bin
array, the medians and coverages), ``bands.md`` (the table) and ``band_OBSERVABLE.png`` (the
relative uncertainty per bin of every model, under the full simulation's distribution)::

    python training/bayesian_band_study.py --flow muon_flow \
        --heldout training/samples/vbf_hmumu_20000_seed1000314_refdet3.root \
        --models runs/study_muon_flow/models/*_f0.1 --models runs/study_muon_flow/models/*_f0.3 \
        --models runs/study_muon_flow/models/*_f1 --draws 20 --out runs/bands_muon_flow
"""

from __future__ import annotations

import argparse
import json
import math
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from flashsim.errors import FlashSimError

__all__ = ["DEFAULT_OBSERVABLES", "band_edges", "main", "run_study"]

DEFAULT_OBSERVABLES = {"muon_flow": ("pt_ratio", "pfRelIso04_all"),
                       "jet_flow": ("pt_ratio", "qgl")}
"""Observables of each flow when ``--observable`` is not given (``pt_ratio``: the pT
response RECO/GEN)."""

_CORE, _TAILS = 0.68, 0.95


def band_edges(full: np.ndarray, logarithmic: bool, n_bins: int = 30) -> np.ndarray:
    """Bin edges over the central 99.8% of ``full``; ``logarithmic``: log-spaced over its
    positive values, with a first bin from 0 when ``full`` has zeros (an isolation's).

    >>> band_edges(np.linspace(0.0, 1.0, 1001), logarithmic=False, n_bins=2).round(3)
    array([0.001, 0.5  , 0.999])
    """
    full = np.asarray(full, np.float64)
    full = full[np.isfinite(full)]
    if not logarithmic:
        lo, hi = np.quantile(full, [0.001, 0.999])
        return np.linspace(lo, hi if hi > lo else lo + 1.0, n_bins + 1)
    positive = full[full > 0]
    lo, hi = np.quantile(positive, [0.001, 0.999])
    edges = np.geomspace(lo, hi if hi > lo else 10 * lo, n_bins + 1)
    return np.concatenate([[0.0], edges]) if (full <= 0).any() else edges


def _bins_between(full: np.ndarray, edges: np.ndarray, probability: float) -> np.ndarray:
    """Bins whose centre lies within the central ``probability`` of ``full``."""
    tail = (1.0 - probability) / 2
    lo, hi = np.quantile(full[np.isfinite(full)], [tail, 1.0 - tail])
    centres = 0.5 * (edges[1:] + edges[:-1])
    return (centres >= lo) & (centres <= hi)


def _median(values: np.ndarray) -> float:
    values = values[np.isfinite(values)]
    return float(np.median(values)) if values.size else math.nan


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="bayesian_band_study.py",
                                     description=__doc__.splitlines()[0])
    parser.add_argument("--flow", required=True,
                        help="the Bayesian flow, e.g. muon_flow (an artifact in every --models)")
    parser.add_argument("--models", action="append", required=True, type=Path,
                        help="model directory holding the flow (repeatable, e.g. one per "
                             "training fraction)")
    parser.add_argument("--heldout", required=True, type=Path,
                        help="held-out NANOAODSIM file (a process and seed never trained on)")
    parser.add_argument("--observable", action="append", default=None,
                        help="target column to histogram (repeatable; default: "
                             + "; ".join(f"{k}: {', '.join(v)}"
                                         for k, v in DEFAULT_OBSERVABLES.items()) + ")")
    parser.add_argument("--draws", type=int, default=20, help="weight draws K (default 20)")
    parser.add_argument("--seed", type=int, default=1, help="seed of the latent noise")
    parser.add_argument("--out", required=True, type=Path, help="output directory")
    return parser


def run_study(args: argparse.Namespace) -> dict[str, Any]:
    """The bands of every model of ``args`` (module docstring); returns ``bands.json``'s
    content after writing the outputs."""
    from flashsim.models.artifact import load_model
    from flashsim.objects import MODEL_SPECS, OBJECTS
    from flashsim.objects.common import read_training_chunk
    from flashsim.seeds import seeded_rng
    from flashsim.validation.metrics import model_band

    if args.flow not in MODEL_SPECS or MODEL_SPECS[args.flow].kind != "flow":
        flows = sorted(name for name, spec in MODEL_SPECS.items() if spec.kind == "flow")
        raise FlashSimError(f"unknown --flow {args.flow!r}: give one of {', '.join(flows)}")
    if args.draws < 2:
        raise FlashSimError(f"--draws {args.draws}: a band needs at least 2 weight draws")
    if not args.heldout.is_file():
        raise FlashSimError(f"held-out file {args.heldout} does not exist: make one with "
                            "`flashsim generate vbf_hmumu -n N --seed S --refsim -o FILE`")
    models = [load_model(directory, args.flow) for directory in args.models]
    observables = args.observable or list(DEFAULT_OBSERVABLES.get(args.flow, ()))
    transforms = {c.spec.name: c.spec.transform for c in models[0].target.columns}
    unknown = [name for name in observables if name not in transforms]
    if not observables or unknown:
        raise FlashSimError(f"--observable {unknown or '(none)'}: give target columns of "
                            f"{args.flow}: {', '.join(transforms)}")
    deterministic = [str(d) for d, m in zip(args.models, models, strict=True) if not m.bayesian]
    if deterministic:
        raise FlashSimError(f"{args.flow} in {', '.join(deterministic)} is not Bayesian: train "
                            "it with `flashsim train --bayesian` (or model_size_study.py "
                            "--bayesian)")

    module = OBJECTS[MODEL_SPECS[args.flow].object]
    chunk, _ = read_training_chunk([args.heldout], module.TRAINING_NAMES)
    table = module.training_tables(chunk)[args.flow]
    n_rows = len(table)
    if n_rows == 0:
        raise FlashSimError(f"{args.heldout} has no object that {args.flow} simulates")
    edges = {name: band_edges(table.target[name], transforms[name] == "log")
             for name in observables}
    result: dict[str, Any] = {
        "inputs": {"flow": args.flow, "heldout": str(args.heldout), "heldout_rows": n_rows,
                   "draws": args.draws, "seed": args.seed, "observables": observables},
        "models": []}
    for directory, model in zip(args.models, models, strict=True):
        noise = seeded_rng(args.seed, "band_study_noise").standard_normal(
            (n_rows, len(model.target.columns)))
        draws = []
        for k in range(args.draws):
            model.use_weight_draw(k)
            draws.append(model.sample(table.context, np.random.default_rng(0), noise=noise))
        model.use_weight_draw(None)
        training = model.meta["training"]
        entry = {"models": str(directory), "rows_train": training["rows_train"],
                 "events": training["events"],
                 "median_log_var": training.get("bayesian", {}).get("median_log_var"),
                 "observables": {}}
        for name in observables:
            full = np.asarray(table.target[name], np.float64)
            band = model_band(full, [d[name] for d in draws], edges[name])
            relative = np.divide(band["model_sigma"], band["flash"],
                                 out=np.full_like(band["flash"], np.nan),
                                 where=band["flash"] > 0)
            core = _bins_between(full, edges[name], _CORE)
            tails = ~_bins_between(full, edges[name], _TAILS)
            entry["observables"][name] = {
                "edges": edges[name].tolist(), "full": band["full"].tolist(),
                "flash": band["flash"].tolist(), "model_sigma": band["model_sigma"].tolist(),
                "relative_model_sigma": relative.tolist(),
                "median_relative_core": _median(relative[core]),
                "median_relative_tails": _median(relative[tails]),
                "coverage_1sigma": band["coverage_1sigma"],
                "coverage_2sigma": band["coverage_2sigma"]}
        result["models"].append(entry)
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "bands.json").write_text(json.dumps(result, indent=1))
    (args.out / "bands.md").write_text(_markdown(result))
    for name in observables:
        _plot(result, name, args.out / f"band_{name}.png")
    return result


def _markdown(result: dict[str, Any]) -> str:
    inputs = result["inputs"]
    lines = [f"# Band width of Bayesian {inputs['flow']} versus training-set size", "",
             f"Held out: {inputs['heldout']} ({inputs['heldout_rows']} rows), "
             f"{inputs['draws']} weight draws. Relative model uncertainty σ/q per bin of the "
             f"unit-normalised histogram: median over the core bins (central {_CORE:.0%} of "
             f"the full simulation) and the tail bins (outside its central {_TAILS:.0%}); "
             "coverage: bins where the full simulation lies within the band ⊕ statistical "
             "(well calibrated: 68%, 95%).", "",
             "| training rows | median log σ² | observable | σ/q core | σ/q tails "
             "| coverage 1σ | coverage 2σ |", "|---|---|---|---|---|---|---|"]
    for entry in result["models"]:
        log_var = entry["median_log_var"]
        for name, band in entry["observables"].items():
            lines.append(f"| {entry['rows_train']} | "
                         f"{'n/a' if log_var is None else f'{log_var:.2f}'} | {name} | "
                         f"{band['median_relative_core']:.2%} | "
                         f"{band['median_relative_tails']:.2%} | "
                         f"{band['coverage_1sigma']:.0%} | {band['coverage_2sigma']:.0%} |")
    return "\n".join(lines) + "\n"


def _plot(result: dict[str, Any], name: str, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    with plt.style.context("default"):
        figure, (top, bottom) = plt.subplots(2, 1, sharex=True, figsize=(7, 7),
                                             gridspec_kw={"height_ratios": [1, 1.3]})
        first = result["models"][0]["observables"][name]
        edges = np.asarray(first["edges"])
        top.stairs(first["full"], edges, color="black", label="full simulation")
        for entry in result["models"]:
            band = entry["observables"][name]
            label = f"{entry['rows_train']} training rows"
            top.stairs(band["flash"], edges, label=f"flash (mean of draws), {label}")
            bottom.stairs(np.nan_to_num(band["relative_model_sigma"], nan=0.0), edges,
                          label=label)
        top.set_yscale("log")
        top.set_ylabel("fraction per bin")
        top.legend(fontsize=8)
        bottom.set_yscale("log")
        bottom.set_ylabel("model σ / flash, per bin")
        bottom.set_xlabel(name)
        if edges[0] == 0.0 and len(edges) > 2:
            bottom.set_xscale("symlog", linthresh=edges[1])
        bottom.set_xlim(edges[0], edges[-1])
        bottom.legend(fontsize=8)
        figure.tight_layout()
        figure.savefig(path, dpi=120)
        plt.close(figure)


def main(argv: Sequence[str] | None = None) -> int:
    """Command-line entry: run the study and print its table; a user error is one line on
    stderr, exit status 2."""
    args = _parser().parse_args(argv)
    try:
        run_study(args)
    except FlashSimError as error:
        print(f"bayesian_band_study.py: error: {' '.join(str(error).split())}", file=sys.stderr)
        return 2
    print((args.out / "bands.md").read_text(), end="")
    return 0


if __name__ == "__main__":
    sys.exit(main())

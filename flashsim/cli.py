"""The ``flashsim`` command: parses options and calls the library, nothing more.

Every error a user can cause is raised as :class:`flashsim.FlashSimError` and
printed here as one line, with exit status 2 and no traceback.
"""

from __future__ import annotations

import sys
from pathlib import Path

import click

from flashsim.errors import FlashSimError

__all__ = ["main"]

def _show_progress(quiet: bool) -> bool:
    """Progress bars go to stderr: only to a terminal, and never with ``--quiet``."""
    return not quiet and sys.stderr.isatty()


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="flashsim")
def cli() -> None:
    """flashsim: generator-level events to CMS NANOAOD with conditional normalizing flows."""


@cli.command()
@click.argument("process", required=False)
@click.option("-n", "--events", "n_events", type=int, help="Number of events to generate.")
@click.option("-o", "--output", type=click.Path(dir_okay=False, path_type=Path), help="Output ROOT file.")
@click.option("--seed", type=int, default=1, show_default=True, help="Random seed of the run.")
@click.option("--jobs", type=int, default=1, show_default=True, help="Worker processes.")
@click.option("--pileup", "pileup_mean", type=float, default=30.0, show_default=True,
              help="Mean number of pileup interactions.")
@click.option("--refsim", is_flag=True,
              help="Also run the reference detector and write NANOAODSIM (GEN + RECO).")
@click.option("--pileup-reuse", type=float, default=None,
              help="With --refsim: times each minimum-bias event of a chunk's pileup pool is "
                   "overlaid on average (default: detector v3's pool, about 30 at --pileup 30; "
                   "3 halves the generation rate).")
@click.option("--list", "list_processes", is_flag=True, help="List the processes and exit.")
@click.option("--quiet", is_flag=True, help="No progress bar (also off when stderr is not a "
                                             "terminal).")
def generate(process, n_events, output, seed, jobs, pileup_mean, refsim, pileup_reuse,
             list_processes, quiet) -> None:
    """Generate PROCESS with Pythia 8 and write GEN NanoAOD (NANOAODSIM with --refsim)."""
    from flashsim.generation import PROCESSES

    if list_processes:
        for name, description in PROCESSES.items():
            click.echo(f"{name:12s} {description.summary}")
        return
    if process is None or n_events is None or output is None:
        raise FlashSimError("generate needs PROCESS, -n N and -o FILE (see `flashsim generate --help`)")
    from flashsim.production import generate_file

    generate_file(process, n_events, output, seed=seed, jobs=jobs, pileup_mean=pileup_mean,
                  refsim=refsim, pileup_reuse=pileup_reuse, progress=_show_progress(quiet))


@cli.command()
@click.argument("inputs", nargs=-1, type=click.Path(path_type=Path))
@click.option("-o", "--output", required=True, type=click.Path(path_type=Path),
              help="A .root file, or a directory that receives one file per chunk + manifest.json.")
@click.option("--models", type=click.Path(path_type=Path), default=None,
              help="Model directory (default: the shipped models).")
@click.option("--oversample", type=int, default=1, show_default=True,
              help="Simulate every GEN event K times with independent noise.")
@click.option("--model-draws", type=int, default=1, show_default=True,
              help="Simulate every GEN event once per weight draw 0..K-1 of Bayesian models "
                   "(branch flashsimModelDraw); 1: their mean weights.")
@click.option("--executor", type=click.Choice(["iterative", "futures", "dask"]),
              default="iterative", show_default=True)
@click.option("--workers", type=int, default=1, show_default=True,
              help="Processes for the futures and dask executors.")
@click.option("--scheduler", default=None, help="Address of a running dask scheduler.")
@click.option("--chunksize", type=int, default=100_000, show_default=True,
              help="Events per chunk.")
@click.option("--seed", type=int, default=1, show_default=True)
@click.option("--backend", type=click.Choice(["torch", "onnx"]), default="torch",
              show_default=True)
@click.option("--generate", "process", default=None,
              help="Generate PROCESS with Pythia and simulate it directly (no INPUT files).")
@click.option("-n", "--events", "n_events", type=int, default=None,
              help="Events to generate with --generate.")
@click.option("--device", type=click.Choice(["cpu", "cuda"]), default="cpu", show_default=True,
              help="Where the networks run (cuda: torch backend, needs a GPU).")
@click.option("--batch-events", type=int, default=None,
              help="Output events simulated at once; memory grows with it "
                   "(default: 2000 on cpu, 20000 on cuda).")
@click.option("--refine/--no-refine", default=None,
              help="Sample the flows through their latent refiners (`flashsim refine`) when the "
                   "model directory has them (default, unless --weights); --no-refine: the flows "
                   "alone.")
@click.option("--weights", is_flag=True,
              help="Write DCTR weights of the flows alone (Muon_flashsimWeight, "
                   "Jet_flashsimWeight, ..., from the refiners' classifiers) and the event's "
                   "flashsimWeight (from the event classifier of `flashsim refine`).")
@click.option("--quiet", is_flag=True, help="No progress bars (also off when stderr is not a "
                                             "terminal).")
def simulate(inputs, output, models, oversample, model_draws, executor, workers, scheduler,
             chunksize, seed, backend, process, n_events, device, batch_events, refine,
             weights, quiet) -> None:
    """Flash-simulate GEN NanoAOD INPUT files (or --generate PROCESS -n N) into NANOAOD."""
    from flashsim import simulation
    from flashsim.runtime import BATCH_EVENTS, GPU_BATCH_EVENTS

    if batch_events is None:
        batch_events = BATCH_EVENTS if device == "cpu" else GPU_BATCH_EVENTS
    batching = {"device": device, "batch_events": batch_events, "model_draws": model_draws,
                "progress": _show_progress(quiet), "weights": weights,
                "refine": (not weights) if refine is None else refine}

    if process is not None:
        if inputs:
            raise FlashSimError("give either INPUT files or --generate PROCESS, not both")
        if n_events is None:
            raise FlashSimError("--generate needs -n N, the number of events")
        manifest = simulation.simulate_generated(process, n_events, output, models=models,
                                                 oversample=oversample, seed=seed,
                                                 backend=backend, **batching)
    else:
        manifest = simulation.simulate(list(inputs), output, models=models,
                                       oversample=oversample, executor=executor,
                                       workers=workers, scheduler=scheduler,
                                       chunksize=chunksize, seed=seed, backend=backend,
                                       **batching)
    for note in manifest.get("notes", []):
        click.echo(f"flashsim: note: {note}", err=True)
    seconds = manifest["seconds"]
    rate = f" ({manifest['events_out'] / seconds:.0f} events/s)" if seconds > 0 else ""
    click.echo(f"wrote {manifest['events_out']} events to {output} in {seconds:.1f} s{rate}")


@cli.command()
@click.argument("obj", metavar="OBJECT")
@click.option("--data", "data", multiple=True, required=True, type=click.Path(path_type=Path),
              help="NANOAODSIM training file (repeat for several).")
@click.option("-o", "--output", "model_dir", required=True, type=click.Path(path_type=Path),
              help="Model directory (artifacts + manifest.json; resumes from its checkpoint/).")
@click.option("--epochs", type=int, default=None, help="Maximum epochs (default from config: 50).")
@click.option("--batch-size", type=int, default=None, help="Rows per batch (default 2048).")
@click.option("--device", type=click.Choice(["cpu", "cuda"]), default=None)
@click.option("--config", "config_path", type=click.Path(path_type=Path), default=None,
              help="YAML with `defaults` and per-model `models.NAME` settings.")
@click.option("--seed", type=int, default=None, help="Training seed (default 1).")
@click.option("--bayesian", is_flag=True, default=None,
              help="Bayesian flows: Gaussian weights trained on the ELBO (config key bayesian).")
@click.option("--max-events", type=int, default=None, help="Use at most N events in total.")
@click.option("--model", "only", multiple=True,
              help="Train only this model of OBJECT, e.g. jet_efficiency (repeatable).")
@click.option("--quiet", is_flag=True, help="No progress bars (also off when stderr is not a "
                                             "terminal).")
def train(obj, data, model_dir, epochs, batch_size, device, config_path, seed, bayesian,
          max_events, only, quiet) -> None:
    """Train the models of OBJECT (muon, electron, jet, fake_jet, met or all) on NANOAODSIM files."""
    from flashsim.objects.training import train_object

    metrics = train_object(obj, list(data), model_dir, config_path=config_path,
                           max_events=max_events, only=list(only) or None,
                           epochs=epochs, batch_size=batch_size,
                           device=device, seed=seed, bayesian=bayesian or None,
                           progress=_show_progress(quiet))
    for name, m in metrics.items():
        if "skipped" in m:
            click.echo(f"{name:24s} not trained: {m['skipped']}")
            continue
        click.echo(f"{name:24s} validation {m['loss']} {m['validation_loss']:.4f} "
                   f"(best epoch {m['best_epoch']})")


@cli.command()
@click.option("--models", type=click.Path(path_type=Path), default=None,
              help="Model directory to refine (default: the shipped models).")
@click.option("--full", "full", multiple=True, required=True, type=click.Path(path_type=Path),
              help="Full-simulation NANOAODSIM file, not used to train the flows (repeatable).")
@click.option("-o", "--output", required=True, type=click.Path(path_type=Path),
              help="New model directory: the models plus refiners/.")
@click.option("--max-events", type=int, default=None, help="Use at most N events in total.")
@click.option("--epochs", type=int, default=None,
              help="Maximum epochs of the classifier and the refiner (default 40).")
@click.option("--seed", type=int, default=None, help="Refinement seed (default 1).")
@click.option("--quiet", is_flag=True, help="No progress bars (also off when stderr is not a "
                                             "terminal).")
def refine(models, full, output, max_events, epochs, seed, quiet) -> None:
    """Fit latent refiners (LaSeR) of the flows of --models, and the event classifier whose
    weight `simulate --weights` writes, on full-simulation files."""
    from flashsim.models.refinement import MIN_GAIN_SIGMAS, RefineConfig
    from flashsim.objects.refinement import refine_directory

    settings = {k: v for k, v in (("epochs", epochs), ("seed", seed)) if v is not None}
    metrics = refine_directory(models, list(full), output, max_events=max_events,
                               config=RefineConfig(**settings), progress=_show_progress(quiet))
    for name, m in metrics.items():
        if "skipped" in m:
            click.echo(f"{name:16s} no refiner: {m['skipped']}")
            continue
        if "auc_product_weighted" in m:  # the event classifier (flashsim.objects.event)
            click.echo(f"{name:16s} held-out event AUC (± {m['auc_null_sigma']:.3f}) flash "
                       f"{m['auc_flash']:.3f}, event-weighted {m['auc_dctr_weighted']:.3f} "
                       f"(ESS {m['effective_sample_size']:.2f}, mean {m['weight_mean']:.3f}), "
                       f"product-weighted {m['auc_product_weighted']:.3f} "
                       f"(ESS {m['product_effective_sample_size']:.2f})")
            continue
        click.echo(f"{name:16s} held-out AUC (± {m['auc_null_sigma']:.3f}) flash "
                   f"{m['auc_flash']:.3f}, refined {m['auc_refined']:.3f}, DCTR-weighted "
                   f"{m['auc_dctr_weighted']:.3f}; "
                   f"weights: mean {m['weight_mean']:.3f}, ESS {m['effective_sample_size']:.2f}; "
                   + ("samples through its refiner" if m["latent_refiner"] else
                      f"samples alone (gain below {MIN_GAIN_SIGMAS:g}σ)"))
    click.echo(f"wrote {output}")


@cli.command("export-onnx")
@click.argument("model_dir", type=click.Path(path_type=Path))
@click.option("-o", "--output", required=True, type=click.Path(path_type=Path),
              help="Directory for the ONNX files (plus a copy of the artifacts).")
def export_onnx(model_dir, output) -> None:
    """Export every model of MODEL_DIR to ONNX and check it against torch."""
    from flashsim.models.onnx_export import export_onnx as export

    for name, diff in export(model_dir, output).items():
        click.echo(f"{name:24s} max |onnx - torch| = {diff:.2e}")


@cli.command()
@click.option("--full", "full", multiple=True, required=True, type=click.Path(path_type=Path),
              help="Full-simulation NANOAODSIM file (repeatable).")
@click.option("--flash", "flash", multiple=True, required=True, type=click.Path(path_type=Path),
              help="Flash NANOAOD of the same GEN events (repeatable).")
@click.option("-o", "--output", required=True, type=click.Path(file_okay=False, path_type=Path),
              help="Report directory (PNGs, summary.md, metrics.json).")
@click.option("--plots", "plots_mode", type=click.Choice(["all", "key", "none"]), default="all",
              show_default=True, help="Figures: one per branch, key branches only, or none.")
@click.option("--seed", type=int, default=0, show_default=True)
@click.option("--quiet", is_flag=True, help="No progress bar (also off when stderr is not a "
              "terminal).")
def validate(full, flash, output, plots_mode, seed, quiet) -> None:
    """Compare flash NANOAOD with the full simulation of the same GEN events."""
    from flashsim.validation import run_validation

    run_validation(list(full), list(flash), output, plots_mode=plots_mode, seed=seed,
                   progress=_show_progress(quiet))
    click.echo(f"wrote {output / 'summary.md'} and {output / 'metrics.json'}")


@cli.command("benchmark-hmumu")
@click.option("-n", "--events", "n_events", type=int, default=20_000, show_default=True,
              help="Events generated per process.")
@click.option("--jobs", type=int, default=1, show_default=True, help="Worker processes.")
@click.option("--oversample", type=int, default=1, show_default=True,
              help="Flash-simulate every GEN event K times.")
@click.option("--seed", type=int, default=1, show_default=True,
              help="Seed; samples use 1000000 + seed (never a training seed).")
@click.option("--lumi", "lumi_fb", type=float, default=137.0, show_default=True,
              help="Integrated luminosity in fb^-1.")
@click.option("--models", type=click.Path(path_type=Path), default=None,
              help="Model directory (default: the shipped models).")
@click.option("-o", "--output", required=True, type=click.Path(file_okay=False, path_type=Path),
              help="Report directory (samples/, PNGs, summary.md, metrics.json).")
@click.option("--validate/--no-validate", default=True, show_default=True,
              help="Also write a `flashsim validate` report per process (validation_<process>/).")
def benchmark_hmumu(n_events, jobs, oversample, seed, lumi_fb, models, output, validate) -> None:
    """VBF H->mumu benchmark: held-out samples, full vs flash, one coffea analysis."""
    from flashsim.validation import run_hmumu_benchmark

    run_hmumu_benchmark(output, n_events=n_events, jobs=jobs, oversample=oversample, seed=seed,
                        lumi_fb=lumi_fb, models=models, validate=validate)
    click.echo(f"wrote {output / 'summary.md'} and {output / 'metrics.json'}")


@cli.command()
@click.option("--input", "input_path", type=click.Path(dir_okay=False, path_type=Path),
              default=None, help="GEN NanoAOD file (default: generate and cache one).")
@click.option("--process", default="vbf_hmumu", show_default=True,
              help="Process generated when no --input is given.")
@click.option("-n", "--events", "n_events", type=int, default=1000, show_default=True,
              help="Events in the generated input file.")
@click.option("--gen-events", type=int, default=None,
              help="Events for timing generation (default: min(n, 200)).")
@click.option("--models", type=click.Path(path_type=Path), default=None,
              help="Model directory (default: the shipped models).")
@click.option("--backend", "backends", multiple=True, type=click.Choice(["torch", "onnx"]),
              help="Backend to time (repeatable; default: both).")
@click.option("--chunksize", "chunk_sizes", multiple=True, type=int,
              help="Events per chunk (repeatable; default: 100 and 1000).")
@click.option("--seed", type=int, default=1, show_default=True)
@click.option("--device", type=click.Choice(["cpu", "cuda"]), default="cpu", show_default=True,
              help="Where the networks run (cuda: torch backend, needs a GPU).")
def benchmark(input_path, process, n_events, gen_events, models, backends, chunk_sizes,
              seed, device) -> None:
    """Events/s of every stage of simulate, per backend and chunk size, vs generation."""
    from flashsim.benchmark import format_report, run_benchmark

    report = run_benchmark(input_path=input_path, process=process, n_events=n_events,
                           gen_events=gen_events, models=models,
                           backends=tuple(backends) or _default_backends(device),
                           chunk_sizes=tuple(chunk_sizes) or (100, 1000), seed=seed,
                           device=device)
    click.echo(format_report(report))


def _default_backends(device: str) -> tuple[str, ...]:
    """Every backend on the CPU; on a GPU only torch runs the networks."""
    return ("torch", "onnx") if device == "cpu" else ("torch",)


@cli.group()
def unfold() -> None:
    """Unfold detector effects: RECO events back to GEN level (tasks dimuon, ttbar_mujets)."""


@unfold.command("train")
@click.argument("task")
@click.option("--data", "data", multiple=True, required=True, type=click.Path(path_type=Path),
              help="NANOAODSIM training file with GEN and RECO (repeatable).")
@click.option("-o", "--output", required=True, type=click.Path(file_okay=False, path_type=Path),
              help="Model directory (created; other tasks' and methods' files stay).")
@click.option("--method", type=click.Choice(["cinn", "ibu", "omnifold"]), default="cinn",
              show_default=True)
@click.option("--epochs", type=int, default=None, help="cinn: maximum epochs (default 50).")
@click.option("--batch-size", type=int, default=None, help="cinn: rows per batch.")
@click.option("--config", "config_path", type=click.Path(path_type=Path), default=None,
              help="cinn: YAML with `defaults` and `models.TASK_cinn` settings.")
@click.option("--seed", type=int, default=None, help="cinn: training seed (default 1).")
@click.option("--device", type=click.Choice(["cpu", "cuda"]), default=None)
def unfold_train(task, data, output, method, epochs, batch_size, config_path, seed,
                 device) -> None:
    """Train METHOD for TASK on (GEN, RECO) pairs."""
    from flashsim.unfold.run import train_unfolding

    metrics = train_unfolding(task, list(data), output, method=method,
                              config_path=config_path, epochs=epochs,
                              batch_size=batch_size, seed=seed, device=device)
    click.echo(f"{task} {method}: trained on {metrics['events']} selected events -> {output}")


@unfold.command("apply")
@click.argument("task")
@click.argument("inputs", nargs=-1, required=True, type=click.Path(path_type=Path))
@click.option("-o", "--output", required=True, type=click.Path(dir_okay=False, path_type=Path),
              help="Output ROOT file (TTree Unfolded).")
@click.option("--method", type=click.Choice(["cinn", "ibu", "omnifold"]), default="cinn",
              show_default=True)
@click.option("--models", type=click.Path(path_type=Path), default=None,
              help="Unfolding model directory (default: the shipped ones).")
@click.option("--samples", type=int, default=100, show_default=True,
              help="cinn: posterior samples per event.")
@click.option("--seed", type=int, default=1, show_default=True)
def unfold_apply(task, inputs, output, method, models, samples, seed) -> None:
    """Unfold the RECO events of INPUTS (NanoAOD) for TASK."""
    from flashsim.unfold.run import apply_unfolding

    result = apply_unfolding(task, list(inputs), output, method=method, models=models,
                             samples=samples, seed=seed)
    rate = result["events_in"] / result["seconds"] if result["seconds"] > 0 else 0.0
    click.echo(f"wrote {result['events_out']} unfolded events (of {result['events_in']}) to "
               f"{output} in {result['seconds']:.1f} s ({rate:.0f} input events/s)")


@unfold.command("validate")
@click.argument("task")
@click.option("--data", "data", multiple=True, required=True, type=click.Path(path_type=Path),
              help="Held-out NANOAODSIM file with GEN (repeatable; never a training file).")
@click.option("--models", type=click.Path(path_type=Path), default=None,
              help="Unfolding model directory (default: the shipped ones).")
@click.option("-o", "--output", required=True, type=click.Path(file_okay=False, path_type=Path),
              help="Report directory (summary.md, metrics.json, PNGs).")
@click.option("--samples", type=int, default=100, show_default=True,
              help="cinn: posterior samples per event.")
@click.option("--seed", type=int, default=1, show_default=True)
def unfold_validate(task, data, models, output, samples, seed) -> None:
    """Calibration, distances to the truth and model dependence of TASK's unfolding."""
    from flashsim.unfold.validation import validate_unfolding

    validate_unfolding(task, list(data), output, models=models, samples=samples, seed=seed)
    click.echo(f"wrote {output / 'summary.md'} and {output / 'metrics.json'}")


def main() -> None:
    """Entry point: run the command group, turning user errors into one-line messages."""
    try:
        cli.main(standalone_mode=False)
    except FlashSimError as error:
        # one line, even when the message quotes a multi-line error of a library
        click.echo(f"flashsim: error: {' '.join(str(error).split())}", err=True)
        sys.exit(2)
    except click.exceptions.Abort:
        click.echo("flashsim: interrupted", err=True)
        sys.exit(130)
    except click.ClickException as error:
        error.show()
        sys.exit(error.exit_code)
    except KeyboardInterrupt:
        click.echo("flashsim: interrupted", err=True)
        sys.exit(130)


if __name__ == "__main__":
    main()

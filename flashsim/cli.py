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

_existing_files = click.Path(exists=False, dir_okay=False, path_type=Path)


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
@click.option("--list", "list_processes", is_flag=True, help="List the processes and exit.")
def generate(process, n_events, output, seed, jobs, pileup_mean, refsim, list_processes) -> None:
    """Generate PROCESS with Pythia 8 and write GEN NanoAOD (NANOAODSIM with --refsim)."""
    from flashsim import generation

    if list_processes:
        for name, description in generation.PROCESSES.items():
            click.echo(f"{name:12s} {description.summary}")
        return
    if process is None or n_events is None or output is None:
        raise FlashSimError("generate needs PROCESS, -n N and -o FILE (see `flashsim generate --help`)")
    generation.generate_file(process, n_events, output, seed=seed, jobs=jobs,
                             pileup_mean=pileup_mean, refsim=refsim)


def main() -> None:
    """Entry point: run the command group, turning user errors into one-line messages."""
    try:
        cli.main(standalone_mode=False)
    except FlashSimError as error:
        click.echo(f"flashsim: error: {error}", err=True)
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

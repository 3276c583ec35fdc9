"""Flash simulation time / generation time per event, whole processes, one core each.

Runs ``flashsim generate PROCESS -n N`` (Pythia, GEN only) and then ``flashsim simulate`` on
its output as separate processes, each pinned to one core with one thread, and prints the
wall time per event of each and their ratio (start-up included, as a user sees it)::

    python benchmarks/flash_vs_gen.py -n 3000                    # vbf_hmumu, shipped models
    python benchmarks/flash_vs_gen.py -n 3000 --models my_models/ --oversample 4

The issue's target is a ratio of at most 0.10 for vbf_hmumu.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path


def timed(command: list[str], core: int) -> float:
    """Wall seconds of ``command`` run on CPU ``core`` with one thread."""
    env = {**os.environ, "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}
    began = time.perf_counter()
    subprocess.run(command, check=True, env=env, stdout=subprocess.DEVNULL,
                   preexec_fn=lambda: os.sched_setaffinity(0, {core}))
    return time.perf_counter() - began


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("-n", "--events", type=int, default=3000)
    parser.add_argument("--process", default="vbf_hmumu")
    parser.add_argument("--models", default=None, help="model directory (default: shipped)")
    parser.add_argument("--oversample", type=int, default=1)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--core", type=int, default=min(os.sched_getaffinity(0)))
    args = parser.parse_args()
    flashsim = [sys.executable, "-m", "flashsim.cli"]
    with tempfile.TemporaryDirectory() as scratch:
        gen, flash = Path(scratch) / "gen.root", Path(scratch) / "flash.root"
        generation = timed([*flashsim, "generate", args.process, "-n", str(args.events),
                            "-o", str(gen), "--seed", str(args.seed), "--quiet"], args.core)
        models = [] if args.models is None else ["--models", args.models]
        simulation = timed([*flashsim, "simulate", str(gen), "-o", str(flash), "--quiet",
                            "--oversample", str(args.oversample), *models], args.core)
    flash_events = args.events * args.oversample
    per_gen, per_flash = generation / args.events, simulation / flash_events
    print(f"{args.process}: generation {args.events / generation:.0f} events/s "
          f"({generation:.1f} s for {args.events}), flash {flash_events / simulation:.0f} "
          f"events/s ({simulation:.1f} s for {flash_events})")
    print(f"flash / generation time per event: {per_flash / per_gen:.3f}")


if __name__ == "__main__":
    main()

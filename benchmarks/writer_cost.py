"""CPU cost of writing NanoAOD with :class:`flashsim.nanoaod.writer.NanoAODWriter`, per write
and per event, for several batch sizes, on the branches of a real file.

Reads every collection and scalar of ``Events`` in FILE (e.g. a ``flashsim simulate`` output),
repeats its events to ``--events``, and writes them in batches of each ``--batch-events`` size,
timing the process CPU (user + system) of the first ``write`` (which creates the tree) and of
every later one::

    flashsim generate vbf_hmumu -n 300 -o gen.root && flashsim simulate gen.root -o flash.root
    python benchmarks/writer_cost.py flash.root --events 20000 --batch-events 500 2000 10000

The fixed cost per write (uproot's ``extend`` rebuilds the metadata of every branch) shows as
the CPU per write that does not shrink with the batch.
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import awkward as ak
import numpy as np

from flashsim.nanoaod.reader import num_entries, open_tree, read_chunk, stored_names
from flashsim.nanoaod.writer import NanoAODWriter


def _take(chunk: dict, start: int, stop: int) -> dict:
    """Events [start, stop) of the chunk repeated end to end, as contiguous arrays (as a
    simulated batch is)."""
    index = np.arange(start, stop) % len(chunk["event"])
    return {name: ak.to_packed(value[index]) if isinstance(value, ak.Array) else value[index]
            for name, value in chunk.items()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("file", type=Path, help="a NanoAOD file (e.g. flashsim simulate output)")
    parser.add_argument("--events", type=int, default=20_000)
    parser.add_argument("--batch-events", type=int, nargs="+", default=[500, 2000, 10_000])
    args = parser.parse_args()
    chunk = read_chunk(args.file, stored_names(args.file), 0, num_entries(args.file))
    chunk = {k: v if isinstance(v, ak.Array) else np.asarray(v) for k, v in chunk.items()}
    n_branches = len(open_tree(args.file).keys())
    print(f"{args.file}: {n_branches} branches, {len(chunk['event'])} events repeated to "
          f"{args.events}")
    with tempfile.TemporaryDirectory() as scratch:
        for batch_events in args.batch_events:
            batches = [_take(chunk, s, min(s + batch_events, args.events))
                       for s in range(0, args.events, batch_events)]
            seconds = []
            path = Path(scratch) / f"out_{batch_events}.root"
            total = time.process_time()
            with NanoAODWriter(path) as writer:
                for batch in batches:
                    began = time.process_time()
                    writer.write(batch)
                    seconds.append(time.process_time() - began)
            total = time.process_time() - total
            later = seconds[1:] or [float("nan")]
            print(f"batch {batch_events:>6}: {len(batches):>3} writes, first (mktree) "
                  f"{seconds[0]:.2f} s, later {np.mean(later):.3f} s each "
                  f"(min {np.min(later):.3f}); total {total:.2f} s CPU = "
                  f"{1e6 * total / args.events:.0f} us/event")


if __name__ == "__main__":
    main()

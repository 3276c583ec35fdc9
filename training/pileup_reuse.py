"""How much a NANOAODSIM file's pileup objects vary between chunks, beyond independent events.

The reference detector overlays each chunk's pileup from its own pool of minimum-bias events
(``flashsim.production.pileup_pool_size``); when a pool event is overlaid many times, its rare
hard particles come back at the same pT and |eta| in every copy, and the per-chunk counts of
pileup objects scatter more than independent events would. For each kind of pileup object this
prints the mean count per event and the standard deviation of the per-chunk means divided by
that of independent events, the per-event standard deviation / sqrt(chunk) (so 1 for
independent pileup; the per-event spread already holds the pileup profile's width)::

    python training/pileup_reuse.py training/samples/dy_mumu_60000_seed101_refdet3.root

Chunks are consecutive blocks of ``--chunk`` events (the generator's
``flashsim.generation.run.CHUNK_EVENTS``, 1000), so each holds one pool.
"""

from __future__ import annotations

import argparse

import awkward as ak
import numpy as np
import uproot

from flashsim.generation.run import CHUNK_EVENTS

BRANCHES = ["Muon_genPartIdx", "Muon_dz", "Electron_genPartIdx", "Electron_dz", "Jet_genJetIdx",
            "Jet_pt"]


def pileup_counts(events: ak.Array) -> dict[str, np.ndarray]:
    """Per event, the counts of objects from pileup: leptons without a GEN lepton more than
    2 mm from the primary vertex in z, jets without a GenJet above 15 and 30 GeV."""
    def count(mask: ak.Array) -> np.ndarray:
        return ak.to_numpy(ak.sum(mask, axis=1))

    unmatched = events.Jet_genJetIdx < 0
    return {
        "fake muons from pileup vertices": count((events.Muon_genPartIdx < 0)
                                                 & (abs(events.Muon_dz) > 0.2)),
        "electrons from pileup vertices": count((events.Electron_genPartIdx < 0)
                                                & (abs(events.Electron_dz) > 0.2)),
        "jets without GenJet, pT > 15 GeV": count(unmatched & (events.Jet_pt > 15)),
        "jets without GenJet, pT > 30 GeV": count(unmatched & (events.Jet_pt > 30)),
    }


def excess_spread(counts: np.ndarray, chunk: int) -> tuple[float, float]:
    """Mean per event and (standard deviation of the per-chunk means) / (that of independent
    events: the per-event standard deviation / sqrt(chunk))."""
    chunks = len(counts) // chunk
    used = counts[:chunks * chunk]
    means = used.reshape(chunks, chunk).mean(axis=1)
    return float(used.mean()), float(means.std(ddof=1) / (used.std(ddof=1) / np.sqrt(chunk)))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("files", nargs="+", help="NANOAODSIM files (reference detector)")
    parser.add_argument("--chunk", type=int, default=CHUNK_EVENTS,
                        help="events per pileup pool (default: the generator's chunk)")
    args = parser.parse_args()
    for path in args.files:
        events = uproot.open(path)["Events"].arrays(BRANCHES)
        print(f"{path}: {len(events)} events, {len(events) // args.chunk} chunks")
        for name, counts in pileup_counts(events).items():
            mean, ratio = excess_spread(counts, args.chunk)
            print(f"  {name:34s} {mean:.4f} per event, chunk spread {ratio:.1f} x independent")


if __name__ == "__main__":
    main()

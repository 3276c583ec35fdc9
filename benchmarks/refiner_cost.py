"""What sampling through a latent refiner costs, for the architectures of the shipped flows.

For every shipped flow, builds its network and a refiner of the default architecture
(:data:`flashsim.models.refinement.DEFAULT_REFINER`; the cost depends on the architecture, not on
the trained values) and prints the CPU time (one torch thread) of sampling a batch of rows with
the flow alone and with the refiner in front (``flashsim simulate --refine``), and the objects/s
of both::

    python benchmarks/refiner_cost.py              # batch of 2000 rows (the CPU batch size)
    python benchmarks/refiner_cost.py --rows 20000
"""

from __future__ import annotations

import argparse
import json

import numpy as np
import torch

from flashsim.benchmark import cpu_ms
from flashsim.models.artifact import PRETRAINED
from flashsim.models.flows import FlowSampler, build_flow
from flashsim.models.refinement import DEFAULT_REFINER


def _refined_sample(flow: FlowSampler, refiner: FlowSampler, context: torch.Tensor,
                    noise: torch.Tensor) -> torch.Tensor:
    """What ``flashsim simulate --refine`` runs: the noise through the refiner, then the flow."""
    return flow(context, refiner(context, noise))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=2000)
    parser.add_argument("--repeat", type=int, default=10)
    args = parser.parse_args()
    torch.set_num_threads(1)
    torch.manual_seed(0)
    manifest = json.loads((PRETRAINED / "manifest.json").read_text())
    print(f"| flow | {args.rows} rows: flow alone | flow + refiner | objects/s alone | "
          "objects/s refined |")
    print("|---|---|---|---|---|")
    for name, entry in manifest["models"].items():
        if entry["kind"] != "flow":
            continue
        meta = json.loads((PRETRAINED / f"{name}.json").read_text())
        features, context = len(meta["target"]["columns"]), len(meta["context"]["columns"])
        flow = FlowSampler(build_flow(features, context, meta["architecture"])).eval()
        refiner = FlowSampler(build_flow(features, context, DEFAULT_REFINER)).eval()
        rng = np.random.default_rng(0)
        c = torch.from_numpy(rng.standard_normal((args.rows, context)).astype(np.float32))
        u = torch.from_numpy(rng.standard_normal((args.rows, features)).astype(np.float32))
        with torch.no_grad():
            alone = cpu_ms(args.repeat, flow, c, u)
            refined = cpu_ms(args.repeat, _refined_sample, flow, refiner, c, u)
        print(f"| {name} | {alone:.0f} ms | {refined:.0f} ms | {1e3 * args.rows / alone:.0f} | "
              f"{1e3 * args.rows / refined:.0f} |")


if __name__ == "__main__":
    main()

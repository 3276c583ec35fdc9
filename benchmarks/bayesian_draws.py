"""What a weight draw of a Bayesian flow costs, for the architectures of the shipped flows.

For every shipped flow, builds the same architecture deterministic and Bayesian
(:mod:`flashsim.models.bayesian`; the cost depends on the architecture, not on the trained
values) and prints the CPU time (one torch thread) of one network call on a batch of rows with
the deterministic weights, the Bayesian mean weights and one weight draw, and of drawing one set
of weights (done once per model, chunk and draw by ``flashsim simulate --model-draws K``)::

    python benchmarks/bayesian_draws.py              # batch of 2000 rows (the CPU batch size)
    python benchmarks/bayesian_draws.py --rows 20000
"""

from __future__ import annotations

import argparse
import json

import numpy as np
import torch

from flashsim.benchmark import cpu_ms
from flashsim.models.artifact import PRETRAINED
from flashsim.models.bayesian import set_weight_draw
from flashsim.models.flows import FlowSampler, build_flow


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=2000)
    parser.add_argument("--repeat", type=int, default=10)
    args = parser.parse_args()
    torch.set_num_threads(1)
    rng = np.random.default_rng(0)
    print(f"| flow | parameters (deterministic) | {args.rows} rows: deterministic | Bayesian, mean weights "
          "| Bayesian, one draw | drawing the weights |")
    print("|---|---|---|---|---|---|")
    for path in sorted(PRETRAINED.glob("*_flow.json")):
        meta = json.loads(path.read_text())
        features, context = len(meta["target"]["columns"]), len(meta["context"]["columns"])
        arch = meta["architecture"]
        deterministic = FlowSampler(build_flow(features, context, arch)).eval()
        bayesian = FlowSampler(build_flow(features, context, {**arch, "bayesian": True})).eval()
        c, noise = torch.randn(args.rows, context), torch.randn(args.rows, features)
        with torch.no_grad():
            times = [cpu_ms(args.repeat, deterministic, c, noise),
                     cpu_ms(args.repeat, bayesian, c, noise)]
            set_weight_draw(bayesian, rng)
            times.append(cpu_ms(args.repeat, bayesian, c, noise))
            times.append(cpu_ms(args.repeat, set_weight_draw, bayesian, rng))
        weights = sum(p.numel() for p in deterministic.parameters())
        print(f"| {meta['name']} | {weights} | " + " | ".join(f"{t:.1f} ms" for t in times) + " |")


if __name__ == "__main__":
    main()

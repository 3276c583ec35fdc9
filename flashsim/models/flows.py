r"""Conditional neural spline flows (zuko ``NSF``) with sampling from explicit base noise.

A flow models :math:`p(y \mid c)` of the standardised targets :math:`y` given the
standardised conditioning :math:`c` through an invertible map :math:`z = f_c(y)` onto a
standard normal :math:`z`: :math:`\log p(y \mid c) = \log \mathcal{N}(f_c(y); 0, I)
+ \log|\det \partial f_c / \partial y|`. Each layer of :math:`f_c` is a monotonic
rational-quadratic spline on :math:`[-5, 5]` whose knots come from a masked MLP of
:math:`c` and the preceding features (Durkan et al. 2019, arXiv:1906.04032), the model
used by the CMS FlashSim prototype (Vaselli et al. 2024, arXiv:2402.13047).

Sampling is :math:`y = f_c^{-1}(z)` for a noise matrix :math:`z` given by the caller
(``flow(c).transform.inv(z)``), so torch and ONNX runtimes can be compared on identical
noise and the random stream stays in numpy. With ``passes=2`` (coupling layers) the
inverse costs two network evaluations per layer instead of one per feature.

With ``bayesian: true`` in the architecture the hypernetworks' linear layers get Gaussian
weights (:mod:`flashsim.models.bayesian`, prior width ``prior_sigma``).
"""

from __future__ import annotations

from typing import Any

import torch
import zuko
from torch import nn

from flashsim.models.bayesian import DEFAULT_PRIOR_SIGMA, make_bayesian

__all__ = ["DEFAULT_FLOW", "FlowSampler", "build_flow"]

DEFAULT_FLOW: dict[str, Any] = {
    "transforms": 4,
    "bins": 8,
    "hidden_features": [128, 128],
    "passes": 2,
}


def build_flow(features: int, context: int, arch: dict[str, Any] | None = None) -> zuko.flows.NSF:
    """A zuko NSF for ``features`` targets and ``context`` conditioning features.

    ``arch`` keys: ``transforms``, ``bins``, ``hidden_features``, ``passes`` (``None`` =
    fully autoregressive, 2 = coupling); missing keys take :data:`DEFAULT_FLOW`. Optional:
    ``bayesian`` (default false) and ``prior_sigma`` (:mod:`flashsim.models.bayesian`).
    """
    arch = {**DEFAULT_FLOW, **(arch or {})}
    passes = arch["passes"]
    flow = zuko.flows.NSF(
        features=features,
        context=context,
        transforms=int(arch["transforms"]),
        bins=int(arch["bins"]),
        hidden_features=tuple(int(h) for h in arch["hidden_features"]),
        passes=None if passes is None else int(passes),
    )
    if arch.get("bayesian", False):
        make_bayesian(flow, float(arch.get("prior_sigma", DEFAULT_PRIOR_SIGMA)))
    return flow


class FlowSampler(nn.Module):
    """The sampling path as a plain module: ``(context, noise) -> y = f_c^{-1}(noise)``.

    This is what the torch backend calls and what ONNX export traces.
    """

    def __init__(self, flow: zuko.flows.NSF) -> None:
        super().__init__()
        self.flow = flow

    def forward(self, context: torch.Tensor, noise: torch.Tensor) -> torch.Tensor:
        """Standardised targets for standardised ``context`` and standard-normal ``noise``."""
        return self.flow(context).transform.inv(noise)

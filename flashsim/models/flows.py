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
from flashsim.models.classifier import mlp

__all__ = ["DEFAULT_CINN", "DEFAULT_FLOW", "ConditionalINN", "FlowSampler", "build_flow"]

DEFAULT_FLOW: dict[str, Any] = {
    "transforms": 4,
    "bins": 8,
    "hidden_features": [128, 128],
    "passes": 2,
}

DEFAULT_CINN: dict[str, Any] = {
    **DEFAULT_FLOW,
    "summary_hidden": [128, 128],
    "summary_features": 32,
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

    def log_prob(self, y: torch.Tensor, context: torch.Tensor) -> torch.Tensor:
        """:math:`\\log p(y \\mid c)` per row (the training objective)."""
        return self.flow(context).log_prob(y)

    def forward(self, context: torch.Tensor, noise: torch.Tensor) -> torch.Tensor:
        """Standardised targets for standardised ``context`` and standard-normal ``noise``."""
        return self.flow(context).transform.inv(noise)


class ConditionalINN(nn.Module):
    r"""Conditional INN with a learnt summary of the condition (Ardizzone et al. 2019,
    arXiv:1907.02392; Bellagente et al. 2020, arXiv:2006.06685, the unfolding cINN).

    :math:`\log p(y \mid x) = \log p_{\rm NSF}(y \mid s_\phi(x))`: an MLP :math:`s_\phi`
    compresses the (standardised, padded) detector-level event :math:`x` into
    ``summary_features`` numbers that condition the NSF of :func:`build_flow`; both are
    trained jointly on the likelihood, so the summary keeps what the posterior needs.
    ``arch`` adds ``summary_hidden`` and ``summary_features`` to the flow's keys
    (defaults: :data:`DEFAULT_CINN`). Sampling is ``forward(context, noise)`` as in
    :class:`FlowSampler`, so the artifact, ONNX and noise conventions are the same.
    """

    def __init__(self, features: int, context: int, arch: dict[str, Any] | None = None) -> None:
        super().__init__()
        arch = {**DEFAULT_CINN, **(arch or {})}
        summary = int(arch["summary_features"])
        self.summary = mlp(context, summary, arch["summary_hidden"])
        self.flow = build_flow(features, summary, arch)

    def log_prob(self, y: torch.Tensor, context: torch.Tensor) -> torch.Tensor:
        """:math:`\\log p(y \\mid x)` per row."""
        return self.flow(self.summary(context)).log_prob(y)

    def forward(self, context: torch.Tensor, noise: torch.Tensor) -> torch.Tensor:
        """Standardised targets :math:`y = f^{-1}_{s(x)}(z)` for the noise :math:`z`."""
        return self.flow(self.summary(context)).transform.inv(noise)

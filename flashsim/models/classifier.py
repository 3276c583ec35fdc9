r"""Efficiency classifiers and the fake-jet multiplicity model.

:class:`Classifier` is an MLP returning the logit of :math:`P(\text{reconstructed} \mid c)`;
it is trained with the (event-weighted) binary cross-entropy and used as a Bernoulli
draw :math:`u < P` with :math:`u \sim U(0,1)` from the caller's generator, as in the
FlashSim efficiency step (Vaselli et al. 2024, arXiv:2402.13047).

:class:`MultiplicityModel` is an MLP returning logits of a categorical distribution
over counts :math:`0..K` (the last class collects :math:`\ge K`), trained with the
weighted cross-entropy; a count is drawn by inverse-CDF sampling,
:math:`n = \#\{j : F_j \le u\}` with :math:`F` the cumulative class probabilities.
A categorical over counts makes no Poisson assumption, so over-dispersed pileup-jet
multiplicities are reproduced.

Both modules return probabilities from ``forward`` (what the ONNX graph outputs) and
logits from :meth:`logits` (what training uses, for numerical stability).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch
from torch import nn

__all__ = ["Classifier", "MultiplicityModel", "draw_counts", "mlp"]


def mlp(inputs: int, outputs: int, hidden: Sequence[int]) -> nn.Sequential:
    """A ReLU multilayer perceptron."""
    layers: list[nn.Module] = []
    size = inputs
    for width in hidden:
        layers += [nn.Linear(size, int(width)), nn.ReLU()]
        size = int(width)
    layers.append(nn.Linear(size, outputs))
    return nn.Sequential(*layers)


class Classifier(nn.Module):
    """Binary efficiency classifier: ``forward`` gives :math:`P(\\text{reco} \\mid c)`."""

    def __init__(self, context: int, hidden: Sequence[int] = (64, 64)) -> None:
        super().__init__()
        self.net = mlp(context, 1, hidden)

    def logits(self, context: torch.Tensor) -> torch.Tensor:
        """Logit per row, shape ``(n,)``."""
        return self.net(context).squeeze(-1)

    def forward(self, context: torch.Tensor) -> torch.Tensor:
        """Probability per row, shape ``(n,)``."""
        return torch.sigmoid(self.logits(context))


class MultiplicityModel(nn.Module):
    """Categorical count model over ``0..max_count``: ``forward`` gives class probabilities."""

    def __init__(self, context: int, max_count: int, hidden: Sequence[int] = (64, 64)) -> None:
        super().__init__()
        self.max_count = max_count
        self.net = mlp(context, max_count + 1, hidden)

    def logits(self, context: torch.Tensor) -> torch.Tensor:
        """Logits, shape ``(n, max_count + 1)``."""
        return self.net(context)

    def forward(self, context: torch.Tensor) -> torch.Tensor:
        """Probabilities, shape ``(n, max_count + 1)``."""
        return torch.softmax(self.logits(context), dim=-1)


def draw_counts(probabilities: np.ndarray, uniform: np.ndarray) -> np.ndarray:
    """Inverse-CDF draw of one count per row from ``(n, K+1)`` class probabilities."""
    cdf = np.cumsum(probabilities, axis=1)
    cdf /= cdf[:, -1:]
    return np.minimum((cdf[:, :-1] <= uniform[:, None]).sum(axis=1), probabilities.shape[1] - 1)

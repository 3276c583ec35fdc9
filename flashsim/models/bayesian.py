r"""Bayesian flows: mean-field Gaussian weights in the hypernetworks of the zuko NSF.

A Bayesian normalizing flow (Bellagente, "Go with the Flow", PhD thesis, Heidelberg University,
ch. 3; Bellagente et al., "Understanding event-generation networks via uncertainties",
SciPost Phys. 13, 003 (2022), arXiv:2104.04543) replaces every weight :math:`\theta_j` of
the networks that produce the spline knots by a Gaussian
:math:`q_\phi(\theta_j) = \mathcal{N}(\mu_j, \sigma_j^2)` with a learnt mean and width
(here weights and biases of every :class:`zuko.nn.MaskedLinear`; the masked-out entries are
not parameters of the model and carry neither noise nor KL).

Training maximises the evidence lower bound; per training row the loss is

.. math::

    \mathcal{L} = \Big\langle -\log p_\theta(y \mid c) \Big\rangle_{\theta \sim q_\phi,\,
    (y, c) \in \text{batch}} + \frac{1}{N_\text{train}}\,
    \mathrm{KL}\big(q_\phi(\theta) \,\|\, p(\theta)\big),

the mean negative log-likelihood (weighted as in :mod:`flashsim.models.training`) plus the KL
divergence to the prior divided by the number of training rows :math:`N_\text{train}`: the
ELBO of the whole training set divided by :math:`N_\text{train}`, so that every mini-batch
step is an unbiased estimate of it (the loss of the thesis' ch. 3 and of
arXiv:2104.04543). The prior is
:math:`p(\theta_j) = \mathcal{N}(0, \sigma_p^2)` with :math:`\sigma_p = 1` by default
(architecture key ``prior_sigma``), the unit Gaussian of arXiv:2104.04543. Its KL per
weight is closed form:

.. math::

    \mathrm{KL}_j = \tfrac12\Big[\frac{\mu_j^2 + \sigma_j^2}{\sigma_p^2} - 1
    - \log\frac{\sigma_j^2}{\sigma_p^2}\Big].

Because the KL term is divided by :math:`N_\text{train}`, the likelihood dominates where many
training rows constrain a weight and the widths shrink as the training set grows; where rows
are few, the widths stay close to the prior's and the weight draws disagree. The widths are
stored as :math:`\log\sigma^2`, initialised at :math:`-9` (the means start as zuko's
initialisation), so a network first learns its means.

Training samples the layer outputs with the local reparameterisation trick (Kingma, Salimans,
Welling 2015, arXiv:1506.02557): for input :math:`x` the pre-activation is Gaussian with mean
:math:`x\mu_W^T + \mu_b` and variance :math:`x^2(\sigma_W^2)^T + \sigma_b^2`, sampled per row,
which has a lower gradient variance than one weight draw per batch and the same expectation.

At sampling time a layer uses either its **mean weights** (the default after loading, what
``flashsim simulate`` uses without ``--model-draws`` and what ONNX export writes) or one
**weight draw** :math:`\theta^{(k)} \sim q_\phi` shared by every row, set with
:func:`set_weight_draw` from a numpy generator. The spread of a histogram bin over draws
:math:`k` is the model's uncertainty in that bin.
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F
import zuko
from torch import nn

__all__ = [
    "DEFAULT_PRIOR_SIGMA",
    "BayesianMaskedLinear",
    "bayesian_layers",
    "is_bayesian",
    "kl_divergence",
    "make_bayesian",
    "set_weight_draw",
]

DEFAULT_PRIOR_SIGMA = 1.0
_INITIAL_LOG_VAR = -9.0


class BayesianMaskedLinear(nn.Module):
    r"""A :class:`zuko.nn.MaskedLinear` whose weights and biases are independent Gaussians.

    ``y = x (W \odot A)^T + b`` with :math:`W_{ij} \sim \mathcal{N}(\mu_{ij}, \sigma_{ij}^2)`,
    :math:`b_i \sim \mathcal{N}(\mu_i, \sigma_i^2)`; in training mode sampled by local
    reparameterisation, in eval mode the mean weights or the draw set by :meth:`draw`.
    """

    def __init__(self, layer: zuko.nn.MaskedLinear, prior_sigma: float = DEFAULT_PRIOR_SIGMA
                 ) -> None:
        super().__init__()
        self.register_buffer("mask", layer.mask.clone())
        self.weight_mean = nn.Parameter(layer.weight.detach().clone())
        self.weight_log_var = nn.Parameter(torch.full_like(layer.weight, _INITIAL_LOG_VAR))
        self.bias_mean = nn.Parameter(layer.bias.detach().clone())
        self.bias_log_var = nn.Parameter(torch.full_like(layer.bias, _INITIAL_LOG_VAR))
        self.prior_sigma = float(prior_sigma)
        # a weight draw is a runtime choice, not part of the artifact: not in the state_dict
        self.sampled: tuple[torch.Tensor, torch.Tensor] | None = None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.training:
            mean = F.linear(x, self.mask * self.weight_mean, self.bias_mean)
            var = F.linear(x * x, self.mask * self.weight_log_var.exp(), self.bias_log_var.exp())
            return mean + var.sqrt() * torch.randn_like(mean)
        if self.sampled is not None:
            weight, bias = self.sampled
            return F.linear(x, weight, bias)
        return F.linear(x, self.mask * self.weight_mean, self.bias_mean)

    def kl(self) -> torch.Tensor:
        """:math:`\\mathrm{KL}(q \\| p)` of the unmasked weights and the biases."""
        prior_var = self.prior_sigma ** 2

        def kl_terms(mean: torch.Tensor, log_var: torch.Tensor) -> torch.Tensor:
            return 0.5 * ((mean ** 2 + log_var.exp()) / prior_var - 1.0 - log_var
                          + np.log(prior_var))

        return ((self.mask * kl_terms(self.weight_mean, self.weight_log_var)).sum()
                + kl_terms(self.bias_mean, self.bias_log_var).sum())

    def draw(self, rng: np.random.Generator | None) -> None:
        """Use one weight draw from ``rng`` in eval mode (``None``: the mean weights)."""
        if rng is None:
            self.sampled = None
            return
        with torch.no_grad():
            tensors = []
            for mean, log_var in ((self.weight_mean, self.weight_log_var),
                                  (self.bias_mean, self.bias_log_var)):
                eps = torch.from_numpy(rng.standard_normal(tuple(mean.shape)).astype(np.float32))
                tensors.append(mean + (0.5 * log_var).exp() * eps.to(mean.device))
            self.sampled = (self.mask * tensors[0], tensors[1])

    def extra_repr(self) -> str:
        out_features, in_features = self.mask.shape
        return f"in_features={in_features}, out_features={out_features}, " \
               f"prior_sigma={self.prior_sigma}"


def make_bayesian(module: nn.Module, prior_sigma: float = DEFAULT_PRIOR_SIGMA) -> nn.Module:
    """Replace every :class:`zuko.nn.MaskedLinear` inside ``module`` (in place) by a
    :class:`BayesianMaskedLinear` whose means start at the layer's weights; returns ``module``."""
    for name, child in list(module.named_children()):
        if isinstance(child, zuko.nn.MaskedLinear):
            setattr(module, name, BayesianMaskedLinear(child, prior_sigma))
        else:
            make_bayesian(child, prior_sigma)
    return module


def bayesian_layers(module: nn.Module) -> list[BayesianMaskedLinear]:
    """The Bayesian layers of ``module`` in a fixed (registration) order."""
    return [m for m in module.modules() if isinstance(m, BayesianMaskedLinear)]


def is_bayesian(module: nn.Module) -> bool:
    """Whether ``module`` has Bayesian layers."""
    return bool(bayesian_layers(module))


def kl_divergence(module: nn.Module) -> torch.Tensor:
    """:math:`\\mathrm{KL}(q_\\phi \\| p)` summed over the Bayesian layers of ``module``."""
    return sum((layer.kl() for layer in bayesian_layers(module)), torch.zeros(()))


def set_weight_draw(module: nn.Module, rng: np.random.Generator | None) -> None:
    """Give every Bayesian layer of ``module`` one weight draw from ``rng``, layer after layer
    in a fixed order (so one generator state is one model); ``None`` restores the mean weights."""
    for layer in bayesian_layers(module):
        layer.draw(rng)

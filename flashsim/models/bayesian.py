r"""Bayesian flows: mean-field Gaussian weights in the hypernetworks of the zuko NSF.

A Bayesian normalizing flow (Bellagente, "Go with the Flow", PhD thesis, Heidelberg University,
ch. 3; Bellagente et al., "Understanding event-generation networks via uncertainties",
SciPost Phys. 13, 003 (2022), arXiv:2104.04543) replaces every weight :math:`\theta_j` of
the networks that produce the spline knots by a Gaussian
:math:`q_\phi(\theta_j) = \mathcal{N}(\mu_j, \sigma_j^2)` with a learnt mean and width
(here weights and biases of every linear layer of the flow: the :class:`zuko.nn.MaskedLinear`
of its masked MLPs, and the plain :class:`zuko.nn.Linear` of the MLP that gives a one-target
flow its spline from the context alone; the masked-out entries are not parameters of the
model and carry neither noise nor KL).

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
stored as :math:`\log\sigma^2`.

**How the optimum is reached.** Minimising this loss with Adam from narrow initial widths
(:math:`\log\sigma^2 = -9`) does not converge in any practical number of steps: Adam moves a
parameter by at most about its learning rate per step, whatever the gradient's size, so the
widths measure the length of training, not the data. On a one-target toy flow (2 transforms,
hidden 32, 20 epochs, batch 256, lr 2e-3) the median :math:`\log\sigma^2` ended at
:math:`-8.86` with 2 000 rows and :math:`-7.92` with 20 000 (more rows, more steps), where the
optimum of a weight the data do not constrain is :math:`\log\sigma_p^2 = 0`; a 30 times
larger learning rate for the widths gave :math:`-4.88` after 20 and :math:`-3.21` after 60
epochs at 2 000 rows, still a function of the steps. :mod:`flashsim.models.training`
therefore trains in three phases:

1. *Means.* The widths are frozen at :math:`\log\sigma^2 = -9` and the means minimise the
   loss above (at these widths: the negative log-likelihood plus the prior's
   :math:`\mu^2 / (2\sigma_p^2 N_\text{train})`, a maximum a posteriori fit), with the usual
   epochs and early stopping.
2. *Widths, solved.* For a loss that is locally quadratic in the weights with per-row
   curvature :math:`h_j`, :math:`\langle \sum_i \ell_i \rangle_q \approx \sum_i \ell_i(\mu)
   + \tfrac12 N_\text{train} \sum_j h_j \sigma_j^2`, and the ELBO's stationarity in
   :math:`\sigma_j^2` at fixed means is closed form:

   .. math:: \frac{1}{\sigma_j^2} = N_\text{train}\, h_j + \frac{1}{\sigma_p^2},

   the precision of the Laplace approximation (MacKay, Neural Comput. 4, 448 (1992); with a
   diagonal or Kronecker curvature, Ritter, Botev, Barber, ICLR 2018), which is also the
   fixed point of Gaussian variational inference with the Gauss-Newton curvature (Graves,
   "Practical variational inference for neural networks", NIPS 2011). :func:`solve_widths`
   takes for :math:`h_j` the diagonal empirical Fisher, the weighted mean over training rows
   of the squared per-row gradient :math:`(\partial\ell_i / \partial\mu_j)^2`, exact per row
   from one backward pass per batch (:class:`_RowGradients`). Evaluated at the means alone,
   it leaves every weight with :math:`h_j \approx 0` there (the inputs of a unit that is
   off for every row, say) at the prior width, and one such draw switches the unit on: on
   the toy the loss under :math:`q` rose from :math:`-0.37` to :math:`15.4` nats per row.
   So the Fisher is evaluated *under* :math:`q` (weights drawn by local reparameterisation,
   :math:`h_j = \langle \cdot \rangle_q`, as the ELBO's exact stationarity condition
   :math:`1/\sigma_j^2 = N_\text{train} \langle \partial^2 \ell / \partial\theta_j^2
   \rangle_q + 1/\sigma_p^2` asks), and the solve is iterated as a damped fixed point:
   ``width_passes`` passes over the training rows, each moving :math:`\log\sigma_j^2` a
   fraction :math:`\beta_j` of the way to the solution,
   :math:`\log\sigma_j^2 \leftarrow (1 - \beta_j) \log\sigma_j^2 - \beta_j
   \log(N_\text{train} h_j + 1/\sigma_p^2)`, with :math:`\beta_j` starting at ``width_step``
   (default 0.5) and halved each time the weight overshoots (the solution decreases as the
   width grows, so a plain step oscillates: with 200 000 rows the median went
   :math:`-5.6, -6.7, -5.8, -6.7, \dots` at :math:`\beta = 0.5`). This is the
   natural-gradient variational update whose
   mini-batch form is Vadam/VOGN (Khan et al., "Fast and scalable Bayesian deep learning by
   weight-perturbation in Adam", ICML 2018, arXiv:1806.04854: Adam's second moment of the
   gradient is this Fisher), taken here with full-data passes and a step in
   :math:`\log\sigma^2`, so that it is free of Adam's per-step limit.
3. *ELBO.* ``elbo_epochs`` epochs of the loss above with means and widths free, starting at
   the solution of 2, so the artifact is an optimum of the ELBO itself and the means adapt
   to their noise.

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

from collections.abc import Callable, Iterable

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
    "solve_widths",
    "width_summary",
]

DEFAULT_PRIOR_SIGMA = 1.0
_INITIAL_LOG_VAR = -9.0


class BayesianMaskedLinear(nn.Module):
    r"""A :class:`zuko.nn.MaskedLinear` (or a :class:`zuko.nn.Linear`: mask of ones) whose
    weights and biases are independent Gaussians.

    ``y = x (W \odot A)^T + b`` with :math:`W_{ij} \sim \mathcal{N}(\mu_{ij}, \sigma_{ij}^2)`,
    :math:`b_i \sim \mathcal{N}(\mu_i, \sigma_i^2)`; in training mode sampled by local
    reparameterisation, in eval mode the mean weights or the draw set by :meth:`draw`.
    """

    def __init__(self, layer: nn.Linear | zuko.nn.Linear, prior_sigma: float = DEFAULT_PRIOR_SIGMA) -> None:
        super().__init__()
        mask = layer.mask if isinstance(layer, zuko.nn.MaskedLinear) else torch.ones_like(
            layer.weight)
        self.register_buffer("mask", mask.detach().clone())
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
    """Replace every linear layer (:class:`zuko.nn.MaskedLinear`, :class:`zuko.nn.Linear`)
    inside ``module`` (in place) by a :class:`BayesianMaskedLinear` whose means start at the
    layer's weights; returns ``module``."""
    for name, child in list(module.named_children()):
        if isinstance(child, (nn.Linear, zuko.nn.Linear)):
            if child.weight.dim() != 2 or child.bias is None:
                raise ValueError(f"{name}: a Bayesian layer needs one weight matrix and a bias")
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


class _RowGradients:
    r"""Per-row squared gradients of the mean weights of one layer, summed with row weights.

    For ``out = x \mu_W^T + \mu_b (+ noise)`` the gradient of row :math:`i`'s loss is
    :math:`\delta_i x_i^T` for the weights and :math:`\delta_i` for the biases, with
    :math:`\delta_i = \partial \ell_i / \partial\,\mathrm{out}_i` (the backward pass of
    :math:`\sum_i \ell_i`, rows being independent); so
    :math:`\sum_i w_i (\delta_i x_i^T)^2 = (w \delta^2)^T x^2`, one matrix product per
    batch instead of one backward pass per row.
    """

    def __init__(self, layer: BayesianMaskedLinear) -> None:
        self.layer = layer
        self.weight = torch.zeros_like(layer.weight_mean)
        self.bias = torch.zeros_like(layer.bias_mean)
        self.calls: list[tuple[torch.Tensor, torch.Tensor | None]] = []
        self.handle = layer.register_forward_hook(self._forward)

    def _forward(self, layer: nn.Module, inputs: tuple[torch.Tensor], output: torch.Tensor
                 ) -> None:
        call = [inputs[0].detach(), None]
        self.calls.append(call)

        def keep(grad: torch.Tensor) -> None:
            call[1] = grad.detach()

        output.register_hook(keep)

    def accumulate(self, row_weight: torch.Tensor) -> None:
        """Add the batch just back-propagated (rows weighted by ``row_weight``)."""
        calls, self.calls = self.calls, []
        calls = [(x, d) for x, d in calls if d is not None]
        if len(calls) == 1:
            x, delta = calls[0]
            self.weight += (row_weight[:, None] * delta * delta).T @ (x * x)
            self.bias += row_weight @ (delta * delta)
        elif calls:  # the layer ran more than once per row: a row's gradient sums the calls
            weight = sum(torch.einsum("bo,bi->boi", d, x) for x, d in calls)
            bias = sum(d for _, d in calls)
            self.weight += torch.einsum("b,boi->oi", row_weight, weight * weight)
            self.bias += row_weight @ (bias * bias)


def solve_widths(module: nn.Module,
                 batches: Callable[[], Iterable[tuple[torch.Tensor, torch.Tensor]]],
                 n_train: int, passes: int, step: float = 0.5,
                 min_step: float = 1 / 32) -> list[dict[str, float]]:
    r"""Solve every Bayesian width of ``module`` for the ELBO optimum at its mean weights.

    ``batches()`` gives a fresh generator of ``(per_row_loss, row_weight)`` of the training
    rows, computed *while iterating*, so that the layers' hooks see the forward passes. Each
    of the ``passes`` takes the diagonal empirical Fisher
    :math:`h_j = \sum_i w_i g_{ij}^2 / \sum_i w_i` of the per-row loss gradients
    :math:`g_{ij}` with respect to the means and moves :math:`x_j = \log\sigma_j^2` a step
    :math:`\beta_j` towards the solution :math:`x_j^* = -\log(N_\text{train} h_j +
    1/\sigma_p^2)`: :math:`x_j \leftarrow x_j + \beta_j (x_j^* - x_j)` (the module
    docstring derives it). In training mode the rows see weights drawn from the current
    :math:`q_\phi`, so :math:`x^*` depends on :math:`x`, and decreasingly (wider weights,
    larger gradients, narrower solution): the steps start at ``step`` and a weight's step is
    halved (down to ``min_step``) whenever its residual :math:`x_j^* - x_j` changes sign, which
    brackets its fixed point as bisection would. Returns, per pass, the rows, the weighted mean
    loss of the rows and the :func:`width_summary` of the new widths.
    """
    layers = bayesian_layers(module)
    log_vars = [t for layer in layers for t in (layer.weight_log_var, layer.bias_log_var)]
    steps = [torch.full_like(t, step) for t in log_vars]
    residuals = [torch.zeros_like(t) for t in log_vars]
    summaries = []
    for _ in range(passes):
        fishers, rows, weight_sum, loss = _fisher(module, layers, batches())
        with torch.no_grad():
            for k, (fisher, log_var) in enumerate(zip(fishers, log_vars, strict=True)):
                prior_precision = 1.0 / layers[k // 2].prior_sigma ** 2
                solution = -torch.log(n_train * (fisher / weight_sum).clamp_min(0.0)
                                      + prior_precision)
                residual = solution - log_var
                flipped = residual * residuals[k] < 0
                steps[k] = torch.where(flipped, (steps[k] / 2).clamp_min(min_step), steps[k])
                residuals[k] = residual
                log_var.add_(steps[k] * residual)
        summaries.append({"rows": rows, "loss": loss, **width_summary(module)})
    return summaries


def _fisher(module: nn.Module, layers: list[BayesianMaskedLinear],
            batches: Iterable[tuple[torch.Tensor, torch.Tensor]]
            ) -> tuple[list[torch.Tensor], int, float, float]:
    """Weighted sums of the squared per-row gradients of the means (weights, biases of each
    layer in turn), the rows, their total weight and their weighted mean loss."""
    gradients = [_RowGradients(layer) for layer in layers]
    rows, weight_sum, loss_sum = 0, 0.0, 0.0
    try:
        for per_row_loss, row_weight in batches:
            module.zero_grad(set_to_none=True)
            per_row_loss.sum().backward()
            for gradient in gradients:
                gradient.accumulate(row_weight)
            rows += len(row_weight)
            weight_sum += float(row_weight.sum())
            loss_sum += float(row_weight @ per_row_loss.detach())
    finally:
        for gradient in gradients:
            gradient.handle.remove()
        module.zero_grad(set_to_none=True)
    if weight_sum <= 0:
        raise ValueError("solve_widths needs training rows with a positive total weight")
    fishers = [t for gradient in gradients for t in (gradient.weight, gradient.bias)]
    return fishers, rows, weight_sum, loss_sum / weight_sum


def width_summary(module: nn.Module) -> dict[str, float]:
    r"""Median and 5th/95th percentiles of :math:`\log\sigma^2` over the Bayesian weights and
    biases of ``module`` (masked-out entries excluded)."""
    with torch.no_grad():
        values = torch.cat([t for layer in bayesian_layers(module)
                            for t in (layer.weight_log_var[layer.mask.bool()],
                                      layer.bias_log_var)]).cpu().numpy()
    low, median, high = np.percentile(values, [5, 50, 95])
    return {"median_log_var": round(float(median), 3), "log_var_5": round(float(low), 3),
            "log_var_95": round(float(high), 3)}

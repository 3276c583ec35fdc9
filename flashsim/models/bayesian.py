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
2. *Widths, solved.* The ELBO's stationarity in :math:`\sigma_j^2` at fixed means is, by
   Price's theorem (:math:`\partial \langle \ell \rangle_q / \partial\sigma_j^2 = \tfrac12
   \langle \partial^2 \ell / \partial\theta_j^2 \rangle_q` for Gaussian :math:`q`; Opper,
   Archambeau, Neural Comput. 21, 786 (2009)),

   .. math:: \frac{1}{\sigma_j^2} = N_\text{train}\, h_j + \frac{1}{\sigma_p^2},
      \qquad h_j = \Big\langle \frac{\partial^2 \bar\ell}{\partial\theta_j^2} \Big\rangle_q,

   with :math:`\bar\ell` the weighted mean loss per row. For a locally quadratic loss this is
   the precision of the Laplace approximation (MacKay, Neural Comput. 4, 448 (1992); diagonal
   or Kronecker-factored, Ritter, Botev, Barber, ICLR 2018), and with the Gauss-Newton or
   Fisher curvature the fixed point of Gaussian variational inference (Graves, "Practical
   variational inference for neural networks", NIPS 2011) and of its natural-gradient form,
   Vadam/VOGN (Khan et al., "Fast and scalable Bayesian deep learning by weight-perturbation
   in Adam", ICML 2018, arXiv:1806.04854, where Adam's second moment of the gradient plays
   the Fisher's part). :func:`solve_widths` estimates :math:`h_j` over all training rows as
   :math:`2\,\partial\langle\bar\ell\rangle_q / \partial\sigma_j^2`, the reparameterisation
   gradient under the current :math:`q` (one backward pass per batch), and iterates the
   equation as a damped fixed point: ``width_passes`` passes, each moving
   :math:`\log\sigma_j^2` a fraction :math:`\beta_j` of the way to the solution, with
   :math:`\beta_j` starting at ``width_step`` (default 0.5) and halved each time the weight
   overshoots. What was measured on the way there, on the toy above:

   * The curvature must be taken under :math:`q`, not at the means: at the means every
     weight with :math:`h_j \approx 0` there (the inputs of a unit that is off for every
     row, say) gets the prior width, and one such draw switches the unit on; the loss under
     :math:`q` rose from :math:`-0.37` to :math:`15.4` nats per row.
   * The diagonal empirical Fisher under :math:`q` (the mean squared per-row gradient, the
     Vadam/VOGN curvature) counts the gradient noise that the other weights' widths cause
     as curvature. With 2 000 rows it gave a median :math:`\log\sigma^2` of :math:`-4.44`
     and an ELBO of 3.10 nats per row after the fine-tune, the estimator above :math:`-3.55`
     and 2.74 (better); with 200 000 rows both gave :math:`-5.86`.
   * A plain step (:math:`\beta = 0.5`) oscillates, because the solution narrows as the
     width grows: with 200 000 rows the median went :math:`-5.6, -6.7, -5.8, -6.7, \dots`.
3. *Means under the widths.* ``elbo_epochs`` (default 3) epochs of the loss above on the
   means with the solved widths fixed, so that the means adapt to their noise. The widths
   stay fixed here: with them free, Adam widened them by 0.3 in :math:`\log\sigma^2` in
   3 epochs of 200 000 rows (its steps are again bounded by the learning rate, and the
   gradient noise of the widths is skewed), and solving them again after this phase widened
   them by 0.7 at 2 000 rows, the start of a slow alternation between means that learn to
   ignore the noise and wider widths. The artifact is therefore the ELBO-optimal widths at
   the maximum a posteriori means, with the means then adapted for a fixed, short time.

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


def solve_widths(module: nn.Module,
                 batches: Callable[[], Iterable[tuple[torch.Tensor, torch.Tensor]]],
                 n_train: int, passes: int, step: float = 0.5,
                 min_step: float = 1 / 32) -> list[dict[str, float]]:
    r"""Solve every Bayesian width of ``module`` for the ELBO optimum at its mean weights.

    ``module`` is in training mode (weights drawn from :math:`q_\phi` by local
    reparameterisation); ``batches()`` gives a fresh generator of ``(per_row_loss,
    row_weight)`` of the training rows. Each of the ``passes`` estimates, over all rows, the
    expected curvature :math:`h_j = \langle \partial^2 \bar\ell / \partial\theta_j^2
    \rangle_q = 2\, \partial \langle \bar\ell \rangle_q / \partial\sigma_j^2` (Price's
    theorem; :math:`\bar\ell` the weighted mean loss, its derivative the reparameterisation
    gradient) and moves :math:`x_j = \log\sigma_j^2` a step :math:`\beta_j` towards
    :math:`x_j^* = -\log(N_\text{train} \max(h_j, 0) + 1/\sigma_p^2)`:
    :math:`x_j \leftarrow x_j + \beta_j (x_j^* - x_j)`. :math:`x^*` is the stationary point of
    the ELBO in :math:`\sigma_j^2` at the current :math:`h_j`, and :math:`h_j` depends on the
    widths, decreasingly in :math:`x_j^*` as :math:`x_j` grows, so the steps start at ``step``
    and a weight's step is halved (down to ``min_step``) whenever its residual
    :math:`x_j^* - x_j` changes sign, which brackets its fixed point as bisection would.
    Returns, per pass, the rows, the weighted mean loss under :math:`q_\phi` and the
    :func:`width_summary` of the new widths.
    """
    if not module.training:
        raise ValueError("solve_widths needs the module in training mode (weights drawn from q)")
    layers = bayesian_layers(module)
    log_vars = [t for layer in layers for t in (layer.weight_log_var, layer.bias_log_var)]
    priors = [layer.prior_sigma for layer in layers for _ in (0, 1)]
    steps = [torch.full_like(t, step) for t in log_vars]
    residuals = [torch.zeros_like(t) for t in log_vars]
    for log_var in log_vars:
        log_var.requires_grad_(True)
    summaries = []
    for _ in range(passes):
        sums = [torch.zeros_like(t) for t in log_vars]
        rows, weight_sum, loss_sum = 0, 0.0, 0.0
        for per_row_loss, row_weight in batches():
            module.zero_grad(set_to_none=True)
            loss = row_weight @ per_row_loss
            loss.backward()
            for total, log_var in zip(sums, log_vars, strict=True):
                total += log_var.grad
            rows += len(row_weight)
            weight_sum += float(row_weight.sum())
            loss_sum += float(loss.detach())
        module.zero_grad(set_to_none=True)
        if weight_sum <= 0:
            raise ValueError("solve_widths needs training rows with a positive total weight")
        with torch.no_grad():
            for k, (total, log_var) in enumerate(zip(sums, log_vars, strict=True)):
                # d<l>/d log s^2 = s^2 d<l>/d s^2, so h = 2 (d<l>/d log s^2) / s^2
                curvature = (2 * total / (log_var.exp() * weight_sum)).clamp_min(0.0)
                residual = -torch.log(n_train * curvature + priors[k] ** -2) - log_var
                flipped = residual * residuals[k] < 0
                steps[k] = torch.where(flipped, (steps[k] / 2).clamp_min(min_step), steps[k])
                residuals[k] = residual
                log_var.add_(steps[k] * residual)
        summaries.append({"rows": rows, "loss": loss_sum / weight_sum, **width_summary(module)})
    return summaries


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

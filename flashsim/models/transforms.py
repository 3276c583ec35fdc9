r"""Per-column preprocessing between NanoAOD values and the flow's standardised space.

Every target column becomes one real number :math:`y` that a neural spline flow can
model inside its spline domain :math:`[-5, 5]` (Durkan et al. 2019, arXiv:1906.04032);
:meth:`ColumnTransform.inverse` maps flow samples back onto values NanoAOD allows.

Continuous columns (``kind="continuous"``)
    1. *Spikes*: every exact value carrying at least ``SPIKE_FRACTION`` of the rows
       (at most ``MAX_SPIKES``, e.g. isolation exactly 0, default values like -1, a
       tagger saturated at 1) is taken out of the continuous part. A spike at or below
       the median of the continuous part goes *below* it: the :math:`j`-th such spike is
       smoothed into the band :math:`[\ell - g - (j+1)w,\ \ell - g - jw]` under the
       lowest standardised continuous value :math:`\ell`, with uniform noise (gap
       :math:`g`, width :math:`w`); a spike above the median goes into the mirror band
       over the highest value :math:`h`. Keeping each spike next to the end of the
       distribution it belongs to matters: a b-tag discriminant piling up at exactly 1
       for b jets and at exactly 0 for light jets would otherwise sit in neighbouring
       bands, and the flow would trade one for the other. The inverse snaps anything
       below :math:`\ell - g/2` (above :math:`h + g/2`) back to the exact spike value,
       so spike frequencies and their correlations with other columns are learnt by
       the flow like any other density feature. The artifact records each spike's side
       (``spike_high``); loading one without it is an error. (The shipped artifacts
       trained before spikes could go above had every band below; ``spike_high: false``
       was written into their metadata to say so, with no change to their output.)
    2. *Shape*: ``log`` :math:`t = \log(x + o)`, ``logit`` :math:`t = \log(x/(1-x))`
       (fractions, clipped to :math:`[\epsilon, 1-\epsilon]`), ``symlog``
       :math:`t = \operatorname{sign}(x)\log(1 + |x|/s)` with :math:`s` the fitted median
       of :math:`|x|` (signed heavy tails like impact parameters), or ``none``.
    3. *Standardise* :math:`z = (t - \mu)/\sigma` and compress the tails,
       :math:`y = 4 \tanh(z/4)`, which with the spike bands (at most :math:`4 + g + 2w = 4.8`)
       keeps every value inside the spline domain and maps the far tails onto its edge
       instead of cutting them: nearly linear in the bulk (:math:`y = 0.98` at
       :math:`z = 1`, 2.5 at 3, 3.6 at 6). Sampling clips :math:`y` to the training range
       :math:`[\ell, h]`, so no value goes beyond the most extreme one trained on. Artifacts
       fitted before (no ``tails`` parameter) clamp :math:`z` to :math:`[-4, 4]` instead,
       which cut every value beyond 4σ: the shipped muon flow could not give a pT response
       outside [0.893, 1.121] (σ of log p_T^reco/p_T^gen 0.028), while 0.25% of the
       reference detector's muons in held-out VBF H→μμ lie beyond ±20%, and it clamped
       7–11% of the training muons' ``dxy``, ``dxyErr`` and ``dzErr`` (ttbar).

Discrete columns (``kind="discrete"``: booleans, integers, bit flags, categories)
    The value is mapped to its index :math:`k` in the sorted tuple of allowed values
    (from the NanoAOD schema when it lists them, else the observed range), dequantised
    with :math:`u \sim U(0, 1)` and scaled to :math:`y = 6(k + u)/K - 3`. The inverse
    :math:`k = \lfloor (y + 3)K/6 \rfloor` (clipped to :math:`0..K-1`) is exact for every
    dequantised value, so allowed values and their frequencies round-trip exactly.
    Ordering by value keeps ordinal structure (nested ID working points, counts, bit
    flags whose bits are cumulative) next to each other, which is what the spline learns
    most easily (uniform dequantisation: Uria et al. 2013, Theis et al. 2016).
    An optional ``allowed`` subset of the values (an artifact whose value grid was fitted
    wider than the schema allows) sends a sample that lands in a disallowed bin to the
    allowed bin whose centre is nearest in :math:`y`.

Context (conditioning) columns use the continuous path without spikes or noise.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np

from flashsim.errors import FlashSimError

__all__ = [
    "CLAMP",
    "ColumnSpec",
    "ColumnTransform",
    "Preprocessor",
]

CLAMP = 4.0
SPIKE_FRACTION = 0.01
MAX_SPIKES = 2
_GAP = 0.2
_WIDTH = 0.3
_LOGIT_EPS = 1e-5
_MAX_INTEGER_RANGE = 1024
_CONTINUOUS_PARAMS = ("spikes", "spike_high", "scale", "mean", "std", "lo", "hi")
"""Parameters every continuous column has (``tails`` only those fitted since it exists)."""
_DISCRETE_PARAMS = ("values",)


@dataclass(frozen=True)
class ColumnSpec:
    """How one column is preprocessed (declared by the object modules).

    ``values`` fixes the allowed values of a discrete column; ``spikes=False`` turns off
    spike detection (always off for context columns).
    """

    name: str
    kind: str = "continuous"
    transform: str = "none"
    offset: float = 0.0
    values: tuple[float, ...] | None = None
    spikes: bool = True


@dataclass
class ColumnTransform:
    """A :class:`ColumnSpec` plus the parameters fitted on training data."""

    spec: ColumnSpec
    params: dict[str, Any] = field(default_factory=dict)

    # -- fitting ---------------------------------------------------------------------
    def fit(self, x: np.ndarray, *, context: bool = False) -> ColumnTransform:
        """Fit spikes, scale, mean, std (continuous) or the value set (discrete)."""
        x = np.asarray(x, dtype=np.float64)
        if self.spec.kind == "discrete":
            self.params = {"values": _discrete_values(self.spec, x)}
            return self
        spikes: list[float] = []
        if self.spec.spikes and not context and len(x):
            uniq, counts = np.unique(x, return_counts=True)
            order = np.argsort(-counts, kind="stable")[:MAX_SPIKES]
            spikes = [float(uniq[i]) for i in order if counts[i] >= SPIKE_FRACTION * len(x)]
        cont = x[~np.isin(x, spikes)] if spikes else x
        scale = float(np.median(np.abs(cont))) if len(cont) else 1.0
        median = float(np.median(cont)) if len(cont) else 0.0
        self.params = {"spikes": spikes, "spike_high": [s > median for s in spikes],
                       "scale": scale if scale > 0 else 1.0}
        t = self._shape(cont)
        mean = float(np.mean(t)) if len(t) else 0.0
        std = float(np.std(t)) if len(t) else 1.0
        self.params.update(mean=mean, std=std if std > 1e-12 else 1.0)
        self.params["tails"] = "tanh"
        y = self._compress((t - mean) / self.params["std"])
        lo = float(np.min(y)) if len(y) else -CLAMP
        hi = float(np.max(y)) if len(y) else CLAMP
        self.params.update(lo=lo, hi=max(hi, lo))
        return self

    # -- maps ------------------------------------------------------------------------
    def forward(self, x: np.ndarray, rng: np.random.Generator | None = None) -> np.ndarray:
        """NanoAOD values -> standardised values (noise from ``rng`` for dequantisation)."""
        x = np.asarray(x, dtype=np.float64)
        p = self.params
        if self.spec.kind == "discrete":
            values = np.asarray(p["values"], dtype=np.float64)
            k = np.clip(np.searchsorted(values, x), 0, len(values) - 1)
            u = rng.uniform(size=x.shape) if rng is not None else 0.5
            return 6.0 * (k + u) / len(values) - 3.0
        y = np.clip(self._compress((self._shape(x) - p["mean"]) / p["std"]), p["lo"], p["hi"])
        for spike, (edge, side, j) in zip(p["spikes"], self._bands(), strict=True):
            u = rng.uniform(size=x.shape) if rng is not None else 0.5
            y = np.where(x == spike, edge + side * (_GAP + (j + u) * _WIDTH), y)
        return y

    def inverse(self, y: np.ndarray) -> np.ndarray:
        """Standardised values -> NanoAOD values (exact snap to allowed values and spikes)."""
        y = np.asarray(y, dtype=np.float64)
        p = self.params
        if self.spec.kind == "discrete":
            values = np.asarray(p["values"], dtype=np.float64)
            k = np.clip(np.floor((y + 3.0) * len(values) / 6.0), 0, len(values) - 1)
            k = k.astype(np.int64)
            if "allowed" in p:
                keep = np.flatnonzero(np.isin(values, p["allowed"]))
                centres = 6.0 * (keep + 0.5) / len(values) - 3.0
                nearest = keep[np.argmin(np.abs(y[:, None] - centres[None, :]), axis=1)]
                k = np.where(np.isin(k, keep), k, nearest)
            return values[k]
        t = self._expand(np.clip(y, p["lo"], p["hi"])) * p["std"] + p["mean"]
        x = self._unshape(t)
        bands = self._bands()
        for side in (-1, 1):
            spikes = np.asarray([s for s, b in zip(p["spikes"], bands, strict=True) if b[1] == side])
            if len(spikes):
                edge = p["lo"] if side < 0 else p["hi"]
                depth = side * (y - edge)
                j = np.clip(np.floor((depth - _GAP) / _WIDTH), 0, len(spikes) - 1)
                x = np.where(depth > _GAP / 2, spikes[j.astype(np.int64)], x)
        return x

    def _compress(self, z: np.ndarray) -> np.ndarray:
        """Standardised value -> flow space (module doc, step 3)."""
        if self.params.get("tails") == "tanh":
            return CLAMP * np.tanh(z / CLAMP)
        return np.clip(z, -CLAMP, CLAMP)

    def _expand(self, y: np.ndarray) -> np.ndarray:
        """Flow space -> standardised value (inverse of :meth:`_compress` inside the range)."""
        if self.params.get("tails") == "tanh":
            return CLAMP * np.arctanh(np.clip(y / CLAMP, -1 + 1e-12, 1 - 1e-12))
        return y

    def _bands(self) -> list[tuple[float, int, int]]:
        """Per spike: the edge its band hangs from, the side (-1 below, +1 above), its rank."""
        p = self.params
        bands, rank = [], {-1: 0, 1: 0}
        for is_high in p["spike_high"]:
            side = 1 if is_high else -1
            bands.append((p["hi"] if is_high else p["lo"], side, rank[side]))
            rank[side] += 1
        return bands

    def _shape(self, x: np.ndarray) -> np.ndarray:
        kind, s = self.spec.transform, self.params["scale"]
        if kind == "log":
            return np.log(np.maximum(x + self.spec.offset, 1e-12))
        if kind == "logit":
            x = np.clip(x, _LOGIT_EPS, 1 - _LOGIT_EPS)
            return np.log(x) - np.log1p(-x)
        if kind == "symlog":
            return np.sign(x) * np.log1p(np.abs(x) / s)
        if kind == "none":
            return x
        raise ValueError(f"unknown transform {kind!r}")

    def _unshape(self, t: np.ndarray) -> np.ndarray:
        kind, s = self.spec.transform, self.params["scale"]
        if kind == "log":
            return np.exp(t) - self.spec.offset
        if kind == "logit":
            return 1.0 / (1.0 + np.exp(-t))
        if kind == "symlog":
            return np.sign(t) * np.expm1(np.abs(t)) * s
        return t

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready description (spec and fitted parameters)."""
        spec = asdict(self.spec)
        spec["values"] = list(spec["values"]) if spec["values"] is not None else None
        return {"spec": spec, "params": self.params}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> ColumnTransform:
        """Inverse of :meth:`to_dict`; raises :class:`FlashSimError` for incomplete parameters."""
        spec = dict(data["spec"])
        spec["values"] = tuple(spec["values"]) if spec["values"] is not None else None
        params = dict(data["params"])
        required = _DISCRETE_PARAMS if spec.get("kind") == "discrete" else _CONTINUOUS_PARAMS
        missing = [key for key in required if key not in params]
        if missing:
            raise FlashSimError(f"column {spec['name']!r} lacks the fitted parameter(s) "
                                f"{', '.join(missing)}: re-train the model with this flashsim")
        if "spikes" in params and len(params["spike_high"]) != len(params["spikes"]):
            raise FlashSimError(f"column {spec['name']!r} has {len(params['spikes'])} spikes "
                                f"but {len(params['spike_high'])} spike_high flags: re-train it")
        return cls(ColumnSpec(**spec), params)


def _discrete_values(spec: ColumnSpec, x: np.ndarray) -> list[float]:
    observed = np.unique(x)
    if spec.values is not None:
        allowed = np.asarray(spec.values, dtype=np.float64)
        outside = observed[~np.isin(observed, allowed)]
        if len(outside):
            raise ValueError(f"{spec.name}: values {outside[:5].tolist()} not in the allowed set")
        return sorted(allowed.tolist())
    if len(observed) == 0:
        return [0.0]
    lo, hi = observed.min(), observed.max()
    if np.all(observed == np.round(observed)) and hi - lo < _MAX_INTEGER_RANGE:
        return np.arange(lo, hi + 1).tolist()  # unseen intermediate integers stay reachable
    return observed.tolist()


class Preprocessor:
    """An ordered set of :class:`ColumnTransform` for a table of named columns."""

    def __init__(self, columns: list[ColumnTransform], *, context: bool = False) -> None:
        self.columns = columns
        self.context = context

    @classmethod
    def fit(cls, specs: list[ColumnSpec], data: dict[str, np.ndarray], *,
            context: bool = False) -> Preprocessor:
        """Fit every column of ``specs`` on ``data[name]``."""
        return cls([ColumnTransform(s).fit(data[s.name], context=context) for s in specs],
                   context=context)

    @property
    def names(self) -> list[str]:
        """Column names in order."""
        return [c.spec.name for c in self.columns]

    def forward(self, data: dict[str, np.ndarray],
                rng: np.random.Generator | None = None) -> np.ndarray:
        """Named NanoAOD columns -> ``(n, len(columns))`` float32 standardised matrix."""
        if not self.columns:
            return np.zeros((0, 0), dtype=np.float32)
        cols = [c.forward(data[c.spec.name], None if self.context else rng)
                for c in self.columns]
        return np.stack(cols, axis=1).astype(np.float32)

    def inverse(self, y: np.ndarray) -> dict[str, np.ndarray]:
        """``(n, len(columns))`` standardised matrix -> named NanoAOD columns.

        Continuous columns are float64, integral discrete columns int64.
        """
        y = np.asarray(y, dtype=np.float64)
        out = {}
        for i, c in enumerate(self.columns):
            x = c.inverse(y[:, i])
            # discrete integer columns come back as integers, so dtypes cast exactly
            integral = c.spec.kind == "discrete" and all(float(v).is_integer()
                                                         for v in c.params["values"])
            out[c.spec.name] = x.astype(np.int64) if integral else x
        return out

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready description."""
        return {"context": self.context, "columns": [c.to_dict() for c in self.columns]}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Preprocessor:
        """Inverse of :meth:`to_dict`."""
        return cls([ColumnTransform.from_dict(c) for c in data["columns"]],
                   context=data["context"])

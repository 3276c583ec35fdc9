"""Columnar helpers: within-event pairs, Delta R, and unique closest matching.

Objects are flat arrays grouped by event.  ``event_pairs`` lists, for every object ``a``,
all objects ``b`` of the same event (index arithmetic, no loops over events).
``pairs_near`` lists only the pairs within an (eta, phi) window, through a sorted search in
eta, so its cost grows with the number of neighbours instead of all pairs. ``match_unique`` accepts, round after round, the pairs that are each other's closest
(this reproduces greedy matching in increasing Delta R); the loop runs over rounds
(a handful), never over objects.
"""

from __future__ import annotations

import numpy as np

from flashsim.kinematics import delta_phi, delta_r

__all__ = ["event_offsets", "event_pairs", "local_index", "match_unique", "pairs_near"]


def event_offsets(evt: np.ndarray, n_events: int) -> np.ndarray:
    """Start offsets (length n_events + 1) of objects grouped by sorted event index."""
    return np.concatenate([[0], np.cumsum(np.bincount(evt, minlength=n_events))]).astype(np.int64)


def local_index(evt: np.ndarray, n_events: int) -> np.ndarray:
    """Position of each object inside its event (objects grouped by event)."""
    off = event_offsets(evt, n_events)
    return np.arange(len(evt)) - off[evt]


def event_pairs(evt_a: np.ndarray, off_b: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """All (a, b) index pairs with b in the same event as a; b grouped by event (``off_b``)."""
    start = off_b[evt_a]
    count = off_b[evt_a + 1] - start
    ia = np.repeat(np.arange(len(evt_a)), count)
    first = np.concatenate([[0], np.cumsum(count)[:-1]])
    ib = start[ia] + np.arange(len(ia)) - np.repeat(first, count)
    return ia, ib


def pairs_near(evt_a: np.ndarray, eta_a: np.ndarray, phi_a: np.ndarray, evt_b: np.ndarray,
               eta_b: np.ndarray, phi_b: np.ndarray, max_deta: float, max_dphi: float
               ) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """All pairs (a, b) of the same event with |eta_a - eta_b| <= max_deta and
    |phi_a - phi_b| <= max_dphi: ``(ia, ib, deta, dphi)``, differences b - a.

    ``b`` need not be grouped: it is sorted once by (event, eta) and every ``a`` takes the
    slice between its eta window edges (``searchsorted`` on one combined key)."""
    span = 2.0 * (max(np.max(np.abs(eta_b), initial=0.0), np.max(np.abs(eta_a), initial=0.0))
                  + max_deta + 1.0)
    key_b = evt_b * span + eta_b
    order = np.argsort(key_b, kind="stable")
    key_sorted = key_b[order]
    lo = np.searchsorted(key_sorted, evt_a * span + eta_a - max_deta, side="left")
    hi = np.searchsorted(key_sorted, evt_a * span + eta_a + max_deta, side="right")
    count = hi - lo
    ia = np.repeat(np.arange(len(evt_a)), count)
    first = np.cumsum(count) - count  # position of each a's first pair
    ib = order[np.repeat(lo, count) + np.arange(len(ia)) - np.repeat(first, count)]
    dphi = delta_phi(phi_b[ib], phi_a[ia])
    keep = np.abs(dphi) <= max_dphi
    ia, ib = ia[keep], ib[keep]
    return ia, ib, eta_b[ib] - eta_a[ia], dphi[keep]


def _best(key: np.ndarray, dist: np.ndarray) -> np.ndarray:
    """Boolean mask of the smallest-distance pair for each value of ``key``."""
    order = np.lexsort((dist, key))
    first = np.ones(len(order), dtype=bool)
    first[1:] = key[order][1:] != key[order][:-1]
    mask = np.zeros(len(key), dtype=bool)
    mask[order[first]] = True
    return mask


def match_unique(evt_a, eta_a, phi_a, evt_b, eta_b, phi_b, n_events: int, max_dr: float,
                 compatible=None) -> np.ndarray:
    """For each ``a``, the global index of its uniquely matched ``b`` (closest, Delta R < max_dr), or -1.

    ``compatible(ia, ib) -> bool array`` optionally vetoes pairs (e.g. pT compatibility).
    """
    result = np.full(len(evt_a), -1, dtype=np.int64)
    if len(evt_a) == 0 or len(evt_b) == 0:
        return result
    ia, ib = event_pairs(evt_a, event_offsets(evt_b, n_events))
    dr = delta_r(eta_a[ia], phi_a[ia], eta_b[ib], phi_b[ib])
    keep = dr < max_dr
    if compatible is not None:
        keep &= compatible(ia, ib)
    ia, ib, dr = ia[keep], ib[keep], dr[keep]
    while len(ia):
        mutual = _best(ia, dr) & _best(ib, dr)
        result[ia[mutual]] = ib[mutual]
        used_a = np.zeros(len(evt_a), dtype=bool)
        used_b = np.zeros(len(evt_b), dtype=bool)
        used_a[ia[mutual]] = True
        used_b[ib[mutual]] = True
        rest = ~used_a[ia] & ~used_b[ib]
        ia, ib, dr = ia[rest], ib[rest], dr[rest]
    return result

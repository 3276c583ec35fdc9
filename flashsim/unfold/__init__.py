"""``flashsim unfold``: detector-level events back to GEN level, with calibrated posteriors.

Tasks (one module each: GEN targets, RECO inputs, selection): :data:`TASKS`. Methods (one
module each): :mod:`~flashsim.unfold.cinn` (per-event posteriors, the default),
:mod:`~flashsim.unfold.ibu` (binned iterative Bayesian unfolding),
:mod:`~flashsim.unfold.omnifold` (classifier reweighting of a GEN sample). Commands:
:mod:`~flashsim.unfold.run` (train, apply) and :mod:`~flashsim.unfold.validation`.
"""

from __future__ import annotations

from flashsim.errors import FlashSimError
from flashsim.unfold import dimuon, ttbar_mujets
from flashsim.unfold.task import UnfoldingTask

__all__ = ["METHODS", "TASKS", "get_task"]

TASKS: dict[str, UnfoldingTask] = {t.name: t for t in (dimuon.TASK, ttbar_mujets.TASK)}
METHODS = ("cinn", "ibu", "omnifold")


def get_task(name: str) -> UnfoldingTask:
    """The task called ``name``, or one clear error listing the tasks."""
    try:
        return TASKS[name]
    except KeyError:
        raise FlashSimError(f"unknown unfolding task {name!r}; choose one of "
                            f"{', '.join(TASKS)}") from None

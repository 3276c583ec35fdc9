"""Shared pytest fixtures."""

from __future__ import annotations

from pathlib import Path

import pytest

REFERENCE_NANO = Path(__file__).parents[1].parent / "shared/reference/nano_dy.root"


@pytest.fixture(scope="session")
def reference_nano() -> Path:
    """The 40-event real CMS NANOAODSIM reference file (DY, RunIIAutumn18 NanoAODv6)."""
    if not REFERENCE_NANO.is_file():
        pytest.skip(
            f"reference NanoAOD file {REFERENCE_NANO} is absent (it lives outside the repo)"
        )
    return REFERENCE_NANO

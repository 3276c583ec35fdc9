"""Shared pytest fixtures."""

from __future__ import annotations

import importlib.util
from pathlib import Path
from types import ModuleType

import pytest

DATA = Path(__file__).parent / "data"
"""Test data shipped with the repository (see data/README.md for sources and licences)."""
TINY_ARCHITECTURE = {"transforms": 1, "bins": 4, "hidden_features": [16], "passes": 2}
"""A flow/classifier small enough to train on 40 events in seconds (tests only)."""
TRAINING = Path(__file__).parent.parent / "training"


def training_script(name: str) -> ModuleType:
    """The script ``training/NAME.py`` as a module (``training/`` is not a package)."""
    spec = importlib.util.spec_from_file_location(name, TRAINING / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="session")
def reference_nano() -> Path:
    """The 40-event real CMS NANOAODSIM reference file (DY, RunIIAutumn18 NanoAODv6)."""
    return DATA / "nano_dy.root"


@pytest.fixture(scope="session")
def reference_branch_names() -> list[str]:
    """Names of the reference file's branches of the collections flashsim reads or writes."""
    rows = (DATA / "nano_dy_branches.tsv").read_text().splitlines()[1:]
    return [row.split("\t")[0] for row in rows]


@pytest.fixture(scope="session")
def dy_refdet_sample(tmp_path_factory) -> Path:
    """300 Drell-Yan -> mumu events with the reference detector (GEN + RECO NANOAODSIM),
    generated once per session (about 20 s)."""
    from flashsim.production import generate_file

    path = tmp_path_factory.mktemp("dy_refdet") / "dy_mumu_300.root"
    generate_file("dy_mumu", 300, path, seed=1_800_018, refsim=True, progress=False)
    return path


@pytest.fixture(scope="session")
def tiny_models(reference_nano, tmp_path_factory) -> Path:
    """A complete model directory (every model, one epoch, tiny networks), trained once."""
    import torch

    from flashsim.objects.training import train_object

    torch.set_num_threads(1)
    out = tmp_path_factory.mktemp("tiny_models")
    train_object("all", [reference_nano], out, epochs=1, architecture=TINY_ARCHITECTURE,
                 progress=False)
    return out

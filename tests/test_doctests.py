"""The examples in the docstrings of the public entry points run and print what they show."""

from __future__ import annotations

import doctest
import importlib

import pytest

MODULES = [
    "flashsim.kinematics",
    "flashsim.nanoaod.writer",  # write_nanoaod
    pytest.param("flashsim.objects", marks=pytest.mark.slow),  # load_models
    pytest.param("flashsim.processor", marks=pytest.mark.slow),  # FlashSimProcessor
]


@pytest.mark.parametrize("name", MODULES)
def test_docstring_examples(name, monkeypatch):
    from coffea.util import coffea_console

    # coffea's Runner draws its progress bars on stdout, even with status=False
    monkeypatch.setattr(coffea_console, "quiet", True)
    module = importlib.import_module(name)
    result = doctest.testmod(module, optionflags=doctest.ELLIPSIS)
    assert result.attempted > 0, f"{name} has no docstring examples"
    assert result.failed == 0, f"{result.failed} docstring example(s) of {name} failed (see stdout)"

"""flashsim.output_path: output locations are checked before any work."""

from __future__ import annotations

import pytest

from flashsim.errors import FlashSimError
from flashsim.output_path import check_output_directory, check_output_file


def test_output_file(tmp_path):
    assert check_output_file(tmp_path / "a.root") == tmp_path / "a.root"
    with pytest.raises(FlashSimError, match="is a directory"):
        check_output_file(tmp_path)
    with pytest.raises(FlashSimError, match="missing does not exist"):
        check_output_file(tmp_path / "missing" / "a.root")
    assert check_output_file(tmp_path / "new" / "deeper" / "a.root", create_folders=True)
    blocker = tmp_path / "blocker"
    blocker.write_text("a file where a folder should be\n")
    with pytest.raises(FlashSimError, match="is not a folder"):
        check_output_file(blocker / "a.root")
    with pytest.raises(FlashSimError, match="cannot write to"):
        check_output_file(blocker / "sub" / "a.root", create_folders=True)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["blocker"]  # nothing left behind


def test_output_directory(tmp_path):
    assert check_output_directory(tmp_path / "out") == tmp_path / "out"
    assert check_output_directory(tmp_path) == tmp_path
    blocker = tmp_path / "blocker"
    blocker.write_text("x\n")
    with pytest.raises(FlashSimError, match="exists and is not a directory"):
        check_output_directory(blocker)
    with pytest.raises(FlashSimError, match="cannot write to"):
        check_output_directory(blocker / "out")

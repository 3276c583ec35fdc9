"""Checks that an output location can be written, before any work is done.

Every command that writes a file checks its output path first, so that a typo in ``-o``
costs no generation or simulation time and leaves nothing behind. Writability is probed
by creating (and at once deleting) a temporary file, which is what the write will do;
``os.access`` would answer yes for read-only file systems.
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

from flashsim.errors import FlashSimError

__all__ = ["check_output_directory", "check_output_file"]


def check_output_file(path: str | os.PathLike[str], *, create_folders: bool = False) -> Path:
    """Raise :class:`FlashSimError` unless a file can be written at ``path``; return it.

    The file's folder must exist, unless ``create_folders`` (the caller creates it), in
    which case its nearest existing ancestor must be a writable folder.
    """
    path = Path(path)
    if path.is_dir():
        raise FlashSimError(f"output {path} is a directory; give a file name ending in .root")
    folder = path.parent
    if create_folders:
        _check_creatable(folder)
    elif not folder.is_dir():
        raise FlashSimError(f"output folder {folder} does not exist or is not a folder; "
                            "create it or choose another output path")
    elif not _writable(folder):
        raise FlashSimError(f"cannot write to {folder}: choose an output location you can "
                            "write to")
    return path


def check_output_directory(path: str | os.PathLike[str]) -> Path:
    """Raise :class:`FlashSimError` unless ``path`` is, or can be created as, a writable
    directory; return it."""
    path = Path(path)
    if path.exists() and not path.is_dir():
        raise FlashSimError(f"{path} exists and is not a directory; give a new directory name "
                            "or a file name ending in .root")
    _check_creatable(path)
    return path


def _check_creatable(folder: Path) -> None:
    """``folder`` exists as a writable directory, or its nearest existing ancestor is one."""
    probe = folder
    while not probe.exists():
        probe = probe.parent
    if not probe.is_dir() or not _writable(probe):
        raise FlashSimError(f"cannot write to {folder}: choose an output location you can "
                            "write to")


def _writable(directory: Path) -> bool:
    try:
        with tempfile.TemporaryFile(dir=directory):
            return True
    except OSError:
        return False

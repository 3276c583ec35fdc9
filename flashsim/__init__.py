"""flashsim: generator-level events to CMS NANOAOD with conditional normalizing flows."""

from __future__ import annotations

from importlib.metadata import PackageNotFoundError, version

from flashsim.errors import FlashSimError

try:
    __version__ = version("flashsim")
except PackageNotFoundError:  # running from a source tree that is not installed
    __version__ = "0.0.0"

__all__ = ["FlashSimError", "__version__"]

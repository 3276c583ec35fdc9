"""The one exception type that reaches users as a message instead of a traceback."""

from __future__ import annotations

__all__ = ["FlashSimError"]


class FlashSimError(Exception):
    """An error the user can fix: the message names the problem and the fix.

    The command-line interface prints the message and exits with status 2;
    library users catch it like any other exception.
    """

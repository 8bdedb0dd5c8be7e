"""The one exception type for bad input, so entry points can tell a user's mistake from a bug.

Core code raises ``UserInputError`` (or a subclass, such as ``data.schema.DataValidationError``)
when an argument, a file or a value the caller chose is wrong: an unknown model kind, a
negative record count, a trace whose units cannot be told apart. Its message is one line that
says what is wrong and what to do. ``mlco`` catches exactly this type (``cli.USER_ERRORS``) and
prints that line with exit status 2; every other exception is a bug and keeps its traceback.

It subclasses ``ValueError`` because that is what such checks raised before, so callers that
catch ``ValueError`` keep working. This module imports nothing, so any layer (the lean model
server included) can use it.
"""

from __future__ import annotations

__all__ = ["UserInputError"]


class UserInputError(ValueError):
    """Bad input from the user or caller; the message is one line saying what is wrong and what to do."""

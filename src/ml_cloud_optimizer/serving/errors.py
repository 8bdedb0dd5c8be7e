"""What a client got wrong: ``ErrorKind`` names the kind of mistake, ``RequestError`` carries it.

Every mistake the parser or the model diagnoses raises ``RequestError``, a KServe
``InvalidInput`` (so HTTP 400 and gRPC INVALID_ARGUMENT), whose message starts with the
field at fault. Its ``kind`` is the label of the error counter (``kind.value``), so the
eleven values below are the whole vocabulary of client mistakes on ``/metrics``; failures
that are not the client's are counted as ``internal`` by the model.
"""

from __future__ import annotations

from enum import Enum

from kserve.errors import InvalidInput

__all__ = ["ERROR_KINDS", "ErrorKind", "RequestError"]


class ErrorKind(str, Enum):
    """The kinds of client mistake; each value is a label value of ``mlco_request_errors``."""

    MALFORMED = "malformed"
    MISSING_FIELD = "missing_field"
    UNKNOWN_FIELD = "unknown_field"
    WRONG_TYPE = "wrong_type"
    BAD_SHAPE = "bad_shape"
    NON_FINITE = "non_finite"
    OUT_OF_RANGE = "out_of_range"
    HISTORY_TOO_SHORT = "history_too_short"
    UNKNOWN_HORIZON = "unknown_horizon"
    OVERSIZED = "oversized"
    UNSUPPORTED = "unsupported"

    def __str__(self) -> str:
        return self.value


# The label values, in declaration order.
ERROR_KINDS = tuple(kind.value for kind in ErrorKind)


class RequestError(InvalidInput):
    """A client mistake: ``field`` names where it is, ``kind`` what it is.

    Args:
        field: where the mistake is, e.g. ``instances[0].history.ts``.
        message: what is wrong there; the error reads ``"{field}: {message}"``.
        kind: an ``ErrorKind`` (or its value).
    """

    def __init__(self, field: str, message: str, kind: ErrorKind | str):
        super().__init__(f"{field}: {message}")
        self.field = field
        self.kind = ErrorKind(kind)

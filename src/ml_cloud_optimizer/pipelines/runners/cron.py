"""Six-field cron expressions as Kubeflow Pipelines schedules them, checked before anything is sent.

KFP's scheduler reads cron with a leading seconds field (``"0 0 2 * * *"`` is 02:00:00 every
day). A five-field expression written out of habit would be read one field off, so it is
refused here with a message that says so, rather than accepted by the server and run at the
wrong time.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from ml_cloud_optimizer.errors import UserInputError

__all__ = ["CronError", "validate_cron"]


class CronError(UserInputError):
    """A cron expression KFP would refuse or misread; the message names the field."""


@dataclass(frozen=True)
class _Field:
    name: str
    low: int
    high: int
    names: tuple[str, ...] = ()  # symbolic values, the first standing for ``low``
    question_mark: bool = False  # "?" (no specific value) is allowed


_MONTHS = ("JAN", "FEB", "MAR", "APR", "MAY", "JUN", "JUL", "AUG", "SEP", "OCT", "NOV", "DEC")
_DAYS = ("SUN", "MON", "TUE", "WED", "THU", "FRI", "SAT")

_FIELDS = (
    _Field("second", 0, 59),
    _Field("minute", 0, 59),
    _Field("hour", 0, 23),
    _Field("day of month", 1, 31, question_mark=True),
    _Field("month", 1, 12, names=_MONTHS),
    _Field("day of week", 0, 6, names=_DAYS, question_mark=True),
)

_DESCRIPTORS = {"@yearly", "@annually", "@monthly", "@weekly", "@daily", "@midnight", "@hourly"}
_TERM = re.compile(r"^(?P<range>\*|[A-Za-z0-9]+(?:-[A-Za-z0-9]+)?)(?:/(?P<step>\d+))?$")
_EVERY = re.compile(r"^@every\s+(\d+(\.\d+)?(ns|us|µs|ms|s|m|h))+$")


def validate_cron(expression: str) -> str:
    """Return ``expression`` normalised (single spaces) if KFP will schedule it as intended.

    Args:
        expression: six space-separated fields (second minute hour day-of-month month
            day-of-week), or a descriptor such as ``@daily`` or ``@every 6h``.

    Returns:
        The expression with whitespace collapsed.

    Raises:
        CronError: wrong number of fields, a value out of range, a malformed term.

    Example:
        >>> validate_cron("0 0 2 * * *")
        '0 0 2 * * *'
    """
    text = " ".join(str(expression).split())
    if not text:
        raise CronError("cron expression is empty; expected six fields, e.g. '0 0 2 * * *'")
    if text.startswith("@"):
        if text in _DESCRIPTORS or _EVERY.match(text):
            return text
        raise CronError(f"unknown cron descriptor {text!r}; use six fields or one of {', '.join(sorted(_DESCRIPTORS))}")
    parts = text.split(" ")
    if len(parts) != len(_FIELDS):
        hint = " (KFP wants seconds first: prepend '0 ')" if len(parts) == 5 else ""
        raise CronError(
            f"cron expression {text!r} has {len(parts)} fields; KFP expects 6:"
            f" second minute hour day-of-month month day-of-week{hint}"
        )
    for part, spec in zip(parts, _FIELDS, strict=True):
        _check_field(part, spec)
    return text


def _check_field(part: str, spec: _Field) -> None:
    if part == "?":
        if not spec.question_mark:
            raise CronError(f"cron {spec.name} field: '?' is only allowed in day of month and day of week")
        return
    for term in part.split(","):
        match = _TERM.match(term)
        if not match:
            raise CronError(f"cron {spec.name} field: cannot read {term!r}")
        step = match.group("step")
        if step is not None and int(step) == 0:
            raise CronError(f"cron {spec.name} field: step 0 in {term!r}")
        if match.group("range") == "*":
            continue
        bounds = [_value(v, spec, term) for v in match.group("range").split("-")]
        if len(bounds) == 2 and bounds[0] > bounds[1]:
            raise CronError(f"cron {spec.name} field: range {term!r} runs backwards")


def _value(token: str, spec: _Field, term: str) -> int:
    upper = token.upper()
    if upper in spec.names:
        return spec.low + spec.names.index(upper)
    if not token.isdigit():
        raise CronError(f"cron {spec.name} field: {token!r} in {term!r} is not a number")
    value = int(token)
    if not spec.low <= value <= spec.high:
        raise CronError(f"cron {spec.name} field: {value} is outside {spec.low}-{spec.high}")
    return value

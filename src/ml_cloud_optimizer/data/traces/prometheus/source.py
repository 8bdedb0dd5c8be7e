"""The ``prometheus://`` source string: one string that carries server, range, level, filters and auth.

Why one string: ``mlco train --source``, ``mlco run --source``, ``mlco recommend --source``,
``mlco db load`` and the pipeline's ``source`` parameter all take a trace path and nothing else,
so everything a Prometheus read needs rides in the query string; ``mlco ingest``'s flags (and
``read``'s keywords) override it. Secrets never have to be in it: a bearer token comes from a file
(``token_file=``) or ``MLCO_PROMETHEUS_TOKEN``, a basic-auth password from ``password_file=`` or
``MLCO_PROMETHEUS_PASSWORD``, so the string can be logged and stored as the fleet's source.
"""

from __future__ import annotations

import math
import re
import time
from dataclasses import dataclass
from urllib.parse import parse_qsl, quote, urlsplit

import pandas as pd

from ml_cloud_optimizer.data.schema import STEP_SECONDS
from ml_cloud_optimizer.errors import UserInputError

__all__ = ["DEFAULT_DAYS", "LEVELS", "PARAMS", "SCHEMES", "Source", "is_url", "parse", "parse_selector"]

# Source strings with these prefixes are Prometheus servers, not paths.
SCHEMES = {"prometheus": "http", "prometheus+http": "http", "prometheus+https": "https"}
LEVELS = ("pod", "workload", "node")
DEFAULT_LEVEL = "workload"
DEFAULT_DAYS = 14
PARAMS = (
    "start",
    "end",
    "step",
    "level",
    "namespace",
    "selector",
    "window",
    "token_file",
    "user",
    "password_file",
    "ca_file",
)
_DURATION = re.compile(r"^(\d+)(ms|s|m|h|d|w)$")
_UNIT_SECONDS = {"ms": 0.001, "s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800}
# PromQL label matchers: NAME, an operator, a quoted string ("...", '...' or `...`).
_STRING = r'"(?:[^"\\\n]|\\.)*"' + r"|'(?:[^'\\\n]|\\.)*'" + r"|`[^`]*`"
_MATCHER = re.compile(rf"\s*([a-zA-Z_][a-zA-Z0-9_]*)\s*(=~|!~|!=|=)\s*({_STRING})\s*")
_SELECTOR_HINT = (
    'expected label matchers such as app="web",tier!="db" (NAME, then =, !=, =~ or !~, then a quoted value)'
)


def is_url(source: object) -> bool:
    """Whether ``source`` is a ``prometheus://`` (or ``prometheus+https://``) source string."""
    return isinstance(source, str) and "://" in source and source.split("://", 1)[0].lower() in SCHEMES


@dataclass(frozen=True)
class Source:
    """A parsed source string: where to ask, for which slots, at which level, as whom."""

    prefix: str  # the scheme as written: prometheus, prometheus+http or prometheus+https
    base: str  # http(s)://host:port/path, what the HTTP client talks to
    start: int  # first instant queried, epoch seconds: the first 5-minute slot when step is 5m
    end: int  # last instant queried: the last 5-minute slot when step is 5m
    step: int  # seconds between the instants queried: 300, or a divisor of it (averaged into slots)
    level: str
    namespace: str | None
    selector: str  # normalised label matchers, "" for none
    window: str
    token_file: str | None
    user: str | None
    password_file: str | None
    ca_file: str | None

    @property
    def https(self) -> bool:
        return self.base.startswith("https://")

    @property
    def label(self) -> str:
        """The canonical source string: range resolved, overrides applied, no secrets (they are never in it)."""
        params = {
            "start": str(self.start),
            "end": str(self.end),
            "step": "5m" if self.step == STEP_SECONDS else f"{self.step}s",
            "level": self.level,
            "namespace": self.namespace,
            "selector": self.selector or None,
            "window": self.window,
            "user": self.user,
            "token_file": self.token_file,
            "password_file": self.password_file,
            "ca_file": self.ca_file,
        }
        query = "&".join(f"{k}={quote(v, safe='/:')}" for k, v in params.items() if v)
        return f"{self.prefix}://{self.base.split('://', 1)[1]}?{query}"


def parse(source: str, overrides: dict | None = None) -> Source:
    """The ``Source`` a string names, ``overrides`` (``PARAMS`` names) replacing its parameters.

    Every mistake is a one-line ``UserInputError`` naming the string and the parameter.
    """
    try:
        parts = urlsplit(source)
        port = parts.port
    except ValueError as exc:
        raise UserInputError(f"{source}: not a Prometheus URL ({exc}); expected prometheus://HOST:PORT?...") from None
    prefix = parts.scheme.lower()
    scheme = SCHEMES.get(prefix)
    if scheme is None or not parts.hostname:
        raise UserInputError(f"{source}: expected prometheus://HOST:PORT or prometheus+https://HOST:PORT")
    if parts.password is not None:
        raise UserInputError(
            f"{prefix}://{parts.hostname}: a password in the URL would be logged and stored with the fleet;"
            " set MLCO_PROMETHEUS_PASSWORD or pass password_file= instead"
        )
    params = dict(parse_qsl(parts.query, keep_blank_values=True))
    unknown = sorted(set(params) - set(PARAMS))
    if unknown:
        raise UserInputError(f"{source}: unknown parameter {', '.join(unknown)}; known: {', '.join(PARAMS)}")
    if parts.username:
        params.setdefault("user", parts.username)
    params.update({k: str(v) for k, v in (overrides or {}).items() if v is not None})
    level = params.get("level") or DEFAULT_LEVEL
    if level not in LEVELS:
        raise UserInputError(f"{source}: level={level}: expected one of {', '.join(LEVELS)}")
    namespace = params.get("namespace") or None
    if namespace and level == "node":
        raise UserInputError(f"{source}: namespace={namespace}: nodes belong to no namespace; use selector= instead")
    step_text = params.get("step") or "5m"
    step = _seconds(step_text, source, "step")
    if step != int(step) or not 1 <= step <= STEP_SECONDS or STEP_SECONDS % step:
        raise UserInputError(
            f"{source}: step={step_text}: expected 5m or a step that divides it (15s, 30s, 1m...),"
            " whose samples are averaged into the 5-minute slots"
        )
    step = int(step)
    window = params.get("window") or "5m"
    if _seconds(window, source, "window") <= 0:
        raise UserInputError(f"{source}: window={window}: the rate() window must be longer than zero")
    now = time.time()
    end = _instant(params["end"], source, "end") if params.get("end") else now
    start = _instant(params["start"], source, "start") if params.get("start") else end - DEFAULT_DAYS * 86400
    # A finer step reads every instant of the range; the slots are then the 5 minutes ending at each.
    start_slot, end_slot = math.ceil(start / step) * step, int(end // step) * step
    if start_slot > end_slot:
        raise UserInputError(f"{source}: start is after end (or they share one {step_text} step)")
    host = f"[{parts.hostname}]" if ":" in parts.hostname else parts.hostname
    return Source(
        prefix=prefix,
        base=f"{scheme}://{host}{f':{port}' if port else ''}{parts.path.rstrip('/')}",
        start=start_slot,
        end=end_slot,
        level=level,
        namespace=namespace,
        selector=parse_selector(params.get("selector") or "", source),
        window=window,
        step=step,
        token_file=params.get("token_file") or None,
        user=params.get("user") or None,
        password_file=params.get("password_file") or None,
        ca_file=params.get("ca_file") or None,
    )


def parse_selector(text: str, source: str = "selector") -> str:
    """``app="web", tier!="db"`` (braces optional) as normalised PromQL matchers, or a one-line error."""
    body = text.strip()
    if body.startswith("{") and body.endswith("}"):
        body = body[1:-1].strip()
    matchers, pos = [], 0
    while pos < len(body):
        match = _MATCHER.match(body, pos)
        if match is None:
            raise UserInputError(f"{source}: selector {text!r}: {_SELECTOR_HINT}; cannot read {body[pos:]!r}")
        if match.group(1) == "__name__":
            raise UserInputError(f"{source}: selector {text!r}: __name__ is set by mlco; match other labels")
        matchers.append("".join(match.groups()))
        pos = match.end()
        if pos < len(body):
            if body[pos] != ",":
                raise UserInputError(f"{source}: selector {text!r}: {_SELECTOR_HINT}; expected a comma at {pos}")
            pos += 1
            if not body[pos:].strip():
                break
    return ",".join(matchers)


def _seconds(text: str, source: str, name: str) -> float:
    match = _DURATION.match(text.strip())
    if not match:
        raise UserInputError(f"{source}: {name}={text}: expected a duration such as 5m, 300s or 1h")
    return int(match.group(1)) * _UNIT_SECONDS[match.group(2)]


def _instant(text: str, source: str, name: str) -> float:
    """Unix seconds from RFC 3339 or a number of seconds."""
    text = re.sub(r" (\d\d:?\d\d)$", r"+\1", text.strip())  # a "+" offset that URL decoding made a space
    try:
        return float(text)
    except ValueError:
        pass
    try:
        stamp = pd.Timestamp(text)
    except ValueError:
        stamp = pd.NaT
    if stamp is pd.NaT:
        raise UserInputError(f"{source}: {name}={text}: expected RFC 3339 or unix seconds")
    stamp = stamp.tz_localize("UTC") if stamp.tzinfo is None else stamp
    return float(stamp.timestamp())

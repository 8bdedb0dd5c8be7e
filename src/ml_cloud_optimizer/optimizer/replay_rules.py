"""What every replayed policy pays for changing capacity, and the updater that decides when it may.

Why a module of its own: a replay in which any policy may resize every five minutes for free
flatters whichever policy resizes most. Here a policy only *proposes* (a ``Plan``: the request
it wants and the bounds inside which it leaves the current request alone); ``actuate`` plays
the proposal out step by step under one set of ``ReplayRules``, the same for every policy.

When a request is changed follows the Kubernetes VPA updater (kubernetes/autoscaler,
``vertical-pod-autoscaler/pkg/updater/priority/priority_processor.go`` and
``update_priority_calculator.go``):

* a request outside the plan's ``[lower, upper]`` is changed to the target at once;
* a request inside it is changed only where the plan allows in-bounds updates (``settle``, the
  VPA's own rule): once the pod has lived ``lifetime`` (the updater's
  ``--in-recommendation-bounds-eviction-lifetime-threshold``, 12 h) and the target differs from
  the request by at least ``min_change`` of it (``--pod-update-threshold``, 0.1);
* a scale-down can be held at the highest recommendation of the last ``stabilise_steps``
  steps (the HPA's scale-down stabilisation window).

And every policy pays the same costs:

* **minimum interval**: no change within ``min_interval`` of the entity's previous change;
* **fresh metrics only**: a controller that got no new sample in the last step does not act
  (the HPA skips a scale when metrics are missing; the VPA's recommendation cannot move);
* **start-up delay**: capacity added at ``t`` serves from ``t + startup_delay``. Horizontally
  (pods added or removed, the HPA) a scale-up serves after the delay and a scale-down at once.
  Vertically a change either **evicts** the pod (the default, VPA ``updateMode: Recreate``): the
  pod is recreated, nothing serves during the delay whichever the direction, and it counts a
  restart; or resizes **in place** (``in_place``, Kubernetes ``InPlacePodVerticalScaling``,
  VPA ``InPlaceOrRecreate``): like horizontal, without a restart;
* **OOM kills** (memory): a step whose working set exceeds the request kills the container,
  which counts a restart; the target and lower bound are then raised to ``memory.oom_floor``
  for ``hold_steps`` and the raise is applied at the next step despite the minimum interval
  (the updater's quick-OOM path, ``--evict-after-oom-threshold``), by eviction or in place.

The request is billed from the step it is set (a starting pod already holds its request); what
actually served the demand is ``serving``. Time is in 5-minute steps: the decision for step
``t`` is made at its start, from what was known at the end of step ``t - 1`` (the updater
itself runs every minute, ``--updater-interval``, but sees no new sample in between). Each
entity is one pod: the updater's default ``--min-replicas=2`` would never evict a one-pod
workload, so it is taken as set to 1, as anyone running the VPA on single pods must.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from ml_cloud_optimizer.data.schema import STEP
from ml_cloud_optimizer.optimizer.capacity import round_up
from ml_cloud_optimizer.optimizer.memory import oom_floor

__all__ = [
    "DEFAULT_LIFETIME",
    "DEFAULT_MIN_CHANGE",
    "DEFAULT_MIN_INTERVAL",
    "DEFAULT_STARTUP_DELAY",
    "FREE_RULES",
    "Actuation",
    "Plan",
    "ReplayRules",
    "actuate",
]

DEFAULT_MIN_INTERVAL = pd.Timedelta(minutes=15)
DEFAULT_STARTUP_DELAY = pd.Timedelta(minutes=2)
DEFAULT_LIFETIME = pd.Timedelta(hours=12)  # the VPA updater's in-bounds eviction lifetime threshold
DEFAULT_MIN_CHANGE = 0.1  # the VPA updater's --pod-update-threshold


@dataclass(frozen=True)
class ReplayRules:
    """The costs of a change, shared by every policy (module doc).

    Attributes:
        min_interval: shortest time between two changes of one entity.
        startup_delay: time before added capacity serves (and, on eviction, before anything does).
        in_place: vertical changes resize the pod in place instead of evicting it.
        lifetime: pod age before an in-bounds update is allowed (plans with ``settle`` only).
        min_change: relative difference an in-bounds update needs.
    """

    min_interval: pd.Timedelta = DEFAULT_MIN_INTERVAL
    startup_delay: pd.Timedelta = DEFAULT_STARTUP_DELAY
    in_place: bool = False
    lifetime: pd.Timedelta = DEFAULT_LIFETIME
    min_change: float = DEFAULT_MIN_CHANGE

    def __post_init__(self):
        for name in ("min_interval", "startup_delay", "lifetime"):
            if pd.Timedelta(getattr(self, name)) < pd.Timedelta(0):
                raise ValueError(f"{name} must not be negative, got {getattr(self, name)}")
        if self.min_change < 0:
            raise ValueError(f"min_change must not be negative, got {self.min_change}")

    def steps(self, name: str) -> float:
        """One of the durations in 5-minute steps (fractional)."""
        return pd.Timedelta(getattr(self, name)) / STEP

    def params(self) -> dict:
        """The rules for the record (minutes, flags)."""
        return {
            "min_interval_minutes": pd.Timedelta(self.min_interval).total_seconds() / 60,
            "startup_delay_minutes": pd.Timedelta(self.startup_delay).total_seconds() / 60,
            "in_place": self.in_place,
            "vpa_lifetime_hours": pd.Timedelta(self.lifetime).total_seconds() / 3600,
            "vpa_min_change": self.min_change,
        }


# The replay as it was before these rules: any change, at any step, at no cost.
FREE_RULES = ReplayRules(min_interval=pd.Timedelta(0), startup_delay=pd.Timedelta(0), in_place=True)


@dataclass
class Plan:
    """What a policy proposes for every step: the request it wants and when to leave the current one alone.

    All matrices are (steps, entities), row ``t`` decided from what was known at the end of
    ``t - 1``; NaN where the policy has nothing to say (no change then).

    Attributes:
        target: the request the policy sets when it acts, rounded to the granularity.
        lower: act (to ``target``) when the request is below this; default ``target``.
        upper: act when the request is above this; default ``target``.
        horizontal: changes add or remove pods (no restart) rather than resize one pod.
        settle: in-bounds updates after ``lifetime`` when the change is large enough (the VPA's rule).
        stabilise_steps: a scale-down goes no lower than the highest recommendation of this
            many steps (0: none).
    """

    target: np.ndarray
    lower: np.ndarray | None = None
    upper: np.ndarray | None = None
    horizontal: bool = False
    settle: bool = False
    stabilise_steps: int = 0

    def bounds(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """``(target, lower, upper)`` with the defaults filled in."""
        lower = self.target if self.lower is None else self.lower
        upper = self.target if self.upper is None else self.upper
        return self.target, lower, upper


@dataclass
class Actuation:
    """A plan played out: what was billed, what served, and what each change cost.

    Attributes:
        request: the request in force at each step (billed), (steps, entities).
        serving: what served the demand at each step (the request less what was still starting).
        changes: True where the request changed at that step.
        evictions: True where that change recreated the pod (a restart).
        kills: True where the working set exceeded the request (memory: an OOM kill, a restart).
    """

    request: np.ndarray
    serving: np.ndarray
    changes: np.ndarray
    evictions: np.ndarray
    kills: np.ndarray

    def columns(self, cols: slice) -> Actuation:
        """The same actuation restricted to some entity columns (views)."""
        return Actuation(*(getattr(self, f)[:, cols] for f in _FIELDS))

    def copy(self) -> Actuation:
        """An actuation that owns its arrays."""
        return Actuation(*(np.array(getattr(self, f)) for f in _FIELDS))


_FIELDS = ("request", "serving", "changes", "evictions", "kills")


def _stale_free(mask: np.ndarray) -> np.ndarray:
    """Per step, whether the step before it had a sample: a decision needs fresh metrics."""
    fresh = np.zeros_like(mask)
    fresh[1:] = mask[:-1]
    return fresh


def actuate(
    plan: Plan,
    demand: np.ndarray,
    rules: ReplayRules,
    initial: np.ndarray,
    *,
    oom: bool = False,
    granularity: float = 1.0,
    hold_steps: int = 0,
) -> Actuation:
    """Play ``plan`` out against ``demand`` under ``rules`` (module doc), from ``initial`` requests at step 0.

    Args:
        plan: the policy's proposal.
        demand: cores or GiB, (steps, entities), NaN where the trace has no sample.
        rules: the costs of a change.
        initial: the request of each entity at step 0 (what it has today).
        oom: memory: a working set above the request is an OOM kill (module doc).
        granularity: rounding of the request raised after a kill.
        hold_steps: how long that raise holds.
    """
    # Each step's decision depends on the request the last one left, so this runs step by
    # step, vectorised across entities (and across candidate settings stacked as entities).
    # Steps where no entity had a sample before or has one now decide nothing and are filled
    # in one go: a trace that is mostly gaps (PlanetLab) costs its samples, not its calendar.
    target, lower, upper = plan.bounds()
    steps, width = demand.shape
    seen = ~np.isnan(demand)
    fresh = _stale_free(seen)
    is_busy = fresh.any(axis=1) | seen.any(axis=1)
    busy = np.flatnonzero(is_busy)
    interval, delay, lifetime = rules.steps("min_interval"), rules.steps("startup_delay"), rules.steps("lifetime")
    evicts = not plan.horizontal and not rules.in_place

    out = Actuation(
        request=np.empty((steps, width)),
        serving=np.empty((steps, width)),
        changes=np.zeros((steps, width), dtype=bool),
        evictions=np.zeros((steps, width), dtype=bool),
        kills=np.zeros((steps, width), dtype=bool),
    )
    req = np.asarray(initial, dtype="float64").copy()
    gap = req.copy()  # what serves until a change is ready
    ready = np.full(width, -np.inf)  # when the last change serves in full (in steps)
    last = np.full(width, -np.inf)  # step of the last change
    born = np.zeros(width)  # step the pod was (re)created
    floor = np.zeros(width)
    until = np.full(width, -1)
    forced = np.zeros(width, dtype=bool)
    window = max(int(plan.stabilise_steps), 0)
    recent = np.full((max(window, 1), width), np.nan)

    t = 0
    while t < steps:
        if not is_busy[t]:
            after = np.searchsorted(busy, t)
            stop = int(busy[after]) if after < len(busy) else steps
            rows = np.arange(t, stop)[:, None]
            out.request[t:stop] = req
            out.serving[t:stop] = gap + (req - gap) * np.clip(rows + 1 - ready, 0.0, 1.0)
            if window:  # no metrics, no recommendation
                recent[np.arange(t, min(stop, t + window)) % window] = np.nan
            t = stop
            continue
        tg, lo, hi = target[t], lower[t], upper[t]
        if oom:
            held = until >= t
            tg = np.where(held, np.fmax(tg, floor), tg)
            lo = np.where(held, np.fmax(lo, floor), lo)
        up = req < lo - 1e-9  # NaN bounds compare False: no proposal, no change
        down = req > hi + 1e-9
        new = np.where(up | down, tg, req)
        if window:
            # a recommendation needs a proposal made on fresh metrics
            recent[t % window] = np.where(np.isnan(tg) | ~fresh[t], np.nan, new)
            ceiling = np.fmax.reduce(recent[: min(t + 1, window)], axis=0)
            new = np.where(down, np.minimum(req, ceiling), new)
        if plan.settle:
            drift = ~up & ~down & (t - born >= lifetime) & (np.abs(tg - req) >= rules.min_change * req)
            new = np.where(drift, tg, new)
        allowed = (fresh[t] & (t - last >= interval - 1e-9)) | forced
        change = allowed & np.isfinite(new) & (np.abs(new - req) > 1e-9)
        forced[:] = False
        if change.any():
            growing = new > req
            restart = change & evicts
            starting = ready > t  # the previous change is not serving in full yet
            level = np.where(restart, 0.0, np.where(growing, np.where(starting, gap, req), new))
            gap = np.where(change, level, gap)
            ready = np.where(change, np.where(restart | growing, t + delay, t), ready)
            born = np.where(restart, t, born)
            last = np.where(change, t, last)
            req = np.where(change, new, req)
            out.changes[t] = change
            out.evictions[t] = restart
        out.request[t] = req
        out.serving[t] = gap + (req - gap) * np.clip(t + 1 - ready, 0.0, 1.0)
        if oom:
            killed = demand[t] > req + 1e-9  # NaN compares False: no sample, no kill
            if killed.any():
                out.kills[t] = killed
                raised = round_up(oom_floor(req, np.nan_to_num(demand[t])), granularity)
                floor = np.where(killed, raised, floor)
                until = np.where(killed, t + hold_steps, until)
                forced |= killed
        t += 1
    return out

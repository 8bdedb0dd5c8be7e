"""Settings of the forecast-driven policies, and the policy the product recommends, chosen on a validation window.

Why: a setting chosen on the window it is then scored on flatters it (the margin's 0.98
coverage had been tuned on the very trace it was reported on). Here each forecast-driven
policy is played out under the replay's rules for every setting of a small grid, fixed in
advance: the conformal margin's ``coverage``, the ``headroom`` a change sets, the ``band`` the
request may stay above the need before it is lowered, and the window (``stabilise_steps``) and
quantile (``stabilise_quantile``) of the need whose peak a change covers (``policies.ForecastPolicy``). Each
setting is scored on the **validation window** only: the steps between the forecaster's
training end and the replay, forecast by a model that never saw them. The VPA-style policy,
played out alike on the same window, is the bar.

A setting *meets the bar* when, on the validation window, it is under-provisioned on no more
entity-steps, changes the request no more often and (memory) is OOM-killed no more often than
the VPA-style policy, and (CPU) costs at most ``COST_TARGET`` of it: the issue's target, which
the product is built to meet. The cheapest setting that meets the bar wins; where none does,
the one that misses it least wins: the smallest worst ratio, each ratio scaled so that 1 is
its limit (cost over the target's cost; counts +1 over the VPA's counts +1, so that a zero
compares), cost breaking ties. The same rule picks the policy the product
recommends (forecast or hybrid). The actuations run on through the replayed window, since a
controller's state carries over, but only validation rows are ever scored here.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

import numpy as np

from ml_cloud_optimizer.optimizer.capacity import DemandGrid, round_up
from ml_cloud_optimizer.optimizer.policies import ForecastPolicy, HybridPolicy, Policy, ReactiveHPAPolicy
from ml_cloud_optimizer.optimizer.replay_rules import Actuation, Plan, ReplayRules, actuate

__all__ = ["BANDS", "COST_TARGET", "COVERAGES", "HEADROOMS", "STABILISE", "Tuned", "Verdict", "pick", "tune", "verdict"]

COST_TARGET = 0.85  # at most this share of the VPA-style policy's core-hours (issue 15)
COVERAGES = (0.9, 0.95, 0.98, 0.99)
HEADROOMS = (0.0, 0.15, 0.3)  # none, the VPA's safety margin, twice it
BANDS = (0.0, 0.5, 1.0)
# (stabilise_steps, stabilise_quantile): none; the highest or the p90 need of an hour, six hours, a day, three days.
STABILISE = ((1, 1.0), *((steps, q) for steps in (12, 72, 288, 864) for q in (1.0, 0.9)))
_CHUNK = 16  # settings played out side by side in one actuation (bounds its memory)


@dataclass(frozen=True)
class Verdict:
    """One actuation's counts on the validation window.

    Attributes:
        cost: request summed over the sampled entity-steps (billed units x steps).
        under: sampled entity-steps whose demand exceeded what served.
        changes: request changes.
        kills: OOM kills (memory; 0 for CPU).
    """

    cost: float
    under: int
    changes: int
    kills: int

    def worst(self, bar: Verdict, cost_target: float | None = None) -> float:
        """The largest ratio to its limit (module doc): at most 1 when the bar is met."""
        pairs = ((self.under, bar.under), (self.changes, bar.changes), (self.kills, bar.kills))
        ratios = [(mine + 1) / (theirs + 1) for mine, theirs in pairs]
        if cost_target is not None:
            ratios.append(self.cost / (cost_target * bar.cost) if bar.cost else float("inf"))
        return max(ratios)

    def key(self, bar: Verdict, cost_target: float | None = None) -> tuple[float, ...]:
        """Sort key: settings that meet the bar first, by cost; then the others by how far they miss."""
        worst = self.worst(bar, cost_target)
        return (0.0, self.cost) if worst <= 1.0 else (1.0, worst, self.cost)

    def as_dict(self) -> dict:
        return dataclasses.asdict(self)


def verdict(demand: np.ndarray, act: Actuation, window: slice) -> Verdict:
    """``act``'s counts over the steps of ``window``."""
    d = demand[window]
    seen = ~np.isnan(d)
    return Verdict(
        cost=float(np.where(seen, act.request[window], 0.0).sum()),
        under=int(((np.nan_to_num(d) > act.serving[window] + 1e-9) & seen).sum()),
        changes=int(act.changes[window].sum()),
        kills=int((act.kills[window] & seen).sum()),
    )


@dataclass
class Tuned:
    """A forecast-driven policy at the settings chosen for it, with its actuation and validation counts."""

    policy: Policy
    actuation: Actuation
    settings: dict
    validation: Verdict


def _stack(plans: list[Plan]) -> Plan:
    """Plans for the same entities side by side, as one plan over as many column blocks."""
    target, lower, upper = (np.hstack(arrays) for arrays in zip(*(p.bounds() for p in plans), strict=True))
    return Plan(target, lower=lower, upper=upper)


def tune(
    grid: DemandGrid,
    base: ForecastPolicy,
    *,
    bar: Verdict,
    window: slice,
    rules: ReplayRules,
    granularity: float,
    reactive: ReactiveHPAPolicy | None = None,
    name: str | None = None,
    coverages: tuple[float, ...] = COVERAGES,
    headrooms: tuple[float, ...] = HEADROOMS,
    bands: tuple[float, ...] = BANDS,
    stabilise: tuple[tuple[int, float], ...] = STABILISE,
    oom: bool = False,
    hold_steps: int = 0,
    cost_target: float | None = None,
) -> Tuned:
    """Choose ``base``'s settings on ``window`` (module doc); with ``reactive``, as a hybrid with it.

    Every setting is played out on the whole grid under ``rules`` (settings sharing a coverage
    side by side in one actuation) and judged by its ``verdict`` on ``window`` only.
    """
    width = grid.demand.shape[1]
    initial = round_up(grid.vcpus, granularity)
    reactive_plan = reactive.bounds(grid, 0, granularity) if reactive is not None else None
    combos = [(w, q, h, b) for w, q in stabilise for h in headrooms for b in bands]
    best: tuple | None = None
    for coverage in coverages:
        need = dataclasses.replace(base, coverage=coverage).need(grid)
        peaks = {
            (w, q): dataclasses.replace(base, stabilise_steps=w, stabilise_quantile=q).peak(need) for w, q in stabilise
        }
        for lo in range(0, len(combos), _CHUNK):
            policies = [
                dataclasses.replace(
                    base, coverage=coverage, stabilise_steps=w, stabilise_quantile=q, headroom=h, band=b
                )
                for w, q, h, b in combos[lo : lo + _CHUNK]
            ]
            plans = [p.bounds_from(need, granularity, peaks[p.stabilise_steps, p.stabilise_quantile]) for p in policies]
            if reactive_plan is not None:
                plans = [HybridPolicy.combine(plan, reactive_plan) for plan in plans]
            n = len(plans)
            act = actuate(
                _stack(plans),
                np.tile(grid.demand, (1, n)),
                rules,
                np.tile(initial, n),
                oom=oom,
                granularity=granularity,
                hold_steps=hold_steps,
            )
            for i, policy in enumerate(policies):
                own = act.columns(slice(i * width, (i + 1) * width))
                judged = verdict(grid.demand, own, window)
                if best is None or judged.key(bar, cost_target) < best[0].key(bar, cost_target):
                    best = (judged, policy, own.copy())  # a copy, so the stacked actuation can be freed
    assert best is not None, "no setting to choose from"
    judged, policy, own = best
    settings = {
        "coverage": policy.coverage,
        "headroom": policy.headroom,
        "band": policy.band,
        "stabilise_steps": policy.stabilise_steps,
        "stabilise_quantile": policy.stabilise_quantile,
    }
    chosen: Policy = policy
    if reactive is not None:
        chosen = HybridPolicy(policy, reactive, name=name or "hybrid")
    elif name is not None:
        chosen = dataclasses.replace(policy, name=name)
    return Tuned(chosen, own, settings, judged)


def pick(candidates: dict[str, Tuned], bar: Verdict, cost_target: float | None = None) -> str:
    """The name of the candidate the product recommends: the same rule as for settings (module doc)."""
    if not candidates:
        raise ValueError("no candidate policy to recommend")
    return min(candidates, key=lambda name: candidates[name].validation.key(bar, cost_target))

"""The replay's rules on hand-made series whose answer is known: bounds, interval, start-up delay, evictions, OOM."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from fleets import demand_grid
from ml_cloud_optimizer.optimizer.backtest import score_churn, score_replay
from ml_cloud_optimizer.optimizer.replay_rules import FREE_RULES, Plan, ReplayRules, actuate

MINUTE = pd.Timedelta(minutes=1)


def _rules(interval=0, delay=0, in_place=True, **kw) -> ReplayRules:
    return ReplayRules(min_interval=interval * MINUTE, startup_delay=delay * MINUTE, in_place=in_place, **kw)


def _column(values) -> np.ndarray:
    return np.asarray(values, dtype="float64")[:, None]


def _grid(demand: np.ndarray):
    return demand_grid(demand, vcpus=4.0)


def test_the_updater_leaves_a_request_inside_its_bounds_alone_and_acts_outside():
    demand = _column(np.full(12, 1.0))
    target = _column(np.full(12, 2.0))
    plan = Plan(target, lower=_column(np.full(12, 1.5)), upper=_column(np.full(12, 3.0)))
    inside = actuate(plan, demand, _rules(), np.array([2.5]))
    assert not inside.changes.any()  # 2.5 lies in [1.5, 3]: the target 2 is never applied
    assert (inside.request == 2.5).all()
    # from step 6 the upper bound drops to 2.2: 2.5 is now outside, and the request goes to the target
    plan.upper[6:] = 2.2
    outside = actuate(plan, demand, _rules(), np.array([2.5]))
    assert np.flatnonzero(outside.changes[:, 0]).tolist() == [6]
    assert outside.request[6, 0] == 2.0


def test_in_bounds_updates_wait_for_the_pod_lifetime_and_a_large_enough_change():
    steps = 12 * 14  # 14 hours
    demand = _column(np.full(steps, 1.0))
    wide = _column(np.full(steps, 100.0))
    rules = _rules(lifetime=pd.Timedelta(hours=12), min_change=0.1)
    small = actuate(
        Plan(_column(np.full(steps, 2.1)), _column(np.zeros(steps)), wide, settle=True), demand, rules, [2.0]
    )
    assert not small.changes.any()  # 5% off: below the updater's 10% threshold, whatever the pod's age
    large = actuate(
        Plan(_column(np.full(steps, 3.0)), _column(np.zeros(steps)), wide, settle=True), demand, rules, [2.0]
    )
    assert np.flatnonzero(large.changes[:, 0]).tolist() == [144]  # 50% off: applied once the pod is 12 h old


def test_added_capacity_serves_only_after_the_start_up_delay():
    demand = _column(np.full(10, 1.0))
    plan = Plan(_column(np.r_[np.full(5, 1.0), np.full(5, 3.0)]))
    two = actuate(plan, demand, _rules(delay=2), np.array([1.0]))
    assert two.request[5, 0] == 3.0  # billed from the step it is set
    assert two.serving[5, 0] == pytest.approx(1.0 + 2.0 * 3 / 5)  # the new cores serve for 3 of the 5 minutes
    assert two.serving[6, 0] == 3.0
    seven = actuate(plan, demand, _rules(delay=7), np.array([1.0]))
    np.testing.assert_allclose(seven.serving[5:8, 0], [1.0, 1.0 + 2.0 * 3 / 5, 3.0])
    assert not two.evictions.any() and not seven.evictions.any()  # in place: no restart


def test_an_eviction_leaves_nothing_serving_during_the_delay_and_counts_a_restart_both_ways():
    demand = _column(np.full(10, 1.0))
    plan = Plan(_column(np.r_[np.full(3, 2.0), np.full(4, 4.0), np.full(3, 1.0)]))
    act = actuate(plan, demand, _rules(delay=2, in_place=False), np.array([2.0]))
    assert np.flatnonzero(act.evictions[:, 0]).tolist() == [3, 7]
    assert act.serving[3, 0] == pytest.approx(4.0 * 3 / 5)  # up: the old pod is gone, the new one starts late
    assert act.serving[7, 0] == pytest.approx(1.0 * 3 / 5)  # down too: a recreated pod restarts
    # horizontally a scale-down serves at once and nothing restarts
    sideways = actuate(Plan(plan.target, horizontal=True), demand, _rules(delay=2, in_place=False), np.array([2.0]))
    assert not sideways.evictions.any() and sideways.serving[7, 0] == 1.0


def test_the_minimum_interval_blocks_a_second_change_until_it_has_passed():
    demand = _column(np.full(12, 1.0))
    plan = Plan(_column([1, 1, 1, 2, 3, 4, 4, 4, 4, 4, 4, 4]))
    act = actuate(plan, demand, _rules(interval=15), np.array([1.0]))
    # changes at step 3 (to 2); steps 4 and 5 are within 15 minutes of it; step 6 may change again
    assert np.flatnonzero(act.changes[:, 0]).tolist() == [3, 6]
    np.testing.assert_allclose(act.request[:, 0], [1, 1, 1, 2, 2, 2, 4, 4, 4, 4, 4, 4])
    free = actuate(plan, demand, FREE_RULES, np.array([1.0]))
    assert np.flatnonzero(free.changes[:, 0]).tolist() == [3, 4, 5]


def test_no_decision_without_a_fresh_sample():
    demand = _column([1, 1, 1, np.nan, np.nan, 1, 1])
    plan = Plan(_column([1, 1, 1, 1, 3, 3, 3]))
    act = actuate(plan, demand, FREE_RULES, np.array([1.0]))
    # step 4 wants 3 but step 3 had no sample; step 5 neither; step 6 follows a sample
    assert np.flatnonzero(act.changes[:, 0]).tolist() == [6]


def test_churn_counts_changes_per_entity_day_of_samples():
    steps = 288 * 2
    demand = np.ones((steps, 2))
    demand[:288, 1] = np.nan  # the second entity has samples on the second day only
    spike = np.arange(steps) % 48 == 47  # 12 one-step spikes over the two days, at 47, 95, ..., 575
    target = np.where(spike[:, None], 2.0, 1.0) * np.ones((1, 2))
    act = actuate(Plan(target), demand, _rules(in_place=False), np.array([1.0, 1.0]))
    # entity 0: up and down for each spike but the last (the grid ends): 23; entity 1: the 6 spikes
    # of day 2, seen fresh: 11. Nothing is decided on day 1 for entity 1, which had no sample.
    assert act.changes[:, 0].sum() == 23 and act.changes[:, 1].sum() == 11
    churn = score_churn(_grid(demand), act, 0)
    assert churn["changes_per_workload_day"] == pytest.approx(34 / 3)  # 3 entity-days of samples
    assert churn["evictions"] == 34  # every vertical change without --in-place recreates the pod
    assert score_replay(_grid(demand), act, 0)["underprovisioned_share"] == 0  # no delay: nothing runs short


def test_an_oom_kill_restarts_and_raises_the_request_despite_the_minimum_interval():
    demand = _column([1.0, 1.0, 2.5, 1.0, 1.0, 1.0, 1.0])
    plan = Plan(_column(np.full(7, 2.0)))
    evicting = actuate(
        plan, demand, _rules(interval=60, in_place=False), np.array([2.0]), oom=True, granularity=0.0625, hold_steps=3
    )
    assert np.flatnonzero(evicting.kills[:, 0]).tolist() == [2]
    # the raise (max(2 x 1.2, 2 + 100 MiB, 2.5) = 2.5) comes at the next step although an hour has not passed
    assert evicting.request[3, 0] == 2.5 and evicting.changes[3, 0] and evicting.evictions[3, 0]
    # after the hold the plan's 2 GiB is back, once the hour since the last change has passed
    assert evicting.request[-1, 0] == 2.5  # 60 minutes have not passed by the last step
    in_place = actuate(plan, demand, _rules(in_place=True), np.array([2.0]), oom=True, granularity=0.0625, hold_steps=3)
    assert in_place.changes[3, 0] and not in_place.evictions.any()
    assert in_place.request[7 - 1, 0] == 2.0  # no interval: back to the plan when the hold ends


def test_rules_refuse_negative_durations():
    with pytest.raises(ValueError, match="min_interval"):
        ReplayRules(min_interval=pd.Timedelta(minutes=-1))
    assert ReplayRules().params()["min_interval_minutes"] == 15 and not ReplayRules().in_place

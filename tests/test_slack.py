"""Slack reclamation spends what the DP left of each route's budget, never more."""

from graft.planner.merge import collapse_by_partition, merge_flows
from graft.planner.realign import realign
from graft.planner.slack import reclaim_slack
from graft.workload.flows import Flow

from toycost import ToyCost

TOY = ToyCost(overhead_ms=0.2, batch_exponent=0.7)
FLOWS = [Flow("a", "tiny", 0, 300.0, 17.0), Flow("b", "tiny", 2, 500.0, 11.0),
         Flow("c", "tiny", 4, 200.0, 6.5)]


def route_time(drafts, fid, key):
    return sum(key(d) for d in drafts if any(f.id == fid for f in d.flows))


def test_reclaimed_plan_is_cheaper_and_within_budgets():
    coarse = realign(collapse_by_partition(merge_flows(FLOWS)), TOY, steps=2).drafts
    better = reclaim_slack(coarse, TOY)
    assert sum(d.config.cost for d in better) < sum(d.config.cost for d in coarse)
    for f in FLOWS:
        # worst-case time and the caps handed out both stay within the budget
        assert route_time(better, f.id, lambda d: 2 * d.config.exec_ms) <= f.budget_ms + 1e-9
        assert route_time(better, f.id, lambda d: d.time_cap_ms) <= f.budget_ms + 1e-9
    for d in better:
        assert d.time_cap_ms >= 2 * d.config.exec_ms - 1e-12

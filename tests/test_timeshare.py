"""Time-shared slices: low-rate stages take turns on one slice within their time caps."""

from dataclasses import replace

from graft.plan.verify import verify
from graft.planner.assemble import StageDraft
from graft.planner.configs import segment_options
from graft.planner.graft_planner import GraftPlanner
from graft.planner.timeshare import share_slices, solve_slice
from graft.workload.flows import Flow, Workload

from toycost import ToyCost

TOY = ToyCost(overhead_ms=0.3)


def draft(fid: str, p: int, rate: float, budget: float) -> StageDraft:
    f = Flow(fid, "tiny", p, rate, budget)
    config = segment_options(TOY, "tiny", p, 6).cheapest(rate, budget)
    return StageDraft("tiny", p, 6, config, [f], cap_ms=budget)


def test_two_idle_stages_share_one_slice():
    a, b = draft("a", 0, 5.0, 12.0), draft("b", 2, 5.0, 12.0)
    alone = a.config.share + b.config.share
    s = solve_slice([a, b], TOY)
    assert s is not None and s.share < alone
    assert abs(s.duty_ms - sum(c.exec_ms for c in s.configs)) < 1e-9
    for m, c in zip(s.members, s.configs):
        assert s.duty_ms + c.exec_ms <= m.time_cap_ms * (1 + 1e-9)  # within its time cap
        assert c.batch * 1000 / s.duty_ms >= m.rate  # one batch per cycle carries the rate
    merged = share_slices([a, b], TOY)
    assert {d.slice_key for d in merged} == {0}


def test_busy_stages_stay_alone():
    a, b = draft("a", 0, 3000.0, 6.0), draft("b", 2, 3000.0, 6.0)
    merged = share_slices([a, b], TOY)
    assert all(d.slice_key is None for d in merged)
    assert [d.config for d in merged] == [a.config, b.config] or \
        [d.config for d in merged] == [b.config, a.config]


def test_planned_slices_verify_and_are_checked():
    w = Workload(tuple(Flow(f"f{i}", "tiny", i % 6, 3.0 + i, 8.0 + 0.5 * i) for i in range(12)))
    plan = GraftPlanner().plan(w, TOY)
    sliced = [s for s in plan.stages if s.slice is not None]
    assert sliced, "expected some stages to time-share a slice"
    assert verify(w, plan, TOY) == []
    assert plan.total_share < GraftPlanner(time_share=False).plan(w, TOY).total_share
    # a member whose duty cycle disagrees with its slice is named
    bad = replace(sliced[0], duty_cycle_ms=sliced[0].duty_cycle_ms * 2)
    errors = verify(w, replace(plan, stages=tuple(bad if s.id == bad.id else s
                                                  for s in plan.stages)), TOY)
    assert any(f"slice {bad.slice}" in e for e in errors)

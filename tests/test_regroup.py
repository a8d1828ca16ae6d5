"""The search over groupings (``graft.planner.regroup``): groups that are not runs of budget
classes, never more share than the grouping it starts from, plans that verify."""

from hypothesis import HealthCheck, given, settings
from test_planners_property import TOY, workloads

from graft.cost.registry import make_cost_model
from graft.models.catalog import get_model
from graft.plan.verify import verify
from graft.planner.graft_planner import GraftPlanner
from graft.planner.group import PRIVATE, Group
from graft.planner.merge import collapse_by_partition, merge_flows
from graft.planner.optimal import gap_workloads
from graft.planner.realign import realign
from graft.planner.regroup import GroupDrafts, _moves, drafts_share


def test_finds_a_group_of_late_fragments_beside_the_trunk():
    # gap workload 27 (vgg16, 10 flows over 6 points): the flows entering at blocks 12 and
    # 13 are served by their own 13-15 stage beside the trunk that carries the early ones;
    # by budget they interleave with the trunk's, so no run of budget classes holds them
    cost = make_cost_model("analytic:v100")
    _, w = gap_workloads(cost, 30, 0)[27]
    without = GraftPlanner(regroup_fragments=0, shape_replicas=False).plan(w, cost)
    with_search = GraftPlanner(shape_replicas=False).plan(w, cost)
    assert verify(w, with_search, cost) == []
    assert with_search.total_share < without.total_share - 0.05
    late = {f.id for f in w.flows if f.partition >= 12}
    by_id = {s.id: s for s in with_search.stages}
    tail = {r.flow: by_id[r.stages[-1]].id for r in with_search.routes}
    assert len({tail[f] for f in late}) == 1
    assert not {tail[f] for f in late} & {tail[f] for f in tail if f not in late}


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(w=workloads())
def test_never_more_share_than_without_the_search(w):
    searched = GraftPlanner(shape_replicas=False).plan(w, TOY)
    plain = GraftPlanner(shape_replicas=False, regroup_fragments=0).plan(w, TOY)
    assert verify(w, searched, TOY) == []
    assert searched.total_share <= plain.total_share + 1e-9


def test_moves_keep_every_fragment_once():
    cost = make_cost_model("analytic:v100")
    _, w = gap_workloads(cost, 30, 0)[27]
    frags = merge_flows(w.flows)
    groups = [Group(tuple(frags[:4])), Group(tuple(frags[4:]), PRIVATE)]
    n = 0
    for candidate in _moves(groups):
        n += 1
        members = [f for g in candidate for f in g.fragments]
        assert sorted(members, key=id) == sorted(frags, key=id)
        assert all(g.fragments for g in candidate)
    assert n > len(frags)
    plan_group = GroupDrafts(cost, 96)
    drafts = [d for g in groups for d in plan_group(g)]
    assert drafts_share(drafts) > 0


def test_full_staircase_keeps_every_point():
    cost = make_cost_model("analytic:v100")
    _, w = gap_workloads(cost, 30, 0)[26]  # mobilenet_v2, one flow at each of six points
    frags = collapse_by_partition(merge_flows(w.flows))
    points = [f.partition for f in frags]
    drafts = realign(frags, cost, keep_all=True).drafts
    L = get_model("mobilenet_v2").num_blocks
    assert sorted((d.start, d.end) for d in drafts) == list(zip(points, [*points[1:], L]))
    # slices hold the small stages for less: the search finds the optimum's 0.05 here
    assert GraftPlanner().plan(w, cost).total_share <= 0.05 + 1e-9

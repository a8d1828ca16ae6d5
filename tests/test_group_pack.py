"""Budget classes, grouping, and packing replicas onto GPUs, on toy inputs."""

import pytest

from graft.cost.base import DeviceLimits
from graft.errors import GraftInputError
from graft.planner.group import best_grouping, budget_classes
from graft.planner.merge import collapse_by_partition, fragment_of
from graft.planner.pack import Unit, pack
from graft.planner.realign import realign
from graft.workload.flows import Flow

from toycost import ToyCost


def frag(fid: str, p: int, rate: float, budget: float):
    return fragment_of([Flow(fid, "tiny", p, rate, budget)])


def test_budget_classes_cut_at_widest_gaps():
    frags = [frag("a", 0, 1, 10), frag("b", 1, 1, 11), frag("c", 2, 1, 40),
             frag("d", 3, 1, 42), frag("e", 4, 1, 400)]
    classes = budget_classes(frags, 3)
    assert [[f.flows[0].id for f in c] for c in classes] == [["a", "b"], ["c", "d"], ["e"]]
    assert budget_classes(frags, 1) == [sorted(frags, key=lambda f: f.budget_ms)]
    # equal budgets are never cut apart
    same = [frag(x, i, 1, 20) for i, x in enumerate("xyz")]
    assert len(budget_classes(same, 3)) == 1


def test_grouping_keeps_one_group_when_splitting_saves_only_rounding(monkeypatch):
    import graft.planner.group as group

    # one group costs 0.55; apart, the classes cost 0.1 + 3 * 0.15 (0.5499999999999999 in
    # floating point): a tie, so the single group, whose stages pool all traffic, is kept
    def fake_realign(fragments, cost, steps):
        ids = {f.flows[0].id for f in fragments}
        return group.Alignment({"t": 0.1, "l": 0.15 * 3}[ids.pop()] if len(ids) == 1
                               else 0.55, [])

    monkeypatch.setattr(group, "realign", fake_realign)
    monkeypatch.setattr(group.PrivateRuns, "cost", lambda self, start, end: float("inf"))
    frags = [frag("t", 0, 1, 10), frag("l", 1, 1, 100)]
    assert 0.1 + 0.15 * 3 < 0.55
    assert [a.cost for a in best_grouping(frags, ToyCost(), max_classes=2).alignments] == [0.55]


def test_grouping_never_costs_more_than_one_group():
    toy = ToyCost(overhead_ms=0.3, batch_exponent=0.7)
    # one very tight fragment among loose ones sharing a tail
    frags = [frag("loose0", 0, 800, 60), frag("loose2", 2, 800, 60),
             frag("loose3", 3, 800, 55), frag("tight", 3, 50, 3.5)]
    groups = best_grouping(frags, toy, max_classes=4).alignments
    one = realign(collapse_by_partition(frags), toy)
    assert sum(g.cost for g in groups) <= one.cost + 1e-12
    # here keeping the tight fragment apart is strictly cheaper: no stage serves it with
    # loose traffic
    assert sum(g.cost for g in groups) < one.cost
    with_tight = [d for g in groups for d in g.drafts if "tight" in {f.id for f in d.flows}]
    assert with_tight and all({f.id for f in d.flows} == {"tight"} for d in with_tight)


LIMITS = DeviceLimits(memory_bytes=10_000, context_bytes=100, max_processes=4)


class _Cost:
    limits = LIMITS


def _pack(units, together=()):
    return pack([Unit(*u) for u in units], _Cost(), together)


def test_pack_respects_share_memory_and_process_limits():
    placed = _pack([(0.6, 2, 1000), (0.4, 2, 1000), (0.1, 5, 1000)])
    gpus = {}
    for (share, _, mem), where in zip([(0.6, 2, 1000), (0.4, 2, 1000), (0.1, 5, 1000)], placed):
        for g in where:
            s, m, n = gpus.get(g, (0.0, 0, 0))
            gpus[g] = (s + share, m + mem, n + 1)
    assert [len(w) for w in placed] == [2, 2, 5]
    assert all(s <= 1 + 1e-9 and m <= LIMITS.memory_bytes and n <= 4
               for s, m, n in gpus.values())
    # 0.6 + 0.4 fill two GPUs; the five 0.1s need two more: at most 4 processes per GPU
    assert len(gpus) == 4 and sorted(n for _, _, n in gpus.values()) == [1, 2, 2, 4]
    # the process limit opens GPUs even when share is left
    assert len(set(g for w in _pack([(0.01, 9, 10)]) for g in w)) == 3
    # memory too
    assert len(set(g for w in _pack([(0.1, 3, 6000)]) for g in w)) == 3
    with pytest.raises(GraftInputError, match="more than"):
        _pack([(0.5, 1, 20_000)])


def test_pack_keeps_a_route_chain_on_one_gpu_when_that_costs_no_gpu():
    # by share alone, first-fit decreasing pairs 0.5 with 0.5 and 0.3 with 0.3, splitting
    # both chains (0 -> 2, 1 -> 3) over two GPUs
    units = [(0.5, 1, 10), (0.5, 1, 10), (0.3, 1, 10), (0.3, 1, 10)]
    plain = _pack(units)
    assert plain[0] != plain[2] and plain[1] != plain[3]
    chained = _pack(units, together=[[0, 2], [1, 3]])
    assert chained[0] == chained[2] and chained[1] == chained[3]
    assert len({g for w in chained for g in w}) == len({g for w in plain for g in w}) == 2
    # a chain that would cost a GPU more is not kept together
    units = [(0.6, 1, 10), (0.6, 1, 10), (0.4, 1, 10), (0.4, 1, 10)]
    assert len({g for w in _pack(units, together=[[0, 1]]) for g in w}) == 2

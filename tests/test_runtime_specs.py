"""A plan as worker specs: one per executor, with its threads on CPU, or its GPU and MPS
percentage on CUDA (checked without a GPU: nothing here starts a process)."""

from graft.cost.registry import make_cost_model
from graft.planner.registry import make_planner
from graft.runtime.engine import pin_cpus, worker_specs
from graft.serving.topology import build_executors
from graft.workload.synthetic import HETEROGENEOUS, synthetic_workload


def test_worker_specs_follow_the_plan_placement():
    cost = make_cost_model("analytic:v100")
    w = synthetic_workload(cost, 60, HETEROGENEOUS, seed=4)
    plan = make_planner("graft").plan(w, cost)
    executors, _ = build_executors(plan)
    gpus = [p.gpu for p in plan.processes()]
    assert len(gpus) == len(executors) and None not in gpus
    specs = worker_specs(plan, device="cuda", weights={}, seed=0)
    stages = plan.stage_by_id()
    for spec, gpu in zip(specs, gpus):
        first = stages[spec.members[0]]
        assert spec.device == f"cuda:{gpu}"
        assert spec.mps_percentage == max(1, round(100 * first.run_share))
        assert gpu in first.gpus
    cpu = worker_specs(plan, device="cpu", weights={}, seed=0, cpus=list(range(8)))
    assert all(s.mps_percentage is None and s.device == "cpu" for s in cpu)
    assert all(s.threads == max(1, round(stages[s.members[0]].run_share * 8)) for s in cpu)
    pinned = sum(s.threads for s in cpu) <= 8
    assert all(len(s.cpus) == (s.threads if pinned else 0) for s in cpu)
    assert all(s.cpus == () for s in specs)
    # every replica of every stage runs in exactly one worker (a slice's members share one)
    assert sum(len(set(s.members)) for s in specs) == sum(st.replicas for st in plan.stages)


def test_cpus_are_disjoint_while_the_threads_fit():
    assert pin_cpus([2, 1, 1], [0, 1, 2, 3]) == [(2, 3), (1,), (0,)]
    # beyond the machine, no worker is pinned: the OS balances them
    assert pin_cpus([1, 1, 1], [0, 1]) == [(), (), ()]
    assert pin_cpus([4], [5, 6]) == [()]

import json

import pytest

from graft.errors import GraftInputError
from graft.workload.flows import load_workload, parse_workload


def flow(**kw):
    base = {"id": "a", "model": "tiny", "partition": 1, "rate": 10.0, "budget_ms": 20.0}
    base.update(kw)
    return base


def test_valid_workload_parses():
    w = parse_workload({"flows": [flow(), flow(id="b", partition=0)]})
    assert [f.id for f in w.flows] == ["a", "b"]
    assert w.flows[0].partition == 1 and w.flows[0].rate == 10.0


@pytest.mark.parametrize("kw, field", [
    ({"model": "resnet9000"}, "model"),
    ({"partition": 99}, "partition"),
    ({"partition": -1}, "partition"),
    ({"partition": 1.5}, "partition"),
    ({"rate": 0}, "rate"),
    ({"rate": -3}, "rate"),
    ({"rate": "fast"}, "rate"),
    ({"budget_ms": float("nan")}, "budget_ms"),
    ({"budget_ms": float("inf")}, "budget_ms"),
    ({"budget_ms": -1}, "budget_ms"),
    ({"budget_ms": True}, "budget_ms"),
])
def test_bad_field_is_named_with_its_flow(kw, field):
    with pytest.raises(GraftInputError) as e:
        parse_workload({"flows": [flow(**kw)]})
    assert e.value.field == field and e.value.flow == "a"
    assert "flow 'a'" in str(e.value) and field in str(e.value)


def test_missing_field_and_duplicate_ids():
    bad = flow()
    del bad["rate"]
    with pytest.raises(GraftInputError, match="missing rate"):
        parse_workload({"flows": [bad]})
    with pytest.raises(GraftInputError, match="duplicate flow id") as e:
        parse_workload({"flows": [flow(), flow()]})
    assert e.value.flow == "a"


def test_malformed_files(tmp_path):
    p = tmp_path / "w.json"
    p.write_text("{not json")
    with pytest.raises(GraftInputError, match="not valid JSON"):
        load_workload(str(p))
    with pytest.raises(GraftInputError, match="cannot read"):
        load_workload(str(tmp_path / "missing.json"))
    p.write_text(json.dumps({"flows": []}))
    with pytest.raises(GraftInputError, match="no flows"):
        load_workload(str(p))
    p.write_text('{"flows": [{"id": "x", "model": "tiny", "partition": 0, "rate": 1,'
                 ' "budget_ms": NaN}]}')
    with pytest.raises(GraftInputError, match="budget_ms"):
        load_workload(str(p))

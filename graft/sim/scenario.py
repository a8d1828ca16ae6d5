"""Scenarios for ``graft simulate``: clients on traces, a cost model and a re-planning policy.

A scenario is a JSON object (see ``docs/simulator.md`` for a worked example)::

    {"name": "demo", "duration_s": 60, "seed": 0,
     "cost_model": "analytic:v100", "max_utilization": 0.8, "jitter": 0.05,
     "replan": {"period_s": 10, "window_s": 10, "hysteresis": 0.05, "startup_s": 1},
     "clients": [{"count": 10, "model": "resnet50", "device": "phone-npu", "slo_ms": 200,
                  "rate": 5, "trace": "synthetic:wifi"}]}

Only ``duration_s`` and ``clients`` are required (``name`` defaults to the file's stem). A
client group needs ``count``, ``model``, ``device``, ``slo_ms`` and ``rate``; the rest have
the defaults of ``ClientSpec`` (``arrivals`` poisson, ``policy`` neurosurgeon, ``rtt_ms`` 20,
``downlink_mbps`` 50, ``estimator`` ewma, ``activation_bytes_per_value`` 4 = fp32,
``input_bytes`` the raw fp32 input), ``trace`` defaults to ``synthetic`` and
``start_s`` (when the group starts sending) to 0.

``trace`` is ``synthetic`` (the LTE uplink Markov model), ``synthetic:<preset>`` (one of
``TRACE_PRESETS``), a trace file, or a directory whose trace files (``.up``, ``.csv``,
``.log`` or no suffix, searched recursively, sorted by path) the group's clients take in
turn (files in no known trace format are skipped with a warning; at most
``limits.TRACE_FILES`` files in all, counted before any is read). Relative paths resolve
against ``--trace-dir`` when given, else the scenario file's folder. Synthetic traces get one
seed per client, drawn from the run's seed and the client's index, so every planner sees the
same links.

Every mistake raises ``GraftInputError`` naming the field, e.g. ``clients[1].slo_ms``.
``load_scenario("paper")`` returns the built-in ``paper`` scenario (no files needed).
"""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from graft import limits
from graft.client.devices import get_device
from graft.client.partition import DEFAULT_DOWNLINK_MBPS, FP32_BYTES, POLICIES
from graft.client.traffic import (
    DEFAULT_ARRIVALS,
    DEFAULT_ESTIMATOR,
    DEFAULT_POLICY,
    DEFAULT_RTT_MS,
    ESTIMATORS,
    ClientSpec,
)
from graft.cost.registry import make_cost_model
from graft.errors import GraftInputError
from graft.fields import integer as _integer
from graft.fields import number as _number
from graft.fields import obj
from graft.fields import string as _string
from graft.jsonio import load_json
from graft.models.catalog import get_model
from graft.serving.replan import DEFAULT_MAX_UTILIZATION, ReplanConfig
from graft.workload.arrivals import ARRIVALS
from graft.workload.tracegen import LTE_UPLINK, LinkState, MarkovRateModel
from graft.workload.traces import BandwidthTrace, load_trace

log = logging.getLogger(__name__)

#: A Wi-Fi-like uplink: 8-60 Mbit/s states (the end-to-end test's link).
WIFI_UPLINK = MarkovRateModel(
    states=(LinkState("good", 60.0), LinkState("fair", 25.0), LinkState("poor", 8.0)),
    transitions=((0.90, 0.08, 0.02), (0.10, 0.85, 0.05), (0.05, 0.15, 0.80)),
    sigma=0.3,
)

#: Synthetic trace presets: ``synthetic:<name>``; plain ``synthetic`` is ``lte``.
TRACE_PRESETS: dict[str, MarkovRateModel] = {"lte": LTE_UPLINK, "wifi": WIFI_UPLINK}
#: Suffixes of the files a trace directory contributes ("" = no suffix).
TRACE_SUFFIXES = (".up", ".csv", ".log", "")
#: Scenarios that need no file.
BUILTIN = ("paper",)


@dataclass(frozen=True)
class ClientGroup:
    """``count`` identical clients (each on its own trace)."""

    count: int
    model: str
    device: str
    slo_ms: float
    rate: float
    arrivals: str = DEFAULT_ARRIVALS
    policy: str = DEFAULT_POLICY
    partition: int | None = None
    rtt_ms: float = DEFAULT_RTT_MS
    downlink_mbps: float = DEFAULT_DOWNLINK_MBPS
    estimator: str = DEFAULT_ESTIMATOR
    trace: str = "synthetic"
    #: Clients of the group send only from this time on (s).
    start_s: float = 0.0
    #: Upload size: bytes a value of an activation (4 = fp32, 1 = int8), and bytes sent at
    #: p = 0 (None = the raw fp32 input tensor); see ``ClientSpec``.
    activation_bytes_per_value: float = FP32_BYTES
    input_bytes: float | None = None


@dataclass(frozen=True)
class Scenario:
    name: str
    duration_s: float
    clients: tuple[ClientGroup, ...]
    seed: int = 0
    cost_model: str = "analytic:v100"
    max_utilization: float = DEFAULT_MAX_UTILIZATION
    jitter: float = 0.0
    replan: ReplanConfig = field(default_factory=ReplanConfig)
    #: Where relative trace paths resolve (the scenario file's folder, or --trace-dir).
    base_dir: str = "."

    @property
    def num_clients(self) -> int:
        return sum(g.count for g in self.clients)


@dataclass(frozen=True)
class ScenarioClient:
    """One client of a scenario and the time it starts sending (ms)."""

    spec: ClientSpec
    start_ms: float


# --- validation helpers -----------------------------------------------------------------
def _object(raw: Any, name: str, allowed: tuple[str, ...]) -> dict:
    return obj(raw, name, allowed, prefix="" if name == "scenario" else None)


def _known(check: Any, name: str, value: str) -> None:
    try:
        check(value)
    except GraftInputError as e:
        raise GraftInputError(str(e), field=name) from None


_GROUP_KEYS = ("count", "model", "device", "slo_ms", "rate", "arrivals", "policy",
               "partition", "rtt_ms", "downlink_mbps", "estimator", "trace", "start_s",
               "activation_bytes_per_value", "input_bytes")
_REPLAN_KEYS = ("period_s", "window_s", "hysteresis", "startup_s")
_TOP_KEYS = ("name", "duration_s", "seed", "cost_model", "max_utilization", "jitter",
             "replan", "clients")


def parse_group(raw: Any, index: int, duration_s: float) -> ClientGroup:
    where = f"clients[{index}]"
    raw = _object(raw, where, _GROUP_KEYS)
    w = where + "."
    model = _string(raw, "model", w)
    _known(get_model, w + "model", model)
    device = _string(raw, "device", w)
    _known(get_device, w + "device", device)
    policy = _string(raw, "policy", w, default=DEFAULT_POLICY, choices=list(POLICIES))
    partition = None
    if raw.get("partition") is not None:
        partition = _integer(raw, "partition", w)
        blocks = get_model(model).num_blocks
        if partition >= blocks:  # the server runs at least the last block
            raise GraftInputError(f"must be within 0..{blocks - 1} for {model}, "
                                  f"got {partition}", field=w + "partition")
    elif policy == "fixed":
        raise GraftInputError("is required by policy 'fixed'", field=w + "partition")
    trace = _string(raw, "trace", w, default="synthetic")
    if trace.startswith("synthetic:") and trace.split(":", 1)[1] not in TRACE_PRESETS:
        raise GraftInputError(f"unknown synthetic preset; choose one of "
                              f"{', '.join(TRACE_PRESETS)}; got {trace!r}", field=w + "trace")
    return ClientGroup(
        count=_integer(raw, "count", w, minimum=1), model=model, device=device,
        slo_ms=_number(raw, "slo_ms", w, minimum=0, exclusive=True),
        rate=_number(raw, "rate", w, minimum=0, exclusive=True),
        arrivals=_string(raw, "arrivals", w, default=DEFAULT_ARRIVALS, choices=ARRIVALS),
        policy=policy, partition=partition,
        rtt_ms=_number(raw, "rtt_ms", w, default=DEFAULT_RTT_MS, minimum=0),
        downlink_mbps=_number(raw, "downlink_mbps", w, default=DEFAULT_DOWNLINK_MBPS,
                              minimum=0, exclusive=True),
        estimator=_string(raw, "estimator", w, default=DEFAULT_ESTIMATOR,
                          choices=list(ESTIMATORS)),
        trace=trace,
        start_s=_number(raw, "start_s", w, default=0.0, minimum=0, maximum=duration_s),
        activation_bytes_per_value=_number(raw, "activation_bytes_per_value", w, default=FP32_BYTES,
                                           minimum=0, exclusive=True,
                                           maximum=limits.MAX_BYTES_PER_VALUE),
        input_bytes=(None if raw.get("input_bytes") is None else
                     _number(raw, "input_bytes", w, minimum=0, exclusive=True,
                             maximum=limits.MAX_UPLOAD_BYTES)),
    )


def parse_replan(raw: Any, duration_s: float) -> ReplanConfig:
    raw = _object(raw, "replan", _REPLAN_KEYS)
    w = "replan."
    period = _number(raw, "period_s", w, default=min(10.0, duration_s), minimum=0,
                     exclusive=True)
    window = _number(raw, "window_s", w, default=period, minimum=0, exclusive=True)
    startup = _number(raw, "startup_s", w, default=min(1.0, period / 2), minimum=0)
    if startup >= period:
        raise GraftInputError(f"must be below replan.period_s ({period:g}), got {startup:g}",
                              field="replan.startup_s")
    return ReplanConfig(period_s=period, window_s=window,
                        hysteresis=_number(raw, "hysteresis", w, default=0.05, minimum=0,
                                           maximum=1),
                        startup_s=startup)


def parse_scenario(data: Any, *, name: str = "scenario", base_dir: str = ".") -> Scenario:
    """A ``Scenario`` from its JSON value, or a ``GraftInputError`` naming the field."""
    raw = _object(data, "scenario", _TOP_KEYS)
    duration = _number(raw, "duration_s", "", minimum=0, exclusive=True)
    cost_model = _string(raw, "cost_model", "", default="analytic:v100")
    _known(make_cost_model, "cost_model", cost_model)
    groups = raw.get("clients")
    if not isinstance(groups, list) or not groups:
        raise GraftInputError("must be a non-empty list of client groups", field="clients")
    sc = Scenario(
        name=_string(raw, "name", "", default=name),
        duration_s=duration,
        clients=tuple(parse_group(g, i, duration) for i, g in enumerate(groups)),
        seed=_integer(raw, "seed", "", default=0),
        cost_model=cost_model,
        max_utilization=_number(raw, "max_utilization", "", default=DEFAULT_MAX_UTILIZATION,
                                minimum=0,
                                exclusive=True, maximum=1),
        jitter=_number(raw, "jitter", "", default=0.0, minimum=0),
        replan=parse_replan(raw.get("replan", {}), duration),
        base_dir=base_dir,
    )
    check_size(sc)
    return sc


def check_size(sc: Scenario) -> None:
    """The scenario's clients, client-seconds (each client holds a trace of the run's
    length), expected requests and re-planning epochs are within their ``limits``, so a
    simulation's time and memory stay bounded; checked before anything is generated."""
    clients = sc.num_clients
    limits.CLIENTS.check(clients, "the scenario has {}", field="clients")
    limits.CLIENT_SECONDS.check(clients * sc.duration_s,
                                "its clients over duration_s make {}", field="duration_s")
    requests = sum(g.count * g.rate * (sc.duration_s - g.start_s) for g in sc.clients)
    limits.REQUESTS.check(math.ceil(requests), "its clients send about {}", field="clients")
    limits.EPOCHS.check(math.ceil(sc.duration_s / sc.replan.period_s),
                        "duration_s / replan.period_s makes {}", field="replan.period_s")


def paper_scenario() -> Scenario:
    """The built-in ``paper`` scenario: 40 clients over four models, phone / Jetson / Pi
    devices, SLOs 100-400 ms, synthetic Markov links (Wi-Fi-like, LTE for the Pis), 60 s, and
    a load step at 30 s (ten more ResNet-50 phones join), re-planned every 10 s."""
    g = ClientGroup
    return Scenario(
        name="paper", duration_s=60.0, seed=0, jitter=0.05, max_utilization=0.8,
        replan=ReplanConfig(period_s=10.0, window_s=10.0, hysteresis=0.05, startup_s=1.0),
        clients=(
            g(8, "resnet50", "phone-npu", 200.0, 5.0, trace="synthetic:wifi"),
            g(6, "mobilenet_v2", "phone-cpu", 100.0, 6.0, trace="synthetic:wifi"),
            g(6, "mobilenet_v2", "rpi", 400.0, 3.0, trace="synthetic:lte"),
            g(6, "inception_v3", "jetson", 250.0, 4.0, trace="synthetic:wifi"),
            g(4, "vgg16", "jetson", 400.0, 3.0, trace="synthetic:wifi"),
            g(10, "resnet50", "phone-npu", 300.0, 5.0, trace="synthetic:wifi", start_s=30.0),
        ),
    )


def load_scenario(source: str, *, trace_dir: str | None = None) -> Scenario:
    """A built-in scenario by name (``BUILTIN``), or a scenario JSON file. ``trace_dir``
    (``--trace-dir``) is where relative trace paths resolve (default: the file's folder)."""
    if source in BUILTIN and not Path(source).is_file():
        sc = paper_scenario()
        return sc if trace_dir is None else _with_base(sc, trace_dir)
    path = Path(source)
    if not path.exists():
        raise GraftInputError(f"cannot read scenario {source!r}: no such file; built-in "
                              f"scenarios: {', '.join(BUILTIN)}")
    data = load_json(source, "scenario")
    base = trace_dir if trace_dir is not None else str(path.parent)
    return parse_scenario(data, name=path.stem, base_dir=base)


def _with_base(sc: Scenario, base_dir: str) -> Scenario:
    from dataclasses import replace

    return replace(sc, base_dir=base_dir)


# --- clients ------------------------------------------------------------------------------
def _trace_files(directory: Path, field: str, before: int = 0) -> list[Path]:
    """The trace files under ``directory``, sorted by path. The walk stops with an error
    naming ``limits.TRACE_FILES`` as soon as they and the ``before`` files other groups
    named are more than the bound (no file is read)."""
    limit = int(limits.TRACE_FILES.value)
    files = []
    for p in directory.rglob("*"):
        if p.is_file() and not p.name.startswith(".") and p.suffix.lower() in TRACE_SUFFIXES:
            files.append(p)
            if before + len(files) > limit:
                what = (f"holds more than {limit} trace files" if not before else
                        f"takes the scenario's traces past {limit} trace files")
                raise limits.TRACE_FILES.exceeded(f"trace folder {str(directory)!r} {what}",
                                                  field=field)
    return sorted(files)


def _synthetic_seed(seed: int, index: int) -> int:
    return int(np.random.SeedSequence([seed, index]).generate_state(1)[0])


class _Traces:
    """Resolves and loads the trace of every client (each file read once)."""

    def __init__(self, base_dir: str, duration_s: float, seed: int):
        self.base = Path(base_dir)
        self.duration_s = duration_s
        self.seed = seed
        self.cache: dict[Path, BandwidthTrace] = {}
        self.dirs: dict[Path, list[Path]] = {}
        #: the trace files of each folder, found by ``check`` before any file is read
        self.listings: dict[Path, list[Path]] = {}

    def _path(self, trace: str) -> Path | None:
        """Where a client's trace lies (None for a synthetic one)."""
        if trace == "synthetic" or trace.startswith("synthetic:"):
            return None
        path = Path(trace)
        return path if path.is_absolute() else self.base / path

    def check(self, groups: tuple[ClientGroup, ...]) -> None:
        """Before any trace file is read: the files the groups' traces name (each once,
        folders walked) are within ``limits.TRACE_FILES``."""
        files: set[Path] = set()
        for gi, g in enumerate(groups):
            path = self._path(g.trace)
            field = f"clients[{gi}].trace"
            if path is not None and path.is_dir():
                if path not in self.listings:
                    self.listings[path] = _trace_files(path, field, before=len(files))
                files.update(self.listings[path])
            elif path is not None and path.is_file():
                files.add(path)
            limits.TRACE_FILES.check(len(files), "the scenario's traces are {}", field=field)

    def _file(self, path: Path, skip_bad_rows: bool) -> BandwidthTrace:
        if path not in self.cache:
            self.cache[path] = load_trace(path, skip_bad_rows=skip_bad_rows)
        return self.cache[path]

    def _dir(self, directory: Path, field: str) -> list[Path]:
        """The directory's trace files that load (read with ``skip_bad_rows``); files in no
        known trace format (e.g. NYU-METS's raw iperf logs) are skipped with a warning."""
        if directory not in self.dirs:
            ok = []
            if directory not in self.listings:
                self.listings[directory] = _trace_files(directory, field)
            for f in self.listings[directory]:
                try:
                    self._file(f, skip_bad_rows=True)
                except GraftInputError as e:
                    log.warning("skipping %s: %s", f, e)
                    continue
                ok.append(f)
            self.dirs[directory] = ok
        return self.dirs[directory]

    def get(self, trace: str, group: int, k: int, index: int) -> BandwidthTrace:
        path = self._path(trace)
        if path is None:
            model = TRACE_PRESETS[trace.split(":", 1)[1] if ":" in trace else "lte"]
            return model.generate(self.duration_s, _synthetic_seed(self.seed, index))
        name = f"clients[{group}].trace"
        if path.is_dir():
            files = self._dir(path, name)
            if not files:
                raise GraftInputError(f"directory {str(path)!r} holds no trace files "
                                      f"({', '.join(s or 'no suffix' for s in TRACE_SUFFIXES)})",
                                      field=name)
            return self._file(files[k % len(files)], skip_bad_rows=True)
        if not path.is_file():
            raise GraftInputError(f"no trace file or directory {str(path)!r}", field=name)
        return self._file(path, skip_bad_rows=False)


def scenario_clients(sc: Scenario, *, seed: int | None = None) -> list[ScenarioClient]:
    """Every client of the scenario, ids ``g<group>-<k>``, with its trace loaded."""
    seed = sc.seed if seed is None else seed
    traces = _Traces(sc.base_dir, sc.duration_s, seed)
    traces.check(sc.clients)
    out = []
    index = 0
    for gi, g in enumerate(sc.clients):
        for k in range(g.count):
            spec = ClientSpec(
                id=f"g{gi}-{k}", model=g.model, device=g.device, slo_ms=g.slo_ms,
                rate=g.rate, trace=traces.get(g.trace, gi, k, index), arrivals=g.arrivals,
                policy=g.policy, partition=g.partition, rtt_ms=g.rtt_ms,
                downlink_mbps=g.downlink_mbps, estimator=g.estimator,
                activation_bytes_per_value=g.activation_bytes_per_value,
                input_bytes=g.input_bytes)
            out.append(ScenarioClient(spec, g.start_s * 1000.0))
            index += 1
    log.info("scenario %s: %d clients, %d trace files", sc.name, len(out), len(traces.cache))
    return out

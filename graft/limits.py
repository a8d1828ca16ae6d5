"""Bounds on what one command takes, so that time and memory stay bounded for every input.

Each bound is a named ``Bound`` below with a default a real deployment fits in, checked when
input is read, before any work starts (workload and scenario files, plan files, command-line
arguments). Beyond a bound a command exits 2 with one line that names it and the environment
variable that raises it, ``GRAFT_MAX_<NAME>`` (e.g. ``GRAFT_MAX_GPUS=4096 graft plan ...``).

| bound | default | what it bounds |
|---|---:|---|
| ``input_bytes`` | 64 MiB | one input file (workload, plan, scenario, profile, queries) |
| ``flows`` | 10 000 | flows in one workload |
| ``gpus`` | 1024 | GPUs of one plan: a workload's lower bound before planning, the plan after |
| ``batch`` | 1024 | batch size of a stage, a cost query or a profile |
| ``requests`` | 2 000 000 | requests one simulation or one load-generator run sends |
| ``clients`` | 10 000 | clients of one scenario |
| ``client_seconds`` | 10 000 000 | clients x duration of one scenario (each client holds a trace) |
| ``epochs`` | 3600 | re-planning epochs of one simulation (duration / period) |
| ``profile_tflop`` | 1000 | tera floating-point operations one ``graft profile`` measures |
| ``workers`` | 256 | worker processes one ``graft serve`` starts |
| ``trace_files`` | 1000 | trace files one scenario reads (each file once, trace folders walked) |

The planner's time grows faster than linearly in GPUs (about 1 s at 4000 GPUs, 16 s at 14 000
on the reference machine); one simulated request costs about 15 us and 700 bytes.
"""

from __future__ import annotations

import math
import os
from collections.abc import Iterable
from dataclasses import dataclass
from typing import TYPE_CHECKING

from graft.errors import GraftInputError

if TYPE_CHECKING:
    from graft.cost.base import CostModel
    from graft.workload.flows import Flow

ENV_PREFIX = "GRAFT_MAX_"


@dataclass(frozen=True)
class Bound:
    """An upper bound on one quantity; ``GRAFT_MAX_<NAME>`` overrides ``default``."""

    name: str
    default: float
    unit: str

    @property
    def env(self) -> str:
        return ENV_PREFIX + self.name.upper()

    @property
    def value(self) -> float:
        """The bound in force: the environment variable's value, else the default."""
        raw = os.environ.get(self.env)
        if raw is None or not raw.strip():
            return self.default
        try:
            v = float(raw)
        except ValueError:
            v = math.nan
        if not (math.isfinite(v) and v > 0):
            raise GraftInputError(f"{self.env} must be a positive number, got {raw!r}")
        return v

    def check(self, amount: float, what: str, *, field: str | None = None) -> None:
        """Raise GraftInputError unless ``amount`` is within the bound (NaN is beyond it).
        ``what`` says what ``amount`` is, with ``{}`` where the amount and unit go, e.g.
        ``"the workload needs at least {}"``."""
        limit = self.value
        if not amount <= limit:
            raise self.exceeded(what.replace("{}", f"{_fmt(amount)} {self.unit}", 1)
                                + f", above the bound of {_fmt(limit)}", field=field)

    def exceeded(self, message: str, *, field: str | None = None) -> GraftInputError:
        """The error for an input beyond this bound: ``message`` and how to raise it."""
        return GraftInputError(f"{message}; set {self.env} to raise it", field=field)


def _fmt(x: float) -> str:
    if math.isfinite(x) and x == int(x) and abs(x) < 1e15:
        return str(int(x))
    return f"{x:.4g}"


MIB = 2**20
INPUT_BYTES = Bound("input_bytes", 64 * MIB, "bytes")
FLOWS = Bound("flows", 10_000, "flows")
GPUS = Bound("gpus", 1024, "GPUs")
BATCH = Bound("batch", 1024, "requests")
REQUESTS = Bound("requests", 2_000_000, "requests")
CLIENTS = Bound("clients", 10_000, "clients")
CLIENT_SECONDS = Bound("client_seconds", 10_000_000, "client-seconds")
EPOCHS = Bound("epochs", 3600, "re-planning epochs")
PROFILE_TFLOP = Bound("profile_tflop", 1000, "TFLOP")
WORKERS = Bound("workers", 256, "worker processes")
TRACE_FILES = Bound("trace_files", 1000, "trace files")

ALL: tuple[Bound, ...] = (INPUT_BYTES, FLOWS, GPUS, BATCH, REQUESTS, CLIENTS, CLIENT_SECONDS,
                          EPOCHS, PROFILE_TFLOP, WORKERS, TRACE_FILES)

#: Sanity bounds without a knob: no real request uploads more, no tensor holds wider values,
#: no device gives a smaller slice (MPS: 1%; one SM of a 132-SM H100 is 0.0076).
MAX_UPLOAD_BYTES = 1e10
MAX_BYTES_PER_VALUE = 8.0
MIN_SHARE = 1e-3


def check_planning(flows: Iterable[Flow], cost: CostModel, *, max_utilization: float = 1.0,
                   what: str = "the workload") -> None:
    """Before planning: the least GPUs any plan of ``flows`` needs (the lower-bound share,
    at rates divided by ``max_utilization``) must be within ``GPUS``."""
    from graft.planner.lower_bound import lower_bound_share

    need = lower_bound_share(list(flows), cost)
    if max_utilization != 1.0:
        need = need / max_utilization if max_utilization > 0 else math.inf
        what += f" at --max-utilization {max_utilization:g}"
    GPUS.check(math.ceil(need) if math.isfinite(need) else need,
               what + " needs at least {} (its lower bound)")

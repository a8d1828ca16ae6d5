"""``profile:<path>``: a cost model read from a table the profiler measured.

The table holds, per model and per block, the latency in ms of one batch at every measured
(batch, share) pair. A stage's latency is the sum of its blocks' latencies, nothing added,
times the model's ``scale`` (1 unless set: ``profile:<path>,scale=1.6`` when the runtime
measures its batches running that much slower than the profile, e.g. because the frontend
and the clients share the cores).
``shares`` and ``batches`` are the measured grids. A batch between two measured ones is
interpolated linearly; a batch outside the measured range, or a share off the grid, is an
error. The JSON format is documented in ``docs/cost_model.md``.
"""

from __future__ import annotations

import logging
import math
from pathlib import Path
from typing import Any

import numpy as np

from graft import limits
from graft.cost.base import (
    CPU_LINKS,
    HANDOFF_LATENCY_MS,
    MPS_MAX_CLIENTS,
    DeviceLimits,
    Links,
    check_batch,
    check_segment,
    check_share,
)
from graft.cost.devices import GPU_CONTEXT_BYTES
from graft.errors import GraftInputError, UnknownNameError
from graft.fields import show
from graft.jsonio import load_json
from graft.models.catalog import get_model, model_names

log = logging.getLogger(__name__)

#: The fields of a profile (``device`` and ``settings`` are free-form provenance).
PROFILE_FIELDS = ("format", "version", "device", "limits", "batches", "shares", "settings",
                  "models", "links")
LIMIT_FIELDS = ("memory_bytes", "context_bytes", "max_processes")
LINK_FIELDS = ("device_bytes_per_s", "interconnect_bytes_per_s", "latency_ms", "source")
PROFILE_FORMAT = "graft-profile"
PROFILE_VERSION = 1
#: Largest ``scale`` a profile cost model takes.
MAX_SCALE = 100.0


def _fail(source: str, message: str) -> GraftInputError:
    return GraftInputError(f"profile {source}: {message}")


def _grid(source: str, data: dict[str, Any], key: str, kind: type) -> tuple:
    values = data.get(key)
    if not isinstance(values, list) or not values:
        raise _fail(source, f"{key!r} must be a non-empty list")
    ok = (int,) if kind is int else (int, float)
    if any(isinstance(v, bool) or not isinstance(v, ok) or not math.isfinite(v)
           for v in values):
        what = "integers" if kind is int else "finite numbers"
        raise _fail(source, f"{key!r} must hold {what}, got {show(values)}")
    out = tuple(kind(v) for v in values)
    if any(b <= a for a, b in zip(out, out[1:], strict=False)):
        raise _fail(source, f"{key!r} must be strictly increasing, got {list(out)}")
    return out


def validate_profile(data: Any, source: str = "<dict>") -> dict[str, np.ndarray]:
    """Check a profile's structure; return each model's block latencies as an array of shape
    ``(num_blocks, len(batches), len(shares))``. Raises GraftInputError naming ``source``."""
    if not isinstance(data, dict):
        raise _fail(source, "the top level must be a JSON object")
    unknown = sorted(str(k) for k in data if k not in PROFILE_FIELDS)
    if unknown:
        raise _fail(source, f"unknown field {unknown[0]!r}; known: {', '.join(PROFILE_FIELDS)}")
    for key in ("device", "settings"):
        if not isinstance(data.get(key, {}), dict):
            raise _fail(source, f"{key!r} must be an object, got {show(data[key])}")
    if data.get("format") != PROFILE_FORMAT or data.get("version") != PROFILE_VERSION:
        raise _fail(
            source,
            f'expected "format": "{PROFILE_FORMAT}", "version": {PROFILE_VERSION}; got '
            f"{data.get('format')!r}, {data.get('version')!r}",
        )
    batches = _grid(source, data, "batches", int)
    shares = _grid(source, data, "shares", float)
    if batches[0] < 1:
        raise _fail(source, f"batches must be >= 1, got {list(batches)}")
    limits.BATCH.check(batches[-1], f"profile {source}: a measured batch of {{}}")
    if not (shares[0] > 0.0 and shares[-1] <= 1.0):
        raise _fail(source, f"shares must lie in (0, 1], got {list(shares)}")
    models = data.get("models")
    if not isinstance(models, dict) or not models:
        raise _fail(source, "'models' must be a non-empty object")
    tables: dict[str, np.ndarray] = {}
    for name, entry in models.items():
        blocks = entry.get("blocks") if isinstance(entry, dict) else None
        if not isinstance(blocks, list) or not blocks or len(entry) != 1:
            raise _fail(source, f"model {name!r} must be an object {{\"blocks\": [...]}} "
                                "with a non-empty list of blocks")
        rows = []
        for i, block in enumerate(blocks):
            if isinstance(block, dict) and not set(block) <= {"name", "latency_ms"}:
                raise _fail(source, f"model {name!r} block {i}: unknown field; known: name, "
                                    "latency_ms")
            lat = block.get("latency_ms") if isinstance(block, dict) else None
            try:
                arr = np.array(lat, dtype=float)
            except (TypeError, ValueError):
                arr = np.empty(0)
            if not _numbers(lat):  # "0.5" would convert, but is not a number
                arr = np.empty(0)
            if arr.shape != (len(batches), len(shares)):
                raise _fail(
                    source,
                    f"model {name!r} block {i}: latency_ms must be a "
                    f"{len(batches)} x {len(shares)} list (batches x shares)",
                )
            if not np.all(np.isfinite(arr)) or np.any(arr < 0):
                raise _fail(source, f"model {name!r} block {i}: latencies must be finite, >= 0")
            rows.append(arr)
        if name in model_names() and get_model(name).num_blocks != len(rows):
            raise _fail(
                source,
                f"model {name!r} has {get_model(name).num_blocks} blocks in the block table "
                f"but {len(rows)} in the profile (a stale profile? measure it again)",
            )
        tables[str(name)] = np.stack(rows)
    return tables


def _numbers(rows: Any) -> bool:
    """Whether ``rows`` is a list of lists of JSON numbers."""
    return isinstance(rows, list) and all(
        isinstance(row, list) and all(isinstance(v, (int, float)) and not isinstance(v, bool)
                                      for v in row) for row in rows)


def _limits(data: dict[str, Any], source: str) -> DeviceLimits:
    lim = data.get("limits")
    if lim is None:
        raise _fail(source, "'limits' (memory_bytes, context_bytes, max_processes) is missing")
    if not (isinstance(lim, dict) and set(lim) <= set(LIMIT_FIELDS) and all(
            isinstance(v, int) and not isinstance(v, bool) and v > 0 for v in lim.values())):
        raise _fail(source, f"'limits' must be an object of positive integers "
                            f"({', '.join(LIMIT_FIELDS)}), got {show(lim)}")
    try:
        return DeviceLimits(
            memory_bytes=int(lim["memory_bytes"]),
            context_bytes=int(lim.get("context_bytes", GPU_CONTEXT_BYTES)),
            max_processes=int(lim.get("max_processes", MPS_MAX_CLIENTS)),
        )
    except (KeyError, TypeError, ValueError):
        raise _fail(source, f"bad 'limits': {lim!r}") from None


#: Hand-offs on a CUDA profile without measured links: a device copy at half of a modest
#: 300 GB/s, and PCIe Gen3 x16 (16 GB/s one way) between GPUs.
CUDA_LINKS = Links(device_bytes_per_s=150e9, interconnect_bytes_per_s=16e9,
                   source="assumed: PCIe Gen3 x16, 16 GB/s one way")


def _links(data: dict[str, Any], source: str) -> Links:
    """The profile's ``links`` (``device_bytes_per_s``, ``interconnect_bytes_per_s``,
    ``latency_ms``), or defaults for its device kind."""
    kind = data.get("device", {}).get("kind") if isinstance(data.get("device"), dict) else None
    default = CUDA_LINKS if kind == "cuda" else CPU_LINKS
    raw = data.get("links")
    if raw is None:
        return default
    if not (isinstance(raw, dict) and set(raw) <= set(LINK_FIELDS) and all(
            isinstance(v, str) if k == "source" else
            isinstance(v, (int, float)) and not isinstance(v, bool)
            for k, v in raw.items())):
        raise _fail(source, f"'links' must be an object of numbers ({', '.join(LINK_FIELDS)}),"
                            f" got {show(raw)}")
    try:
        links = Links(
            device_bytes_per_s=float(raw.get("device_bytes_per_s", default.device_bytes_per_s)),
            interconnect_bytes_per_s=float(raw.get("interconnect_bytes_per_s",
                                                   default.interconnect_bytes_per_s)),
            latency_ms=float(raw.get("latency_ms", HANDOFF_LATENCY_MS)),
            source=str(raw.get("source", "measured")),
        )
    except (AttributeError, TypeError, ValueError):
        raise _fail(source, f"bad 'links': {raw!r}") from None
    if not (links.device_bytes_per_s > 0 and links.interconnect_bytes_per_s > 0
            and 0 <= links.latency_ms < 1e3):
        raise _fail(source, "'links' needs positive bandwidths and a latency_ms in [0, 1000)")
    return links


class ProfileCostModel:
    """A cost model from a measured profile (see the module docstring)."""

    def __init__(self, data: dict[str, Any], *, name: str = "profile", source: str = "<dict>",
                 scale: float = 1.0):
        if not (isinstance(scale, int | float) and 0.0 < scale <= MAX_SCALE):
            raise GraftInputError(f"cost model {name!r}: scale must be a number in "
                                  f"(0, {MAX_SCALE:g}], got {scale!r}")
        self.scale = float(scale)
        self._tables = {m: t * self.scale
                        for m, t in validate_profile(data, source).items()}
        self.name = name
        self.source = source
        self.batches: tuple[int, ...] = tuple(int(b) for b in data["batches"])
        self.shares: tuple[float, ...] = tuple(float(s) for s in data["shares"])
        self.limits = _limits(data, source)
        self.links = _links(data, source)
        self.cache: dict = {}
        self.device: dict[str, Any] = dict(data.get("device", {}))
        self._batch_index = {b: i for i, b in enumerate(self.batches)}
        self._share_index = {round(s, 9): j for j, s in enumerate(self.shares)}
        zero = np.zeros((1, len(self.batches), len(self.shares)))
        self._prefix = {m: np.concatenate([zero, t.cumsum(0)]) for m, t in self._tables.items()}
        self._grids: dict[tuple[str, int, int], np.ndarray] = {}

    @classmethod
    def from_file(cls, path: str | Path, *, name: str | None = None,
                  scale: float = 1.0) -> ProfileCostModel:
        if not Path(path).exists():
            raise GraftInputError(f"profile file not found: {path}")
        data = load_json(str(path), "profile")
        return cls(data, name=name or f"profile:{path}", source=str(path), scale=scale)

    def __repr__(self) -> str:
        return f"ProfileCostModel({self.name!r})"

    @property
    def models(self) -> list[str]:
        return list(self._tables)

    def num_blocks(self, model: str) -> int:
        return len(self._table(model))

    def _table(self, model: str) -> np.ndarray:
        table = self._tables.get(model)
        if table is None:
            raise UnknownNameError(f"model in {self.source}", model, list(self._tables))
        return table

    def latency_grid(self, model: str, start: int, end: int) -> np.ndarray:
        key = (model, start, end)
        grid = self._grids.get(key)
        if grid is None:
            check_segment(model, len(self._table(model)), start, end)
            prefix = self._prefix[model]
            grid = prefix[end] - prefix[start]
            grid.flags.writeable = False
            self._grids[key] = grid
        return grid

    def _share_col(self, share: float) -> int:
        check_share(share)
        j = self._share_index.get(round(float(share), 9))
        if j is None:
            raise GraftInputError(
                f"share {share!r} is not on the measured grid of {self.name}: "
                f"{', '.join(f'{s:g}' for s in self.shares)}"
            )
        return j

    def latency_ms(self, model: str, start: int, end: int, batch: int, share: float) -> float:
        grid = self.latency_grid(model, start, end)
        j = self._share_col(share)
        i = self._batch_index.get(batch) if not isinstance(batch, bool) else None
        if i is not None:
            return float(grid[i, j])
        check_batch(batch)
        lo, hi = self.batches[0], self.batches[-1]
        if not lo <= batch <= hi:
            raise GraftInputError(
                f"batch {batch} is outside the measured range [{lo}, {hi}] of {self.name}"
            )
        k = next(n for n, b in enumerate(self.batches) if b > batch)
        b0, b1 = self.batches[k - 1], self.batches[k]
        w = (batch - b0) / (b1 - b0)
        return float((1.0 - w) * grid[k - 1, j] + w * grid[k, j])

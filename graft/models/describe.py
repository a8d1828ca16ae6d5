"""Models as text for people: one line per model, or a model's partition points as a table.

``graft models`` prints ``summary_line`` for every model; ``graft models NAME`` prints
``partition_table``: for every partition point ``p`` the block the server starts with, the
activation the client uploads (shape and fp32 size) and how the FLOPs split between client
and server, so a user can tell what "partition 5" means without reading JSON.
"""

from __future__ import annotations

from graft.models.spec import ModelSpec


def human_bytes(n: float) -> str:
    """``n`` bytes as B, KB, MB or GB (powers of 1024), three significant figures."""
    for unit in ("B", "KB", "MB"):
        if abs(n) < 1024:
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.3g} {unit}"
        n /= 1024
    return f"{n:.3g} GB"


def _shape(shape: tuple[int, ...]) -> str:
    return "x".join(str(d) for d in shape)


def summary_line(m: ModelSpec) -> str:
    """One line: blocks, input shape, GFLOP and parameters of a model."""
    gflop = m.segment_flops(0, m.num_blocks) / 1e9
    mparams = m.segment_param_bytes(0, m.num_blocks) / 4e6
    return (f"{m.name:14s} {m.num_blocks:3d} blocks  input {tuple(m.input_shape)}  "
            f"{gflop:8.3f} GFLOP  {mparams:7.2f} M params")


def partition_table(m: ModelSpec) -> str:
    """Every partition point of ``m``: what the client runs and uploads, what the server runs."""
    total = m.segment_flops(0, m.num_blocks)
    head = [
        f"{m.name}: {m.num_blocks} blocks, input {_shape(m.input_shape)} "
        f"({human_bytes(m.input_bytes)} fp32), {total / 1e9:.3f} GFLOP, "
        f"{m.segment_param_bytes(0, m.num_blocks) / 4e6:.2f} M params",
        f"Partition point p: the client runs blocks [0, p) and uploads the activation entering "
        f"block p; the server runs blocks [p, {m.num_blocks}).",
        f"p = 0 uploads the input; p = {m.num_blocks} runs everything on the client. Sizes are "
        "per sample; clients may send fewer bytes (int8, JPEG: docs/clients.md).",
        "",
    ]
    rows = [("p", "server starts at", "upload shape", "upload (fp32)", "client GFLOP",
             "server GFLOP", "server weights")]
    for p in range(m.num_blocks + 1):
        served = p < m.num_blocks
        rows.append((str(p), m.blocks[p].name if served else "(none: all on the client)",
                     _shape(m.in_shape(p)) if served else "-",
                     human_bytes(m.in_bytes(p)) if served else "-",
                     f"{m.segment_flops(0, p) / 1e9:.3f}",
                     f"{m.segment_flops(p, m.num_blocks) / 1e9:.3f}",
                     human_bytes(m.segment_param_bytes(p, m.num_blocks))))
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    left = {1, 2}  # text columns; numbers align right
    lines = ["  ".join(c.ljust(w) if i in left else c.rjust(w)
                       for i, (c, w) in enumerate(zip(r, widths))).rstrip() for r in rows]
    return "\n".join(head + lines)

"""The GPU check behind ``scripts/gpu_check.sh``: what the CPU suite cannot test.

1. Split equals whole on CUDA: for two models at several partition points, blocks [0, p)
   then [p, L) on the GPU against the unsplit chain, within ``ATOL``/``RTOL`` (float32;
   cuDNN picks different kernels per shape, so bit-equality is not expected).
2. Measured against ``analytic``: the profile ``graft profile --device cuda`` wrote, for the
   whole model at each measured batch and share, beside the analytic preset closest to the
   GPU's name; the ratio says how far the analytic model is from this GPU.
3. The served run's load generator JSON, summarised.

Writes ``report.md`` into the output folder; exits 1 when split != whole.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

ATOL, RTOL = 1e-3, 1e-3


def split_vs_whole(models: list[str], seed: int = 0) -> list[str]:
    import torch

    from graft.models.chains import build_chain, input_shape

    dev = torch.device("cuda")
    rows = ["| model | partition | max abs diff | equal |", "|---|---:|---:|---|"]
    bad = 0
    for name in models:
        chain = build_chain(name, seed=seed).to(dev).eval()
        blocks = list(chain.blocks)
        x = torch.randn(2, *input_shape(name), generator=torch.Generator().manual_seed(1)).to(dev)
        with torch.inference_mode():
            whole = chain(x)
            for p in sorted({1, len(blocks) // 3, len(blocks) // 2, len(blocks) - 1}):
                h = x
                for b in blocks[:p]:
                    h = b(h)
                for b in blocks[p:]:
                    h = b(h)
                diff = float((h - whole).abs().max())
                ok = torch.allclose(h, whole, atol=ATOL, rtol=RTOL)
                bad += not ok
                rows.append(f"| {name} | {p} | {diff:.2e} | {'yes' if ok else '**no**'} |")
    rows.append("")
    rows.append(f"Split equals whole (atol {ATOL:g}, rtol {RTOL:g}): "
                f"{'**yes**' if not bad else f'**no** ({bad} cases)'}.")
    return rows


def measured_vs_analytic(profile_path: Path, models: list[str]) -> list[str]:
    from graft.cost.analytic import AnalyticCostModel
    from graft.cost.devices import GPUS
    from graft.cost.profiled import ProfileCostModel

    prof = ProfileCostModel.from_file(profile_path)
    gpu_name = str(prof.device.get("name", "")).lower()
    preset = next((g for g in GPUS if g in gpu_name), "h100")
    ana = AnalyticCostModel(preset)
    rows = [f"Profile of `{prof.device.get('name', '?')}` (MPS daemon: "
            f"{prof.device.get('mps_daemon', '?')}; green context per share: "
            f"{prof.device.get('green_context', '?')}) against `analytic:{preset}`.", "",
            "| model | batch | share | measured ms | analytic ms | measured / analytic |",
            "|---|---:|---:|---:|---:|---:|"]
    for m in models:
        n = prof.num_blocks(m)
        for b in prof.batches:
            for g in prof.shares:
                meas = prof.latency_ms(m, 0, n, b, g)
                pred = ana.latency_ms(m, 0, n, b, min(ana.shares, key=lambda s: abs(s - g)))
                rows.append(f"| {m} | {b} | {g:g} | {meas:.3f} | {pred:.3f} | "
                            f"{meas / pred:.2f} |")
    return rows


def served(loadgen_json: Path) -> list[str]:
    if not loadgen_json.exists():
        return ["The served run wrote no load generator report (see serve.log)."]
    total = json.loads(loadgen_json.read_text())["rows"][-1]  # graft loadgen --json
    keys = ("sent", "answered", "rejected", "failed", "goodput_rps", "slo_attainment",
            "p50_ms", "p99_ms")
    return ["| " + " | ".join(keys) + " |", "|" + "---:|" * len(keys),
            "| " + " | ".join(str(round(total[k], 3)) if isinstance(total.get(k), float)
                              else str(total.get(k, "-")) for k in keys) + " |"]


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", type=Path, required=True)
    ap.add_argument("--models", default="mobilenet_v2,resnet50")
    ap.add_argument("--part", choices=("split", "report"), required=True)
    args = ap.parse_args()
    models = args.models.split(",")
    if args.part == "split":
        lines = split_vs_whole(models)
        (args.out / "split.md").write_text("\n".join(lines) + "\n")
        print("\n".join(lines))
        return 0 if "**yes**" in lines[-1] else 1
    lines = ["# GPU check", "", "## Split equals whole on CUDA", "",
             (args.out / "split.md").read_text() if (args.out / "split.md").exists() else "-",
             "## Measured against analytic", "",
             *measured_vs_analytic(args.out / "gpu_profile.json", models), "",
             "## Served briefly (graft plan on the measured profile, CUDA workers)", "",
             *served(args.out / "loadgen.json"), ""]
    (args.out / "report.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))
    return 0


if __name__ == "__main__":
    sys.exit(main())

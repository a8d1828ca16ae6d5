"""Every command the README and docs/ show works from a fresh clone, or the test knows why not.

Commands are read from the markdown: lines of fenced blocks and inline code that start with
``graft``, ``.venv/bin/``, ``make``, ``python``, ``pip``, ``scripts/``, ``cat`` or ``bash``.

- ``make`` commands run as ``make -n`` (the target exists; ``DIR`` becomes a real folder);
- ``graft`` synopses (with ``[...]`` or placeholders such as ``WORKLOAD.json``) must name a
  real command and real flags;
- every other command must be in ``KNOWN``: run as written (``RUN``), run as a shorter
  command that needs no external data or minutes, or skipped with the reason. A command the
  docs gain that ``KNOWN`` does not list fails ``test_every_documented_command_is_known``.

The runnable ones run in document order in one temporary folder (the README's ``w.json`` is
made by its own ``cat`` command), through ``bash`` as a user would type them.
"""

from __future__ import annotations

import re
import shlex
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest

from graft.cli import build_parser

ROOT = Path(__file__).resolve().parents[1]
DOCS = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
COMMAND = re.compile(r"^(?:\.venv/bin/)?(?:graft\s+[a-z]|make |python |pip |scripts/\S+$|"
                     r"scripts/\S+ |cat |bash )")
#: A synopsis: optional parts in brackets, or an upper-case placeholder (WORKLOAD.json, DIR).
PLACEHOLDER = re.compile(r"\[|\b[A-Z][A-Z_]{1,}(?:\.json)?\b")

RUN = "run"


class Instead(str):
    """Run this shorter command (no external data, seconds not minutes) in its place."""

EXTERNAL = "reads third-party data that is not in the repository (README, 'Data')"
SERVER = "runs a server until Ctrl-C; tests/test_runtime_*.py serve in a thread"
NEEDS_SERVER = "needs a running server; tests/test_runtime_*.py drive one"

#: Normalised command -> RUN, a shorter command to run ``Instead``, or why it is not run.
KNOWN: dict[str, str] = {
    "cat > w.json <<'JSON'": RUN,
    "graft plan w.json -o plan.json": RUN,
    "graft verify w.json plan.json": RUN,
    "cat > cluster.json <<'JSON'": RUN,
    "graft plan w.json --cluster cluster.json -o cluster-plan.json": RUN,
    "graft plan --cluster": "a name; the README's cluster example runs it",
    "graft simulate paper -o out/": RUN,
    "graft models": RUN,
    "graft models --json": RUN,
    "graft compare": RUN,
    "graft profile": Instead("graft profile tiny --batches 1 --shares 1 --warmup 0 "
                             "--repeats 1 -o profile.json"),
    "graft simulate": "a name; `graft simulate paper -o out/` runs above",
    "graft cost": Instead("echo '[{\"model\": \"tiny\", \"start\": 0, \"end\": 6, \"batch\": 1, "
                  "\"share\": 1}]' | graft cost"),
    "graft verify": "a name; the README's example runs it",
    "graft loadgen": NEEDS_SERVER,
    "graft serve": SERVER,
    "graft serve --workload w.json": SERVER,
    "graft serve --ray auto --workload w.json --device cuda --cost-model analytic:v100":
        "needs a Ray cluster with GPUs; tests/test_ray_serving.py serves on a local one",
    "graft serve --ray": "a name; tests/test_ray_serving.py serves on a local Ray cluster",
    "graft plan --cluster ray:auto": "needs a running Ray cluster; tests/test_cluster.py "
                                     "plans on a local one",
    "python bench/ray_nodes_bench.py": "about 2 minutes of local Ray clusters; "
                                       "tests/test_ray_serving.py serves on one",
    "graft loadgen http://127.0.0.1:8000 --workload w.json --duration 20": NEEDS_SERVER,
    "graft demo": "about 35 s (profiling, serving); tests/test_demo.py runs its steps",
    "graft demo -o demo-out": "about 35 s (profiling, serving); tests/test_demo.py",
    "graft demo --duration 1": "about 35 s (profiling, serving); tests/test_demo.py",
    "graft models --regenerate": "rewrites the committed block table; "
                                 "tests/test_models_torch.py measures the models",
    "graft models --check": "40 s of torch measurement; tests/test_models_torch.py",
    "graft models --regenerate/--check": "see graft models --check",
    "graft calibrate": EXTERNAL,
    "graft simulate my.json --trace-dir ../shared/data/traces/mahimahi-cellular -o out/":
        EXTERNAL,
    "graft simulate step.json --trace-dir ../shared/data/traces -o out/": EXTERNAL,
    "python -c \"import sys,numpy as np; from graft.workload.traces import load_trace":
        EXTERNAL,
    "python -m graft.cost.calibration --fit": EXTERNAL,
    "python bench/loadgen_bench.py": "a benchmark (seconds of load on a stub server)",
    "pip install -e .[ray]": "an optional extra that downloads Ray",
    "scripts/gpu_check.sh": "needs a GPU",
    "scripts/heartbeat.sh": Instead("scripts/heartbeat.sh check true"),
    "scripts/gpu_check.py": "needs a GPU",
    "scripts/gpu_check.sh [OUT]": "needs a GPU",
}


@dataclass(frozen=True)
class Doc:
    """One documented command: its text (continuations and heredocs included), the
    normalised key, and where it is."""

    text: str
    key: str
    where: str


def normalise(first_line: str) -> str:
    line = re.sub(r"^\.venv/bin/", "", first_line.strip())
    line = re.split(r"\s{2,}#", line)[0]  # a trailing comment
    return " ".join(line.split())


def _block_commands(lines: list[str]) -> list[list[str]]:
    """The commands of a fenced block: a command line with its backslash continuations, its
    heredoc, or the rest of an open double-quoted string."""
    out, i = [], 0
    while i < len(lines):
        line = lines[i]
        if not COMMAND.match(line.strip()):
            i += 1
            continue
        cmd = [line]
        heredoc = re.search(r"<<'?(\w+)'?", line)
        while i + 1 < len(lines) and (
                cmd[-1].rstrip().endswith("\\")
                or (heredoc and cmd[-1].strip() != heredoc.group(1))
                or "\n".join(cmd).count('"') % 2):
            i += 1
            cmd.append(lines[i])
        out.append(cmd)
        i += 1
    return out


def documented() -> list[Doc]:
    docs = []
    for path in DOCS:
        text = path.read_text()
        where = path.relative_to(ROOT).as_posix()
        for m in re.finditer(r"^```(\w*)\n(.*?)^```", text, re.S | re.M):
            if m.group(1) in ("json", "python"):
                continue
            for cmd in _block_commands(m.group(2).splitlines()):
                docs.append(Doc("\n".join(cmd), normalise(cmd[0]), where))
        prose = re.sub(r"^```.*?^```", "", text, flags=re.S | re.M)
        for m in re.finditer(r"`([^`\n]+)`", prose):
            if COMMAND.match(m.group(1).strip()):
                docs.append(Doc(m.group(1).strip(), normalise(m.group(1)), where))
    return docs


DOCUMENTED = documented()


def _kind(d: Doc) -> str:
    if d.key.startswith("make "):
        return "make"
    if d.key.startswith("graft ") and PLACEHOLDER.search(d.key):
        return "synopsis"
    return "known"


def test_the_docs_show_commands():
    kinds = {_kind(d) for d in DOCUMENTED}
    assert kinds == {"make", "synopsis", "known"}
    assert any(d.key == "graft plan w.json -o plan.json" for d in DOCUMENTED)


def test_every_documented_command_is_known():
    unknown = sorted({f"{d.where}: {d.key}" for d in DOCUMENTED
                      if _kind(d) == "known" and d.key not in KNOWN})
    assert not unknown, ("commands in the docs that tests/test_docs_commands.py does not "
                         "know (add each to KNOWN: RUN, a shorter command, or why not): "
                         + "; ".join(unknown))


def test_synopses_name_real_commands_and_flags():
    parser = build_parser()
    subs = next(a for a in parser._actions if a.dest == "command").choices
    for d in DOCUMENTED:
        if _kind(d) != "synopsis":
            continue
        words = d.text.replace("\\\n", " ").split()
        words = words[1:] if words[0].endswith("graft") else words
        sub = subs.get(words[0])
        assert sub is not None, f"{d.where}: {d.key}: no command {words[0]!r}"
        flags = {s for a in sub._actions for s in a.option_strings}
        for w in words[1:]:
            for flag in re.findall(r"(?<![\w-])(--?[a-z][\w-]*)", w):
                assert flag in flags, f"{d.where}: {d.key}: {words[0]} has no {flag}"


def _make_dry_run(args: list[str]) -> str:
    out = subprocess.run(["make", "-n", "-C", str(ROOT), *args], capture_output=True,
                         text=True, timeout=60)
    assert out.returncode == 0, (args, out.stderr)
    return out.stdout


def test_make_commands_exist(tmp_path):
    seen = set()
    for d in DOCUMENTED:
        if _kind(d) == "make" and d.key not in seen:
            seen.add(d.key)
            _make_dry_run([w.replace("DIR", str(tmp_path)) for w in shlex.split(d.key)[1:]])
    assert {"make demo", "make test", "make bench-sim TRACES=DIR"} <= seen


def test_benchmarks_keep_git_status_clean_unless_asked(tmp_path):
    ignored = (ROOT / ".gitignore").read_text().split()
    assert "/out/" in ignored
    for target in ("bench-planner", "bench-sim", "bench-runtime"):
        name = target.split("-")[1]
        assert f"--output out/bench/{name}.md" in _make_dry_run([target])
        assert f"--output bench/results/{name}.md" in _make_dry_run([target, "UPDATE=1"])
    assert f"--trace-root {tmp_path}" in _make_dry_run(["bench-sim", f"TRACES={tmp_path}"])
    assert f"--data-dir {tmp_path}" in _make_dry_run(["calibrate", f"DATA={tmp_path}"])
    assert "--data-dir" not in _make_dry_run(["calibrate"])


def _script(command: str) -> str:
    """``command`` as bash runs it here: graft and python from this interpreter."""
    py = shlex.quote(sys.executable)
    command = re.sub(r"(?m)(^|\| *)\.venv/bin/", r"\1", command)
    command = re.sub(r"(?m)^scripts/", f"{shlex.quote(str(ROOT))}/scripts/", command)
    return f"graft() {{ {py} -m graft.cli \"$@\"; }}\npython() {{ {py} \"$@\"; }}\n{command}\n"


def test_documented_commands_run(tmp_path):
    """The runnable commands, in document order, in one folder; each exits 0 with no
    traceback."""
    ran, failed = [], []
    for d in DOCUMENTED:
        how = KNOWN.get(d.key) if _kind(d) == "known" else None
        if not (how == RUN or isinstance(how, Instead)) or d.key in ran:
            continue
        command = d.text if how == RUN else how
        out = subprocess.run(["bash", "-c", _script(command)], cwd=tmp_path,
                             capture_output=True, text=True, timeout=120)
        ran.append(d.key)
        if out.returncode != 0 or "Traceback" in out.stderr:
            failed.append(f"{d.where}: {command}: exit {out.returncode}: {out.stderr[-500:]}")
    assert not failed, "\n".join(failed)
    assert {"cat > w.json <<'JSON'", "graft plan w.json -o plan.json",
            "graft verify w.json plan.json", "graft simulate paper -o out/",
            "graft profile"} <= set(ran)
    assert (tmp_path / "plan.json").is_file() and (tmp_path / "out" / "report.md").is_file()


@pytest.mark.parametrize("key", sorted(KNOWN))
def test_known_commands_are_documented(key):
    """KNOWN lists only commands the docs still show (no stale entries)."""
    assert key in {d.key for d in DOCUMENTED}, f"{key!r} is no longer in the docs"

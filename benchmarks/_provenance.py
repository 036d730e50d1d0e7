"""Where and when a benchmark ran: stored beside its figures in ``benchmarks/results/``.

``benchmarks/run_all.py --write-docs`` stamps these beside the tables it generates.
"""

import datetime
import os
import platform
import subprocess
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def _git(*args):
    try:
        return subprocess.run(["git", *args], cwd=ROOT, capture_output=True, text=True,
                              timeout=10, check=True).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return ""


def machine():
    """``"Linux x86_64, 2 CPUs, <CPU model>"`` (the model where ``/proc/cpuinfo`` says)."""
    model = ""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    desc = f"{platform.system()} {platform.machine()}, {os.cpu_count()} CPUs"
    return f"{desc}, {model}" if model else desc


def provenance(torch=None):
    """UTC date, commit (``-dirty`` when tracked files differ from it), machine, threads."""
    commit = _git("rev-parse", "--short", "HEAD") or "unknown"
    if _git("status", "--porcelain", "--untracked-files=no"):
        commit += "-dirty"
    info = dict(date=datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
                commit=commit, machine=machine(),
                omp_num_threads=os.environ.get("OMP_NUM_THREADS"))
    if torch is not None:
        info["torch_threads"] = torch.get_num_threads()
    return info


def run_child(cmd, env, label):
    """Run a benchmark's child process ``cmd``; return the JSON of its last output line
    with this run's provenance added (``SystemExit`` naming ``label`` if it failed)."""
    import json
    import sys

    import torch

    out = subprocess.run(cmd, env=env, capture_output=True, text=True)
    if out.returncode:
        print(out.stderr[-3000:], file=sys.stderr)
        raise SystemExit(f"{label} failed")
    result = json.loads(out.stdout.strip().splitlines()[-1])
    result["provenance"] = provenance(torch)
    return result


def store_run(path, key, result, **extra):
    """Add ``result`` under ``runs[key]`` of the JSON file ``path``, re-read first so that
    entries written by other invocations are kept; ``extra`` top-level entries too."""
    import json

    stored = json.loads(path.read_text()) if path.exists() else {}
    runs = {**stored.get("runs", {}), key: result}
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(dict(runs=runs, **extra), indent=1))


def parse_setting(text):
    """``'name=value'`` (a ``--set`` argument) -> ``(name, value)``, the value read as a
    Python literal if it is one."""
    import ast

    name, sep, value = text.partition("=")
    if not sep or not name.isidentifier():
        raise SystemExit(f"--set takes PARAM=VALUE, got {text!r}")
    try:
        return name, ast.literal_eval(value)
    except (ValueError, SyntaxError):
        return name, value

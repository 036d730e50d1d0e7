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

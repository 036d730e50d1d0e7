"""Study: the defaults beside ``member_balance``, pooled over every stored seed.

    PYTHONPATH=. python benchmarks/study_member_balance.py

Reads the fits that ``bench_fidelity.py`` stored (no fit is run): the defaults' runs in
``results/fidelity.json`` and the ``--set member_balance=0.0`` runs (the defaults at
more seeds) in ``results/fidelity_variants.json``, pooled when they ran on the same
machine, beside the ``--set member_balance=G`` runs (G > 0). For each population it prints,
over all the pooled seeds: held-out output R² (mean of the per-seed means; the lowest
per-seed minimum), hidden R² (the same), epochs and fit seconds (range), k-means ARI
on the map and on ``DynamoCluster``'s features (mean over seeds, and the per-seed
values), averaging ratio (range), and the map's disagreement between refits
(:func:`skdynamo.embedding_disagreement`, all seeds' maps at once). The populations'
runs were made by::

    PYTHONPATH=. OMP_NUM_THREADS=1 python benchmarks/bench_fidelity.py --set member_balance=1.0
    PYTHONPATH=. OMP_NUM_THREADS=1 python benchmarks/bench_fidelity.py --only default \\
        --seeds 3 4 --set member_balance=1.0     # and member_balance=0.0
    PYTHONPATH=. OMP_NUM_THREADS=1 python benchmarks/bench_fidelity.py --only cognitive \\
        --seeds 3 4 5 --set member_balance=1.0   # and member_balance=0.0
    PYTHONPATH=. OMP_NUM_THREADS=1 python benchmarks/bench_fidelity.py --only cnn \\
        --set member_balance=0.0                 # the defaults on the variant's machine
"""

import argparse
import json
from pathlib import Path

import numpy as np

from skdynamo import embedding_disagreement

RESULTS = Path(__file__).resolve().parent / "results"


def pooled(entries):
    """One population's runs from several stored entries (same machine), by seed."""
    runs = {}
    for e in entries:
        for r in e["runs"]:
            runs.setdefault(r["random_state"], r)
    return [runs[s] for s in sorted(runs)]


def summary(runs):
    """The figures printed for one setting's pooled runs (a dict)."""
    out = dict(seeds=[r["random_state"] for r in runs],
               out=(np.mean([r["out_r2_mean"] for r in runs]),
                    min(r["out_r2_min"] for r in runs)),
               hid=(np.mean([r["hid_r2_mean"] for r in runs]),
                    min(r["hid_r2_min"] for r in runs)),
               epochs=(min(r["epochs"] for r in runs), max(r["epochs"] for r in runs)),
               seconds=(min(r["fit_seconds"] for r in runs), max(r["fit_seconds"] for r in runs)),
               cap=sum(r["hit_cap"] for r in runs))
    for key in ("ari_dynamo", "ari_cluster"):
        if key in runs[0]:
            out[key] = [r[key] for r in runs]
    if "avg_ratio" in runs[0]:
        out["avg"] = [r["avg_ratio"] for r in runs]
    maps = [np.asarray(r["embedding"]) for r in runs if "embedding" in r]
    out["stability"] = embedding_disagreement(maps) if len(maps) > 1 else None
    return out


def line(label, s):
    text = (f"  {label:<22} seeds {','.join(map(str, s['seeds'])):<12} "
            f"out {s['out'][0]:.4f} (min {s['out'][1]:.4f})  "
            f"hid {s['hid'][0]:.4f} (min {s['hid'][1]:.4f})  "
            f"epochs {s['epochs'][0]}-{s['epochs'][1]} ({s['cap']} at cap)  "
            f"fit {s['seconds'][0]:.0f}-{s['seconds'][1]:.0f} s")
    for key, name in (("ari_dynamo", "ARI map"), ("ari_cluster", "ARI DynamoCluster")):
        if key in s:
            text += (f"  {name} {np.mean(s[key]):.2f} "
                     f"({' '.join(f'{v:.2f}' for v in s[key])})")
    if "avg" in s:
        text += f"  averaging {min(s['avg']):.2f}-{max(s['avg']):.2f}"
    if s["stability"] is not None:
        text += f"  stability {s['stability']:.3f}"
    return text


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.parse_args(argv)
    defaults = json.loads((RESULTS / "fidelity.json").read_text())["populations"]
    variants = json.loads((RESULTS / "fidelity_variants.json").read_text())["populations"]
    balanced = {}  # population -> [(gamma, entry)], in the file's order
    for key, entry in variants.items():
        name, _, params = key.partition(" [")
        if params.startswith("member_balance=") and params != "member_balance=0.0]":
            balanced.setdefault(name, []).append((params[:-1], entry))
    for name, entries in balanced.items():
        machine = entries[0][1]["run"]["machine"]
        base = [e for e in (defaults.get(name), variants.get(f"{name} [member_balance=0.0]"))
                if e is not None and e["run"]["machine"] == machine]
        print(f"{name} ({machine})")
        if base:
            print(line("defaults", summary(pooled(base))))
        for label, entry in sorted(entries, key=lambda e: e[0]):
            print(line(label, summary(pooled([entry]))))


if __name__ == "__main__":
    main()

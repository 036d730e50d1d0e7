"""Training precision: the same fits in float32 and in bfloat16, back to back.

    PYTHONPATH=. OMP_NUM_THREADS=1 python benchmarks/bench_precision.py             # all
    PYTHONPATH=. python benchmarks/bench_precision.py --only cognitive --seeds 0
    PYTHONPATH=. python benchmarks/bench_precision.py --only default --set patience=20

For each population of ``bench_fidelity.py`` (``default``, ``hidden``, ``cognitive``, the two
``averaging`` groups, ``cnn``; the same loaders, cached members) and each ``random_state``,
fits ``DynamoEmbedder(probe_inputs=..., random_state=rs, precision=p)`` for
``p = 'float32'`` and ``p = 'bfloat16'`` one after the other in this process (the order
alternates with the seed, so a drift of the machine's speed does not favour one), and
prints, per fit: held-out output and hidden R^2 (mean, min), epochs and whether the cap
ended the fit, fit seconds and seconds per epoch, the averaging ratio (averaging groups:
task MSE of the centroid network / the members' median) and, for labelled populations,
the ARI of k-means on the map and on ``DynamoCluster``'s behaviour features. Then, per
population, bfloat16's time per epoch and fit time as fractions of float32's, and each
precision's stability (``embedding_disagreement`` of the maps of the seeds).

``precision='bfloat16'`` runs the training steps under ``torch.autocast``; on a CPU
without bfloat16 instructions it is emulated and slower (``skdynamo._guards.
native_bfloat16`` says which this machine is; it is printed and stored). Results go to
``benchmarks/results/precision.json`` (one entry per population, re-read before each
write, so runs of different populations in parallel processes keep each other's).
"""

import argparse
import json
import sys
import warnings
from pathlib import Path

import numpy as np
import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "benchmarks"))
from _provenance import provenance  # noqa: E402
import bench_fidelity as F  # noqa: E402
from skdynamo import embedding_disagreement  # noqa: E402
from skdynamo._guards import native_bfloat16  # noqa: E402

RESULTS = ROOT / "benchmarks" / "results" / "precision.json"
PRECISIONS = ("float32", "bfloat16")


def run_population(name, seeds, **params):
    """Fits of every group of population ``name`` at ``seeds`` in both precisions, with
    the other estimator parameters ``params`` changed from the defaults."""
    with warnings.catch_warnings():
        warnings.simplefilter("default")
        groups = F.load_population(name)
    out = {}
    for gname, group in groups:
        rows, maps = [], {p: [] for p in PRECISIONS}
        for rs in seeds:
            order = PRECISIONS if rs % 2 == 0 else PRECISIONS[::-1]
            for precision in order:
                emb, Z, row = F.fit_one(group, rs, precision=precision, **params)
                row.update(precision=precision,
                           seconds_per_epoch=round(row["fit_seconds"] / row["epochs"], 3))
                if group["labels"] is not None:
                    row.update(ari_dynamo=F._ari(Z, group["labels"], rs),
                               ari_cluster=F._ari(F._behaviour_features(emb),
                                                  group["labels"], rs))
                rows.append(row)
                maps[precision].append(Z)
                print(f"  {gname} rs={rs} {precision}: " + ", ".join(
                    f"{k}={v:.4f}" if isinstance(v, float) else f"{k}={v}"
                    for k, v in row.items() if k not in ("precision", "random_state")),
                    flush=True)
        out[gname] = dict(n_models=len(group["models"]), runs=rows, stability={
            p: embedding_disagreement(Z) if len(Z) > 1 else None for p, Z in maps.items()})
    return out


def ratios(entry):
    """bfloat16 / float32 of the mean time per epoch and of the mean fit time."""
    by = {p: [r for r in entry["runs"] if r["precision"] == p] for p in PRECISIONS}
    mean = {p: {k: np.mean([r[k] for r in rows]) for k in ("seconds_per_epoch", "fit_seconds")}
            for p, rows in by.items()}
    return {k: float(mean["bfloat16"][k] / mean["float32"][k])
            for k in ("seconds_per_epoch", "fit_seconds")}


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--only", choices=F.POPULATIONS, action="append",
                        help="run only this population (repeatable)")
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--threads", type=int, default=1, help="torch threads (default 1)")
    parser.add_argument("--set", action="append", default=[], metavar="PARAM=VALUE",
                        help="another DynamoEmbedder parameter changed in both fits "
                             "(repeatable); stored under 'population [PARAM=VALUE]'")
    args = parser.parse_args(argv)
    params = dict(F._parse_setting(t) for t in args.set)
    suffix = (" [" + ", ".join(f"{k}={v!r}" for k, v in params.items()) + "]") if params else ""
    torch.set_num_threads(args.threads)
    native = native_bfloat16("cpu")
    print(f"native bfloat16 on this CPU: {native}; torch threads {torch.get_num_threads()}",
          flush=True)
    for name in args.only or F.POPULATIONS:
        print(f"== {name}", flush=True)
        for gname, entry in run_population(name, args.seeds, **params).items():
            gname += suffix
            entry.update(ratio=ratios(entry), seeds=args.seeds, params=params,
                         native_bfloat16=native, run=provenance(torch))
            stored = json.loads(RESULTS.read_text()) if RESULTS.exists() else {}
            stored.setdefault("populations", {})[gname] = entry
            RESULTS.parent.mkdir(parents=True, exist_ok=True)
            RESULTS.write_text(json.dumps(stored, indent=1))
            r = entry["ratio"]
            print(f"  {gname}: bfloat16 / float32 time per epoch {r['seconds_per_epoch']:.2f}, "
                  f"fit time {r['fit_seconds']:.2f}; stability " + ", ".join(
                      f"{p} {v:.3f}" for p, v in entry["stability"].items() if v is not None),
                  flush=True)


if __name__ == "__main__":
    main()

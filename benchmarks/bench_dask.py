"""Recording a population in this process (joblib threads) vs on a 2-worker dask cluster.

    python benchmarks/bench_dask.py --threads 1              # 108 members (27 zoo x 4)
    python benchmarks/bench_dask.py --threads 1 --copies 1   # the 27 zoo members only

The population is the cached 27-member RNN zoo (``make_rnn_population``), grown by
functional twins (``permute_hidden_units``: the same networks, hidden units shuffled, so
the weights differ), recorded on the zoo's 256 probes x 50 steps by the one loop
``fit``, ``transform`` and ``score`` use (``family.record``). Timed, best of
``--repeats`` in one run: this process's thread backend with ``n_jobs=1`` and
``n_jobs=2``, and ``joblib.parallel_config(backend="dask")`` on a
``distributed.LocalCluster(n_workers=2, threads_per_worker=1)`` of spawned worker
processes with ``TorchThreads(--threads)``, once with dask's defaults and once tuned
(workers started without dask's ``MALLOC_TRIM_THRESHOLD_``, the workers' profiler off);
each cluster's start and first call (the workers import torch and skdynamo) are
reported apart. The dask recordings are checked to equal the local ones. Writes
``benchmarks/results/dask.json``.
"""

import argparse
import json
import os
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "benchmarks"))


def _best(fn, repeats, *args):
    times, out = [], None
    for _ in range(repeats):
        t = time.perf_counter()
        out = fn(*args)
        times.append(time.perf_counter() - t)
    return min(times), out


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threads", type=int, default=1, help="torch threads here and "
                        "per dask worker")
    parser.add_argument("--copies", type=int, default=4, help="population = 27 x copies")
    parser.add_argument("--repeats", type=int, default=2)
    args = parser.parse_args()
    os.environ.setdefault("OMP_NUM_THREADS", str(args.threads))

    import dask
    import joblib
    import numpy as np
    import torch
    from distributed import Client, LocalCluster

    from _provenance import provenance
    from skdynamo.datasets import make_rnn_population, permute_hidden_units
    from skdynamo.families import RecurrentFamily
    from skdynamo.utils.dask import TorchThreads

    torch.set_num_threads(args.threads)
    pop = make_rnn_population()
    models = [m if c == 0 else permute_hidden_units(m, random_state=c * 1000 + i)
              for c in range(args.copies) for i, m in enumerate(pop.models)]
    probes = pop.probe_inputs
    n = len(models)
    print(f"{n} members, probes {probes.shape}, torch threads {args.threads}")

    res = dict(n_models=n, probes=list(probes.shape), repeats=args.repeats,
               **provenance(torch))
    local = {}
    for n_jobs in (1, 2):
        family = RecurrentFamily(n_jobs=n_jobs)
        local[n_jobs], expected = _best(family.record, args.repeats, models, probes)
        print(f"threads, n_jobs={n_jobs}: {local[n_jobs]:.2f} s")
    res["threads_n_jobs_1_s"], res["threads_n_jobs_2_s"] = local[1], local[2]

    # dask's nanny starts worker processes with MALLOC_TRIM_THRESHOLD_=65536, which fixes
    # glibc's mmap threshold: every large tensor is then a fresh mmap (page faults); the
    # worker's statistical profiler samples every thread's stack every 10 ms.
    default_env = dict(dask.config.get("distributed.nanny.pre-spawn-environ"))
    tuned = {"distributed.nanny.pre-spawn-environ": {
        k: v for k, v in default_env.items() if k != "MALLOC_TRIM_THRESHOLD_"},
        "distributed.worker.profile.enabled": False}
    for label, config in (("dask", {}), ("dask_tuned", tuned)):
        t = time.perf_counter()
        with dask.config.set(config), \
                LocalCluster(n_workers=2, threads_per_worker=1, processes=True,
                             dashboard_address=None) as cluster, Client(cluster) as client:
            client.register_plugin(TorchThreads(args.threads))
            start = time.perf_counter() - t
            worker_threads = sorted(client.run(torch.get_num_threads).values())
            family = RecurrentFamily()
            with joblib.parallel_config(backend="dask"):
                first, _ = _best(family.record, 1, models, probes)
                best, got = _best(family.record, args.repeats, models, probes)
        equal = bool(all(np.array_equal(a.hidden, b.hidden)
                         and np.array_equal(a.outputs, b.outputs)
                         for a, b in zip(got, expected)))
        res[label] = dict(config=config, cluster_start_s=start, first_call_s=first, s=best,
                          ms_per_member=best / n * 1e3, worker_torch_threads=worker_threads,
                          equals_threads=equal, vs_threads_n_jobs_1=best / local[1],
                          vs_threads_n_jobs_2=best / local[2])
        print(f"{label} LocalCluster (2 workers x 1 task thread, torch threads "
              f"{worker_threads}, config {config}): start {start:.1f} s, first call "
              f"{first:.2f} s, then {best:.2f} s ({best / n * 1e3:.1f} ms/member); equal to "
              f"threads: {equal}")
    print(f"ratios to threads n_jobs=1: threads n_jobs=2 {local[2] / local[1]:.2f}, "
          + ", ".join(f"{k} {res[k]['vs_threads_n_jobs_1']:.2f}"
                      for k in ("dask", "dask_tuned")))
    out = ROOT / "benchmarks" / "results"
    out.mkdir(exist_ok=True)
    (out / "dask.json").write_text(json.dumps(res, indent=1))
    print(json.dumps(res, indent=1))


if __name__ == "__main__":
    main()

"""Wall time of one fit: 2 processes through Accelerate vs 1 process, in one run.

    python benchmarks/bench_accelerate.py --threads 1

The population is the cached 27-member RNN zoo (``make_rnn_population()``, 256 probes x
50 steps), fitted with the defaults except ``max_epochs`` (``--max-epochs``, 30: both
fits run to the same cap or converge). One child process fits it without an
accelerator; then ``python -m torch.distributed.run --standalone --nproc_per_node 2``
starts two processes that fit it through ``Accelerator(cpu=True)`` (gloo), each at
``--threads`` torch threads. Each fit is timed inside its process (``fit`` only, not
the start of the processes); the time of recording the members once
(``emb.record``), which every process repeats, is reported beside it, and the load
average of the machine before and after. Writes ``benchmarks/results/accelerate.json``.
"""

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "benchmarks"))


def worker(args):
    """Fit in this process (one rank of the group with ``--accelerate``)."""
    import warnings

    import numpy as np
    import torch
    torch.set_num_threads(args.threads)
    from skdynamo import DynamoEmbedder
    from skdynamo.datasets import make_rnn_population
    accelerator = None
    if args.accelerate:
        from accelerate import Accelerator
        accelerator = Accelerator(cpu=True)
    pop = make_rnn_population()
    emb = DynamoEmbedder(probe_inputs=pop.probe_inputs, max_epochs=args.max_epochs,
                         random_state=0, accelerator=accelerator)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        t = time.perf_counter()
        emb.fit(pop.models)
        fit_s = time.perf_counter() - t
    t = time.perf_counter()
    emb.record(pop.models)
    record_s = time.perf_counter() - t
    if accelerator is None or accelerator.is_main_process:
        Path(args.out).write_text(json.dumps(dict(
            processes=1 if accelerator is None else accelerator.num_processes,
            fit_s=fit_s, record_s=record_s, epochs=emb.n_iter_,
            converged=emb.converged_, n_models=emb.n_models_,
            output_r2=float(np.mean(emb.emulation_scores_.output_r2)))))
    if accelerator is not None:
        accelerator.end_training()   # destroys the process group before exit


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threads", type=int, default=1, help="torch threads per process")
    parser.add_argument("--max-epochs", type=int, default=30)
    parser.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--accelerate", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--out", help=argparse.SUPPRESS)
    args = parser.parse_args()
    os.environ["OMP_NUM_THREADS"] = str(args.threads)
    if args.worker:
        return worker(args)

    import torch
    from _provenance import provenance
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(ROOT),
                                                       os.environ.get("PYTHONPATH", "")]))
    me = [str(Path(__file__).resolve()), "--worker", "--threads", str(args.threads),
          "--max-epochs", str(args.max_epochs)]
    runs, load = [], [os.getloadavg()[0]]
    with tempfile.TemporaryDirectory() as tmp:
        for n in (1, 2):
            out = str(Path(tmp) / f"{n}.json")
            cmd = ([sys.executable, *me, "--out", out] if n == 1 else
                   [sys.executable, "-m", "torch.distributed.run", "--standalone",
                    "--nproc_per_node", str(n), *me, "--accelerate", "--out", out])
            subprocess.run(cmd, env=env, check=True)
            runs.append(json.loads(Path(out).read_text()))
            load.append(os.getloadavg()[0])
    one, two = runs
    print(f"{one['n_models']} members, {args.threads} torch thread(s) per process, "
          f"load average {load[0]:.2f} before, {load[1]:.2f}, {load[2]:.2f} after each")
    print("| processes x threads | fit (s) | epochs | converged | output R² | "
          "recording once (s) |")
    print("|---|---|---|---|---|---|")
    for r in runs:
        print(f"| {r['processes']} x {args.threads} | {r['fit_s']:.1f} | {r['epochs']} | "
              f"{r['converged']} | {r['output_r2']:.4f} | {r['record_s']:.1f} |")
    print(f"ratio 2-process / 1-process fit time: {two['fit_s'] / one['fit_s']:.2f}")
    result = dict(provenance(torch), threads=args.threads, max_epochs=args.max_epochs,
                  load_average=load, runs=runs, ratio=two["fit_s"] / one["fit_s"])
    (ROOT / "benchmarks" / "results" / "accelerate.json").write_text(
        json.dumps(result, indent=1) + "\n")


if __name__ == "__main__":
    main()

"""Probe augmentation benchmark: fidelity, maps and fit time with and without it.

    PYTHONPATH=. OMP_NUM_THREADS=1 python benchmarks/bench_probes.py --only averaging --seeds 0
    python benchmarks/bench_probes.py --only default --only leaky --settings 0 auto 512

Each population of ``bench_fidelity.py`` (and ``leaky``, below) is fitted with
``DynamoEmbedder(probe_inputs=pop.probe_inputs, random_state=rs,
probe_augmentation=setting)`` for each ``--settings`` value in turn, at each seed, the
settings of one seed back to back so that their fit times compare (as a ratio to the
first setting's, in the ``time x`` column). Figures are those of ``bench_fidelity.py``
(its docstring defines them): held-out output and hidden R^2 (always on the population's
own held-out probes: augmented probes are never held out), epochs (``*``: the cap was
hit), fit seconds and torch threads, ARI of k-means on the map and on DynamoCluster's
behaviour features, the averaging ratio, and the stability of the map over the seeds run.
Results go to ``benchmarks/results/probes.json`` (rewritten after every group).

leaky : a population of another kind than the zoo's defaults, built here: 16 members,
    leaky (``leak=0.1``) vs perfect integration x GRU/LSTM x widths 16 and 64 x 2 seeds
    (``make_rnn_population(("leaky_integration", "integration"), ("gru", "lstm"),
    (16, 64), n_seeds=2, n_probes=96, n_steps=800, seed_offset=500)``), with only 96
    probe sequences, the task inputs [task].
"""

import argparse
import json
import sys
import time
import warnings
from pathlib import Path

import torch

from _provenance import provenance  # noqa: E402  (benchmarks/, the script's directory)
from bench_fidelity import POPULATIONS, load_population, run_group
from skdynamo import embedding_disagreement
from skdynamo.datasets import make_rnn_population

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "benchmarks" / "results" / "probes.json"
CHOICES = (*POPULATIONS, "leaky")


def load(name):
    if name != "leaky":
        return load_population(name)
    pop = make_rnn_population(("leaky_integration", "integration"), ("gru", "lstm"),
                              (16, 64), n_seeds=2, n_probes=96, n_steps=800,
                              seed_offset=500, n_jobs=1)
    return [("leaky", dict(models=pop.models, probes=pop.probe_inputs, labels=pop.task,
                           scores=pop.score, score_name="R2"))]


def _setting(text):
    return text if text == "auto" else int(text)


def table(results):
    head = (f"{'population':<20} {'aug':>5} {'rs':>2} {'out R2 mean/min':>15} "
            f"{'hid R2 mean':>11} {'epochs':>7} {'fit s':>6} {'time x':>6} {'thr':>3} "
            f"{'ARI map/clu':>11} {'avg ratio':>9} {'stab':>6}")
    lines = [head, "-" * len(head)]
    for gname, by_setting in results.items():
        first = next(iter(by_setting.values()))
        for setting, entry in by_setting.items():
            for i, r in enumerate(entry["runs"]):
                ref = first["runs"][i]["fit_seconds"]
                ari = ("-" if "ari_dynamo" not in r
                       else f"{r['ari_dynamo']:.2f}/{r['ari_cluster']:.2f}")
                stab = entry["stability"]
                lines.append(
                    f"{gname:<20} {setting:>5} {r['random_state']:>2} "
                    f"{r['out_r2_mean']:>7.4f}/{r['out_r2_min']:.4f} "
                    f"{r['hid_r2_mean']:>11.4f} {r['epochs']:>6}{'*' if r['hit_cap'] else ' '}"
                    f" {r['fit_seconds']:>6.0f} {r['fit_seconds'] / ref:>6.2f} "
                    f"{r['torch_threads']:>3} {ari:>11} "
                    f"{r.get('avg_ratio', float('nan')):>9.3f} "
                    f"{'-' if stab is None or i else format(stab, '.3f'):>6}")
    return "\n".join(lines)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--only", choices=CHOICES, action="append",
                        help="run only this population (repeatable)")
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1],
                        help="random_state of each fit (default 0 1)")
    parser.add_argument("--settings", type=_setting, nargs="+", default=[0, "auto"],
                        help="probe_augmentation values compared (default 0 auto)")
    parser.add_argument("--threads", type=int, default=1, help="torch threads (default 1)")
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    names = args.only or list(CHOICES)
    results = {}
    start = time.perf_counter()
    for name in names:
        print(f"== {name}", flush=True)
        with warnings.catch_warnings():
            warnings.simplefilter("default")
            groups = load(name)
        for gname, group in groups:
            runs = {s: dict(runs=[]) for s in args.settings}
            maps = {s: dict(embeddings=[], behaviours=[]) for s in args.settings}
            for rs in args.seeds:
                # The settings of one seed back to back: their fit times compare.
                for s in args.settings:
                    entry = run_group(f"{gname} aug={s}", group, [rs], curve=False,
                                      maps=maps[s], probe_augmentation=s)
                    runs[s].update({k: v for k, v in entry.items() if k != "runs"})
                    runs[s]["runs"] += entry["runs"]
            for s in args.settings:
                many = len(args.seeds) > 1
                runs[s]["stability"] = (embedding_disagreement(maps[s]["embeddings"])
                                        if many else None)
                runs[s]["stability_behaviour"] = (
                    embedding_disagreement(maps[s]["behaviours"]) if many else None)
            results[gname] = {str(s): v for s, v in runs.items()}
            # Re-read: another run (other populations) may have written the file meanwhile.
            stored = json.loads(RESULTS.read_text()) if RESULTS.exists() else {}
            populations = stored.get("populations", {})
            populations[gname] = {**results[gname], "seeds": args.seeds,
                                  "run": provenance(torch)}
            RESULTS.parent.mkdir(parents=True, exist_ok=True)
            RESULTS.write_text(json.dumps(dict(
                populations=populations,
                last_run=dict(command=" ".join([Path(sys.argv[0]).name, *sys.argv[1:]]),
                              wall_seconds=round(time.perf_counter() - start, 1),
                              **provenance(torch))), indent=1))
    print()
    print(table(results))
    print(f"\ntotal wall time {time.perf_counter() - start:.0f} s, torch threads "
          f"{torch.get_num_threads()}; results in {RESULTS.relative_to(ROOT)}")


if __name__ == "__main__":
    main()

"""Benchmark of DynamoEmbedder on the default recurrent population (the README's figures).

Run:  python benchmarks/bench_embedder.py            (about 10 minutes on 2 cores)
      python benchmarks/bench_embedder.py --quick    (skips the scaling study)

Prints: emulation fidelity on held-out probes, ARI of k-means on the embeddings vs task
beside the output-space baseline, the twin ratio (fit with twins, and via transform),
held-out seeds landing in their task's cluster, fit/transform times, and fit time and
peak memory against the number of models. Torch thread count is printed with timings.
The figures are also written to ``benchmarks/results/embedder.json`` (with the machine,
thread count, date and commit), from which ``python benchmarks/run_all.py --write-docs``
rebuilds the README's table.
"""

import argparse
import json
import os
import resource
import subprocess
import sys
import time

import numpy as np
import torch
from sklearn.cluster import KMeans
from sklearn.decomposition import PCA
from sklearn.metrics import adjusted_rand_score

from skdynamo import DynamoEmbedder, Trajectories
from skdynamo.datasets import make_rnn_population, permute_hidden_units

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from _provenance import ROOT, provenance  # noqa: E402  (benchmarks/, the script's directory)

RESULTS = ROOT / "benchmarks" / "results" / "embedder.json"


def output_space_embedding(models, probes, n_components=2):
    """Baseline: each model's outputs on the probes, flattened, then PCA."""
    with torch.no_grad():
        feats = np.stack([m(torch.as_tensor(probes[:64])).numpy().ravel() for m in models])
    return PCA(n_components, random_state=0).fit_transform(feats)


def twin_ratio(z, pairs):
    """Mean twin distance / mean distance between distinct (non-twin) models."""
    d = np.linalg.norm(z[:, None] - z[None], axis=-1)
    twin = np.mean([d[i, j] for i, j in pairs])
    mask = np.ones_like(d, bool)
    np.fill_diagonal(mask, False)
    for i, j in pairs:
        mask[i, j] = mask[j, i] = False
    return twin / d[mask].mean()


def scaling_child(n_models, width):
    """Fit on n_models trajectories (raw hidden width `width`) for 10 epochs; print JSON."""
    pop = make_rnn_population()
    rng = np.random.RandomState(0)
    base = []
    for m in pop.models:
        from skdynamo.families._recurrent import record
        base.append(record(m, pop.probe_inputs))
    samples = []
    for i in range(n_models):
        tr = base[i % len(base)]
        h = tr.hidden
        if width > h.shape[-1]:  # same function, wider coordinates (random isometry)
            q, _ = np.linalg.qr(rng.standard_normal((width, h.shape[-1])))
            h = h @ q.T
        samples.append(Trajectories(h, tr.outputs))
    emb = DynamoEmbedder(probe_inputs=pop.probe_inputs, max_epochs=10, patience=100,
                         random_state=0)
    before_mb = _current_rss_mb()
    t0 = time.perf_counter()
    emb.fit(samples)
    fit_s = time.perf_counter() - t0
    peak_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(json.dumps({"n_models": n_models, "width": width, "fit_s_10_epochs": fit_s,
                      "peak_rss_mb": peak_mb, "fit_extra_mb": max(0.0, peak_mb - before_mb)}))


def _current_rss_mb():
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return float("nan")


def run_child(n, width):
    out = subprocess.run([sys.executable, __file__, "--child", str(n), str(width)],
                         capture_output=True, text=True, check=True)
    return json.loads(out.stdout.strip().splitlines()[-1])


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--child", nargs=2, type=int)
    args = parser.parse_args()
    if args.child:
        return scaling_child(*args.child)

    threads = torch.get_num_threads()
    run = provenance(torch)
    print(f"torch {torch.__version__}, {threads} threads, {os.cpu_count()} cores")
    pop = make_rnn_population(n_jobs=2, verbose=True)
    print(pop.DESCR, f"| member task R^2 mean {pop.score.mean():.3f}")
    probes = pop.probe_inputs
    n_tasks = len(set(pop.task))

    # 1. Fidelity, clustering, fit time
    t0 = time.perf_counter()
    emb = DynamoEmbedder(probe_inputs=probes, random_state=0)
    z = emb.fit_transform(pop.models)
    fit_s = time.perf_counter() - t0
    sc = emb.emulation_scores_
    km = KMeans(n_tasks, n_init=10, random_state=0).fit(z)
    ari = adjusted_rand_score(pop.task, km.labels_)
    z_out = output_space_embedding(pop.models, probes)
    ari_out = adjusted_rand_score(pop.task, KMeans(n_tasks, n_init=10,
                                                   random_state=0).fit_predict(z_out))
    print(f"\n[fit] {len(pop.models)} models: {fit_s:.1f} s ({len(emb.history_)} epochs, "
          f"{threads} threads)")
    print(f"[fidelity] held-out probes: output R^2 mean {sc.output_r2.mean():.4f} "
          f"(min {sc.output_r2.min():.4f}), hidden R^2 mean {sc.hidden_r2.mean():.4f} "
          f"(min {sc.hidden_r2.min():.4f})")
    print(f"[clustering] ARI vs task: DYNAMO {ari:.3f} | output-space baseline {ari_out:.3f}")

    # 2. Twins via transform (meta-model frozen)
    twins = [permute_hidden_units(m, random_state=100 + i) for i, m in enumerate(pop.models)]
    with torch.no_grad():
        x = torch.as_tensor(probes[:32])
        twin_err = max(float((m(x) - t(x)).abs().max()) for m, t in zip(pop.models, twins))
    t0 = time.perf_counter()
    z_twin = emb.transform(twins)
    tr_s = (time.perf_counter() - t0) / len(twins)
    z_self = emb.transform(pop.models)
    n = len(pop.models)
    both = np.vstack([z_self, z_twin])
    ratio_tr = twin_ratio(both, [(i, n + i) for i in range(n)])
    drift = np.linalg.norm(z_self - z, axis=1).mean() / np.linalg.norm(
        z[:, None] - z[None], axis=-1).mean()
    print(f"[twins] max |output difference| twin vs original: {twin_err:.2e}")
    print(f"[twins] transform: twin ratio {ratio_tr:.4f}; transform of training models moves "
          f"them {drift:.4f} x mean inter-model distance; {tr_s:.2f} s per model "
          f"(batched, {threads} threads)")

    # 3. Twins inside the fit: one twin per (task, cell)
    pick = [i for i in range(n) if pop.seed[i] == 0]
    fit_twins = [permute_hidden_units(pop.models[i], random_state=7 + i) for i in pick]
    emb2 = DynamoEmbedder(probe_inputs=probes, random_state=0)
    z2 = emb2.fit_transform(list(pop.models) + fit_twins)
    ratio_fit = twin_ratio(z2, [(i, n + k) for k, i in enumerate(pick)])
    print(f"[twins] fitted together ({len(pick)} twins among {n + len(pick)} models): "
          f"twin ratio {ratio_fit:.4f}")

    # 4. Held-out seeds
    held = make_rnn_population(n_seeds=2, seed_offset=100, n_jobs=2, verbose=True)
    t0 = time.perf_counter()
    z_held = emb.transform(held.models)
    held_s = (time.perf_counter() - t0) / len(held.models)
    cluster_task = {c: max(set(pop.task[km.labels_ == c]), key=list(pop.task[km.labels_ == c])
                           .count) for c in range(n_tasks)}
    pred = np.array([cluster_task[c] for c in km.predict(z_held)])
    hit = np.mean(pred == held.task)
    print(f"[held-out] {len(held.models)} models of unseen seeds: {100 * hit:.1f}% in their "
          f"task's cluster; transform {held_s:.2f} s per model ({threads} threads)")

    result = dict(
        run=run, n_models=n, n_twins_fit=len(pick), n_held_out=len(held.models),
        fit_seconds=fit_s, epochs=int(emb.n_iter_), converged=bool(emb.converged_),
        output_r2_mean=float(sc.output_r2.mean()), output_r2_min=float(sc.output_r2.min()),
        hidden_r2_mean=float(sc.hidden_r2.mean()), hidden_r2_min=float(sc.hidden_r2.min()),
        ari=float(ari), ari_output_space=float(ari_out), twin_ratio_fit=float(ratio_fit),
        twin_ratio_transform=float(ratio_tr), twin_output_difference=twin_err,
        held_out_in_cluster=float(hit), transform_drift=float(drift),
        transform_seconds_per_model=tr_s, transform_held_out_seconds_per_model=held_s)
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(json.dumps(result, indent=2) + "\n")
    print(f"\nwrote {RESULTS.relative_to(ROOT)}")

    # 5. Scaling
    if not args.quick:
        print("\n[scaling] 10 epochs per fit, fresh process each, "
              f"{threads} threads")
        rows = [run_child(nm, 32) for nm in (9, 18, 27, 54, 108)]
        for r in rows:
            print(f"  n_models={r['n_models']:>3}: fit {r['fit_s_10_epochs']:.1f} s, "
                  f"peak RSS {r['peak_rss_mb']:.0f} MB (fit's own: +{r['fit_extra_mb']:.0f} MB)")
        slope = np.polyfit([r["n_models"] for r in rows], [r["fit_s_10_epochs"] for r in rows],
                           1)[0]
        print(f"  slope: {slope:.3f} s per model per 10 epochs")
        wide = [run_child(27, w) for w in (32, 512)]
        print(f"  raw hidden width 32 vs 512 (27 models, same PCA targets): memory added by "
              f"fit +{wide[0]['fit_extra_mb']:.0f} MB vs +{wide[1]['fit_extra_mb']:.0f} MB "
              f"(peak RSS {wide[0]['peak_rss_mb']:.0f} vs {wide[1]['peak_rss_mb']:.0f} MB, "
              "the difference being the raw recordings passed in)")


if __name__ == "__main__":
    main()

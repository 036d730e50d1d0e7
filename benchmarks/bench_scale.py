"""Scale benchmark: fit cost against the number of members, at the default settings.

    PYTHONPATH=. OMP_NUM_THREADS=1 python benchmarks/bench_scale.py --threads 1
    python benchmarks/bench_scale.py --sizes 27 100 --threads 1        # a subset

Each size runs in its own process (so that peak memory is that size's) and fits
``DynamoEmbedder(probe_inputs=pop.probe_inputs, random_state=--seed)`` (0 by default),
nothing else, on a
population of ``N`` members plus 9 reparameterised twins.

Population of size N
--------------------
The 27 members of ``make_rnn_population()`` (flip-flop, integration and delay x rnn/gru/lstm
x 3 seeds), then ``N - 27`` *perturbed variants* of them: variant ``j`` is member
``j % 27`` with its hidden units permuted (``permute_hidden_units``) and Gaussian noise
of 5 % of each weight tensor's standard deviation added to every weight. Every variant
is re-checked on 512 fresh sequences of its member's task: it is kept if its task R^2 is
at least 0.9 and within 0.05 of its member's; otherwise the noise is halved (up to 4
times). So the variants are distinct networks that still do their task, but they are
*not* independently trained: they sit near the 27 trained solutions. Beside them, 9
exact twins (member ``3 i``, ``i < 9``, one per task x cell, hidden units permuted, no
noise: the same function) are fitted too, for the twin ratio.

Figures (per size)
------------------
fit s : wall time of ``fit`` (recording, targets, training, scoring), and the process
    CPU time of the fit (on a shared machine the CPU time is the figure to compare);
    steps: training steps run (``train_batch_count`` summed over ``history_``); s/step:
    training and validation time (``history_`` durations) / steps, wall and CPU.
GFLOP/s, of matmul : the meta-model's floating-point work per step (GRU forward: 6 H
    (F + d + H) per sequence and time step, readout and maps 2 H (O + k); backward 2x
    forward) over s/step, and that as a fraction of a float32 1024 x 1024 matrix
    multiply timed in the same process at the same thread count.
peak RSS : the process's maximum resident set size (``ru_maxrss``) after the fit.
transform s/model : ``transform`` of 27 fresh variants (not in the fit), per model.
out R2 : mean held-out output R^2 over all members and over the 27 originals.
ARI : k-means (k=3, n_init=10) on the 27 originals' embeddings against their task.
twin ratio : mean distance between each of the 9 twins and its member / mean distance
    between distinct members (twins excluded).
CKA s : ``skdynamo.baselines.cka_distances`` over all pairs; above 100 members timed on
    the first 100 and scaled by the number of pairs (marked ``~``).
DSA : the ``dsa-metric`` package is timed on a few pairs when importable, else skipped.

Results are printed and written to ``benchmarks/results/scale.json`` (``--results``: another
file; ``scale_bf16.json`` holds a run on a CPU with bfloat16 instructions, where the
default ``precision='auto'`` trains in bfloat16).
"""

import argparse
import json
import os
import resource
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "benchmarks" / "results" / "scale.json"
SIZES = (27, 100, 300, 1000)
N_TWINS = 9
NOISE = 0.05
N_TRANSFORM = 27
CKA_MAX = 100
TEST_SEED = 987_654


def task_r2(model, task):
    """R^2 of a member's outputs on 512 fresh sequences of its task."""
    import torch
    from skdynamo.datasets import make_task
    x, y = make_task(task, 512, 50, 3, random_state=TEST_SEED)
    with torch.no_grad():
        pred = model(torch.from_numpy(x)).numpy().astype(np.float64)
    y = y.astype(np.float64)
    return 1.0 - ((pred - y) ** 2).sum() / ((y - y.reshape(-1, y.shape[-1]).mean(0)) ** 2).sum()


def variant(model, task, base_r2, seed):
    """A permuted, weight-perturbed copy that still does the task: (model, noise, r2)."""
    import torch
    from skdynamo.datasets import permute_hidden_units
    noise = NOISE
    for _ in range(5):
        twin = permute_hidden_units(model, random_state=seed)
        gen = torch.Generator().manual_seed(seed)
        with torch.no_grad():
            for p in twin.parameters():
                p.add_(noise * p.std() * torch.randn(p.shape, generator=gen))
        r2 = task_r2(twin, task)
        if r2 >= 0.9 and r2 >= base_r2 - 0.05:
            return twin, noise, r2
        noise /= 2
    return twin, noise, r2


def population(n, offset=0):
    """``n`` members (the 27 trained ones first, then variants) and their tasks."""
    from skdynamo.datasets import make_rnn_population
    pop = make_rnn_population(n_jobs=1)
    base = [task_r2(m, t) for m, t in zip(pop.models, pop.task)]
    models = [] if offset else list(pop.models[:n])
    tasks, noises = list(pop.task[: len(models)]), []
    j = 0
    while len(models) < n:
        k = j % len(pop.models)
        m, noise, _ = variant(pop.models[k], pop.task[k], base[k], 10_000 * (offset + 1) + j)
        models.append(m)
        tasks.append(pop.task[k])
        noises.append(noise)
        j += 1
    return pop, models, np.array(tasks), noises


def matmul_gflops(n=1024, repeats=10):
    import torch
    a, b = torch.randn(n, n), torch.randn(n, n)
    a @ b
    t0 = time.perf_counter()
    for _ in range(repeats):
        a @ b
    return 2 * n ** 3 * repeats / (time.perf_counter() - t0) / 1e9


def step_flops(emb, pairs_per_step):
    """Floating-point work of one training step of a recurrent meta-model."""
    meta = emb.meta_model_
    h, f, d, o = meta.hidden_size, meta.n_inputs, meta.n_components, meta.n_outputs
    k = emb.maps_[0].shape[1]
    t = emb.probe_inputs_.shape[1]
    gates = {"gru": 3, "lstm": 4, "rnn": 1}[meta.cell]
    forward = t * (2 * gates * h * (f + d + h) + 2 * h * (o + k))
    return 3 * forward * pairs_per_step


def time_dsa(models, probes, family, n_pairs=3):
    """Seconds per pair of DSA (dsa-metric defaults) on a few pairs, or None."""
    try:
        from DSA import DSA
    except Exception as exc:  # noqa: BLE001 - reported, not hidden
        return None, f"{type(exc).__name__}: {exc}"
    reps = [family.record_member(i, m, probes).hidden for i, m in enumerate(models[:n_pairs + 1])]
    t0 = time.perf_counter()
    for i in range(n_pairs):
        DSA(reps[i], reps[i + 1]).fit_score()
    return (time.perf_counter() - t0) / n_pairs, None


TRAIN_CPU_S = []


def _cpu_timer():
    """A skorch callback appending the process CPU time spent in training to
    ``TRAIN_CPU_S`` (the embedder fits a clone of it, so the figure goes to the module)."""
    from skorch.callbacks import Callback

    class CPUTimer(Callback):
        def on_train_begin(self, net, **kwargs):
            self.start_ = time.process_time()

        def on_train_end(self, net, **kwargs):
            TRAIN_CPU_S.append(time.process_time() - self.start_)

    return CPUTimer()


def child(n, threads, max_epochs=None, seed=0, params=None):
    import torch
    torch.set_num_threads(threads)
    from sklearn.cluster import KMeans
    from sklearn.metrics import adjusted_rand_score
    from scipy.spatial.distance import pdist, squareform
    from skdynamo import DynamoEmbedder
    from skdynamo.baselines import cka_distances
    from skdynamo.datasets import permute_hidden_units
    from skdynamo.families import RecurrentFamily

    gflops = matmul_gflops()
    pop, models, tasks, noises = population(n)
    twins = [permute_hidden_units(pop.models[3 * i], random_state=500 + i)
             for i in range(N_TWINS)]
    fit_models = models + twins
    rss_before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    extra = dict(params or {})
    if max_epochs is not None:
        extra["max_epochs"] = max_epochs
    timer = _cpu_timer()
    emb = DynamoEmbedder(probe_inputs=pop.probe_inputs, random_state=seed,
                         callbacks=[("cpu_timer", timer)], **extra)
    t0, c0 = time.perf_counter(), time.process_time()
    z = emb.fit_transform(fit_models)
    fit_s, fit_cpu_s = time.perf_counter() - t0, time.process_time() - c0
    train_cpu_s = TRAIN_CPU_S[-1]
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    hist = emb.history_
    steps = int(sum(hist[:, "train_batch_count"]))
    train_s = float(sum(hist[:, "dur"]))
    pairs = int(np.median([b for ep in hist[:, "batches"] for b in
                           [x["train_batch_size"] for x in ep if "train_batch_size" in x]]))
    s_step = train_s / steps
    achieved = step_flops(emb, pairs) / s_step / 1e9

    # Twins and distinct members
    D = squareform(pdist(z))
    twin_d = np.array([D[3 * i, n + i] for i in range(N_TWINS)])
    mask = np.triu(np.ones_like(D, dtype=bool), 1)
    mask[n:, :] = False
    mask[:, n:] = False
    twin_ratio = float(twin_d.mean() / D[mask].mean())
    n0 = min(n, 27)
    ari = adjusted_rand_score(tasks[:n0], KMeans(3, n_init=10, random_state=0)
                              .fit_predict(z[:n0]))
    r2 = emb.emulation_scores_.output_r2

    # transform of fresh variants
    _, fresh, _, _ = population(N_TRANSFORM, offset=1)
    t0 = time.perf_counter()
    emb.transform(fresh)
    transform_s = (time.perf_counter() - t0) / len(fresh)

    # CKA over all pairs (first CKA_MAX timed and scaled above)
    m_cka = min(n, CKA_MAX)
    t0 = time.perf_counter()
    cka_distances(models[:m_cka], pop.probe_inputs)
    cka_s = time.perf_counter() - t0
    scale = (n * (n - 1)) / (m_cka * (m_cka - 1))
    dsa_pair_s, dsa_error = time_dsa(models, pop.probe_inputs, RecurrentFamily())
    result = dict(
        n_models=n, n_fitted=len(fit_models), threads=torch.get_num_threads(),
        fit_s=fit_s, fit_cpu_s=fit_cpu_s, train_cpu_s=train_cpu_s,
        cpu_s_per_step=train_cpu_s / steps, epochs=len(hist), steps=steps,
        pairs_per_step=pairs, s_per_step=s_step,
        converged=bool(emb.converged_), step_gflops=achieved, matmul_gflops=gflops,
        matmul_fraction=achieved / gflops, peak_rss_mb=peak, rss_before_fit_mb=rss_before,
        transform_s_per_model=transform_s, out_r2_mean=float(r2.mean()),
        out_r2_min=float(r2.min()), out_r2_originals=float(r2[:n0].mean()),
        hid_r2_mean=float(emb.emulation_scores_.hidden_r2.mean()), ari=float(ari),
        twin_ratio=twin_ratio, cka_s_all_pairs=cka_s * scale, cka_models_timed=m_cka,
        dsa_s_per_pair=dsa_pair_s, dsa_s_all_pairs=(None if dsa_pair_s is None
                                                    else dsa_pair_s * n * (n - 1) / 2),
        dsa_note=dsa_error, variant_noise=sorted(set(noises)), params=params or {})
    print(json.dumps(result))


def _row(r):
    cka = ("~" if r["cka_models_timed"] < r["n_models"] else "") + f"{r['cka_s_all_pairs']:.1f}"
    dsa = "—" if r["dsa_s_all_pairs"] is None else f"~{r['dsa_s_all_pairs']:.0f}"
    fit = f"{r['fit_s']:.1f}" + (f" ({r['fit_cpu_s']:.1f})" if "fit_cpu_s" in r else "")
    return (f"| {r['n_models']} (+{r['n_fitted'] - r['n_models']}) | {fit} | "
            f"{r['epochs']}{'' if r['converged'] else ' (cap)'} | {r['steps']} | "
            f"{1000 * r['s_per_step']:.0f} | {r['matmul_fraction']:.3f} | "
            f"{r['peak_rss_mb'] / 1024:.2f} | {r['transform_s_per_model']:.2f} | "
            f"{r['out_r2_mean']:.4f} ({r['out_r2_originals']:.4f}) | {r['ari']:.2f} | "
            f"{r['twin_ratio']:.3f} | {cka} | {dsa} |")


HEADER = ("| members (+twins) | fit s wall (CPU) | epochs | steps | ms/step | of matmul | "
          "peak RSS GB | transform s/model | output R² all (27 originals) | ARI | twin ratio | "
          "CKA s | DSA s |\n|---|---|---|---|---|---|---|---|---|---|---|---|---|")


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=list(SIZES))
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--max-epochs", type=int, default=None,
                        help="smoke runs only (default: the estimator's)")
    parser.add_argument("--seed", type=int, default=0,
                        help="random_state of the embedder (the population is the same)")
    parser.add_argument("--set", action="append", default=[], metavar="PARAM=VALUE",
                        help="fit with this DynamoEmbedder parameter changed (repeatable); "
                             "needs --results, so that the defaults' figures are kept")
    parser.add_argument("--table", action="store_true",
                        help="print the table of the stored results and run nothing")
    parser.add_argument("--results", type=Path, default=RESULTS,
                        help="the JSON the sizes are stored in and --table reads "
                             "(default benchmarks/results/scale.json)")
    parser.add_argument("--child", type=int, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    results = args.results
    sys.path.insert(0, str(ROOT / "benchmarks"))
    from _provenance import parse_setting, run_child, store_run
    params = dict(parse_setting(s) for s in args.set)
    if args.child:
        return child(args.child, args.threads, args.max_epochs, args.seed, params)
    if params and args.results == RESULTS:
        parser.error("--set needs --results FILE (the defaults' results are kept apart)")
    if args.table:
        runs = json.loads(results.read_text())["runs"]
        print(HEADER)
        for _, r in sorted((int(k), v) for k, v in runs.items()):
            print(_row(r))
        return None
    import torch
    torch.set_num_threads(args.threads)
    env = dict(os.environ, OMP_NUM_THREADS=str(args.threads))
    print(HEADER)
    for n in args.sizes:
        cmd = [sys.executable, __file__, "--child", str(n), "--threads", str(args.threads),
               "--seed", str(args.seed)]
        if args.max_epochs is not None:
            cmd += ["--max-epochs", str(args.max_epochs)]
        cmd += [a for s in args.set for a in ("--set", s)]
        r = run_child(cmd, env, f"size {n}")
        print(_row(r), flush=True)
        # Re-read before writing: sizes run by other invocations are kept.
        store_run(results, str(n), r, last_run=r["provenance"])
    runs = json.loads(results.read_text())["runs"] if results.exists() else {}
    done = sorted((int(k), v) for k, v in runs.items())
    if len(done) >= 2:
        ns = np.array([n for n, _ in done], dtype=float)
        fit = np.array([v["fit_s"] for _, v in done])
        slope = np.polyfit(np.log(ns), np.log(fit), 1)[0]
        per = np.polyfit(ns, fit, 1)[0]
        print(f"fit time ~ N^{slope:.2f} over N = {int(ns[0])}..{int(ns[-1])}; "
              f"linear fit: {per:.3f} s per extra member")
    dsa = next((v["dsa_note"] for _, v in done if v.get("dsa_note")), None)
    if dsa:
        print(f"DSA not timed: {dsa}")


if __name__ == "__main__":
    main()

"""Benchmark of skdynamo.dynamics: honest fixed-point counts, checked by simulation.

Parts (``--part``, default ``all``):

- ``base``: every member of the 1/2/3-bit flip-flop population
  (:func:`skdynamo.datasets.make_flipflop_population`): stable fixed points found from 256
  initial states vs ``2 ** n_bits`` vs the attractors long autonomous runs settle into;
  time per system.
- ``slow``: a GRU flip-flop of the ordinary zoo (trained on short, 50-step trials): fixed
  points, slow points, and where long runs go.
- ``meta``: a DynamoEmbedder fitted on the population; the meta-model at each model's
  embedding vs the model (stable fixed points, checked by simulation too), a 50-point path
  from a 2-bit to a 3-bit model (batched, timed), and a grid map of the embedding space.
  Figures go to ``--out``.
- ``heldout``: six new members (``seed_offset=100``) embedded with the meta-model frozen
  (``transform``); the meta-model at each new embedding vs the new model.

Run from the repository root::

    python benchmarks/bench_dynamics.py --part all --out docs/_static

The embedder is ``DynamoEmbedder(probe_inputs=..., random_state=--seed)`` with the
estimator's defaults, fitted once for ``meta`` and ``heldout`` (``--max-epochs``,
``--n-components`` and ``--hidden-size`` override them). The population and the
embedder's training use one torch thread.
"""

import argparse
import json
import time
import warnings

import numpy as np
import torch
from sklearn.exceptions import ConvergenceWarning

torch.set_num_threads(1)

from skdynamo.datasets._flipflop_zoo import (make_flipflop_population,  # noqa: E402
                                             make_flipflop_trials)
from skdynamo.dynamics import (find_fixed_points, fixed_points_along_path,  # noqa: E402
                               fixed_points_on_grid, simulate_settled_states)


def _line(*cols, widths=None):
    return "  ".join(str(c).rjust(w) for c, w in zip(cols, widths))


def bench_base(pop, x_check, results):
    print("\n== base models: stable fixed points vs 2**bits vs simulation ==")
    w = (3, 5, 5, 5, 7, 7, 12, 7, 6, 8)
    print(_line("#", "bits", "cell", "2^b", "found", "unstab", "by modes", "sim", "slow",
                "time_s", widths=w))
    rows, times = [], []
    for i, model in enumerate(pop.models):
        t0 = time.perf_counter()
        fp = find_fixed_points(model, x_check, n_initial=256, random_state=0)
        dt = time.perf_counter() - t0
        sim = simulate_settled_states(model, x_check, n_initial=256, n_steps=3000,
                                      random_state=1)
        times.append(dt)
        expect = 2 ** int(pop.n_bits[i])
        modes = np.bincount(fp.n_unstable_modes, minlength=4)[1:]
        rows.append(dict(n_bits=int(pop.n_bits[i]), cell=str(pop.cell[i]), expected=expect,
                         n_stable=fp.n_stable, n_unstable=fp.n_unstable,
                         unstable_by_modes=modes.tolist(),
                         n_sim=sim.n_attractors, n_unsettled=sim.n_unsettled, n_slow=fp.n_slow,
                         time_s=dt))
        print(_line(i, pop.n_bits[i], pop.cell[i], expect, fp.n_stable, fp.n_unstable,
                    "/".join(str(m) for m in modes), f"{sim.n_attractors}/{sim.n_unsettled}u",
                    fp.n_slow, f"{dt:.2f}", widths=w))
    ok = [r["n_stable"] == r["expected"] == r["n_sim"] for r in rows]
    print(f"finder == 2**bits == simulation for {sum(ok)}/{len(ok)} models; time per system "
          f"(256 initial states): median {np.median(times):.2f} s, max {np.max(times):.2f} s")
    results["base"] = dict(rows=rows, n_ok=int(sum(ok)), n=len(ok),
                           time_median_s=float(np.median(times)), time_max_s=float(np.max(times)))


def bench_slow(results):
    print("\n== a 3-bit GRU flip-flop of make_rnn_population (1000 steps on 50-step trials) ==")
    from skdynamo.datasets import make_flipflop, make_rnn_population

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        pop = make_rnn_population(tasks=("flipflop",), cells=("gru",), n_seeds=1)
    model = pop.models[0]
    x, _ = make_flipflop(64, 50, random_state=0)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        fp = find_fixed_points(model, x, random_state=0)
    print(fp.summary().splitlines()[0])
    for c in caught:
        print("warning:", c.message)
    for n_steps in (50, 500, 5000):
        sim = simulate_settled_states(model, x, n_steps=n_steps, random_state=1)
        print(f"  {n_steps:5d} autonomous steps: {sim.n_attractors} settled states "
              f"({sim.n_settled} runs), {sim.n_unsettled} runs still moving "
              f"(median speed {np.median(sim.final_speeds):.1e})")
    results["slow"] = dict(n_stable=fp.n_stable, n_unstable=fp.n_unstable, n_slow=fp.n_slow,
                           n_sim_5000=sim.n_attractors, n_unsettled_5000=sim.n_unsettled)


def fit_embedder(pop, params, fitted):
    """The embedder of this run, fitted once on ``pop`` (``params``: the CLI's settings,
    ``None`` values left at the estimator's defaults); ``fitted`` caches it."""
    from skdynamo import DynamoEmbedder

    if "emb" not in fitted:
        t0 = time.perf_counter()
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            emb = DynamoEmbedder(probe_inputs=pop.probe_inputs,
                                 **{k: v for k, v in params.items() if v is not None})
            emb.fit(pop.models)
        fitted.update(emb=emb, fit_s=time.perf_counter() - t0)
        r2 = emb.emulation_scores_
        given = ", ".join(f"{k}={v}" for k, v in params.items() if v is not None)
        print(f"DynamoEmbedder({given}) fit: "
              f"{fitted['fit_s']:.0f} s, {emb.n_iter_} epochs ("
              f"{'converged' if emb.converged_ else 'epoch cap'}); held-out output R2 median "
              f"{np.median(r2.output_r2):.4f} (min {np.min(r2.output_r2):.4f})"
              + "".join(f"\n  warning: {w.message}" for w in caught
                        if issubclass(w.category, ConvergenceWarning)))
    return fitted["emb"], fitted["fit_s"]


def bench_meta(pop, x_check, results, out, params, fitted, sim_steps=3000):
    print("\n== meta-model: fixed points at each model's embedding ==")
    emb, fit_s = fit_embedder(pop, params, fitted)
    r2 = emb.emulation_scores_
    base_counts = [find_fixed_points(m, x_check, random_state=0).n_stable for m in pop.models]
    w = (3, 5, 5, 6, 6, 7, 8)
    print(_line("#", "bits", "cell", "base", "meta", "msim", "time_s", widths=w))
    rows, times = [], []
    for i, z in enumerate(emb.embeddings_):
        net = emb.model_at(z)
        t0 = time.perf_counter()
        fp = find_fixed_points(net, x_check, n_initial=256, random_state=0)
        times.append(time.perf_counter() - t0)
        sim = simulate_settled_states(net, x_check, n_initial=256, n_steps=sim_steps,
                                      random_state=1)
        rows.append(dict(n_bits=int(pop.n_bits[i]), cell=str(pop.cell[i]),
                         base=int(base_counts[i]), meta=fp.n_stable, meta_sim=sim.n_attractors,
                         meta_unsettled=sim.n_unsettled, meta_slow=fp.n_slow))
        print(_line(i, pop.n_bits[i], pop.cell[i], base_counts[i], fp.n_stable,
                    f"{sim.n_attractors}/{sim.n_unsettled}u", f"{times[-1]:.2f}", widths=w))
    match = np.array([r["base"] == r["meta"] for r in rows])
    print(f"meta-model at theta_n has the base model's number of stable fixed points for "
          f"{match.sum()}/{len(match)} models ({match.mean():.0%}); meta finder == meta "
          f"simulation for {sum(r['meta'] == r['meta_sim'] for r in rows)}/{len(rows)}; time "
          f"per meta system median {np.median(times):.2f} s")

    # Path from a 2-bit to a 3-bit model: the pair whose base counts are 4 and 8, closest.
    two = [i for i in range(len(rows)) if rows[i]["n_bits"] == 2 and rows[i]["base"] == 4]
    three = [i for i in range(len(rows)) if rows[i]["n_bits"] == 3 and rows[i]["base"] == 8]
    Z = emb.embeddings_
    a, b = min(((i, j) for i in two for j in three),
               key=lambda p: np.linalg.norm(Z[p[0]] - Z[p[1]]))
    t0 = time.perf_counter()
    path = fixed_points_along_path(emb, a, b, n_points=50, inputs=x_check, n_initial=128,
                                   random_state=0)
    path_s = time.perf_counter() - t0
    print(f"\npath from model {a} (2-bit {pop.cell[a]}) to model {b} (3-bit {pop.cell[b]}), "
          f"50 points, 128 initial states each: {path_s:.1f} s")
    print("  n_stable:  ", " ".join(str(v) for v in path.n_stable))
    print("  n_unstable:", " ".join(str(v) for v in path.n_unstable))
    changes = np.flatnonzero(np.diff(path.n_stable)) + 1
    print("  count changes at t =", ", ".join(f"{path.t[k]:.2f} ({path.n_stable[k - 1]}->"
                                              f"{path.n_stable[k]})" for k in changes))
    checks = []
    # evenly spaced points, plus both sides of every change of the count
    where = set(np.linspace(0, 49, 6).astype(int)) | set(changes) | set(changes - 1)
    for k in sorted(int(k) for k in where):
        sim = simulate_settled_states(emb.model_at(path.embeddings[k]), x_check, n_initial=256,
                                      n_steps=3000, random_state=1)
        checks.append((float(path.t[k]), int(path.n_stable[k]), sim.n_attractors,
                       sim.n_unsettled))
    print("  simulation check (t, finder, simulation, unsettled):", checks)

    t0 = time.perf_counter()
    grid = fixed_points_on_grid(emb, grid_size=12, inputs=x_check, n_initial=64, random_state=0)
    grid_s = time.perf_counter() - t0
    print(f"grid 12x12, 64 initial states each: {grid_s:.1f} s; stable counts seen: "
          f"{sorted(set(grid.n_stable.ravel().tolist()))}")

    results["meta"] = dict(fit_s=fit_s, epochs=emb.n_iter_, converged=emb.converged_,
                           output_r2_median=float(np.median(r2.output_r2)),
                           rows=rows, match=int(match.sum()), n=len(match),
                           meta_time_median_s=float(np.median(times)),
                           path=dict(start=int(a), end=int(b), seconds=path_s,
                                     n_stable=path.n_stable.tolist(),
                                     n_unstable=path.n_unstable.tolist(),
                                     t=path.t.tolist(), simulation_checks=checks),
                           grid_s=grid_s)
    if out:
        _figures(pop, emb, path, grid, x_check, a, b, out)


def bench_heldout(pop, x_check, results, params, fitted):
    """Unseen members embedded with the meta-model frozen (``transform``)."""
    print("\n== held-out flip-flops (seed_offset=100) embedded by transform ==")
    new = make_flipflop_population(n_seeds=1, seed_offset=100)
    print(new.DESCR)
    emb, _ = fit_embedder(pop, params, fitted)
    Z = emb.transform(new.models)
    rows = []
    for i, z in enumerate(Z):
        base = find_fixed_points(new.models[i], x_check, random_state=0).n_stable
        net = emb.model_at(z)
        meta = find_fixed_points(net, x_check, random_state=0).n_stable
        sim = simulate_settled_states(net, x_check, random_state=1)
        rows.append(dict(n_bits=int(new.n_bits[i]), cell=str(new.cell[i]), base=base,
                         meta=meta, meta_sim=sim.n_attractors))
        print(f"  {new.n_bits[i]}-bit {new.cell[i]:4s}: base {base}, meta at transform(model) "
              f"{meta} (simulation {sim.n_attractors}, {sim.n_unsettled} unsettled)")
    match = sum(r["base"] == r["meta"] for r in rows)
    print(f"held-out: meta-model matches the base model's stable count for {match}/{len(rows)}")
    results["heldout"] = dict(rows=rows, match=match, n=len(rows))


def _figures(pop, emb, path, grid, x_check, a, b, out):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from skdynamo.plotting import plot_bifurcation, plot_fixed_points, plot_stability_map

    three = [i for i in range(len(pop.models)) if pop.n_bits[i] == 3]
    i = three[0]
    fig = plt.figure(figsize=(11, 5))
    ax1 = fig.add_subplot(121, projection="3d")
    plot_fixed_points(find_fixed_points(pop.models[i], x_check, random_state=0),
                      n_components=3, ax=ax1, title=f"base model {i} (3-bit {pop.cell[i]})")
    ax2 = fig.add_subplot(122, projection="3d")
    plot_fixed_points(find_fixed_points(emb.model_at(emb.embeddings_[i]), x_check,
                                        random_state=0),
                      n_components=3, ax=ax2, title=f"meta-model at theta_{i}")
    fig.tight_layout()
    fig.savefig(f"{out}/dynamics_fixed_points.png", dpi=110)
    axes = plot_bifurcation(path, title=f"path from model {a} (2-bit) to model {b} (3-bit)")
    axes[0].figure.tight_layout()
    axes[0].figure.savefig(f"{out}/dynamics_bifurcation.png", dpi=110)
    ax = plot_stability_map(grid, emb.embeddings_, labels=[f"{n}-bit" for n in pop.n_bits],
                            title="stable fixed points of the meta-model")
    ax.plot(*path.embeddings[:, list(grid.components)].T, "w--", lw=1)
    ax.figure.tight_layout()
    ax.figure.savefig(f"{out}/dynamics_stability_map.png", dpi=110)
    plt.close("all")
    print(f"figures written to {out}/dynamics_*.png")


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--part", choices=["base", "slow", "meta", "heldout", "all"],
                        default="all")
    parser.add_argument("--out", default=None, help="folder for the figures")
    parser.add_argument("--max-epochs", type=int, default=None,
                        help="the embedder's max_epochs (default: the estimator's)")
    parser.add_argument("--n-components", type=int, default=None,
                        help="the embedder's n_components (default: the estimator's)")
    parser.add_argument("--hidden-size", type=int, default=None,
                        help="the embedder's hidden_size (default: the estimator's)")
    parser.add_argument("--seed", type=int, default=0, help="random_state of the embedder")
    parser.add_argument("--sim-steps", type=int, default=3000,
                        help="autonomous steps of the meta-model's simulation check (--part meta)")
    parser.add_argument("--json", default=None, help="write the figures measured here")
    args = parser.parse_args(argv)
    results, fitted = {}, {}
    params = dict(max_epochs=args.max_epochs, n_components=args.n_components,
                  hidden_size=args.hidden_size, random_state=args.seed)
    pop = make_flipflop_population()
    print(pop.DESCR)
    x_check = make_flipflop_trials(64, 100, 3, random_state=12345)[0]
    if args.part in ("base", "all"):
        bench_base(pop, x_check, results)
    if args.part in ("slow", "all"):
        bench_slow(results)
    if args.part in ("meta", "all"):
        bench_meta(pop, x_check, results, args.out, params, fitted, args.sim_steps)
    if args.part in ("heldout", "all"):
        bench_heldout(pop, x_check, results, params, fitted)
    if args.json:
        with open(args.json, "w") as f:
            json.dump(results, f, indent=1)


if __name__ == "__main__":
    main()

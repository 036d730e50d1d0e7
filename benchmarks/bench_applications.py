"""Benchmark of the three DYNAMO applications against their baselines, on the same models.

    python benchmarks/bench_applications.py            # all three sections
    python benchmarks/bench_applications.py --only cluster averaging semi

Populations are trained once and cached (``SKDYNAMO_DATA`` or ``~/skdynamo_data``); the
first run trains 36 small GRU/LSTM/RNN networks on one CPU thread (~10 min). Results are
printed, written to ``benchmarks/results/applications.json`` and plotted to
``docs/applications/*.png``.

Sections
--------
averaging : 8 independently initialised GRUs on the 3-bit flip-flop. Task error (MSE on
    fresh trials) of the meta-model at the members' centroid (and medoid) vs the members'
    median, vs plain weight averaging of the same members.
semi : a population over the leak rate of leaky integration (0 .. 0.4, 2 seeds each);
    the held-out task uses leak 0.15. Learning curve over 2, 5, 10, 20, 50 labelled
    sequences (+ 200 unlabelled): DynamoSemiSupervised vs a fresh GRU of the members' size
    trained on the labels vs fine-tuning the population member that best fits the labels.
cluster : (a) a mixed-architecture population (flip-flop / integration / delay x
    RNN / GRU / LSTM x 2 seeds): ARI against task of DynamoCluster vs the output-space
    baseline. (b) the GRU members plus a unit-permuted twin of each: twin ratio of the
    DYNAMO embedding vs the weight-space (and output-space) baseline.
"""

import argparse
import json
import time
from pathlib import Path

import numpy as np
import torch
from sklearn.cluster import KMeans
from sklearn.frozen import FrozenEstimator
from sklearn.metrics import adjusted_rand_score

torch.set_num_threads(1)

from _provenance import provenance  # noqa: E402  (benchmarks/, the script's directory)
from skdynamo import (DynamoAverager, DynamoCluster, DynamoEmbedder,  # noqa: E402
                      DynamoSemiSupervised)
from skdynamo.baselines import (OutputSpaceEmbedding, WeightSpaceEmbedding,  # noqa: E402
                                average_weights)
from skdynamo.datasets import (RecurrentNetwork, make_classifier_population,  # noqa: E402
                               make_family_population, make_flipflop,
                               make_leaky_integration, make_rnn_population,
                               make_sequence_classification, permute_hidden_units)

ROOT = Path(__file__).resolve().parents[1]
HIDDEN, N_STEPS = 16, 800


def _mse(model, X, Y):
    with torch.no_grad():
        return float(((model(torch.as_tensor(X)).numpy() - Y) ** 2).mean())


#: random_state of every section's embedder (``--seed``).
SEED = 0


def _embedder(probes, **kw):
    """The embedder of every section: the estimator's defaults, on the population's probes."""
    return DynamoEmbedder(probe_inputs=probes, random_state=SEED, **kw)


# ---------------------------------------------------------------------- averaging
def bench_averaging(res):
    pop = make_rnn_population(("flipflop",), ("gru",), (HIDDEN,), n_seeds=8, n_steps=N_STEPS)
    X, Y = make_flipflop(512, 50, random_state=12345)
    member = np.array([_mse(m, X, Y) for m in pop.models])
    t0 = time.perf_counter()
    emb = _embedder(pop.probe_inputs).fit(pop.models)
    fit_s = time.perf_counter() - t0
    frozen = FrozenEstimator(emb)
    mean = DynamoAverager(frozen).fit(pop.models)
    medoid = DynamoAverager(frozen, center="medoid").fit(pop.models)
    own = np.array([_mse(emb.model_at(z), X, Y) for z in emb.embeddings_])
    wavg = average_weights(pop.models)
    out = dict(
        n_members=len(pop.models), member_mse=member.tolist(),
        member_median_mse=float(np.median(member)),
        meta_at_member_median_mse=float(np.median(own)),
        centroid_mse=_mse(mean.averaged_model_, X, Y),
        medoid_mse=_mse(medoid.averaged_model_, X, Y),
        weight_average_mse=_mse(wavg, X, Y),
        target_mse=float(np.var(Y)),
        embedder_fit_s=fit_s,
        emulation_output_r2=emb.emulation_scores_.output_r2.tolist(),
    )
    out["centroid_over_median"] = out["centroid_mse"] / out["member_median_mse"]
    out["weight_average_over_median"] = out["weight_average_mse"] / out["member_median_mse"]
    res["averaging"] = out
    print("\n== Averaging: 8 GRU-16 flip-flop networks, MSE on 512 fresh trials ==")
    print(f"  members: median {out['member_median_mse']:.4f} "
          f"(range {member.min():.4f}..{member.max():.4f}); target variance "
          f"{out['target_mse']:.3f}")
    print(f"  meta-model at each member's own theta: median {out['meta_at_member_median_mse']:.4f}")
    print(f"  DYNAMO centroid: {out['centroid_mse']:.4f} "
          f"({out['centroid_over_median']:.2f} x median; target <= 1.10)")
    print(f"  DYNAMO medoid:   {out['medoid_mse']:.4f}")
    print(f"  weight average:  {out['weight_average_mse']:.4f} "
          f"({out['weight_average_over_median']:.1f} x median)")
    return emb, pop, mean, wavg


# ---------------------------------------------------------------------- semi-supervised
def _train_fresh(X, Y, *, init=None, steps=500, lr=1e-2, seed=0):
    torch.manual_seed(seed)
    if init is None:
        net = RecurrentNetwork(3, 3, HIDDEN, "gru")
    else:
        net = RecurrentNetwork(3, 3, init.rnn.hidden_size, init.cell)
        net.load_state_dict(init.state_dict())
    opt = torch.optim.Adam(net.parameters(), lr=lr)
    x, y = torch.as_tensor(X), torch.as_tensor(Y)
    for _ in range(steps):
        loss = torch.nn.functional.mse_loss(net(x), y)
        opt.zero_grad()
        loss.backward()
        torch.nn.utils.clip_grad_norm_(net.parameters(), 1.0)
        opt.step()
    return net.eval()


def bench_semi(res, sizes=(2, 5, 10, 20, 50), repeats=3, held_out=0.15):
    fam = make_family_population(n_seeds=2, n_steps=N_STEPS)
    t0 = time.perf_counter()
    emb = _embedder(fam.probe_inputs).fit(fam.models)
    fit_s = time.perf_counter() - t0
    frozen = FrozenEstimator(emb)
    Xt, Yt = make_leaky_integration(512, 50, leak=held_out, random_state=777)
    Xu, _ = make_leaky_integration(200, 50, leak=held_out, random_state=778)
    member_test = np.array([_mse(m, Xt, Yt) for m in fam.models])
    curves = {k: np.zeros((repeats, len(sizes))) for k in
              ("dynamo", "fresh", "finetune", "nearest")}
    t_dss = []
    for r in range(repeats):
        for j, n in enumerate(sizes):
            Xl, Yl = make_leaky_integration(n, 50, leak=held_out, random_state=1000 * r + n)
            X = np.concatenate([Xl, Xu])
            Ysemi = np.concatenate([Yl, np.full((len(Xu),) + Yl.shape[1:], np.nan, np.float32)])
            t = time.perf_counter()
            dss = DynamoSemiSupervised(frozen, random_state=r).fit(X, Ysemi)
            t_dss.append(time.perf_counter() - t)
            curves["dynamo"][r, j] = _mse(dss.model_, Xt, Yt)
            curves["fresh"][r, j] = _mse(_train_fresh(Xl, Yl, seed=r), Xt, Yt)
            nearest = int(np.argmin([_mse(m, Xl, Yl) for m in fam.models]))
            curves["nearest"][r, j] = member_test[nearest]
            curves["finetune"][r, j] = _mse(
                _train_fresh(Xl, Yl, init=fam.models[nearest], steps=200, lr=3e-3, seed=r),
                Xt, Yt)
        print(f"  repeat {r}: done", flush=True)
    med = {k: np.median(v, 0) for k, v in curves.items()}
    i10 = sizes.index(10)
    out = dict(sizes=list(sizes), repeats=repeats, held_out_leak=held_out,
               population_values=fam.value.tolist(), target_var=float(np.var(Yt)),
               best_member_mse=float(member_test.min()),
               curves={k: v.tolist() for k, v in curves.items()},
               median={k: v.tolist() for k, v in med.items()},
               ratio_at_10=float(med["dynamo"][i10] / med["fresh"][i10]),
               embedder_fit_s=fit_s, dss_fit_s_median=float(np.median(t_dss)))
    res["semi"] = out
    print(f"\n== Semi-supervised: leaky integration, population leaks "
          f"{sorted(set(fam.value.tolist()))}, held-out leak {held_out} ==")
    print(f"  test MSE (median of {repeats} label draws; target variance {out['target_var']:.3f};"
          f" best population member {out['best_member_mse']:.4f})")
    print("  labels " + "".join(f"{n:>9d}" for n in sizes))
    for k in ("dynamo", "fresh", "finetune", "nearest"):
        print(f"  {k:<7}" + "".join(f"{v:9.4f}" for v in med[k]))
    print(f"  at 10 labels: DYNAMO / fresh = {out['ratio_at_10']:.3f} (target <= 0.5)")
    return out


def _error(model, X, y):
    with torch.no_grad():
        return float((model(torch.as_tensor(X))[:, -1].argmax(1).numpy() != y).mean())


def _ce(model, X, y):
    with torch.no_grad():
        return float(torch.nn.functional.cross_entropy(model(torch.as_tensor(X))[:, -1],
                                                       torch.as_tensor(y)))


def _train_cls(X, y, *, init=None, steps=300, lr=1e-2, seed=0):
    torch.manual_seed(seed)
    if init is None:
        net = RecurrentNetwork(3, 3, HIDDEN, "gru")
    else:
        net = RecurrentNetwork(3, 3, init.rnn.hidden_size, init.cell)
        net.load_state_dict(init.state_dict())
    opt = torch.optim.Adam(net.parameters(), lr=lr)
    x, t = torch.as_tensor(X), torch.as_tensor(y)
    for _ in range(steps):
        loss = torch.nn.functional.cross_entropy(net(x)[:, -1], t)
        opt.zero_grad()
        loss.backward()
        torch.nn.utils.clip_grad_norm_(net.parameters(), 1.0)
        opt.step()
    return net.eval()


def bench_semi_cls(res, sizes=(2, 5, 10, 20, 50), repeats=3, held_out=0.15):
    pop = make_classifier_population(leaks=(0.0, 0.05, 0.1, 0.2, 0.3, 0.4), n_seeds=2,
                                     n_steps=N_STEPS)
    t0 = time.perf_counter()
    emb = _embedder(pop.probe_inputs).fit(pop.models)
    fit_s = time.perf_counter() - t0
    frozen = FrozenEstimator(emb)
    Xt, yt = make_sequence_classification(1000, 50, leak=held_out, random_state=777)
    Xu, _ = make_sequence_classification(200, 50, leak=held_out, random_state=778)
    member_test = np.array([_error(m, Xt, yt) for m in pop.models])
    curves = {k: np.zeros((repeats, len(sizes))) for k in
              ("dynamo", "fresh", "finetune", "nearest")}
    t_dss = []
    for r in range(repeats):
        for j, n in enumerate(sizes):
            Xl, yl = make_sequence_classification(n, 50, leak=held_out,
                                                  random_state=1000 * r + n)
            X = np.concatenate([Xl, Xu])
            ysemi = np.concatenate([yl, np.full(len(Xu), -1)])
            t = time.perf_counter()
            dss = DynamoSemiSupervised(frozen, random_state=r).fit(X, ysemi)
            t_dss.append(time.perf_counter() - t)
            curves["dynamo"][r, j] = float((dss.predict(Xt) != yt).mean())
            curves["fresh"][r, j] = _error(_train_cls(Xl, yl, seed=r), Xt, yt)
            nearest = min(range(len(pop.models)),
                          key=lambda i: (_error(pop.models[i], Xl, yl),
                                         _ce(pop.models[i], Xl, yl)))
            curves["nearest"][r, j] = member_test[nearest]
            curves["finetune"][r, j] = _error(
                _train_cls(Xl, yl, init=pop.models[nearest], steps=100, lr=3e-3, seed=r),
                Xt, yt)
        print(f"  repeat {r}: done", flush=True)
    med = {k: np.median(v, 0) for k, v in curves.items()}
    i10 = sizes.index(10)
    out = dict(sizes=list(sizes), repeats=repeats, held_out_leak=held_out,
               population_values=pop.value.tolist(), member_accuracy=pop.score.tolist(),
               best_member_error=float(member_test.min()),
               chance_error=float(1 - np.bincount(yt).max() / len(yt)),
               curves={k: v.tolist() for k, v in curves.items()},
               median={k: v.tolist() for k, v in med.items()},
               ratio_at_10=float(med["dynamo"][i10] / max(med["fresh"][i10], 1e-12)),
               embedder_fit_s=fit_s, dss_fit_s_median=float(np.median(t_dss)))
    res["semi_cls"] = out
    print(f"\n== Semi-supervised classification: leaky 'which channel leads', population leaks "
          f"{sorted(set(pop.value.tolist()))}, held-out leak {held_out} ==")
    print(f"  test error rate (median of {repeats} label draws; best population member "
          f"{out['best_member_error']:.3f}; majority class {out['chance_error']:.3f})")
    print("  labels " + "".join(f"{n:>9d}" for n in sizes))
    for k in ("dynamo", "fresh", "finetune", "nearest"):
        print(f"  {k:<7}" + "".join(f"{v:9.3f}" for v in med[k]))
    print(f"  at 10 labels: DYNAMO / fresh = {out['ratio_at_10']:.3f} (target <= 0.5)")
    return out


# ---------------------------------------------------------------------- clustering
def _twin_ratio(Z, n):
    """Z: n models then their n twins, in the same order."""
    d = np.sqrt(((Z[:, None] - Z[None]) ** 2).sum(-1))
    twin = np.mean([d[i, i + n] for i in range(n)])
    mask = np.ones_like(d, bool)
    np.fill_diagonal(mask, False)
    for i in range(n):
        mask[i, i + n] = mask[i + n, i] = False
    return float(twin / d[mask].mean())


def bench_cluster(res):
    pop = make_rnn_population(("flipflop", "integration", "delay"), ("rnn", "gru", "lstm"),
                              (HIDDEN,), n_seeds=2, n_steps=N_STEPS)
    probes = pop.probe_inputs
    task_ids = np.unique(pop.task, return_inverse=True)[1]
    t0 = time.perf_counter()
    emb = _embedder(probes).fit(pop.models)
    fit_s = time.perf_counter() - t0
    frozen = FrozenEstimator(emb)
    dc = DynamoCluster(frozen, n_clusters=3, random_state=0).fit(pop.models)
    dc_auto = DynamoCluster(frozen, random_state=0).fit(pop.models)
    Zo = OutputSpaceEmbedding(probes, n_components=2).fit_transform(pop.models)
    out_labels = KMeans(3, n_init=10, random_state=0).fit_predict(Zo)
    try:
        WeightSpaceEmbedding().fit(pop.models)
        ws = "ran"
    except ValueError as exc:
        ws = f"not applicable: {str(exc)[:80]}..."
    mixed = dict(n_models=len(pop.models), embedder_fit_s=fit_s,
                 ari_dynamo=float(adjusted_rand_score(task_ids, dc.labels_)),
                 ari_dynamo_auto=float(adjusted_rand_score(task_ids, dc_auto.labels_)),
                 auto_n_clusters=int(dc_auto.n_clusters_),
                 ari_output_space=float(adjusted_rand_score(task_ids, out_labels)),
                 weight_space=ws,
                 embeddings=dc.embeddings_.tolist(), task=pop.task.tolist(),
                 cell=pop.cell.tolist())
    # (b) one architecture + twins
    gru = [m for m, c in zip(pop.models, pop.cell) if c == "gru"]
    gru_task = [t for t, c in zip(pop.task, pop.cell) if c == "gru"]
    twins = [permute_hidden_units(m, random_state=i) for i, m in enumerate(gru)]
    models = gru + twins
    n = len(gru)
    t0 = time.perf_counter()
    emb2 = _embedder(probes).fit(models)
    fit2_s = time.perf_counter() - t0
    z_new = emb2.transform(twins)  # twins embedded as unseen models, meta-model frozen
    tw = dict(n_models=len(models), embedder_fit_s=fit2_s,
              twin_ratio_dynamo=_twin_ratio(emb2.embeddings_, n),
              twin_ratio_dynamo_transform=_twin_ratio(
                  np.concatenate([emb2.embeddings_[:n], z_new]), n),
              twin_ratio_weight_space=_twin_ratio(
                  WeightSpaceEmbedding(n_components=2).fit_transform(models), n),
              twin_ratio_output_space=_twin_ratio(
                  OutputSpaceEmbedding(probes, n_components=2).fit_transform(models), n),
              ari_dynamo=float(adjusted_rand_score(
                  np.unique(gru_task * 2, return_inverse=True)[1],
                  DynamoCluster(FrozenEstimator(emb2), n_clusters=3, random_state=0)
                  .fit(models).labels_)))
    res["cluster"] = dict(mixed=mixed, twins=tw)
    print(f"\n== Clustering (a): {len(pop.models)} networks, 3 tasks x RNN/GRU/LSTM ==")
    print(f"  ARI vs task  DYNAMO (k=3): {mixed['ari_dynamo']:.3f}   DYNAMO (auto, k="
          f"{mixed['auto_n_clusters']}): {mixed['ari_dynamo_auto']:.3f}   output space: "
          f"{mixed['ari_output_space']:.3f}   weight space: {ws}")
    print(f"== Clustering (b): {n} GRUs + {n} unit-permuted twins ==")
    print(f"  twin ratio  DYNAMO: {tw['twin_ratio_dynamo']:.4f} (twins embedded by transform: "
          f"{tw['twin_ratio_dynamo_transform']:.4f})   weight space: "
          f"{tw['twin_ratio_weight_space']:.3f}   output space: "
          f"{tw['twin_ratio_output_space']:.4f}   ARI: {tw['ari_dynamo']:.3f}")
    return mixed


# ---------------------------------------------------------------------- plots
def plot(res, folder):
    try:
        import matplotlib
        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        print("matplotlib not installed: no plots")
        return
    folder.mkdir(parents=True, exist_ok=True)
    if "averaging" in res:
        a = res["averaging"]
        fig, ax = plt.subplots(figsize=(5, 3.2))
        ax.scatter(np.zeros(len(a["member_mse"])), a["member_mse"], label="members")
        ax.bar([1, 2, 3], [a["centroid_mse"], a["medoid_mse"], a["weight_average_mse"]],
               color=["C1", "C2", "C3"])
        ax.axhline(a["member_median_mse"], ls="--", c="k", lw=0.8, label="members' median")
        ax.set_xticks([0, 1, 2, 3], ["members", "DYNAMO\ncentroid", "DYNAMO\nmedoid",
                                     "weight\naverage"])
        ax.set_yscale("log")
        ax.set_ylabel("flip-flop test MSE")
        ax.legend(fontsize=8)
        fig.tight_layout()
        fig.savefig(folder / "averaging.png", dpi=120)
    if "semi" in res:
        s = res["semi"]
        fig, ax = plt.subplots(figsize=(5, 3.2))
        for k, lab in (("dynamo", "DynamoSemiSupervised"), ("fresh", "fresh GRU"),
                       ("finetune", "fine-tuned nearest member"),
                       ("nearest", "nearest member")):
            ax.plot(s["sizes"], s["median"][k], "o-", label=lab)
        ax.set_xscale("log")
        ax.set_yscale("log")
        ax.set_xticks(s["sizes"], [str(n) for n in s["sizes"]])
        ax.minorticks_off()
        ax.set_xlabel("labelled sequences")
        ax.set_ylabel(f"test MSE (leak {s['held_out_leak']})")
        ax.legend(fontsize=8)
        fig.tight_layout()
        fig.savefig(folder / "semi_supervised.png", dpi=120)
    if "semi_cls" in res:
        s = res["semi_cls"]
        fig, ax = plt.subplots(figsize=(5, 3.2))
        for k, lab in (("dynamo", "DynamoSemiSupervised"), ("fresh", "fresh GRU"),
                       ("finetune", "fine-tuned nearest member"),
                       ("nearest", "nearest member")):
            ax.plot(s["sizes"], s["median"][k], "o-", label=lab)
        ax.axhline(s["chance_error"], ls=":", c="k", lw=0.8, label="majority class")
        ax.set_xscale("log")
        ax.set_xticks(s["sizes"], [str(n) for n in s["sizes"]])
        ax.minorticks_off()
        ax.set_xlabel("labelled sequences")
        ax.set_ylabel(f"test error rate (leak {s['held_out_leak']})")
        ax.legend(fontsize=8)
        fig.tight_layout()
        fig.savefig(folder / "semi_supervised_classification.png", dpi=120)
    if "cluster" in res:
        m = res["cluster"]["mixed"]
        Z = np.array(m["embeddings"])
        fig, ax = plt.subplots(figsize=(4.5, 3.5))
        markers = {"rnn": "o", "gru": "s", "lstm": "^"}
        for i, task in enumerate(sorted(set(m["task"]))):
            for cell, mk in markers.items():
                sel = [(t == task and c == cell) for t, c in zip(m["task"], m["cell"])]
                ax.scatter(Z[sel, 0], Z[sel, 1], c=f"C{i}", marker=mk,
                           label=f"{task} / {cell}")
        ax.set_title(f"DYNAMO embeddings (ARI {m['ari_dynamo']:.2f})", fontsize=9)
        ax.legend(fontsize=6, ncol=3, loc="best")
        ax.set_xlabel("theta 1")
        ax.set_ylabel("theta 2")
        fig.tight_layout()
        fig.savefig(folder / "cluster.png", dpi=120)


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    sections = ["averaging", "semi_cls", "semi", "cluster"]
    parser.add_argument("--only", nargs="+", choices=sections, default=sections)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--plot-only", action="store_true",
                        help="redraw the plots from the saved results")
    parser.add_argument("--seed", type=int, default=0,
                        help="random_state of the embedders; other seeds write "
                             "applications_seed<N>.json and no plots")
    args = parser.parse_args()
    global SEED
    SEED = args.seed
    name = "applications.json" if SEED == 0 else f"applications_seed{SEED}.json"
    out_file = ROOT / "benchmarks" / "results" / name
    out_file.parent.mkdir(parents=True, exist_ok=True)
    if args.plot_only:
        plot(json.loads(out_file.read_text()), ROOT / "docs" / "applications")
        return
    res = {}
    t0 = time.perf_counter()
    if "averaging" in args.only:
        bench_averaging(res)
        res.setdefault("runs", {})["averaging"] = provenance(torch)
    if "semi_cls" in args.only:
        bench_semi_cls(res, repeats=args.repeats)
        res.setdefault("runs", {})["semi_cls"] = provenance(torch)
    if "semi" in args.only:
        bench_semi(res, repeats=args.repeats)
        res.setdefault("runs", {})["semi"] = provenance(torch)
    if "cluster" in args.only:
        bench_cluster(res)
        res.setdefault("runs", {})["cluster"] = provenance(torch)
    res["torch_threads"] = torch.get_num_threads()
    # Re-read before writing: another run (other sections) may have written it meanwhile.
    stored = json.loads(out_file.read_text()) if out_file.exists() else {}
    runs = {**stored.get("runs", {}), **res.pop("runs")}
    res = {**stored, **res, "runs": runs}
    out_file.write_text(json.dumps(res, indent=1))
    if SEED == 0:  # the docs' plots show seed 0
        plot(res, ROOT / "docs" / "applications")
    print(f"\nwall time {time.perf_counter() - t0:.0f} s; results in {out_file}")


if __name__ == "__main__":
    main()

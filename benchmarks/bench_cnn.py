"""Benchmark of DYNAMO on a population of convolutional networks (sklearn's 8x8 digits).

    python benchmarks/bench_cnn.py                 # all sections, 2 torch threads
    python benchmarks/bench_cnn.py --threads 1 --only embed

The population is ``make_cnn_population()``: 36 CNNs = 3 training variants (digits,
parity, a permutation of the digits; one shared 10-logit output space) x widths (8, 16) x
depths (2, 3) x 3 seeds, trained once and cached (``SKDYNAMO_DATA`` or
``~/skdynamo_data``; ~90 s on one core). Results are printed, written to
``benchmarks/results/cnn.json`` (``cnn_test_probes.json`` with ``--probes test``) and
plotted to ``docs/cnn/*.png``.

Probe images: by default 512 *training* images of the digits split (the images the
members were trained on; ``--probes test`` uses the zoo's default, the first 256
held-out images instead). Everything scored as "held-out images" below uses held-out
images that were never probes.

Sections
--------
embed : ``DynamoEmbedder`` (defaults, ``probe_inputs`` = the probe images) on the 36
    CNNs. Fit time; ARI of k-means (k=3) on the embeddings against the training variant,
    beside the output-space baseline; emulation: argmax agreement between the meta-model
    at each member's embedding and the member on held-out images; 12 held-out seeds
    (one per variant/width/depth) embedded by ``transform``: share that land nearest to
    their own variant's centroid.
averaging : 8 independently initialised digit classifiers of one architecture (width 16,
    depth 2; seeds outside the population) embedded with the fitted embedder (frozen);
    the network at their centroid (``DynamoAverager``) vs the members' median test
    accuracy, vs plain weight averaging of the same members. Also the centroid of the 12
    mixed-architecture digit classifiers of the population (weight averaging cannot).
time : fit time alone (default embedder) on the first 30 and on all 36 CNNs, at the
    thread count given (``--only time --threads 1``).
semi : ``DynamoSemiSupervised`` on the frozen embedder, for each variant, from 10, 20 and
    50 labelled images (+ unlabelled ones), test accuracy; beside logistic regression on
    the pixels of the same labelled images.
"""

import argparse
import json
import time
from pathlib import Path

import numpy as np
import torch
from sklearn.cluster import KMeans
from sklearn.frozen import FrozenEstimator
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import adjusted_rand_score

from skdynamo import DynamoAverager, DynamoEmbedder, DynamoSemiSupervised
from skdynamo.baselines import OutputSpaceEmbedding, average_weights
from skdynamo.datasets import (digits_variant_labels, load_digits_images,
                               make_cnn_population)

ROOT = Path(__file__).resolve().parents[1]
VARIANTS = ("digits", "parity", "permuted")


def _accuracy(model, X, y):
    with torch.no_grad():
        return float((model(torch.as_tensor(X)).argmax(1).numpy() == y).mean())


def _agreement(a, b, X):
    with torch.no_grad():
        x = torch.as_tensor(X)
        return float((a(x).argmax(1) == b(x).argmax(1)).float().mean())


def _data(probes):
    X_train, X_test, d_train, d_test = load_digits_images()
    if probes == "train":
        return X_train[:512], X_test, d_test      # every test image is held out
    return X_test[:256], X_test[256:], d_test[256:]


def bench_embed(res, pop, probes, held_out, ctx, seed=0):
    emb = DynamoEmbedder(probe_inputs=probes, random_state=seed, verbose=1)
    start = time.perf_counter()
    Z = emb.fit_transform(pop.models)
    fit_s = time.perf_counter() - start
    X_hold, _ = ctx["X_test"], ctx["d_test"]
    labels = KMeans(3, n_init=10, random_state=0).fit_predict(Z)
    ari = adjusted_rand_score(pop.variant, labels)
    out = OutputSpaceEmbedding(probes, n_components=2, random_state=0).fit_transform(pop.models)
    ari_out = adjusted_rand_score(pop.variant,
                                  KMeans(3, n_init=10, random_state=0).fit_predict(out))
    agree = np.array([_agreement(emb.model_at(z), m, X_hold) for z, m in zip(Z, pop.models)])
    start = time.perf_counter()
    Zh = emb.transform(held_out.models)
    transform_s = (time.perf_counter() - start) / len(held_out.models)
    centroids = {v: Z[pop.variant == v].mean(0) for v in VARIANTS}
    nearest = [min(VARIANTS, key=lambda v: np.linalg.norm(z - centroids[v])) for z in Zh]
    held_ok = float(np.mean(np.array(nearest) == held_out.variant))
    res["embed"] = dict(
        n_models=len(pop.models), fit_seconds=round(fit_s, 1), epochs=len(emb.history_),
        torch_threads=torch.get_num_threads(), n_probes=len(probes),
        ari_dynamo=round(ari, 4), ari_output_space=round(ari_out, 4),
        agreement_held_out_mean=round(float(agree.mean()), 4),
        agreement_held_out_min=round(float(agree.min()), 4),
        agreement_by_variant={v: round(float(agree[pop.variant == v].mean()), 4)
                              for v in VARIANTS},
        agreement_probes_valid_mean=round(float(emb.emulation_scores_.agreement.mean()), 4),
        hidden_r2_mean=round(float(emb.emulation_scores_.hidden_r2.mean()), 4),
        held_out_seeds_in_own_variant=held_ok, transform_seconds_per_model=round(transform_s, 2),
        n_held_out_images=len(X_hold))
    print(json.dumps(res["embed"], indent=1))
    ctx.update(emb=emb, Z=Z, Zh=Zh)
    return emb


def bench_averaging(res, pop, ctx):
    X_test, d_test = ctx["X_test"], ctx["d_test"]
    emb = ctx["emb"]
    group = make_cnn_population(variants=("digits",), widths=(16,), depths=(2,), n_seeds=8,
                                seed_offset=200, n_jobs=1)
    y = digits_variant_labels(d_test, "digits")
    members = np.array([_accuracy(m, X_test, y) for m in group.models])
    avg = DynamoAverager(FrozenEstimator(emb)).fit(group.models)
    acc_dynamo = float((avg.predict(X_test).argmax(1) == y).mean())
    acc_weights = _accuracy(average_weights(group.models), X_test, y)
    in_pop = [m for m, v in zip(pop.models, pop.variant) if v == "digits"]
    avg_pop = DynamoAverager(FrozenEstimator(emb)).fit(in_pop)
    acc_pop = float((avg_pop.predict(X_test).argmax(1) == y).mean())
    pop_members = np.array([_accuracy(m, X_test, y) for m in in_pop])
    res["averaging"] = dict(
        members_accuracy=members.round(4).tolist(), members_median=float(np.median(members)),
        dynamo_centroid=round(acc_dynamo, 4),
        dynamo_ratio_to_median=round(acc_dynamo / float(np.median(members)), 4),
        weight_average=round(acc_weights, 4),
        population_digits_members_median=float(np.median(pop_members)),
        population_digits_centroid=round(acc_pop, 4))
    print(json.dumps(res["averaging"], indent=1))
    ctx.update(avg_members=members, avg_dynamo=acc_dynamo, avg_weights=acc_weights)


def bench_semi(res, ctx, sizes=(10, 20, 50), repeats=3):
    X_test, d_test = ctx["X_test"], ctx["d_test"]
    emb = ctx["emb"]
    out = {}
    for variant in VARIANTS:
        y_all = digits_variant_labels(d_test, variant)
        curve = {}
        for n in sizes:
            dyn, logreg = [], []
            for r in range(repeats):
                rng = np.random.RandomState(1000 * r + n)
                idx = rng.permutation(len(X_test))
                lab, rest = idx[:n], idx[n:]
                y = np.full(len(X_test), -1)
                y[lab] = y_all[lab]
                est = DynamoSemiSupervised(FrozenEstimator(emb), random_state=r).fit(X_test, y)
                dyn.append(float((est.predict(X_test[rest]) == y_all[rest]).mean()))
                if len(np.unique(y_all[lab])) > 1:
                    lr = LogisticRegression(max_iter=2000).fit(
                        X_test[lab].reshape(n, -1), y_all[lab])
                    logreg.append(float(lr.score(X_test[rest].reshape(len(rest), -1),
                                                 y_all[rest])))
                else:
                    logreg.append(float(np.mean(y_all[rest] == y_all[lab][0])))
            curve[n] = dict(dynamo=round(float(np.mean(dyn)), 4),
                            logistic_regression=round(float(np.mean(logreg)), 4))
        out[variant] = curve
    res["semi"] = out
    print(json.dumps(out, indent=1))


def bench_time(res, pop, probes):
    out = {}
    for n in (30, len(pop.models)):
        emb = DynamoEmbedder(probe_inputs=probes, random_state=0)
        start = time.perf_counter()
        emb.fit(pop.models[:n])
        out[n] = dict(fit_seconds=round(time.perf_counter() - start, 1),
                      epochs=len(emb.history_), torch_threads=torch.get_num_threads(),
                      n_probes=len(probes))
        print(f"{n} CNNs: {out[n]}", flush=True)
    res["time"] = out


def plot(res, pop, ctx, folder):
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from skdynamo.plotting import plot_embedding
    folder.mkdir(parents=True, exist_ok=True)
    if "Z" in ctx:
        fig, ax = plt.subplots(figsize=(5.5, 4.5))
        arch = np.array([f"width {w}, depth {d}" for w, d in zip(pop.width, pop.depth)])
        plot_embedding(ctx["Z"], color_by=pop.variant, marker_by=arch, ax=ax)
        e = res["embed"]
        ax.set_title(f"36 CNNs on digits: ARI {e['ari_dynamo']:.2f} by variant\n"
                     f"(output-space baseline {e['ari_output_space']:.2f})", fontsize=10)
        fig.tight_layout()
        fig.savefig(folder / "embedding.png", dpi=120)
        plt.close(fig)
    if "avg_members" in ctx:
        fig, ax = plt.subplots(figsize=(5.5, 3.6))
        m = ctx["avg_members"]
        ax.bar(range(len(m)), m, color="0.7", label="members")
        ax.axhline(np.median(m), color="0.3", ls=":", label=f"members' median {np.median(m):.3f}")
        ax.axhline(ctx["avg_dynamo"], color="C0", lw=2,
                   label=f"DYNAMO centroid {ctx['avg_dynamo']:.3f}")
        ax.axhline(ctx["avg_weights"], color="C3", lw=2, ls="--",
                   label=f"weight averaging {ctx['avg_weights']:.3f}")
        ax.set_xlabel("member (independently initialised, width 16, depth 2)")
        ax.set_ylabel("test accuracy (digits)")
        ax.set_ylim(0, 1.05)
        ax.legend(fontsize=8, loc="lower right")
        fig.tight_layout()
        fig.savefig(folder / "averaging.png", dpi=120)
        plt.close(fig)


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--only", nargs="*", default=["embed", "averaging", "semi"])
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--probes", choices=["train", "test"], default="train")
    parser.add_argument("--seed", type=int, default=0,
                        help="random_state of the embedder; other seeds write "
                             "cnn_seed<N>.json and no figures")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    pop = make_cnn_population(n_jobs=1)
    held_out = make_cnn_population(n_seeds=1, seed_offset=100, n_jobs=1)
    probes, X_test, d_test = _data(args.probes)
    res = dict(probes=args.probes, seed=args.seed)
    ctx = dict(X_test=X_test, d_test=d_test)
    if args.only == ["time"]:
        bench_time(res, pop, probes)
        out = ROOT / "benchmarks" / "results"
        out.mkdir(parents=True, exist_ok=True)
        (out / f"cnn_time_{args.threads}threads.json").write_text(json.dumps(res, indent=1))
        return
    bench_embed(res, pop, probes, held_out, ctx, args.seed)
    if "averaging" in args.only:
        bench_averaging(res, pop, ctx)
    if "semi" in args.only:
        bench_semi(res, ctx)
    out = ROOT / "benchmarks" / "results"
    out.mkdir(parents=True, exist_ok=True)
    name = "cnn.json" if args.probes == "train" else "cnn_test_probes.json"
    if args.seed:
        name = name.replace(".json", f"_seed{args.seed}.json")
    (out / name).write_text(json.dumps(res, indent=1))
    if args.probes == "train" and not args.seed:  # the docs' pictures: the defaults, seed 0
        plot(res, pop, ctx, ROOT / "docs" / "cnn")


if __name__ == "__main__":
    main()

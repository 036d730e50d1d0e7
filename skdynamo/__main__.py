"""Command line: ``skdynamo demo`` (also ``python -m skdynamo demo``)."""

import argparse
import sys
import time


def demo(args):
    import matplotlib

    matplotlib.use("Agg")
    import numpy as np
    from sklearn.cluster import KMeans
    from sklearn.metrics import adjusted_rand_score

    from . import DynamoEmbedder
    from .datasets import make_rnn_population
    from .plotting import plot_embedding

    t0 = time.perf_counter()
    print("1/3 Building the default population (3 tasks x 3 cells x 3 seeds; cached after the "
          "first run)")
    pop = make_rnn_population(n_jobs=args.n_jobs, verbose=True, data_home=args.data_home)
    print(f"    {pop.DESCR}\n    mean task R^2 of the members: {pop.score.mean():.3f} "
          f"(min {pop.score.min():.3f})  [{time.perf_counter() - t0:.0f} s]")

    print("2/3 Fitting DYNAMO")
    t1 = time.perf_counter()
    emb = DynamoEmbedder(probe_inputs=pop.probe_inputs, n_components=2, random_state=0,
                         verbose=1)
    z = emb.fit_transform(pop.models)
    fit_s = time.perf_counter() - t1
    n_tasks = len(set(pop.task))
    clusters = KMeans(n_tasks, n_init=10, random_state=0).fit_predict(z)
    ari = adjusted_rand_score(pop.task, clusters)
    scores = emb.emulation_scores_

    print("3/3 Results")
    header = f"{'model':>5}  {'task':<12}{'cell':<6}{'embedding':<22}{'cluster':>7}" \
             f"{'out R2':>8}{'hid R2':>8}"
    print(header)
    print("-" * len(header))
    for i, (task, cell, zi, c) in enumerate(zip(pop.task, pop.cell, z, clusters)):
        emb_txt = "(" + ", ".join(f"{v:+.3f}" for v in zi) + ")"
        print(f"{i:>5}  {task:<12}{cell:<6}{emb_txt:<22}{c:>7}"
              f"{scores.output_r2[i]:>8.3f}{scores.hidden_r2[i]:>8.3f}")
    print(f"\nEmulation on held-out probes: output R^2 {np.mean(scores.output_r2):.3f}, "
          f"hidden R^2 {np.mean(scores.hidden_r2):.3f}")
    print(f"k-means on embeddings vs task: ARI = {ari:.3f}")
    print(f"Fit: {fit_s:.0f} s, {len(emb.history_)} epochs; total {time.perf_counter() - t0:.0f} s")

    ax = plot_embedding(z, color_by=pop.task, marker_by=pop.cell,
                        title=f"DYNAMO embedding of {len(pop.models)} RNNs (ARI vs task "
                              f"{ari:.2f})")
    ax.figure.tight_layout()
    ax.figure.savefig(args.output, dpi=120)
    print(f"Embedding map written to {args.output}")
    _write_html(args, z, pop, emb, "task")
    return 0


def _write_html(args, z, pop, emb, color_by):
    """``--html PATH``: the map to explore in a browser (hover: labels and emulation R^2)."""
    if args.html:
        from .plotting import plot_embedding_html

        plot_embedding_html(z, args.html, data=pop, embedder=emb, color_by=color_by,
                            title=f"DYNAMO embedding of {len(pop.models)} networks")
        print(f"Interactive map written to {args.html}")


def demo_cnn(args):
    import matplotlib

    matplotlib.use("Agg")
    import numpy as np
    from sklearn.cluster import KMeans
    from sklearn.metrics import adjusted_rand_score

    from . import DynamoEmbedder
    from .datasets import make_cnn_population
    from .plotting import plot_embedding

    t0 = time.perf_counter()
    print("1/3 Building the CNN population (3 variants x 2 widths x 2 depths x 3 seeds on "
          "8x8 digits; cached after the first run)")
    pop = make_cnn_population(n_jobs=args.n_jobs, verbose=True, data_home=args.data_home)
    print(f"    {pop.DESCR}\n    members' test accuracy: {pop.accuracy.mean():.3f} "
          f"(min {pop.accuracy.min():.3f})  [{time.perf_counter() - t0:.0f} s]")

    print("2/3 Fitting DYNAMO (image probes: convolutional meta-model, layers as time)")
    t1 = time.perf_counter()
    emb = DynamoEmbedder(probe_inputs=pop.probe_inputs, n_components=2, random_state=0,
                         verbose=1)
    z = emb.fit_transform(pop.models)
    fit_s = time.perf_counter() - t1
    n_groups = len(set(pop.variant))
    clusters = KMeans(n_groups, n_init=10, random_state=0).fit_predict(z)
    ari = adjusted_rand_score(pop.variant, clusters)
    scores = emb.emulation_scores_

    print("3/3 Results")
    header = (f"{'model':>5}  {'variant':<10}{'width':>6}{'depth':>6}  {'embedding':<22}"
              f"{'cluster':>7}{'agree':>8}{'hid R2':>8}")
    print(header)
    print("-" * len(header))
    for i, zi in enumerate(z):
        emb_txt = "(" + ", ".join(f"{v:+.3f}" for v in zi) + ")"
        print(f"{i:>5}  {pop.variant[i]:<10}{pop.width[i]:>6}{pop.depth[i]:>6}  {emb_txt:<22}"
              f"{clusters[i]:>7}{scores.agreement[i]:>8.3f}{scores.hidden_r2[i]:>8.3f}")
    print(f"\nEmulation on held-out probe images: argmax agreement "
          f"{np.mean(scores.agreement):.3f}, hidden R^2 {np.mean(scores.hidden_r2):.3f}")
    print(f"k-means on embeddings vs training variant: ARI = {ari:.3f}")
    print(f"Fit: {fit_s:.0f} s, {len(emb.history_)} epochs; total {time.perf_counter() - t0:.0f} s")

    arch = [f"width {w}, depth {d}" for w, d in zip(pop.width, pop.depth)]
    ax = plot_embedding(z, color_by=pop.variant, marker_by=arch,
                        title=f"DYNAMO embedding of {len(pop.models)} CNNs (ARI vs variant "
                              f"{ari:.2f})")
    ax.figure.tight_layout()
    ax.figure.savefig(args.output, dpi=120)
    print(f"Embedding map written to {args.output}")
    _write_html(args, z, pop, emb, "variant")
    return 0


def main(argv=None):
    parser = argparse.ArgumentParser(prog="skdynamo", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)
    p = sub.add_parser("demo", help="train the default population, embed it, plot the map")
    p.add_argument("--output", default="dynamo_embedding.png", help="PNG file to write")
    p.add_argument("--html", default=None, metavar="PATH",
                   help="also write the map as one HTML page to explore (needs plotly)")
    p.add_argument("--data-home", default=None, help="cache folder for trained populations")
    p.add_argument("--n-jobs", type=int, default=2, help="parallel jobs to train the zoo")
    p.add_argument("--population", choices=["rnn", "cnn"], default="rnn",
                   help="recurrent networks on pulse tasks (default) or CNNs on digits")
    args = parser.parse_args(argv)
    if args.command == "demo" and args.html:
        try:    # before the training, not after it
            import plotly  # noqa: F401
        except ImportError:
            print("skdynamo demo: error: --html needs plotly: pip install "
                  "'skdynamo[interactive]'", file=sys.stderr)
            return 1
    if args.command == "demo":
        try:
            return demo_cnn(args) if args.population == "cnn" else demo(args)
        except OSError as exc:  # an unusable data folder, an unwritable --output: one line
            print(f"skdynamo demo: error: {exc.strerror or exc}", file=sys.stderr)
            return 1
    return 1  # pragma: no cover


if __name__ == "__main__":
    sys.exit(main())

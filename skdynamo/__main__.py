"""Command line: ``skdynamo demo`` (also ``python -m skdynamo demo``)."""

import argparse
import sys
import time


def _rnn_demo(args):
    from .datasets import make_rnn_population
    print("1/3 Building the default population (3 tasks x 3 cells x 3 seeds; cached after the "
          "first run)")
    pop = make_rnn_population(n_jobs=args.n_jobs, verbose=True, data_home=args.data_home)
    return dict(
        pop=pop, quality=f"mean task R^2 of the members: {pop.score.mean():.3f} "
                         f"(min {pop.score.min():.3f})",
        fitting="2/3 Fitting DYNAMO", groups=pop.task, group_name="task",
        columns=[("task", 12, pop.task), ("cell", 6, pop.cell)],
        score=("out R2", "output_r2", "output R^2"),
        held_out="Emulation on held-out probes", markers=pop.cell, what="RNNs", sep="")


def _cnn_demo(args):
    from .datasets import make_cnn_population
    print("1/3 Building the CNN population (3 variants x 2 widths x 2 depths x 3 seeds on "
          "8x8 digits; cached after the first run)")
    pop = make_cnn_population(n_jobs=args.n_jobs, verbose=True, data_home=args.data_home)
    return dict(
        pop=pop, quality=f"members' test accuracy: {pop.accuracy.mean():.3f} "
                         f"(min {pop.accuracy.min():.3f})",
        fitting="2/3 Fitting DYNAMO (image probes: convolutional meta-model, layers as time)",
        groups=pop.variant, group_name="training variant",
        columns=[("variant", 10, pop.variant), ("width", -6, pop.width),
                 ("depth", -6, pop.depth)],
        score=("agree", "agreement", "argmax agreement"),
        held_out="Emulation on held-out probe images",
        markers=[f"width {w}, depth {d}" for w, d in zip(pop.width, pop.depth)],
        what="CNNs", sep="  ")


def _cell(value, width):
    """Left-aligned in ``width`` characters, right-aligned for a negative width."""
    return f"{value:<{width}}" if width > 0 else f"{value:>{-width}}"


def demo(args):
    """Build a population, embed it, print the table and write the map."""
    import matplotlib

    matplotlib.use("Agg")
    import numpy as np
    from sklearn.cluster import KMeans
    from sklearn.metrics import adjusted_rand_score

    from . import DynamoEmbedder
    from .plotting import plot_embedding

    t0 = time.perf_counter()
    spec = _cnn_demo(args) if args.population == "cnn" else _rnn_demo(args)
    pop = spec["pop"]
    print(f"    {pop.DESCR}\n    {spec['quality']}  [{time.perf_counter() - t0:.0f} s]")

    print(spec["fitting"])
    t1 = time.perf_counter()
    emb = DynamoEmbedder(probe_inputs=pop.probe_inputs, n_components=2, random_state=0,
                         verbose=1)
    z = emb.fit_transform(pop.models)
    fit_s = time.perf_counter() - t1
    groups = spec["groups"]
    clusters = KMeans(len(set(groups)), n_init=10, random_state=0).fit_predict(z)
    ari = adjusted_rand_score(groups, clusters)
    scores = emb.emulation_scores_
    label, key, words = spec["score"]

    print("3/3 Results")
    header = (f"{'model':>5}  " + "".join(_cell(name, w) for name, w, _ in spec["columns"])
              + f"{spec['sep']}{'embedding':<22}{'cluster':>7}{label:>8}{'hid R2':>8}")
    print(header)
    print("-" * len(header))
    for i, (zi, c) in enumerate(zip(z, clusters)):
        emb_txt = "(" + ", ".join(f"{v:+.3f}" for v in zi) + ")"
        print(f"{i:>5}  " + "".join(_cell(col[i], w) for _, w, col in spec["columns"])
              + f"{spec['sep']}{emb_txt:<22}{c:>7}"
              + f"{scores[key][i]:>8.3f}{scores.hidden_r2[i]:>8.3f}")
    print(f"\n{spec['held_out']}: {words} {np.mean(scores[key]):.3f}, "
          f"hidden R^2 {np.mean(scores.hidden_r2):.3f}")
    print(f"k-means on embeddings vs {spec['group_name']}: ARI = {ari:.3f}")
    print(f"Fit: {fit_s:.0f} s, {len(emb.history_)} epochs; total {time.perf_counter() - t0:.0f} s")

    ax = plot_embedding(z, color_by=groups, marker_by=spec["markers"],
                        title=f"DYNAMO embedding of {len(pop.models)} {spec['what']} (ARI vs "
                              f"{spec['group_name'].split()[-1]} {ari:.2f})")
    ax.figure.tight_layout()
    ax.figure.savefig(args.output, dpi=120)
    print(f"Embedding map written to {args.output}")
    if args.html:  # the map to explore in a browser (hover: labels and emulation R^2)
        from .plotting import plot_embedding_html

        plot_embedding_html(z, args.html, data=pop, embedder=emb,
                            color_by=spec["group_name"].split()[-1],
                            title=f"DYNAMO embedding of {len(pop.models)} {spec['what']}")
        print(f"Interactive map written to {args.html}")
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
            return demo(args)
        except OSError as exc:  # an unusable data folder, an unwritable --output: one line
            print(f"skdynamo demo: error: {exc.strerror or exc}", file=sys.stderr)
            return 1
    return 1  # pragma: no cover


if __name__ == "__main__":
    sys.exit(main())

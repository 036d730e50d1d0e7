"""Study: which members make a map disagree between refits (``model_disagreement``).

    PYTHONPATH=. python benchmarks/study_model_disagreement.py
    PYTHONPATH=. python benchmarks/study_model_disagreement.py --only default --top 5
    PYTHONPATH=. python benchmarks/study_model_disagreement.py --only default --only cognitive \
        --plot docs/_static/model_disagreement.png

Reads the fitted maps that ``bench_fidelity.py`` stored in ``results/fidelity.json`` (the
defaults at ``random_state`` 0, 1, 2; no fit is run) and, for each population, prints
the map's disagreement (:func:`skdynamo.embedding_disagreement`), the per-model figures
of :func:`skdynamo.model_disagreement` (median, largest, the share of the squared
disagreement carried by the three largest), the ``--top`` members that move most with
their group label and task score (R^2, accuracy or task MSE, as the population's
``score_name`` says), the map's disagreement without them, and the Spearman correlation
between a member's disagreement and how well it does its task (signed so that a
positive value means worse-trained members move more). The populations are loaded as
``bench_fidelity.py`` loads them (trained and cached on first use). ``--plot PATH``
draws each population's seed-0 map coloured by ``model_disagreement``
(:func:`skdynamo.plotting.plot_embedding`, marker by group).
"""

import argparse
import json
import sys
import warnings
from pathlib import Path

import numpy as np
from scipy.stats import spearmanr

sys.path.insert(0, str(Path(__file__).resolve().parent))

import bench_fidelity as B  # noqa: E402
from skdynamo import embedding_disagreement, model_disagreement  # noqa: E402

RESULTS = Path(__file__).resolve().parent / "results" / "fidelity.json"
# A score name holding this is lower-is-better (task MSE of the averaging groups).
LOWER_IS_BETTER = "MSE"


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--only", action="append", choices=B.POPULATIONS,
                    help="population of bench_fidelity.py (repeatable; default: all)")
    ap.add_argument("--top", type=int, default=3, help="members listed per population")
    ap.add_argument("--plot", help="PNG of each population's seed-0 map, coloured by "
                                   "model_disagreement")
    args = ap.parse_args(argv)
    panels = []
    stored = json.loads(RESULTS.read_text())["populations"]
    warnings.filterwarnings("ignore", category=UserWarning)
    for name in args.only or B.POPULATIONS:
        for group, g in B.load_population(name):
            runs = stored.get(group, {}).get("runs", [])
            maps = [np.asarray(r["embedding"]) for r in runs if "embedding" in r]
            if len(maps) < 2:
                print(f"{group}: fewer than two stored maps in {RESULTS.name}; skipped")
                continue
            per = model_disagreement(maps)
            sq = np.sort(per ** 2)[::-1]
            scores = np.asarray(g["scores"], dtype=float)
            sign = 1.0 if LOWER_IS_BETTER in g["score_name"] else -1.0
            rho = spearmanr(per, sign * scores).statistic
            print(f"{group}: {len(per)} members, seeds "
                  f"{[r['random_state'] for r in runs]}; map disagreement "
                  f"{embedding_disagreement(maps):.3f}; per model median {np.median(per):.3f}, "
                  f"largest {per.max():.3f}; the three largest carry "
                  f"{sq[:3].sum() / sq.sum():.0%} of the squared disagreement; Spearman "
                  f"(disagreement, worse task score) {rho:+.2f}")
            labels = g.get("labels")
            labels = ["-"] * len(per) if labels is None else labels
            order = np.argsort(per)[::-1][:args.top]
            rest = np.setdiff1d(np.arange(len(per)), order)
            print(f"    without these {len(order)}: map disagreement "
                  f"{embedding_disagreement([m[rest] for m in maps]):.3f}")
            panels.append((group, maps[0], per, labels))
            for i in order:
                worse = (int(np.sum(scores < scores[i])) if sign < 0
                         else int(np.sum(scores > scores[i])))
                print(f"    member {i:3d}  {per[i]:.3f}  {labels[i]!s:<26} "
                      f"{g['score_name']} {scores[i]:.4f} ({worse} of {len(scores)} "
                      f"members do worse)")

    if args.plot and panels:
        plot(panels, args.plot)


def plot(panels, path):
    """One panel per population: its first stored map, coloured by model_disagreement."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from skdynamo.plotting import plot_embedding
    fig, axes = plt.subplots(1, len(panels), figsize=(6.5 * len(panels), 5), squeeze=False)
    for ax, (group, Z, per, labels) in zip(axes[0], panels):
        plot_embedding(Z, color_by=per, marker_by=np.asarray(labels, dtype=str), ax=ax,
                       title=f"{group}: colour = model_disagreement (3 refits)")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    print(f"wrote {path}")


if __name__ == "__main__":
    main()

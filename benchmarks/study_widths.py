"""Study: the reverse hidden term on a population of a new kind (mixed widths, new tasks).

    PYTHONPATH=. OMP_NUM_THREADS=1 python benchmarks/study_widths.py              # seeds 0 1
    PYTHONPATH=. OMP_NUM_THREADS=1 python benchmarks/study_widths.py --seeds 0 --weights 0 auto

The population is not one the defaults were chosen on: ``make_rnn_population(("flipflop",
"running_max", "leaky_integration"), ("rnn", "gru", "lstm"), (8, 48), n_seeds=2)``, 36
networks whose hidden widths (8 and 48 units) straddle ``n_pcs=10`` (a width-8 member
has 8 principal components, fewer than the meta-model's 64 states: the reverse term then
asks the meta-model's states at its embedding to be an affine function of 8 numbers),
on two tasks that no other benchmark population mixes (running maximum, leaky
integration) beside the flip-flop. Trained once and cached (``SKDYNAMO_DATA``).

Each ``--weights`` value fits ``DynamoEmbedder(probe_inputs=pop.probe_inputs,
reverse_weight=w, random_state=rs)`` (``auto`` is the default) and prints one line per
fit: fit time, epochs, whether it converged, held-out output and hidden R^2 (mean, min;
and by width), and the ARI by task of k-means (k=3) on the map, of ``DynamoCluster``
(k=3) and of output space + PCA (``OutputSpaceEmbedding``). Prints only, no JSON.
"""

import argparse
import time
import warnings

import numpy as np
import torch
from sklearn.cluster import KMeans
from sklearn.frozen import FrozenEstimator
from sklearn.metrics import adjusted_rand_score

from skdynamo import DynamoCluster, DynamoEmbedder
from skdynamo.baselines import OutputSpaceEmbedding
from skdynamo.datasets import make_rnn_population

TASKS = ("flipflop", "running_max", "leaky_integration")


def kmeans_ari(points, labels, seed=0):
    pred = KMeans(3, n_init=10, random_state=seed).fit_predict(points)
    return adjusted_rand_score(labels, pred)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1])
    parser.add_argument("--weights", nargs="+", default=["0", "auto"])
    args = parser.parse_args(argv)
    torch.set_num_threads(1)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        pop = make_rnn_population(TASKS, ("rnn", "gru", "lstm"), (8, 48), n_seeds=2,
                                  n_jobs=1)
    task = np.asarray(pop.task)
    width = np.asarray(pop.hidden_size)
    print(f"{len(pop.models)} networks; task R^2 median {np.median(pop.score):.3f} "
          f"(min {np.min(pop.score):.3f})")
    out = OutputSpaceEmbedding(pop.probe_inputs, n_components=2).fit_transform(pop.models)
    print(f"output space + PCA: ARI by task {kmeans_ari(out, task):.2f}")
    for seed in args.seeds:
        for w in args.weights:
            weight = w if w == "auto" else float(w)
            emb = DynamoEmbedder(probe_inputs=pop.probe_inputs, reverse_weight=weight,
                                 random_state=seed)
            start = time.perf_counter()
            emb.fit(pop.models)
            fit_s = time.perf_counter() - start
            s = emb.emulation_scores_
            labels = DynamoCluster(FrozenEstimator(emb), n_clusters=3,
                                   random_state=0).fit_predict(pop.models)
            by_width = " ".join(
                f"w{k}: {s.output_r2[width == k].mean():.4f}/{s.hidden_r2[width == k].mean():.3f}"
                for k in sorted(set(width)))
            print(f"reverse_weight={w:>4} rs={seed}: fit {fit_s:5.0f} s, {len(emb.history_)} "
                  f"epochs ({'converged' if emb.converged_ else 'cap'}), output R^2 "
                  f"{s.output_r2.mean():.4f} (min {s.output_r2.min():.4f}), hidden R^2 "
                  f"{s.hidden_r2.mean():.3f} (min {s.hidden_r2.min():.3f}); by width "
                  f"out/hid {by_width}; ARI map {kmeans_ari(emb.embeddings_, task):.2f}, "
                  f"DynamoCluster {adjusted_rand_score(task, labels):.2f}", flush=True)


if __name__ == "__main__":
    main()

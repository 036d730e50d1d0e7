"""Study: one collapsed member (constant or nearly constant outputs) in a population.

    PYTHONPATH=. OMP_NUM_THREADS=1 python benchmarks/study_collapsed_member.py        # ~6 min

Fits ``DynamoEmbedder(probe_inputs=pop.probe_inputs, random_state=0)`` on the 27 members
of ``make_rnn_population()`` alone (``none``), with a 28th member whose readout weights
are zeroed (``const``: its outputs are the readout bias, constant), and with one whose
readout weights are scaled by 1e-4 (``tiny``: output variance about 1e-8 of its
original's), as a hyperparameter sweep's collapsed run would be. Prints the fit's time
and epochs, the 27 trained members' held-out output R^2 (mean, min), ARI of k-means (k=3)
on their embeddings against the task, and the warnings the fit issued. The output loss
divides each member's squared error by its own output variance; before the floor at 1e-2
of the population's median (``skdynamo._targets.floor_output_scales``) the collapsed
member weighed up to a million times the others.
"""

import argparse
import copy
import time
import warnings

import torch
from sklearn.cluster import KMeans
from sklearn.metrics import adjusted_rand_score

from skdynamo import DynamoEmbedder
from skdynamo.datasets import make_rnn_population


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cases", nargs="+", default=["none", "const", "tiny"],
                        choices=["none", "const", "tiny"])
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    pop = make_rnn_population()
    print(f"torch threads {args.threads}, random_state {args.seed}")
    for case in args.cases:
        models = list(pop.models)
        if case != "none":
            dead = copy.deepcopy(models[0])
            with torch.no_grad():
                dead.readout.weight.mul_(0.0 if case == "const" else 1e-4)
            models.append(dead)
        t0 = time.perf_counter()
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            emb = DynamoEmbedder(probe_inputs=pop.probe_inputs,
                                 random_state=args.seed).fit(models)
        r2 = emb.emulation_scores_.output_r2[:27]
        labels = KMeans(3, n_init=10, random_state=0).fit_predict(emb.embeddings_[:27])
        said = sorted({f"{type(w.message).__name__}: {str(w.message)[:90]}" for w in caught})
        print(f"{case:5s}  fit {time.perf_counter() - t0:6.1f} s  {emb.n_iter_} epochs  "
              f"27 members' output R2 {r2.mean():.4f} (min {r2.min():.4f})  "
              f"ARI {adjusted_rand_score(pop.task, labels):.2f}  warnings {said}", flush=True)


if __name__ == "__main__":
    main()

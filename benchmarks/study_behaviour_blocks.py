"""Study: which blocks of ``DynamoEmbedder.behaviour`` make ``DynamoCluster`` separate groups.

    PYTHONPATH=. OMP_NUM_THREADS=1 python benchmarks/study_behaviour_blocks.py heads --seed 1
    PYTHONPATH=. OMP_NUM_THREADS=1 python benchmarks/study_behaviour_blocks.py cognitive --seed 0

Fits ``DynamoEmbedder(probe_inputs=pop.probe_inputs, random_state=seed)`` (the defaults)
on one population of ``bench_fidelity.py`` (``heads`` or ``cognitive``), then scores
k-means (k = number of labels, ``n_init=10``, ``random_state=seed``) against the label
on: the map's coordinates; and the behaviour features restricted to each combination of
their three blocks (emulated outputs, meta-model states, the states' geometry), each
block divided by its spread and the result reduced by PCA to 10 components as
``DynamoCluster`` does. "outputs + states + geometry" is what ``DynamoCluster`` clusters
by default. The members scored are those ``bench_fidelity.py`` scores (``heads``: the 24
that learned). Prints one line per feature set and the fit's time and fidelity; for
``heads`` also whether the embedding carries the removed head: the held-out R^2 with which
the meta-model's states at the embeddings of one group explain the hidden targets (10
principal components, ridge map fitted on the training probes) of the members of each
group, mean over the pairs.
"""

import argparse
import itertools
import time

import numpy as np
import torch
from sklearn.cluster import KMeans
from sklearn.metrics import adjusted_rand_score

torch.set_num_threads(1)

from skdynamo import DynamoEmbedder  # noqa: E402
from skdynamo._codes import _apply_maps, _run, ridge_maps  # noqa: E402
from skdynamo._embedder import reduce_behaviour, state_geometry  # noqa: E402
from skdynamo._targets import reduce_hidden  # noqa: E402
from skdynamo.datasets import make_cognitive_population, make_hidden_head_population  # noqa: E402

from bench_fidelity import HEADS  # noqa: E402

BLOCKS = ("outputs", "states", "geometry")


def load(name):
    if name == "heads":
        pop = make_hidden_head_population(**HEADS, n_jobs=1)
        return pop, pop.group, pop.learned
    pop = make_cognitive_population(n_jobs=1)
    return pop, pop.task, np.ones(len(pop.models), dtype=bool)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("population", choices=("heads", "cognitive"))
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    pop, labels, scored = load(args.population)
    labels = np.asarray(labels)[scored]
    k = len(np.unique(labels))

    def ari(features):
        pred = KMeans(k, n_init=10, random_state=args.seed).fit_predict(features[scored])
        return adjusted_rand_score(labels, pred)

    emb = DynamoEmbedder(probe_inputs=pop.probe_inputs, random_state=args.seed)
    start = time.perf_counter()
    Z = emb.fit_transform(pop.models)
    sc = emb.emulation_scores_
    print(f"{args.population}, random_state={args.seed}: fit {time.perf_counter() - start:.0f} s "
          f"(1 torch thread), {len(emb.history_)} epochs, converged={emb.converged_}, "
          f"output R2 mean {np.mean(sc.output_r2):.4f}, hidden R2 mean "
          f"{np.mean(sc.hidden_r2):.4f}; {int(scored.sum())} members scored, k={k}")
    print(f"  map coordinates                  ARI {ari(Z):.3f}")
    y, g = emb._emulate(emb.embeddings_)
    parts = dict(outputs=y, states=g.reshape(len(g), -1), geometry=state_geometry(g))
    spread = {n: max(float(np.sqrt(((a - a.mean(0)) ** 2).sum(1).mean())), 1e-12)
              for n, a in parts.items()}
    for r in (1, 2, 3):
        for combo in itertools.combinations(BLOCKS, r):
            feats = np.hstack([parts[n] / spread[n] for n in combo])
            print(f"  {' + '.join(combo):32s} ARI {ari(reduce_behaviour(feats)[0]):.3f}")
    full = reduce_behaviour(emb.behaviour())[0]
    print(f"  emb.behaviour() (the default)    ARI {ari(full):.3f}")
    if args.population == "heads":
        cross_r2(emb, pop, Z)


def cross_r2(emb, pop, Z):
    """Held-out R^2 of member j's hidden targets from the meta-model's states at member
    i's embedding (a ridge map per pair), averaged over the (group, group) blocks."""
    x = torch.from_numpy(pop.probe_inputs)
    tr, va = emb._train_idx, emb._valid_idx
    with torch.no_grad():
        g = _run(emb.meta_model_, x, torch.as_tensor(Z, dtype=torch.float32)[:, None])[1]
        targets = [reduce_hidden(m.rnn(x)[0].numpy(), tr, emb.n_pcs) for m in pop.models]
    g = g[:, 0].double()
    n = len(Z)
    R = np.zeros((n, n))
    for j, h in enumerate(targets):
        h = torch.from_numpy(h).double()
        w = ridge_maps(g[:, tr], h[tr][None].expand(n, *h[tr].shape))
        err = ((_apply_maps(g[:, va], w) - h[va]) ** 2).sum((1, 2, 3))
        R[:, j] = (1 - err / ((h[va] - h[va].mean((0, 1))) ** 2).sum()).numpy()
    groups = list(dict.fromkeys(pop.group))
    learned = np.asarray(pop.learned)
    print("  hidden R^2 of column group's members from the states at row group's "
          "embeddings (learned members):")
    print("    " + " ".join(f"{c:>12s}" for c in groups))
    for a in groups:
        rows = (pop.group == a) & learned
        print(f"    {a:12s}" + " ".join(
            f"{R[np.ix_(rows, (pop.group == b) & learned)].mean():12.3f}" for b in groups))


if __name__ == "__main__":
    main()

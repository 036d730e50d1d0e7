"""Study: does the meta-model at a member's embedding carry dynamics the member lacks?

    PYTHONPATH=. OMP_NUM_THREADS=1 python benchmarks/study_reverse_maps.py --seeds 0 1   # ~5 min

DYNAMO's hidden term asks only that a member's PCA-reduced states be a linear read-out of
the meta-model's states at its embedding (``V_n g``). A meta-model region whose dynamics
hold *more* than a member's (say the leaky integration plus a delayed echo) emulates that
member as well as a region that holds exactly its dynamics, so where members whose
computations nest (plain integrators inside integrators with a removed echo head) land
can depend on the seed. This fits ``DynamoEmbedder(probe_inputs=pop.probe_inputs,
random_state=seed)`` on ``bench_fidelity.py``'s ``heads`` population and prints, per
group and cell type (members that learned), the held-out R^2 of the *forward* ridge map
(meta-model states at the member's embedding -> the member's 10 principal components, what
the fit optimises) and of the *reverse* map (the member's components -> the meta-model's
states: how much of what the meta-model does there the member also does), with k-means
(k=3) on ``DynamoCluster``'s default features, per group and cell. Ridge maps are fitted on
the training probes and scored on the held-out ones. Nothing is stored.
"""

import argparse
import time
import warnings

import numpy as np
import torch
from sklearn.cluster import KMeans

from bench_fidelity import HEADS
from skdynamo import DynamoEmbedder
from skdynamo._codes import _run
from skdynamo._embedder import reduce_behaviour
from skdynamo.datasets import make_hidden_head_population


def ridge_r2(a_train, b_train, a_test, b_test, ridge=1e-3):
    """Held-out R^2 of the ridge map a -> b (with intercept), pooled over b's columns."""
    def design(a):
        return np.hstack([a, np.ones((len(a), 1))])
    x = design(a_train)
    w = np.linalg.solve(x.T @ x + ridge * len(x) * np.eye(x.shape[1]), x.T @ b_train)
    resid = design(a_test) @ w - b_test
    return 1 - (resid ** 2).sum() / ((b_test - b_test.mean(0)) ** 2).sum()


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1])
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    pop = make_hidden_head_population(**HEADS, n_jobs=1)
    group, cell = np.asarray(pop.group), np.asarray(pop.cell)
    learned = np.asarray(pop.learned, bool)
    for seed in args.seeds:
        t0 = time.perf_counter()
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            emb = DynamoEmbedder(probe_inputs=pop.probe_inputs, random_state=seed).fit(pop.models)
        print(f"random_state={seed}: fit {time.perf_counter() - t0:.0f} s, {emb.n_iter_} "
              f"epochs, torch threads {torch.get_num_threads()}", flush=True)
        rec = emb.family_.record_targets(pop.models, emb.probe_inputs_, emb._train_idx)
        tr, va = emb._train_idx, emb._valid_idx
        with torch.no_grad():
            _, g = _run(emb.meta_model_, torch.as_tensor(emb.probe_inputs_, dtype=torch.float32),
                        torch.as_tensor(emb.embeddings_, dtype=torch.float32)[:, None])
        g = g[:, 0].numpy().astype(np.float64)                      # (N, P, T, width)
        features = reduce_behaviour(emb.behaviour())[0]
        clusters = np.full(len(group), -1)
        clusters[learned] = KMeans(3, n_init=10, random_state=seed).fit_predict(
            features[learned])
        for name in np.unique(group[learned]):
            for kind in ("rnn", "gru", "lstm"):
                members = np.flatnonzero((group == name) & (cell == kind) & learned)
                if not len(members):
                    continue
                fw, rv = [], []
                for i in members:
                    h, s = rec.hidden[i].astype(np.float64), g[i]
                    flat = lambda a, idx: a[idx].reshape(-1, a.shape[-1])  # noqa: E731
                    fw.append(ridge_r2(flat(s, tr), flat(h, tr), flat(s, va), flat(h, va)))
                    rv.append(ridge_r2(flat(h, tr), flat(s, tr), flat(h, va), flat(s, va)))
                print(f"  {name:12s} {kind:5s} forward {np.mean(fw):.3f}  reverse "
                      f"{np.mean(rv):.3f}  clusters {clusters[members].tolist()}", flush=True)


if __name__ == "__main__":
    main()

"""Which members' hidden states the default fit misses, and what the missed part is.

Quoted in README.md ("Measured figures") and docs/fidelity.md; 1 torch thread::

    PYTHONPATH=. OMP_NUM_THREADS=1 python benchmarks/study_hidden_miss.py --seed 0

Fits ``DynamoEmbedder(probe_inputs=pop.probe_inputs, random_state=--seed)`` on the
default population (``make_rnn_population()``, as ``bench_embedder.py`` does) and prints,
for every member, its held-out hidden R^2 (``emulation_scores_``) beside the fraction of
its hidden variance that is *input-independent* (the variance of the probe-mean
trajectory of its PCA targets: what the member does whatever the probe). For the
``--worst`` members with the lowest hidden R^2 it prints each principal component's
share of the variance, the R^2 of the best linear map from the meta-model's states at
the member's embedding (ridge, fitted on the even probes, scored on the odd ones: what
any map ``V_n`` could reach), the input-independent share of that component and the
lag-1 autocorrelation of its probe-mean trajectory (near -1: a period-2 oscillation).

The member's PCA targets are recomputed on all probes here (the fit's use its training
probes), so the components match the fit's up to that difference. Nothing is stored.
"""

import argparse
import time
import warnings

import numpy as np
import torch
from scipy.stats import spearmanr

from skdynamo import DynamoEmbedder
from skdynamo._codes import _apply_maps, _run, ridge_maps
from skdynamo.datasets import make_rnn_population


def ridge_r2(states, targets):
    """Per-component R^2 on the odd probes of the ridge map fitted on the even ones
    (``transform``'s closed-form map, :func:`skdynamo._codes.ridge_maps`)."""
    weight = ridge_maps(states[::2], targets[::2])
    pred, held = _apply_maps(states[1::2], weight), targets[1::2]
    res = ((pred - held) ** 2).sum((0, 1))
    return (1 - res / ((held - held.mean((0, 1))) ** 2).sum((0, 1))).numpy()


def input_independent(targets):
    """Share of each component's variance (and of the total) in its probe-mean trajectory."""
    centred = targets - targets.mean((0, 1))
    total = (centred ** 2).mean((0, 1))
    mean_traj = centred.mean(0)                                    # (T, k)
    per_pc = (mean_traj ** 2).mean(0) / total
    return per_pc, float((mean_traj ** 2).mean(0).sum() / total.sum())


def lag1(x):
    x = x - x.mean()
    return float((x[1:] * x[:-1]).sum() / (x ** 2).sum())


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seed", type=int, default=0, help="random_state of the fit")
    parser.add_argument("--worst", type=int, default=2, help="members analysed in detail")
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        pop = make_rnn_population(n_jobs=1)
    start = time.perf_counter()
    emb = DynamoEmbedder(probe_inputs=pop.probe_inputs, random_state=args.seed).fit(pop.models)
    print(f"fit {time.perf_counter() - start:.1f} s, {emb.n_iter_} epochs, converged "
          f"{emb.converged_}, {torch.get_num_threads()} torch thread(s)")
    probes = emb.probe_inputs_
    rec = emb.family_.record_targets(pop.models, probes, np.arange(len(probes)))
    hid_r2 = np.asarray(emb.emulation_scores_.hidden_r2)
    out_r2 = np.asarray(emb.emulation_scores_.output_r2)
    print(f"\n{'#':>3} {'task':<12} {'cell':<5} {'seed':>4} {'hidden R2':>9} {'output R2':>9} "
          f"{'input-independent share':>23}")
    shares = []
    for i in range(len(pop.models)):
        shares.append(input_independent(rec.hidden[i])[1])
        print(f"{i:>3} {pop.task[i]:<12} {pop.cell[i]:<5} {pop.seed[i]:>4} {hid_r2[i]:>9.4f} "
              f"{out_r2[i]:>9.4f} {shares[-1]:>23.3f}")
    print(f"\nSpearman correlation of hidden R2 with the input-independent share: "
          f"{spearmanr(hid_r2, shares).statistic:.2f}")
    P = torch.as_tensor(probes, dtype=torch.float32)
    for i in np.argsort(hid_r2)[:args.worst]:
        theta = torch.as_tensor(emb.embeddings_[i:i + 1], dtype=torch.float32)[:, None]
        with torch.no_grad():
            _, g = _run(emb.meta_model_, P, theta)
        H = rec.hidden[i].astype(np.float64)
        r2 = ridge_r2(g[0, 0].double(), torch.as_tensor(H))
        var = H.reshape(-1, H.shape[-1]).var(0)
        per_pc, _ = input_independent(H)
        print(f"\nmember {i} ({pop.task[i]}/{pop.cell[i]}/seed {pop.seed[i]}): hidden R2 "
              f"{hid_r2[i]:.4f}; overall ridge R2 {1 - ((1 - r2) * var).sum() / var.sum():.4f}")
        print(f"  {'PC':>3} {'variance share':>14} {'ridge R2':>9} {'input-independent':>17} "
              f"{'lag-1 autocorr. of probe mean':>29}")
        for k in range(min(6, H.shape[-1])):
            print(f"  {k + 1:>3} {var[k] / var.sum():>14.3f} {r2[k]:>9.3f} {per_pc[k]:>17.3f} "
                  f"{lag1(H[..., k].mean(0)):>29.2f}")


if __name__ == "__main__":
    main()

"""Benchmark of ``DynamoEmbedder.transform``: time per model and quality against the
previous search, at 100 and 1,000 models.

    PYTHONPATH=. OMP_NUM_THREADS=1 python benchmarks/bench_transform.py --threads 1
    python benchmarks/bench_transform.py --sizes 100 --weights /tmp/fit.pt   # reuse a fit
    PYTHONPATH=/tmp/old OMP_NUM_THREADS=1 python benchmarks/bench_transform.py \
        --weights /tmp/fit.pt --time-only 1000    # one transform call, of another checkout

The embedder is fitted with its defaults on ``make_rnn_population()`` (27 RNN/GRU/LSTM on
flip-flop, integration and delay; about 3-5 minutes at one thread), or loaded from
``--weights`` when that file exists (written there otherwise).

Models embedded
---------------
quality set : the 9 held-out seeds ``make_rnn_population(n_seeds=1, seed_offset=100)``,
    an exact twin (hidden units permuted, signs flipped for tanh RNNs:
    ``permute_hidden_units``) of 9 members (every third), and a perturbed copy of 9 others
    (every weight plus Gaussian noise of 2% of that tensor's standard deviation).
N = 100, 1,000 : members derived cheaply from the 36 trained networks (27 members and 9
    held-out seeds): network ``i`` is base ``i % 36`` with weight noise of 1-4% of each
    tensor's standard deviation (seeded by ``i``), then its hidden units permuted; every
    tenth network is an exact twin of the one before it.

Figures
-------
record / search ms per model : wall time of ``emb.record`` (running the networks on the
    256 probes, 100 models at a time), and of ``emb.transform(models)`` minus that (PCA
    targets and the embedding search), divided by the number of models; ``--threads``
    torch threads, ``n_jobs=None``. Peak RSS is the process's maximum so far.
quality vs the previous search : the previous default search (every candidate scored, the
    2 best refined by 40 Adam steps at learning rate 0.05 on all 32 search probes:
    ``fit_codes(..., n_starts=2, max_iter=40, lr=0.05, n_refine=32)``, recording
    included in its time) run on the quality set and on ``--reference`` models of each
    size, timed in the same run: held-out output
    and hidden R^2 (as ``emulation_report`` measures them) of both, and the distance between the two
    embeddings of each model divided by the mean distance between training embeddings.
twins : largest distance between an exact twin's embedding and its original's, divided
    by the same mean distance.

``--time-only N`` times one ``transform`` call of N derived networks with the fit of
``--weights`` and prints it (nothing stored): run it with ``PYTHONPATH`` set to two
checkouts, one after the other, to compare two versions of the code on one machine.

Results go to ``benchmarks/results/transform.json``.
"""

import argparse
import copy
import json
import os
import resource
import time
from pathlib import Path

import numpy as np
import torch

import skdynamo
from skdynamo import DynamoEmbedder, load_weights, save_weights
from skdynamo._codes import fit_codes, search_candidates
from skdynamo.datasets import make_rnn_population, permute_hidden_units

from _provenance import provenance

RESULTS = Path(__file__).resolve().parent / "results" / "transform.json"


def perturbed(model, sigma, seed):
    """A copy of ``model`` with Gaussian noise of ``sigma`` x each tensor's std added."""
    net = copy.deepcopy(model)
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in net.parameters():
            p.add_(sigma * p.std() * torch.randn(p.shape, generator=gen))
    return net.eval()


def derived_population(bases, n):
    """``n`` networks derived from ``bases``: noise, permuted units, every tenth a twin."""
    models, twins = [], []
    for i in range(n):
        if i % 10 == 9:
            models.append(permute_hidden_units(models[-1], random_state=10_000 + i))
            twins.append((i - 1, i))
            continue
        sigma = 0.01 + 0.03 * (i % 7) / 6
        base = perturbed(bases[i % len(bases)], sigma, seed=i)
        models.append(permute_hidden_units(base, random_state=i))
    return models, twins


def previous_search(emb, models):
    """Embeddings by the previous default search (2 starts x 40 Adam steps at lr 0.05 on
    all 32 search probes), on the same recordings and candidates as ``transform``."""
    family = emb._current_family()
    probes = emb.probe_inputs_
    rec = family.record_targets(models, probes, emb._train_idx,
                                output_shape=emb._output_shape)
    tr = emb._train_idx
    sub = tr[np.linspace(0, len(tr) - 1, min(len(tr), family.n_search_probes)).astype(int)]
    t = emb._torch
    theta, _ = fit_codes(emb.meta_model_, t(probes[sub]), t(rec.outputs[:, sub]),
                         t(rec.hidden[:, sub]), t(rec.scales),
                         t(search_candidates(emb.embeddings_)), loss=emb._current_loss(),
                         n_starts=2, max_iter=40, lr=0.05, n_refine=len(sub), chunk=16)
    return theta.astype(np.float64)


def held_out_r2(emb, models, theta):
    """Held-out output and hidden R^2 of each model at the embeddings ``theta``."""
    from skdynamo._codes import emulation_r2
    family = emb._current_family()
    probes = emb.probe_inputs_
    rec = family.record_targets(models, probes, emb._train_idx,
                                output_shape=emb._output_shape)
    t, tr, va = emb._torch, emb._train_idx, emb._valid_idx
    train = (t(probes[tr]), t(rec.outputs[:, tr]), t(rec.hidden[:, tr]))
    valid = (t(probes[va]), t(rec.outputs[:, va]), t(rec.hidden[:, va]))
    out, hid, _ = emulation_r2(emb.meta_model_, t(theta), train, valid,
                               loss=emb._current_loss())
    return out, hid


def timed_transform(emb, models):
    t0 = time.perf_counter()
    for i in range(0, len(models), 100):                # blocks: bounded memory
        emb.record(models[i:i + 100])
    record_s = time.perf_counter() - t0
    t0 = time.perf_counter()
    theta = emb.transform(models)
    total_s = time.perf_counter() - t0
    n = len(models)
    return theta, 1e3 * record_s / n, 1e3 * max(total_s - record_s, 0.0) / n


def compare(emb, models, theta, scale, label):
    """Quality of ``theta`` against the previous search on ``models`` (timed)."""
    t0 = time.perf_counter()
    ref = previous_search(emb, models)
    ref_ms = 1e3 * (time.perf_counter() - t0) / len(models)
    out, hid = held_out_r2(emb, models, theta)
    out0, hid0 = held_out_r2(emb, models, ref)
    dist = np.linalg.norm(theta - ref, axis=1) / scale
    row = dict(set=label, n=len(models), previous_ms_per_model=ref_ms,
               output_r2=float(out.mean()), output_r2_previous=float(out0.mean()),
               worst_output_r2_drop=float(np.max(out0 - out)),
               hidden_r2=float(hid.mean()), hidden_r2_previous=float(hid0.mean()),
               distance_mean=float(dist.mean()), distance_max=float(dist.max()))
    print(f"  {label:<22} n={len(models):>3}: output R^2 {row['output_r2']:.4f} vs previous "
          f"{row['output_r2_previous']:.4f} (worst drop {row['worst_output_r2_drop']:+.4f}), "
          f"hidden R^2 {row['hidden_r2']:.4f} vs {row['hidden_r2_previous']:.4f}; distance "
          f"to the previous result / mean distance: mean {row['distance_mean']:.4f}, max "
          f"{row['distance_max']:.4f}; previous search {ref_ms:.0f} ms per model", flush=True)
    return row


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threads", type=int, default=1, help="torch threads (default 1)")
    parser.add_argument("--sizes", type=int, nargs="+", default=[100, 1000])
    parser.add_argument("--reference", type=int, default=18,
                        help="models of each size also embedded by the previous search")
    parser.add_argument("--weights", default=None,
                        help="weights file of the fit: loaded if it exists, else written")
    parser.add_argument("--time-only", type=int, default=None, metavar="N",
                        help="time one transform call of N derived networks and exit")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    threads = torch.get_num_threads()
    print(f"torch {torch.__version__}, {threads} torch threads, {os.cpu_count()} cores, "
          f"OMP_NUM_THREADS={os.environ.get('OMP_NUM_THREADS')}")

    pop = make_rnn_population()
    held = make_rnn_population(n_seeds=1, seed_offset=100)
    if args.weights and Path(args.weights).exists():
        # A stored fit keeps the transform settings it was saved with: use the defaults.
        defaults = DynamoEmbedder().get_params()
        emb = load_weights(args.weights).set_params(
            n_starts=defaults["n_starts"], transform_max_iter=defaults["transform_max_iter"])
        print(f"[fit] loaded {args.weights}")
        fit_s = None
    else:
        t0 = time.perf_counter()
        emb = DynamoEmbedder(probe_inputs=pop.probe_inputs, random_state=0).fit(pop.models)
        fit_s = time.perf_counter() - t0
        print(f"[fit] {len(pop.models)} models in {fit_s:.0f} s ({threads} threads)")
        if args.weights:
            save_weights(emb, args.weights)
    if args.time_only:
        models, _ = derived_population(list(pop.models) + list(held.models), args.time_only)
        emb.transform(models[:8])                                   # warm-up
        t0 = time.perf_counter()
        emb.transform(models)
        ms = 1e3 * (time.perf_counter() - t0) / len(models)
        print(f"skdynamo from {Path(skdynamo.__file__).parent}: transform {ms:.1f} ms per "
              f"model over {len(models)} networks, recording included ({threads} threads)")
        return
    Z = emb.embeddings_
    scale = float(np.linalg.norm(Z[:, None] - Z[None], axis=-1).sum() / (len(Z) * (len(Z) - 1)))
    print(f"transform settings: n_starts={emb.n_starts}, transform_max_iter="
          f"{emb.transform_max_iter}; mean distance between training embeddings {scale:.3f}")
    result = dict(provenance=provenance(torch), n_starts=emb.n_starts,
                  transform_max_iter=emb.transform_max_iter, fit_s=fit_s, quality=[],
                  sizes=[])

    # 1. Quality set: held-out seeds, exact twins and perturbed copies of the members.
    print("\n[quality] against the previous search, same recordings and candidates")
    originals = list(pop.models[::3])
    twins = [permute_hidden_units(m, random_state=100 + i) for i, m in enumerate(originals)]
    noisy = [perturbed(m, 0.02, seed=i) for i, m in enumerate(pop.models[1::3])]
    for label, models in (("held-out seeds", list(held.models)), ("exact twins", twins),
                          ("perturbed copies", noisy)):
        theta = emb.transform(models)
        row = compare(emb, models, theta, scale, label)
        if label == "exact twins":
            own = emb.transform(originals)
            row["twin_distance_max"] = float(np.linalg.norm(theta - own, axis=1).max() / scale)
            row["drift_from_fit_max"] = float(np.linalg.norm(own - Z[::3], axis=1).max()
                                              / scale)
            print(f"  twin vs its original: max distance / mean distance "
                  f"{row['twin_distance_max']:.2e}; members move from their fitted "
                  f"embeddings by at most {row['drift_from_fit_max']:.4f}")
        result["quality"].append(row)

    # 2. Speed at scale, with the previous search on a subset.
    bases = list(pop.models) + list(held.models)
    for n in args.sizes:
        models, pairs = derived_population(bases, n)
        emb.transform(models[:8])                                   # warm-up
        theta, rec_ms, search_ms = timed_transform(emb, models)
        twin = max(np.linalg.norm(theta[i] - theta[j]) for i, j in pairs) / scale
        print(f"\n[N={n}] transform {rec_ms + search_ms:.1f} ms per model: recording "
              f"{rec_ms:.1f} + targets and search {search_ms:.1f} ({threads} threads); "
              f"exact twins: max distance / mean distance {twin:.2e}", flush=True)
        peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
        print(f"  process peak RSS so far {peak:.0f} MB")
        row = dict(n=n, record_ms_per_model=rec_ms, search_ms_per_model=search_ms,
                   total_ms_per_model=rec_ms + search_ms, twin_distance_max=float(twin),
                   peak_rss_mb=peak)
        k = min(args.reference, n)
        pick = np.random.RandomState(n).choice(n, k, replace=False)
        row["reference"] = compare(emb, [models[i] for i in pick], theta[pick], scale,
                                   f"N={n} subset")
        row["speedup_vs_previous"] = row["reference"]["previous_ms_per_model"] / row[
            "total_ms_per_model"]
        print(f"  speed-up over the previous search (recording included, same run): "
              f"{row['speedup_vs_previous']:.0f}x")
        result["sizes"].append(row)

    RESULTS.parent.mkdir(exist_ok=True)
    RESULTS.write_text(json.dumps(result, indent=2))
    print(f"\nwrote {RESULTS}")


if __name__ == "__main__":
    main()

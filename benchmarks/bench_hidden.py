"""Benchmark: outputs agree, hidden computation differs.

    OMP_NUM_THREADS=1 python benchmarks/bench_hidden.py             # headline + variants
    OMP_NUM_THREADS=1 python benchmarks/bench_hidden.py --only default n_components=4

The population is :func:`skdynamo.datasets.make_hidden_head_population` with its defaults:
18 networks, 3-bit flip-flop x RNN / GRU / LSTM x 3 seeds x {plain, hidden_head}, hidden
32. Half were trained jointly with an integration head that was then removed, so every
member outputs only the flip-flop. First run trains them on one CPU thread (~3 min); they
are cached (``SKDYNAMO_DATA`` or ``~/skdynamo_data``).

For every row: ARI of k-means (k=2, ``n_init=10``) on the embeddings against the
``hidden_head`` label, over the whole population and within each cell type (the
embedding of the whole population restricted to that cell's 6 members), and "centred":
over the whole population after subtracting each cell type's mean embedding (the
architecture is known to the user; this asks whether the hidden-head axis is shared
across cells even when cell type dominates). Rows:

- DYNAMO with the DynamoEmbedder defaults (``probe_inputs`` and ``random_state`` only):
  the headline;
- DYNAMO variants: ``n_components``, ``hidden_weight`` and the probes (denser pulses;
  sequences twice the training length, at three seeds), plus extra rows on request;
- output space (``OutputSpaceEmbedding``) on the same probes, 2 and 4 components;
- weight space (``WeightSpaceEmbedding``) per cell only (it needs one architecture).

Results are printed and written to ``benchmarks/results/hidden.json``.
"""

import argparse
import json
import time
from pathlib import Path

import numpy as np
import torch
from sklearn.cluster import KMeans
from sklearn.metrics import adjusted_rand_score

torch.set_num_threads(1)

from skdynamo import DynamoEmbedder  # noqa: E402
from skdynamo.baselines import OutputSpaceEmbedding, WeightSpaceEmbedding  # noqa: E402
from skdynamo.datasets import (make_flipflop, make_hidden_head_population,  # noqa: E402
                               make_random_probes)

ROOT = Path(__file__).resolve().parents[1]
CELLS = ("rnn", "gru", "lstm")


def _probes(name, pop):
    """Probe sets: the population's task inputs and alternatives."""
    if name == "task":
        return pop.probe_inputs
    if name == "random":
        return make_random_probes(256, 50, 3, random_state=0)
    if name == "dense":      # pulse_prob 0.2: larger integrals, more bit flips
        return make_flipflop(256, 50, 3, pulse_prob=0.2, random_state=0)[0]
    if name == "long":       # 100 steps: integrals drift further than in training
        return make_flipflop(128, 100, 3, random_state=0)[0]
    raise ValueError(name)


# name -> (DynamoEmbedder keyword arguments beyond probe_inputs/random_state, probes)
# The extra rows were measured once and changed nothing (docs/applications.md); pass their
# names to --only to rerun them.
DYNAMO_ROWS = {
    "default": ({}, "task"),
    "n_components=4": ({"n_components": 4}, "task"),
    "hidden_weight=3": ({"hidden_weight": 3.0}, "task"),
    "dense probes": ({}, "dense"),
    "long probes": ({}, "long"),
    "long probes, random_state=1": ({"random_state": 1}, "long"),
    "long probes, random_state=2": ({"random_state": 2}, "long"),
}
EXTRA_ROWS = {
    "n_components=3": ({"n_components": 3}, "task"),
    "hidden_weight=0.3": ({"hidden_weight": 0.3}, "task"),
    "n_pcs=3": ({"n_pcs": 3}, "task"),
    "n_pcs=20": ({"n_pcs": 20}, "task"),
    "random probes": ({}, "random"),
    "dense probes, random_state=1": ({"random_state": 1}, "dense"),
    "dense probes, random_state=2": ({"random_state": 2}, "dense"),
    "long probes, n_components=4": ({"n_components": 4}, "long"),
}


def _ari(emb, labels):
    pred = KMeans(2, n_init=10, random_state=0).fit_predict(emb)
    return float(adjusted_rand_score(labels, pred))


def _centred(emb, pop):
    """The embedding minus each cell type's mean (the architecture is known to the user)."""
    emb = np.array(emb, dtype=float)
    for c in CELLS:
        emb[pop.cell == c] -= emb[pop.cell == c].mean(0)
    return emb


def _scores(emb, pop):
    out = {"all": _ari(emb, pop.hidden_head),
           "cell_centred": _ari(_centred(emb, pop), pop.hidden_head)}
    for c in CELLS:
        m = pop.cell == c
        out[c] = _ari(emb[m], pop.hidden_head[m])
    return out


def _row(name, scores, **extra):
    cells = "  ".join(f"{c} {scores.get(c, float('nan')):6.3f}" for c in CELLS)
    print(f"{name:34s} all {scores.get('all', float('nan')):6.3f}  centred "
          f"{scores.get('cell_centred', float('nan')):6.3f}  {cells}  "
          + "  ".join(f"{k}={v}" for k, v in extra.items()), flush=True)


def main(only=None):
    t0 = time.perf_counter()
    pop = make_hidden_head_population(verbose=True)
    train_s = time.perf_counter() - t0
    print(pop.DESCR)
    print(f"population loaded/trained in {train_s:.0f} s; flip-flop R2 "
          f"{pop.score.min():.3f}..{pop.score.max():.3f}; removed-head R2 "
          f"{np.nanmin(pop.head_score):.3f}..{np.nanmax(pop.head_score):.3f}; ridge decoding "
          f"of the integral from hidden states: plain "
          f"{pop.decoding_score[~pop.hidden_head].mean():.3f}, hidden_head "
          f"{pop.decoding_score[pop.hidden_head].mean():.3f}")
    res = dict(population=dict(
        DESCR=pop.DESCR, group=pop.group.tolist(), cell=pop.cell.tolist(),
        seed=pop.seed.tolist(), score=pop.score.tolist(),
        head_score=[None if np.isnan(s) else s for s in pop.head_score.tolist()],
        decoding_score=pop.decoding_score.tolist(), train_or_load_s=train_s),
        metric="ARI of KMeans(k=2, n_init=10) against hidden_head; per cell: the same "
               "embedding restricted to that cell's members", rows={})
    print(f"\n{'method':34s} ARI against hidden_head (k-means, k=2)")

    for probes in ("task", "random", "dense", "long"):
        if only and f"output {probes}" not in only and "output" not in only:
            continue
        X = _probes(probes, pop)
        for k in (2, 4):
            name = f"output space, {probes} probes, {k}-D"
            emb = OutputSpaceEmbedding(X, n_components=k, random_state=0).fit_transform(
                pop.models)
            res["rows"][name] = s = _scores(emb, pop)
            s["embedding"] = emb.tolist()
            _row(name, s)
    if not only or "weight" in only:
        s = {}
        for c in CELLS:
            m = pop.cell == c
            emb = WeightSpaceEmbedding(2, random_state=0).fit_transform(
                [pop.models[i] for i in np.flatnonzero(m)])
            s[c] = _ari(emb, pop.hidden_head[m])
        res["rows"]["weight space (per cell), 2-D"] = s
        _row("weight space (per cell), 2-D", s, note="all: n/a (mixed architectures)")

    rows = {**DYNAMO_ROWS, **EXTRA_ROWS} if only else DYNAMO_ROWS
    for name, (kw, probes) in rows.items():
        if only and name not in only:
            continue
        t = time.perf_counter()
        est = DynamoEmbedder(probe_inputs=_probes(probes, pop), **{"random_state": 0, **kw})
        est.fit(pop.models)
        fit_s = time.perf_counter() - t
        s = _scores(est.embeddings_, pop)
        fid = {k: float(np.median(v)) for k, v in est.emulation_scores_.items()
               if np.ndim(v) == 1 and len(v) == len(pop.models)}
        s.update(fit_s=fit_s, probes=probes, params=kw, epochs=len(est.history_),
                 median_emulation=fid, embedding=est.embeddings_.tolist())
        res["rows"][f"DYNAMO {name}"] = s
        _row(f"DYNAMO {name}", s, fit_s=f"{fit_s:.0f}", epochs=len(est.history_),
             **{k: f"{v:.3f}" for k, v in fid.items()})

    out = ROOT / "benchmarks" / "results" / "hidden.json"
    if only:
        out = out.with_name("hidden_partial.json")
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(res, indent=2))
    print(f"\nwrote {out} ({time.perf_counter() - t0:.0f} s)")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--only", nargs="*", help="row names (DYNAMO rows, 'output', "
                        "'weight')")
    main(parser.parse_args().only)

"""Study: what moves the default meta-model's fidelity on one population, at one seed.

    PYTHONPATH=. OMP_NUM_THREADS=1 python benchmarks/study_fidelity_levers.py default --seed 0
    PYTHONPATH=. OMP_NUM_THREADS=1 python benchmarks/study_fidelity_levers.py default \\
        --variant ema --variant n_components=4 --variant hidden_weight=0.5 \\
        --variant probe_inputs=null --variant random-probes=512

Each variant fits ``DynamoEmbedder(probe_inputs=pop.probe_inputs, random_state=--seed)``
with one change (``--variant``, repeatable; ``lr=0.02,tol=0.005`` sets two at once;
``defaults`` when none is given) and prints,
one JSON line per fit: fit time, epochs, whether it converged, held-out output and hidden
R^2 (mean, min) and the same on the *training* probes (a small gap says the fit is
limited by what the meta-model fits, not by how it generalises), held-out output R^2 by
task and by cell, the ARI by task of k-means on the map and of ``DynamoCluster``,
and the held-out loss against training time (every 10th epoch: seconds, loss).

Variants: ``PARAM=VALUE`` sets one estimator parameter, the value read as JSON when it
parses (``n_components=4``, ``hidden_weight=0.5``, ``conditioning=bilinear``;
``probe_inputs=null`` is what a user who passes no probes gets: 256 seeded random
sequences of 50 steps); ``random-probes=N`` replaces the task probes by N of
:func:`skdynamo.datasets.make_random_probes` (50 steps, seeded by ``--seed``); ``ema``
trains the defaults and also keeps, as passive shadows that do not touch training,
exponential moving averages of every parameter (decays 0.99, 0.995, 0.998, 0.999 per
step), scored at the restored best epoch and at the last one. Populations: ``default``
(``make_rnn_population()``), ``cognitive`` (``make_cognitive_population()``).
"""

import argparse
import copy
import json
import time
import warnings

import numpy as np
import torch
from skorch.callbacks import Callback
from sklearn.cluster import KMeans
from sklearn.frozen import FrozenEstimator
from sklearn.metrics import adjusted_rand_score

from skdynamo import DynamoCluster, DynamoEmbedder
from skdynamo._codes import emulation_r2
from skdynamo._net import bare_module

EMA_DECAYS = (0.99, 0.995, 0.998, 0.999)


class EMAShadows(Callback):
    """Exponential moving averages of the training module's parameters (observers only)."""

    shadows = None  # the clone used by the fit leaves its shadows here

    def on_train_begin(self, net, **kwargs):
        self.current_, self.per_epoch_ = None, []

    def on_batch_end(self, net, training=False, **kwargs):
        if not training:
            return
        state = {k: v.detach().clone().float()
                 for k, v in bare_module(net).state_dict().items()}
        if self.current_ is None:
            self.current_ = {d: copy.deepcopy(state) for d in EMA_DECAYS}
            return
        for d, shadow in self.current_.items():
            for k, v in state.items():
                shadow[k].mul_(d).add_(v, alpha=1 - d)

    def on_epoch_end(self, net, **kwargs):
        self.per_epoch_.append(copy.deepcopy(self.current_))

    def on_train_end(self, net, **kwargs):
        # The convergence callback ends the last epoch before this one's epoch end ran.
        EMAShadows.shadows = self.per_epoch_ + [copy.deepcopy(self.current_)]


def load(name):
    from skdynamo import datasets
    if name == "default":
        pop = datasets.make_rnn_population()
    else:
        pop = datasets.make_cognitive_population()
    return pop


def scores(emb, rec, state=None):
    """Held-out and training-probe R^2 of the fit, or of another state of its module."""
    meta, theta = emb.meta_model_, torch.as_tensor(emb.embeddings_, dtype=torch.float32)
    maps = tuple(torch.as_tensor(m) for m in emb.maps_)
    if state is not None:
        meta = copy.deepcopy(meta)
        meta.load_state_dict({k[5:]: v for k, v in state.items() if k.startswith("meta.")})
        theta, maps = state["embeddings"], (state["map_weight"], state["map_bias"])
    out = {}
    for part, idx in (("train", emb._train_idx), ("held_out", emb._valid_idx)):
        data = tuple(torch.as_tensor(np.asarray(a), dtype=torch.float32) for a in
                     (emb.probe_inputs_[idx], rec.outputs[:, idx], rec.hidden[:, idx]))
        o, h, _ = emulation_r2(meta, theta, None, data, loss=emb.loss_, maps=maps)
        out[part] = dict(out=round(float(o.mean()), 4), out_min=round(float(o.min()), 4),
                         hid=round(float(h.mean()), 4), hid_min=round(float(h.min()), 4))
    return out


def run(pop, name, variant, seed):
    params, callbacks = dict(probe_inputs=pop.probe_inputs, random_state=seed), []
    if variant == "ema":
        callbacks = [("ema", EMAShadows())]
        params["callbacks"] = callbacks
    elif variant.startswith("random-probes="):
        from skdynamo.datasets import make_random_probes
        params["probe_inputs"] = make_random_probes(
            int(variant.split("=")[1]), 50, pop.probe_inputs.shape[-1], random_state=seed)
    elif variant != "defaults":
        for setting in variant.split(","):  # lr=0.02,tol=0.005: several at once
            key, value = setting.split("=")
            try:
                value = json.loads(value)
            except json.JSONDecodeError:
                pass  # a string option
            params[key] = value
    t0 = time.perf_counter()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        emb = DynamoEmbedder(**params).fit(pop.models)
    fit_s = time.perf_counter() - t0
    labels = np.asarray(pop.task)
    learned = np.asarray(pop.learned, bool)
    k = len(np.unique(labels))
    clusters = DynamoCluster(FrozenEstimator(emb), n_clusters=k).fit_predict(pop.models)
    kmeans = KMeans(k, n_init=10, random_state=0).fit_predict(emb.embeddings_[learned])
    rec = emb.family_.record_targets(pop.models, emb.probe_inputs_, emb._train_idx)
    r2 = emb.emulation_scores_.output_r2
    result = dict(population=name, variant=variant, seed=seed, fit_s=round(fit_s, 1),
                  torch_threads=torch.get_num_threads(), epochs=emb.n_iter_,
                  converged=emb.converged_, **scores(emb, rec),
                  out_by_task={t: round(float(r2[labels == t].mean()), 4)
                               for t in np.unique(labels)},
                  out_by_cell={c: round(float(r2[np.asarray(pop.cell) == c].mean()), 4)
                               for c in np.unique(pop.cell)},
                  ari_map=round(adjusted_rand_score(labels[learned], kmeans), 3),
                  ari_cluster=round(adjusted_rand_score(labels[learned], clusters[learned]), 3),
                  # held-out loss against training time, every 10th epoch
                  curve=[(round(float(t), 1), round(float(v), 5)) for t, v in zip(
                      np.cumsum(emb.history_[:, "dur"])[::10],
                      emb.history_[:, "valid_loss"][::10])])
    if variant == "ema":
        best = int(np.argmin(emb.history_[:, "valid_loss"]))
        shadows = EMAShadows.shadows
        at_best = shadows[min(best, len(shadows) - 1)]
        result["ema"] = {str(d): dict(best=scores(emb, rec, at_best[d])["held_out"],
                                      last=scores(emb, rec, shadows[-1][d])["held_out"])
                         for d in EMA_DECAYS}
    print(json.dumps(result), flush=True)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("population", choices=("default", "cognitive"))
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--variant", action="append", default=[])
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    pop = load(args.population)
    for variant in args.variant or ["defaults"]:
        run(pop, args.population, variant, args.seed)


if __name__ == "__main__":
    main()

"""Where the default fit stops, and what the averaging and scale misses come from.

Three measurements quoted in docs/fidelity.md ("Where the fits stop"), 1 torch thread:

    PYTHONPATH=. OMP_NUM_THREADS=1 python benchmarks/study_stopping.py centre flipflop --seed 0
    PYTHONPATH=. OMP_NUM_THREADS=1 python benchmarks/study_stopping.py ema flipflop --seed 0
    PYTHONPATH=. OMP_NUM_THREADS=1 python benchmarks/study_stopping.py rescore 1000

centre TASK : fits ``DynamoAverager`` with the default embedder on the averaging group of
    ``TASK`` (bench_fidelity's: 8 independently initialised GRU-32) and compares the task
    MSE (÷ the members' median) of the meta-model at the centroid, at each member's own
    embedding (median), and at a function-space barycentre: the embedding minimising the
    members' mean search loss (``transform``'s objective, each member's map solved in
    closed form), found by 60 Adam steps from the 3 best of the members' embeddings and
    their centroid, on all training probes. The members' ensemble-mean outputs are given
    for reference.
ema TASK : the same fit with the held-out loss measured (and the weights kept) on an
    exponential moving average of the parameters (decay ``--decay`` per optimiser step)
    instead of Adam's last iterate; a change made here only, by subclassing the private
    ``DynamoNet``. Prints the stopping epoch, the averaging ratio and the held-out loss
    every 10 epochs.
rescore N : fits bench_scale's N-member population (with its 9 twins; the same fit as
    ``bench_scale.py --sizes N``) and compares held-out output and hidden R^2 with the
    fitted embeddings and learned maps, the fitted embeddings with maps re-solved by
    ridge, and ``transform``'s embeddings (3 and 20 refinement steps).

Nothing is stored; every figure is printed.
"""

import argparse
import time

import numpy as np
import torch

from skdynamo import DynamoAverager, DynamoEmbedder
from skdynamo._codes import _chunk_objective, emulation_r2, multi_start_search
from skdynamo._net import DynamoNet, bare_module

from bench_fidelity import load_population, task_mse


def _group(task):
    group = dict(load_population("averaging"))[f"averaging:{task}"]
    return group, float(np.median(group["scores"]))


def centre(task, seed):
    group, median = _group(task)
    models = group["models"]

    def ensemble(x):
        with torch.no_grad():
            return np.mean([m(torch.from_numpy(x)).numpy() for m in models], axis=0)

    print(f"{task}: members' median task MSE {median:.5f}; their ensemble-mean outputs "
          f"{task_mse(ensemble, task) / median:.3f} x the median")
    t0 = time.perf_counter()
    avg = DynamoAverager(DynamoEmbedder(probe_inputs=group["probes"],
                                        random_state=seed)).fit(models)
    emb = avg.embedder_
    print(f"fit {time.perf_counter() - t0:.0f} s, {len(emb.history_)} epochs, converged "
          f"{emb.converged_}")
    family, meta, probes, tr = emb.family_, emb.meta_model_, emb.probe_inputs_, emb._train_idx
    rec = family.record_targets(models, probes, tr, output_shape=emb._output_shape)
    t = emb._torch
    objective = _chunk_objective(meta, t(probes[tr]), t(rec.outputs[:, tr]),
                                 t(rec.hidden[:, tr]), t(rec.scales), emb.loss_)
    Z = avg.member_embeddings_
    starts = t(np.vstack([Z, Z.mean(0, keepdims=True)]).astype(np.float32))
    t0 = time.perf_counter()
    found = multi_start_search(lambda th: objective(th).mean(0, keepdim=True), starts,
                               n_starts=3, max_iter=60, lr=0.01)
    search_s = time.perf_counter() - t0
    bary = found.theta[0].numpy().astype(np.float64)

    def ratio(z):
        return task_mse(family.bake(meta, z), task) / median

    spread = np.linalg.norm(Z - Z.mean(0), axis=1).mean()
    print(f"task MSE / members' median: centroid {ratio(Z.mean(0)):.3f}, barycentre "
          f"{ratio(bary):.3f} (found in {search_s:.0f} s, "
          f"{np.linalg.norm(bary - Z.mean(0)) / spread:.2f} x the members' mean distance "
          f"from the centroid), members' own embeddings (median) "
          f"{np.median([ratio(z) for z in Z]):.3f}")


class EMANet(DynamoNet):
    """DynamoNet whose validation (and so the kept weights) uses an exponential moving
    average of the parameters; training continues from Adam's own iterate."""

    decay = 0.99

    def on_train_begin(self, net, X=None, y=None, **kwargs):
        self._ema, self._raw = None, None
        return super().on_train_begin(net, X=X, y=y, **kwargs)

    def train_step(self, batch, **fit_params):
        out = super().train_step(batch, **fit_params)
        with torch.no_grad():
            params = list(bare_module(self).parameters())
            if self._ema is None:
                self._ema = [p.detach().clone() for p in params]
            else:
                for e, p in zip(self._ema, params):
                    e.lerp_(p, 1 - self.decay)
        return out

    def run_single_epoch(self, iterator, training, prefix, step_fn, **fit_params):
        params = list(bare_module(self).parameters())
        with torch.no_grad():
            if training and self._raw is not None:        # back to Adam's iterate
                for p, r in zip(params, self._raw):
                    p.copy_(r)
                self._raw = None
            elif not training and self._ema is not None:  # validate the average
                self._raw = [p.detach().clone() for p in params]
                for p, e in zip(params, self._ema):
                    p.copy_(e)
        return super().run_single_epoch(iterator, training, prefix, step_fn, **fit_params)


def ema(task, seed, decay):
    import skdynamo._embedder as embedder_module
    group, median = _group(task)
    EMANet.decay = decay
    original = embedder_module.DynamoNet
    embedder_module.DynamoNet = EMANet
    try:
        t0 = time.perf_counter()
        avg = DynamoAverager(DynamoEmbedder(probe_inputs=group["probes"],
                                            random_state=seed)).fit(group["models"])
    finally:
        embedder_module.DynamoNet = original
    emb = avg.embedder_
    print(f"{task}, EMA decay {decay}: fit {time.perf_counter() - t0:.0f} s, "
          f"{len(emb.history_)} epochs, converged {emb.converged_}, averaging ratio "
          f"{task_mse(avg.predict, task) / median:.3f}, output R^2 "
          f"{emb.emulation_scores_.output_r2.mean():.5f}")
    for row in emb.history_:
        if row["epoch"] % 10 == 0:
            print(f"  epoch {row['epoch']}: held-out loss (average) {row['valid_loss']:.6f}, "
                  f"training loss {row['train_loss']:.6f}")


def rescore(n):
    from bench_scale import N_TWINS, population
    from skdynamo.datasets import permute_hidden_units
    pop, models, _, _ = population(n)
    fit_models = models + [permute_hidden_units(pop.models[3 * i], random_state=500 + i)
                           for i in range(N_TWINS)]
    t0 = time.perf_counter()
    emb = DynamoEmbedder(probe_inputs=pop.probe_inputs, random_state=0).fit(fit_models)
    print(f"fit of {len(fit_models)} members: {time.perf_counter() - t0:.0f} s, "
          f"{len(emb.history_)} epochs, converged {emb.converged_}")
    sc = emb.emulation_scores_
    rows = [("fitted embeddings, learned maps", sc.output_r2, sc.hidden_r2)]
    family, probes, tr, va = emb.family_, emb.probe_inputs_, emb._train_idx, emb._valid_idx
    t, parts = emb._torch, []
    for s in range(0, len(fit_models), 64):
        rec = family.record_targets(fit_models[s:s + 64], probes, tr,
                                    output_shape=emb._output_shape)
        train = (t(probes[tr]), t(rec.outputs[:, tr]), t(rec.hidden[:, tr]))
        valid = (t(probes[va]), t(rec.outputs[:, va]), t(rec.hidden[:, va]))
        parts.append(emulation_r2(emb.meta_model_, t(emb.embeddings_[s:s + 64]
                                                    .astype(np.float32)),
                                  train, valid, loss=emb.loss_)[:2])
    rows.append(("fitted embeddings, maps by ridge",
                 *(np.concatenate([p[i] for p in parts]) for i in range(2))))
    for steps in (3, 20):
        emb.set_params(transform_max_iter=steps)
        rep = emb.emulation_report(fit_models)
        rows.append((f"transform's embeddings ({steps} steps), maps by ridge",
                     rep.output_r2, rep.hidden_r2))
    for name, out, hid in rows:
        print(f"  {name}: held-out output R^2 {np.mean(out):.4f}, hidden R^2 "
              f"{np.mean(hid):.4f}")


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="study", required=True)
    for name in ("centre", "ema"):
        p = sub.add_parser(name)
        p.add_argument("task", choices=("flipflop", "delay"))
        p.add_argument("--seed", type=int, default=0)
        p.add_argument("--decay", type=float, default=0.99)
    sub.add_parser("rescore").add_argument("n", type=int)
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    print(f"torch {torch.__version__}, {torch.get_num_threads()} torch threads")
    if args.study == "centre":
        centre(args.task, args.seed)
    elif args.study == "ema":
        ema(args.task, args.seed, args.decay)
    else:
        rescore(args.n)


if __name__ == "__main__":
    main()

"""Training-cost study: what a fit of the default population reaches for its time.

    PYTHONPATH=. OMP_NUM_THREADS=1 python benchmarks/bench_training.py            # ~35 min
    python benchmarks/bench_training.py --only defaults --only cosine-80 --seed 1
    python benchmarks/bench_training.py --table                                   # stored
    python benchmarks/bench_training.py --step-cost                               # ~1 min
    python benchmarks/bench_training.py --cell-cost                               # ~1 min

Each variant fits ``DynamoEmbedder(probe_inputs=pop.probe_inputs, random_state=seed)`` on
``make_rnn_population()`` (27 members, 256 probes x 50 steps) in its own process, at one
torch thread (``--threads N``: N, stored apart), with the changes its name says. Two
kinds of variant:

* **Parameters a user can set**: ``batch_size``, ``n_components`` (``bs64``, ``nc4``...).
* **Changes to the training loop itself**, made here by replacing private pieces, since
  they are not options of the estimator: ``cosine-E`` replaces the learning-rate
  reduction on plateaus and the convergence rule by a fixed schedule (linear warm-up over
  the same 200 steps, then cosine decay to zero at epoch ``E``; the best held-out epoch is
  restored, as by the default rule); ``epoch-pass`` makes an epoch one pass over all the
  training pairs (``skdynamo._net.EPOCH_STEPS`` raised from 32 to 128), which with
  ``batch_size=64`` is 103 steps of 27 x 2 pairs instead of 32; ``member-lr10`` gives
  the embeddings and per-member maps ten times the learning rate.

Figures: wall time of ``fit`` (recording to scoring), epochs run and whether the default
rule converged, the best held-out loss (the training criterion on the held-out pairs:
compare within this table only), held-out output and hidden R^2 (mean, min) from
``emulation_scores_``, ARI of k-means (k=3) on the embeddings against the task, and the
held-out hidden R^2 with every member's map re-solved by ridge least squares on all its
training probes after the fit (``emulation_r2(..., maps=None)``), beside the learned
maps'.

``--cell-cost`` times ``nn.RNN``, ``nn.GRU`` and ``nn.LSTM`` (64 units, 60 steps, 5
inputs) forward and backward at the pairs of a 27- and a 100-member training step, in
float32 and under bfloat16 autocast, and says which reached oneDNN's fused RNN kernel:
why the default meta-model cell is an LSTM on a CPU with bfloat16 instructions.

``--step-cost`` times, at one thread, ``nn.GRU`` (64 units, 50 steps, 5 inputs) forward
and backward per (model, probe) pair at 32-512 pairs, and a hand-written GRU loop (input
projections in one matrix product, one ``addmm`` per step) beside ``nn.GRU`` at 243
pairs: what a training step of the default meta-model costs, and whether a custom kernel
would be cheaper. It also times a GRU whose backward pass is written by hand (a
``torch.autograd.Function``: no autograd graph per step; the constant embedding input
folded into a per-row bias; the weight gradients as one matrix product over all steps;
``tanh`` as ``2 sigmoid(2a) - 1``), checked against ``nn.GRU``'s gradients in float64,
on the meta-model's own input ``[x_t, theta]`` (3 probe inputs, 2 components), best of
five interleaved rounds. Results go to ``benchmarks/results/training.json`` (one entry per
variant and seed, re-read before each write).
"""

import argparse
import json
import math
import os
import sys
import time
import warnings
from pathlib import Path

import numpy as np
from sklearn.cluster import KMeans
from sklearn.metrics import adjusted_rand_score

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "benchmarks" / "results" / "training.json"

#: name -> (estimator parameters, loop changes)
VARIANTS = {
    "defaults": ({}, {}),
    "bs64": ({"batch_size": 64}, {}),
    "bs64-epoch-pass": ({"batch_size": 64}, {"epoch_steps": 128}),
    "cosine-48": ({"max_epochs": 48}, {"cosine": True}),
    "cosine-80": ({"max_epochs": 80}, {"cosine": True}),
    "cosine-48-member-lr10": ({"max_epochs": 48}, {"cosine": True, "member_lr": 10.0}),
    "cosine-48-nc4": ({"max_epochs": 48, "n_components": 4}, {"cosine": True}),
    "cosine-48-nc8": ({"max_epochs": 48, "n_components": 8}, {"cosine": True}),
    "cosine-40-bs64-epoch-pass": ({"max_epochs": 40, "batch_size": 64},
                                  {"cosine": True, "epoch_steps": 128}),
}


def _patch_loop(changes):
    """Apply a variant's changes to the training loop (private pieces; see the docstring)."""
    import skdynamo._embedder as E
    import skdynamo._net as N
    from skorch.callbacks import LRScheduler
    from torch.optim.lr_scheduler import LambdaLR

    if "epoch_steps" in changes:
        N.EPOCH_STEPS = changes["epoch_steps"]
    if "member_lr" in changes:
        init, scale = N.DynamoNet.__init__, changes["member_lr"]

        def patched_init(self, *args, **kwargs):
            groups = [(p, {"lr": kwargs["lr"] * scale}) for p in ("embeddings", "map_*")]
            init(self, *args, optimizer__param_groups=groups, **kwargs)

        N.DynamoNet.__init__ = patched_init
    if not changes.get("cosine"):
        return

    def warmup_cosine(total, warmup):
        """Factor of each group's rate for the optimiser step after ``i`` steps: linear
        warm-up over ``warmup`` steps, then cosine decay to 0 at step ``total``."""
        def factor(i):
            s = i + 1
            if s <= warmup:
                return s / warmup
            return 0.5 * (1 + math.cos(math.pi * min(1.0, (s - warmup) / max(1, total - warmup))))
        return factor

    plan, default_callbacks = E.training_plan, E.DynamoEmbedder._callbacks
    steps = {}

    def recording_plan(*args):
        out = plan(*args)
        steps["per_epoch"] = out[2]
        return out

    def callbacks(self, warmup):
        # The estimator's callbacks, with its warm-up, plateau reduction and convergence
        # rule replaced by the schedule and a rule that never stops early (it restores
        # the best held-out epoch at the end).
        kept = [(n, cb) for n, cb in default_callbacks(self, warmup)
                if n not in ("lr_warmup", "lr_plateau", "early_stopping")]
        total = self.max_epochs * steps["per_epoch"]
        return kept + [
            ("schedule", LRScheduler(policy=LambdaLR, step_every="batch",
                                     lr_lambda=warmup_cosine(total, warmup))),
            ("early_stopping", N.Converged(monitor="valid_loss", patience=10 ** 9,
                                           threshold=0.0, load_best=True))]

    E.training_plan = recording_plan
    E.DynamoEmbedder._callbacks = callbacks


def child(name, seed, threads=1):
    import torch
    torch.set_num_threads(threads)
    params, changes = VARIANTS[name]
    _patch_loop(changes)
    from skdynamo import DynamoEmbedder
    from skdynamo.datasets import make_rnn_population

    pop = make_rnn_population()
    emb = DynamoEmbedder(probe_inputs=pop.probe_inputs, random_state=seed, **params)
    t0 = time.perf_counter()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")   # the cap warning: `converged` records it
        emb.fit(pop.models)
    fit_s = time.perf_counter() - t0
    out = np.asarray(emb.emulation_scores_.output_r2)
    hid = np.asarray(emb.emulation_scores_.hidden_r2)
    ari = adjusted_rand_score(pop.task, KMeans(3, n_init=10, random_state=0)
                              .fit_predict(emb.embeddings_))
    hid_ridge = _ridge_map_r2(emb, pop)
    print(json.dumps(dict(
        variant=name, seed=seed, params=params, loop=changes, fit_s=fit_s,
        epochs=emb.n_iter_, converged=bool(emb.converged_) if not changes.get("cosine")
        else None, steps=int(sum(emb.history_[:, "train_batch_count"])),
        best_valid_loss=float(min(emb.history_[:, "valid_loss"])),
        out_r2_mean=float(out.mean()), out_r2_min=float(out.min()),
        hid_r2_mean=float(hid.mean()), hid_r2_min=float(hid.min()), ari=float(ari),
        hid_r2_ridge_maps=float(hid_ridge.mean()), threads=torch.get_num_threads())))


def _ridge_map_r2(emb, pop):
    """Held-out hidden R^2 with each member's map re-solved by ridge on its training probes."""
    import torch
    from skdynamo._codes import emulation_r2
    rec = emb.family_.record_targets(pop.models, emb.probe_inputs_, emb._train_idx)
    t = lambda a: torch.as_tensor(np.asarray(a), dtype=torch.float32)  # noqa: E731
    p, tr, va = emb.probe_inputs_, emb._train_idx, emb._valid_idx
    with torch.no_grad():
        _, hid, _ = emulation_r2(
            emb.meta_model_, t(emb.embeddings_), (t(p[tr]), t(rec.outputs[:, tr]),
                                                  t(rec.hidden[:, tr])),
            (t(p[va]), t(rec.outputs[:, va]), t(rec.hidden[:, va])), loss=emb.loss_)
    return np.asarray(hid)


def _hand_bptt_gru():
    """A GRU over ``[x_t, theta]`` with a hand-written backward pass (study code)."""
    import torch

    class HandGRU(torch.autograd.Function):
        @staticmethod
        def forward(ctx, x, theta, h0, w_ih, w_hh, b_ih, b_hh):  # x (T, B, F)
            T, B, F = x.shape
            H = h0.shape[1]
            const = torch.addmm(b_ih, theta, w_ih[:, F:].t())
            const[:, :2 * H] += b_hh[:2 * H]
            gi = torch.mm(x.reshape(T * B, F), w_ih[:, :F].t()).view(T, B, 3 * H).add_(const)
            hs = x.new_empty(T + 1, B, H)
            hs[0] = h0
            ghn = b_hh[2 * H:].expand(T, B, H).contiguous()
            rz_, n_ = x.new_empty(T, B, 2 * H), x.new_empty(T, B, H)
            w_rz, w_n = w_hh[:2 * H].t(), w_hh[2 * H:].t()
            for t in range(T):
                h, g = hs[t], gi[t]
                rz = torch.sigmoid(g[:, :2 * H].addmm_(h, w_rz), out=rz_[t])
                a = g[:, 2 * H:].addcmul_(rz[:, :H], ghn[t].addmm_(h, w_n)).mul_(2)
                n = torch.sigmoid(a, out=n_[t]).mul_(2).sub_(1)
                torch.addcmul(n, rz[:, H:], h - n, out=hs[t + 1])
            ctx.save_for_backward(x, theta, hs, rz_, n_, ghn, w_ih, w_hh)
            return hs[1:]

        @staticmethod
        def backward(ctx, dH):
            x, theta, hs, rz_, n_, ghn, w_ih, w_hh = ctx.saved_tensors
            T, B, H = dH.shape
            F = x.shape[2]
            dg, dghn = dH.new_empty(T, B, 3 * H), dH.new_empty(T, B, H)
            dh, one = dH[T - 1].clone(), torch.ones_like(dH[0])
            for t in range(T - 1, -1, -1):
                r, z, n = rz_[t, :, :H], rz_[t, :, H:], n_[t]
                dar, daz, dan = dg[t, :, :H], dg[t, :, H:2 * H], dg[t, :, 2 * H:]
                dhz = dh * z
                torch.sub(dh, dhz, out=dan).mul_(one - n * n)
                torch.mul(dhz, one - z, out=daz).mul_(hs[t] - n)
                torch.mul(dan, r, out=dghn[t])
                torch.mul(dghn[t], ghn[t], out=dar).mul_(one - r)
                dhz.addmm_(dg[t, :, :2 * H], w_hh[:2 * H]).addmm_(dghn[t], w_hh[2 * H:])
                dh = dhz if t == 0 else dhz.add_(dH[t - 1])
            dG, hp = dg.view(T * B, 3 * H), hs[:-1].reshape(T * B, H)
            dw_hh = torch.cat([torch.mm(hp.t(), dG[:, :2 * H]).t(),
                               torch.mm(hp.t(), dghn.view(T * B, H)).t()])
            dsum = dg.sum(0)
            dw_ih = torch.cat([torch.mm(x.reshape(T * B, F).t(), dG).t(),
                               torch.mm(theta.t(), dsum).t()], 1)
            db_ih = dsum.sum(0)
            db_hh = torch.cat([db_ih[:2 * H], dghn.sum((0, 1))])
            return None, torch.mm(dsum, w_ih[:, F:]), dh, dw_ih, dw_hh, db_ih, db_hh

    def run(gru, x, theta, h0):
        return HandGRU.apply(x.transpose(0, 1).contiguous(), theta, h0, gru.weight_ih_l0,
                             gru.weight_hh_l0, gru.bias_ih_l0, gru.bias_hh_l0).transpose(0, 1)
    return run


def _concat_gru(gru, x, theta, h0):
    """``nn.GRU`` on ``[x_t, theta]``, as :class:`skdynamo.nn.ConditionedRNN` runs it."""
    import torch
    return gru(torch.cat([x, theta[:, None].expand(-1, x.shape[1], -1)], -1), h0[None])[0]


def hand_bptt_cost(pairs=(64, 243, 512), rounds=5, repeats=10):
    """``nn.GRU`` against the hand-written backward pass: gradients, then best-of times."""
    import torch
    from torch import nn
    hand = _hand_bptt_gru()
    torch.manual_seed(0)
    g = nn.GRU(5, 8, batch_first=True).double()
    x, theta, h0 = (torch.randn(*s, dtype=torch.double) for s in ((4, 7, 3), (4, 2), (4, 8)))
    theta.requires_grad_(True), h0.requires_grad_(True)
    w = torch.randn(4, 7, 8, dtype=torch.double)
    wrt = [theta, h0, *g.parameters()]
    ref = torch.autograd.grad((_concat_gru(g, x, theta, h0) * w).sum(), wrt)
    got = torch.autograd.grad((hand(g, x, theta, h0) * w).sum(), wrt)
    err = max((a - b).abs().max().item() for a, b in zip(ref, got))
    print(f"hand-written backward vs nn.GRU, float64: largest gradient difference {err:.1e}")
    print("| pairs | nn.GRU ms | hand-written backward ms | speed-up |\n|---|---|---|---|")
    gru = nn.GRU(5, 64, batch_first=True)
    for b in pairs:
        x, theta, h0 = torch.randn(b, 50, 3), torch.randn(b, 2), torch.randn(b, 64)
        theta.requires_grad_(True), h0.requires_grad_(True)
        args = (gru, x, theta, h0)
        fns = {"nn": lambda a=args: _concat_gru(*a), "hand": lambda a=args: hand(*a)}
        best = {k: np.inf for k in fns}
        for _ in range(rounds):
            for k, f in fns.items():
                f().pow(2).mean().backward()
                t0 = time.perf_counter()
                for _ in range(repeats):
                    f().pow(2).mean().backward()
                best[k] = min(best[k], (time.perf_counter() - t0) / repeats)
        print(f"| {b} | {1e3 * best['nn']:.1f} | {1e3 * best['hand']:.1f} | "
              f"{best['nn'] / best['hand']:.2f}x |")


def step_cost():
    """Per-pair cost of nn.GRU forward+backward by batch, and a hand-written loop."""
    import torch
    from torch import nn
    torch.set_num_threads(1)
    torch.manual_seed(0)
    n_in, hidden, steps = 5, 64, 50
    gru = nn.GRU(n_in, hidden, batch_first=True)

    def timed(f, repeats=10):
        f()
        t0 = time.perf_counter()
        for _ in range(repeats):
            f()
        return (time.perf_counter() - t0) / repeats

    def loop(x):
        w_ih, w_hh, b_ih, b_hh = (gru.weight_ih_l0, gru.weight_hh_l0, gru.bias_ih_l0,
                                  gru.bias_hh_l0)
        gi = torch.addmm(b_ih, x.reshape(-1, n_in), w_ih.t()).view(*x.shape[:2], -1)
        h, out = x.new_zeros(x.shape[0], hidden), []
        for i in range(x.shape[1]):
            ir, iz, inn = gi[:, i].chunk(3, 1)
            hr, hz, hn = torch.addmm(b_hh, h, w_hh.t()).chunk(3, 1)
            r, z = torch.sigmoid(ir + hr), torch.sigmoid(iz + hz)
            n = torch.tanh(inn + r * hn)
            h = n + z * (h - n)
            out.append(h)
        return torch.stack(out, 1)

    print("| pairs | nn.GRU fwd+bwd ms | µs per pair |\n|---|---|---|")
    for b in (32, 64, 128, 243, 512):
        x = torch.randn(b, steps, n_in)
        s = timed(lambda x=x: gru(x)[0].pow(2).mean().backward())
        print(f"| {b} | {1e3 * s:.1f} | {1e6 * s / b:.0f} |")
    x = torch.randn(243, steps, n_in)
    with torch.no_grad():
        assert torch.allclose(gru(x)[0], loop(x), atol=1e-5)
    s_nn = timed(lambda: gru(x)[0].pow(2).mean().backward())
    s_loop = timed(lambda: loop(x).pow(2).mean().backward())
    print(f"hand-written loop / nn.GRU at 243 pairs: {s_loop / s_nn:.1f}x "
          f"({1e3 * s_loop:.0f} vs {1e3 * s_nn:.0f} ms), 1 thread")
    hand_bptt_cost()


def cell_cost(pairs=(135, 218), steps=60, n_in=5, hidden=64, repeats=10):
    """Forward and backward of each recurrent layer a meta-model can use, per step.

    ``nn.RNN``, ``nn.GRU`` and ``nn.LSTM`` (``hidden`` units, ``n_in`` inputs: 3 probe
    inputs and a 2-d embedding), ``steps`` time steps, in float32 and under bfloat16
    autocast (how ``precision='bfloat16'`` trains), at one thread; ``pairs`` are the
    (model, probe) pairs of a training step of the 27- and 100-member fits. Also says
    which runs reached oneDNN's fused RNN kernel (``mkldnn_rnn_layer``).
    """
    import torch
    from torch import nn
    torch.set_num_threads(1)
    torch.manual_seed(0)
    print("| layer | precision | pairs | forward ms | backward ms | total ms | oneDNN |\n"
          "|---|---|---|---|---|---|---|")
    for b in pairs:
        x = torch.randn(b, steps, n_in)
        for name in ("RNN", "GRU", "LSTM"):
            layer = getattr(nn, name)(n_in, hidden, batch_first=True)
            for dtype in (torch.float32, torch.bfloat16):
                def loss(dtype=dtype, layer=layer, x=x):
                    with torch.autocast("cpu", dtype=torch.bfloat16,
                                        enabled=dtype == torch.bfloat16):
                        y = layer(x)[0]
                    return y.float().pow(2).mean()
                for _ in range(2):
                    loss().backward()
                with torch.autograd.profiler.profile() as prof:
                    loss().backward()
                fused = any("mkldnn_rnn" in e.key for e in prof.key_averages())
                fwd = bwd = 0.0
                for _ in range(repeats):
                    t0 = time.perf_counter()
                    value = loss()
                    t1 = time.perf_counter()
                    value.backward()
                    fwd, bwd = fwd + t1 - t0, bwd + time.perf_counter() - t1
                fwd, bwd = 1e3 * fwd / repeats, 1e3 * bwd / repeats
                print(f"| {name} | {str(dtype)[6:]} | {b} | {fwd:.1f} | {bwd:.1f} | "
                      f"{fwd + bwd:.1f} | {'yes' if fused else 'no'} |")


def _row(r):
    conv = {True: "converged", False: "cap", None: "schedule"}[r["converged"]]
    threads = "" if r["threads"] == 1 else f", {r['threads']} threads"
    return (f"| {r['variant']}{threads} | {r['seed']} | {r['fit_s']:.0f} | "
            f"{r['epochs']} ({conv}) | "
            f"{r['steps']} | {r['best_valid_loss']:.4f} | {r['out_r2_mean']:.4f} "
            f"({r['out_r2_min']:.4f}) | {r['hid_r2_mean']:.4f} | "
            f"{_opt(r, 'hid_r2_ridge_maps', '.4f')} | {_opt(r, 'ari', '.2f')} |")


def _opt(r, key, fmt):
    return "—" if r.get(key) is None else format(r[key], fmt)


HEADER = ("| variant | seed | fit s | epochs | steps | best held-out loss | output R² mean (min) "
          "| hidden R² mean | hidden R², maps re-solved | ARI |\n"
          "|---|---|---|---|---|---|---|---|---|---|")


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--only", action="append", choices=list(VARIANTS))
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--threads", type=int, default=1,
                        help="torch threads of each fit (default 1; others are stored apart)")
    parser.add_argument("--table", action="store_true", help="print the stored results")
    parser.add_argument("--cell-cost", action="store_true",
                        help="time nn.RNN / nn.GRU / nn.LSTM steps in float32 and bfloat16")
    parser.add_argument("--step-cost", action="store_true",
                        help="time nn.GRU per pair and two hand-written GRUs, then stop")
    parser.add_argument("--child", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.step_cost:
        return step_cost()
    if args.cell_cost:
        return cell_cost()
    if args.child:
        return child(args.child, args.seed, args.threads)
    if args.table:
        runs = json.loads(RESULTS.read_text())["runs"]
        print(HEADER)
        for r in runs.values():
            print(_row(r))
        return None
    sys.path.insert(0, str(ROOT / "benchmarks"))
    from _provenance import run_child, store_run
    env = dict(os.environ, OMP_NUM_THREADS=str(args.threads))
    print(HEADER)
    for name in args.only or VARIANTS:
        cmd = [sys.executable, __file__, "--child", name, "--seed", str(args.seed),
               "--threads", str(args.threads)]
        r = run_child(cmd, env, f"variant {name}")
        r["provenance"]["torch_threads"] = r["threads"]
        print(_row(r), flush=True)
        key = f"{name}/seed{args.seed}" + ("" if args.threads == 1 else f"/threads{args.threads}")
        store_run(RESULTS, key, r)
    return None


if __name__ == "__main__":
    main()

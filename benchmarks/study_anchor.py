"""Study: where a map's disagreement between refits comes from, and whether anchoring
the embeddings to their starting points removes it (measured, not adopted).

    PYTHONPATH=. OMP_NUM_THREADS=1 python benchmarks/study_anchor.py init --only default
    PYTHONPATH=. OMP_NUM_THREADS=1 python benchmarks/study_anchor.py anchor --only heads \\
        --weight 0.03 --init 128x384

``init`` prints, for each population of ``bench_fidelity.py`` (``--only``, repeatable),
the stability figure (:func:`skdynamo.embedding_disagreement`) of the *starting*
embeddings of the fits at ``random_state`` 0, 1 and 2 (PCA of behaviour features,
``skdynamo._targets.initial_embeddings``) for three sizes of the sample those features are
computed on (probes of the output block x (probe, step) points of the state Gram block:
32x96, the default, 128x384 and 200x1024), k-means ARI on them, and, for the default
sample, the disagreement between each seed's start and its fitted map as stored in
``results/fidelity.json`` (how far training moves the layout).

``anchor`` fits the defaults with one term added to the training loss,
``weight * |theta_n - theta_n(start)|^2`` averaged over the batch's pairs (beside the
default ``embedding_l2`` norm penalty; in the held-out loss as well), the starting
embeddings computed on the ``--init`` sample; ``--release`` adds it to training steps
only, until the learning rate is first reduced (after the warm-up). It runs
``bench_fidelity.py``'s measurement of each population (fidelity, epochs, ARI, averaging
ratio, stability of the map and of the behaviour features) at seeds 0, 1, 2 and prints
its table; results go to
``results/study_anchor.json``. Neither the term nor a larger sample is in the package:
see docs/fidelity.md, "Anchoring the map to its starting layout".
"""

import argparse
import json
import sys
import warnings
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))

import skdynamo._embedder as embedder_module  # noqa: E402
import skdynamo._targets as targets_module  # noqa: E402
from skdynamo import DynamoEmbedder, embedding_disagreement  # noqa: E402
from skdynamo._net import DynamoNet, bare_module  # noqa: E402

from _provenance import provenance  # noqa: E402
from bench_fidelity import POPULATIONS, _ari, load_population, run_group, table  # noqa: E402

RESULTS = Path(__file__).resolve().parent / "results" / "study_anchor.json"
SIZES = ((32, 96), (128, 384), (200, 1024))
SEEDS = (0, 1, 2)


class _Stop(Exception):
    pass


def starting_embeddings(group, rs):
    """The embeddings a default fit at ``rs`` starts from (the fit stops right there)."""
    captured = {}
    original = embedder_module.initial_embeddings

    def spy(*args, **kwargs):
        captured["init"] = original(*args, **kwargs)
        raise _Stop

    embedder_module.initial_embeddings = spy
    try:
        DynamoEmbedder(probe_inputs=group["probes"], random_state=rs).fit(group["models"])
    except _Stop:
        pass
    finally:
        embedder_module.initial_embeddings = original
    return captured["init"].astype(np.float64)


def set_sample(size):
    targets_module._INIT_PROBES, targets_module._INIT_POINTS = size


def study_init(names):
    fitted = json.loads((RESULTS.parent / "fidelity.json").read_text())["populations"]
    for name in names:
        for gname, group in load_population(name):
            for size in SIZES:
                set_sample(size)
                starts = [starting_embeddings(group, rs) for rs in SEEDS]
                line = f"{gname:20s} sample {size[0]}x{size[1]:<5d} start stability " \
                       f"{embedding_disagreement(starts):.3f}"
                if group.get("labels") is not None:
                    aris = [_ari(Z, group["labels"], 0, group.get("scored")) for Z in starts]
                    line += " ARI " + " / ".join(f"{a:.2f}" for a in aris)
                if size == SIZES[0] and gname in fitted:
                    maps = {r["random_state"]: np.array(r["embedding"])
                            for r in fitted[gname]["runs"]}
                    moved = [embedding_disagreement([s, maps[rs]])
                             for rs, s in zip(SEEDS, starts) if rs in maps]
                    line += (f"; fitted map stability {fitted[gname]['stability']:.3f}, start "
                             "-> fitted map " + " / ".join(f"{m:.3f}" for m in moved))
                print(line, flush=True)
    set_sample(SIZES[0])


class AnchoredNet(DynamoNet):
    """DynamoNet with the anchor term (the study's only change to training)."""

    weight, release, bandwidth = 0.0, False, 0.0

    def initialize_module(self):
        super().initialize_module()
        self.start_ = bare_module(self).embeddings.detach().clone()
        # Coarse anchor: each model's displacement averaged over its neighbours at the
        # start (Gaussian weights, bandwidth a fraction of the median start distance).
        d = torch.cdist(self.start_, self.start_)
        sigma = self.bandwidth * d[d > 0].median() if len(d) > 1 else 0.0
        self.smooth_ = (None if not self.bandwidth else
                        torch.softmax(-d ** 2 / (2 * sigma ** 2), dim=1))
        return self

    def _anchored(self):
        if not self.release:
            return True
        warm = dict(self.callbacks_)["lr_warmup"]
        return warm.step_ < warm.n_steps or \
            self.optimizer_.param_groups[0]["lr"] >= self.lr * 0.999

    def get_loss(self, y_pred, y_true, X=None, training=False):
        loss = super().get_loss(y_pred, y_true, X=X, training=training)
        # Held-out loss too, unless released (as the runs in docs/fidelity.md were made).
        if (training and self._anchored()) if self.release else True:
            if self.smooth_ is not None:
                moved = self.smooth_ @ (bare_module(self).embeddings - self.start_)
                return loss + self.weight * (moved ** 2).sum(1).mean()
            models = torch.as_tensor(X["models"], device=self.start_.device)
            theta = bare_module(self).embeddings[models]
            loss = loss + self.weight * ((theta - self.start_[models]) ** 2).sum(1).mean()
        return loss


def study_anchor(names, weight, size, release, bandwidth):
    AnchoredNet.weight, AnchoredNet.release, AnchoredNet.bandwidth = weight, release, bandwidth
    embedder_module.DynamoNet = AnchoredNet
    set_sample(size)
    label = (f"anchor {weight:g}, start {size[0]}x{size[1]}" + (", released" if release else "")
             + (f", coarse {bandwidth:g}" if bandwidth else ""))
    results = {}
    for name in names:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            groups = load_population(name)
        for gname, group in groups:
            key = f"{gname} [{label}]"
            results[key] = run_group(key, group, list(SEEDS), curve=False)
            stored = json.loads(RESULTS.read_text()) if RESULTS.exists() else {}
            stored.setdefault("populations", {})[key] = {**results[key],
                                                         "run": provenance(torch)}
            RESULTS.write_text(json.dumps(stored, indent=1))
    print()
    print(table(results))


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("what", choices=("init", "anchor"))
    parser.add_argument("--only", choices=POPULATIONS, action="append")
    parser.add_argument("--weight", type=float, default=0.03, help="anchor weight")
    parser.add_argument("--init", default="32x96", help="sample of the starting features, "
                        "PROBESxPOINTS (default 32x96, the package's)")
    parser.add_argument("--release", action="store_true",
                        help="drop the anchor at the first learning-rate reduction")
    parser.add_argument("--bandwidth", type=float, default=0.0,
                        help="anchor the coarse layout only: each displacement averaged "
                        "over start neighbours, Gaussian bandwidth this fraction of the "
                        "median start distance (0: every embedding anchored)")
    args = parser.parse_args(argv)
    torch.set_num_threads(1)
    names = args.only or list(POPULATIONS)
    if args.what == "init":
        study_init(names)
    else:
        size = tuple(int(v) for v in args.init.lower().split("x"))
        study_anchor(names, args.weight, size, args.release, args.bandwidth)


if __name__ == "__main__":
    main()

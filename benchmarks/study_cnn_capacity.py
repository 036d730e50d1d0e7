"""Study: what limits the CNN meta-model's hidden R^2 (training probes against held-out).

    PYTHONPATH=. OMP_NUM_THREADS=1 python benchmarks/study_cnn_capacity.py              # ~3 min
    PYTHONPATH=. OMP_NUM_THREADS=1 python benchmarks/study_cnn_capacity.py --hidden-size 128
    PYTHONPATH=. OMP_NUM_THREADS=1 python benchmarks/study_cnn_capacity.py --film mlp

Fits ``DynamoEmbedder(probe_inputs=X[:512], random_state=seed)`` on the CNN population of
``bench_fidelity.py`` (``make_cnn_population()``, 36 CNNs, the first 512 digits images as
probes), then prints output R^2, hidden R^2 and argmax agreement on the *training* probes
and on the held-out probes (learned maps), the held-out hidden R^2 with every member's
maps re-solved by ridge on its training probes, and the held-out hidden R^2 by width,
depth and variant. A small gap between training and held-out hidden R^2 says the limit
is not probe coverage but what the meta-model can represent on the probes it is fitted
to. ``--hidden-size`` sets the meta-model's channels. ``--film mlp`` (study code, not an
option of the estimator) adds to each stage's FiLM modulation an MLP of ``theta``
(``n_components -> 64 -> tanh -> 2 x channels``, last layer zero at the start, so
training starts from the plain FiLM), to test whether a modulation linear in ``theta``
is the limit.
"""

import argparse
import time
import warnings

import numpy as np
import torch
from torch import nn

import skdynamo.nn._meta as meta_module
from skdynamo import DynamoEmbedder
from skdynamo._codes import emulation_r2
from skdynamo.datasets import load_digits_images, make_cnn_population

torch.set_num_threads(1)


class MLPFiLM(nn.Module):
    """FiLM whose scale and shift are ``linear(theta) + mlp(theta)`` (study code)."""

    def __init__(self, n_components, channels, width=64):
        super().__init__()
        self.linear = nn.Linear(n_components, 2 * channels)
        self.mlp = nn.Sequential(nn.Linear(n_components, width), nn.Tanh(),
                                 nn.Linear(width, 2 * channels))
        nn.init.zeros_(self.mlp[2].weight)
        nn.init.zeros_(self.mlp[2].bias)

    def forward(self, theta):
        gamma, beta = (self.linear(theta) + self.mlp(theta)).chunk(2, dim=-1)
        return 1.0 + gamma, beta


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--hidden-size", type=int, default=DynamoEmbedder().hidden_size)
    parser.add_argument("--film", choices=("linear", "mlp"), default="linear")
    args = parser.parse_args(argv)
    if args.film == "mlp":
        meta_module.FiLM = MLPFiLM  # ConditionedCNN looks FiLM up at construction
    pop = make_cnn_population(n_jobs=1)
    probes = load_digits_images()[0][:512]
    t0 = time.perf_counter()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        emb = DynamoEmbedder(probe_inputs=probes, random_state=args.seed,
                             hidden_size=args.hidden_size).fit(pop.models)
    print(f"hidden_size={args.hidden_size}, film={args.film}, random_state={args.seed}: "
          f"fit {time.perf_counter() - t0:.0f} s, {emb.n_iter_} epochs, "
          f"converged {emb.converged_}, 1 torch thread")
    rec = emb.family_.record_targets(pop.models, emb.probe_inputs_, emb._train_idx)
    theta = torch.as_tensor(emb.embeddings_, dtype=torch.float32)
    maps = tuple(torch.as_tensor(m) for m in emb.maps_)

    def data(idx):
        return tuple(torch.as_tensor(np.asarray(a), dtype=torch.float32) for a in
                     (emb.probe_inputs_[idx], rec.outputs[:, idx], rec.hidden[:, idx]))

    train, held = data(emb._train_idx), data(emb._valid_idx)
    for name, part in (("training probes", train), ("held-out probes", held)):
        out, hid, agree = emulation_r2(emb.meta_model_, theta, None, part, loss=emb.loss_,
                                       maps=maps)
        print(f"{name:16s} output R2 {out.mean():.4f} (min {out.min():.4f})  hidden R2 "
              f"{hid.mean():.4f} (min {hid.min():.4f})  agreement {agree.mean():.4f}")
    _, hid, _ = emulation_r2(emb.meta_model_, theta, train, held, loss=emb.loss_, maps=None)
    print(f"held-out hidden R2, maps re-solved by ridge on the training probes: "
          f"{hid.mean():.4f}")
    scores = emb.emulation_scores_.hidden_r2
    for column in ("width", "depth", "variant"):
        values = np.asarray(pop[column])
        parts = ", ".join(f"{v}: {scores[values == v].mean():.4f}" for v in np.unique(values))
        print(f"held-out hidden R2 by {column}: {parts}")


if __name__ == "__main__":
    main()

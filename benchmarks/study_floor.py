"""Study: an absolute floor on the held-out improvement that counts towards convergence
(measured, not adopted).

    PYTHONPATH=. OMP_NUM_THREADS=1 python benchmarks/study_floor.py --floor 1e-4 --only dynamics
    PYTHONPATH=. OMP_NUM_THREADS=1 python benchmarks/study_floor.py --floor 1e-4 --only averaging

The default convergence rule (``skdynamo._net.Converged``) counts an epoch as an
improvement when the held-out loss falls by more than ``tol`` (1 %) of its value. On
populations emulated very closely (held-out loss ~1e-3) a 1 % fall is a change no
application sees, and fits run to the epoch cap. Here an improvement must also exceed
``--floor`` in absolute terms (the loss is normalised per member, roughly 1 - R^2 summed
over its terms); everything else is the defaults. ``dynamics`` runs
``bench_dynamics.py --part meta`` (the flip-flop population whose fits reach the cap) at
``--seeds``; the populations of ``bench_fidelity.py`` (``default``, ``averaging``,
``heads``, ...) run its measurement at ``--seeds`` and print its table (fidelity,
epochs, cap, ARI, averaging ratio, stability).
"""

import argparse
import sys
import warnings
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))

import skdynamo._embedder as embedder_module  # noqa: E402
from skdynamo._net import Converged  # noqa: E402

import bench_dynamics  # noqa: E402
from bench_fidelity import POPULATIONS, load_population, run_group, table  # noqa: E402


class FlooredConverged(Converged):
    """Converged, an improvement also having to exceed ``floor`` in absolute terms."""

    floor = 0.0

    def _calc_new_threshold(self, score):
        return min(super()._calc_new_threshold(score), score - self.floor)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--floor", type=float, required=True)
    parser.add_argument("--only", choices=("dynamics",) + POPULATIONS,
                        action="append", required=True)
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    args = parser.parse_args(argv)
    torch.set_num_threads(1)
    FlooredConverged.floor = args.floor
    embedder_module.Converged = FlooredConverged
    results = {}
    for name in args.only:
        if name == "dynamics":
            for seed in args.seeds:
                bench_dynamics.main(["--part", "meta", "--seed", str(seed)])
            continue
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            groups = load_population(name)
        for gname, group in groups:
            key = f"{gname} [floor {args.floor:g}]"
            results[key] = run_group(key, group, args.seeds, curve=False)
    if results:
        print()
        print(table(results))


if __name__ == "__main__":
    main()

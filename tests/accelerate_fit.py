"""One process of a multi-process fit, for tests/test_accelerate.py (not a test module).

Run as ``python -m torch.distributed.run --standalone --nproc_per_node 2
tests/accelerate_fit.py OUT_DIR MAX_EPOCHS``: every process fits the tiny population of
``tests/conftest.py`` through ``Accelerator(cpu=True)`` and writes its fitted state to
``OUT_DIR/rank{i}.npz``, with a fit at ``random_state=None`` and the errors of a fit
whose processes draw different splits and of one at a diverging learning rate.
"""

import os
import sys
import warnings

import numpy as np
import torch

sys.path.insert(0, os.path.dirname(__file__))

from conftest import tiny_embedder  # noqa: E402


def tiny_population():
    """The ``tiny_models`` and ``tiny_probes`` of ``conftest.py``."""
    from skdynamo.datasets import RecurrentNetwork, make_random_probes
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        models = [RecurrentNetwork(3, 3, hidden_size=8, cell=c).eval()
                  for c in ("rnn", "gru", "lstm")]
    return models, make_random_probes(12, 10, 3, random_state=0)


def fitted_state(emb):
    """The fitted state every process must agree on, as arrays."""
    state = {f"meta.{k}": v.numpy() for k, v in emb.meta_model_.state_dict().items()}
    return dict(state, embeddings=emb.embeddings_, maps_weight=emb.maps_[0],
                maps_bias=emb.maps_[1], output_r2=emb.emulation_scores_.output_r2,
                hidden_r2=emb.emulation_scores_.hidden_r2, converged=emb.converged_,
                valid_loss=np.array(emb.history_[:, "valid_loss"]),
                train_loss=np.array(emb.history_[:, "train_loss"]))


def main(out_dir, max_epochs):
    from accelerate import Accelerator
    torch.set_num_threads(1)
    accelerator = Accelerator(cpu=True)
    models, probes = tiny_population()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # a ConvergenceWarning at the epoch cap
        emb = tiny_embedder(probes, max_epochs=max_epochs, accelerator=accelerator)
        emb.fit(models)
    # random_state=None: the main process's draw is every process's.
    unseeded = tiny_embedder(probes, max_epochs=2, random_state=None,
                             accelerator=accelerator).fit(models).embeddings_
    np.savez(os.path.join(out_dir, f"rank{accelerator.process_index}.npz"),
             n_processes=accelerator.num_processes, unseeded=unseeded,
             mismatch=_error(tiny_embedder(probes, random_state=accelerator.process_index,
                                           accelerator=accelerator), models),
             diverged=_error(tiny_embedder(probes, lr=1e6, max_epochs=20,
                                           accelerator=accelerator), models),
             **fitted_state(emb))


def _error(emb, models):
    """The error ``emb.fit(models)`` raises, as ``'Type: message'`` ('' for none)."""
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            emb.fit(models)
    except Exception as exc:  # noqa: BLE001 - the test reads which one
        return f"{type(exc).__name__}: {exc}"
    return ""


if __name__ == "__main__":
    main(sys.argv[1], int(sys.argv[2]))
    # Both processes' results are written. Leave without the interpreter's teardown: in
    # about one run of ten (before and after the reverse-term default; with or without
    # Accelerator.end_training() first) a process aborted there, after all of the above,
    # with "terminate called without an active exception" from a native thread of the
    # distributed runtime, failing the launch for nothing this test checks.
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(0)

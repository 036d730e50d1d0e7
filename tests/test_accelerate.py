"""Training through HuggingFace Accelerate (``DynamoEmbedder(accelerator=...)``)."""

import os
import subprocess
import sys
import warnings

import numpy as np
import pytest

pytest.importorskip("accelerate", reason="accelerate is not installed: "
                    "pip install 'skdynamo[accelerate]' to test training through it")

from accelerate import Accelerator  # noqa: E402
from sklearn.utils._param_validation import InvalidParameterError  # noqa: E402

from accelerate_fit import fitted_state, tiny_population  # noqa: E402
from conftest import tiny_embedder  # noqa: E402
from skdynamo import load_weights, save_weights  # noqa: E402

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
EPOCHS = 12


def _fit(**kw):
    models, probes = tiny_population()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # a ConvergenceWarning at the epoch cap
        # float32: the accelerator's own mixed_precision ('no') decides its fit.
        return tiny_embedder(probes, max_epochs=EPOCHS, precision="float32", **kw).fit(models)


@pytest.fixture(scope="module")
def one_process():
    """The fit of the tiny population in this process, without an accelerator."""
    return fitted_state(_fit())


@pytest.fixture(scope="module")
def two_processes(tmp_path_factory):
    """The fitted states of both processes of a 2-process CPU (gloo) group."""
    out = tmp_path_factory.mktemp("accelerate")
    env = dict(os.environ, OMP_NUM_THREADS="1",
               PYTHONPATH=os.pathsep.join([ROOT, os.environ.get("PYTHONPATH", "")]))
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone",
           "--nproc_per_node", "2", os.path.join(ROOT, "tests", "accelerate_fit.py"),
           str(out), str(EPOCHS)]
    run = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=300)
    assert run.returncode == 0, run.stderr[-3000:]
    return [dict(np.load(out / f"rank{i}.npz")) for i in range(2)]


def test_one_process_accelerator_is_the_plain_fit(one_process, tmp_path):
    # One process: the same steps, loss shares of exactly 1: bit-for-bit the plain fit.
    emb = _fit(accelerator=Accelerator(cpu=True))
    state = fitted_state(emb)
    assert state.keys() == one_process.keys()
    for name, value in state.items():
        np.testing.assert_array_equal(value, one_process[name], err_msg=name)
    # A weights file does not hold the accelerator (this run's), and loads without one.
    save_weights(emb, tmp_path / "w.pt")
    loaded = load_weights(tmp_path / "w.pt")
    assert loaded.accelerator is None
    np.testing.assert_array_equal(loaded.embeddings_, emb.embeddings_)


def test_two_processes_agree_and_learn(two_processes, one_process):
    rank0, rank1 = two_processes
    assert int(rank0["n_processes"]) == 2
    assert rank0.keys() == rank1.keys()
    for name in rank0:  # every process ends with the same fitted state, exactly
        np.testing.assert_array_equal(rank0[name], rank1[name], err_msg=name)
    valid = rank0["valid_loss"]
    assert len(valid) == EPOCHS and valid[-1] < 0.5 * valid[0]  # it learns
    # The same steps as one process, split in two: equal up to float rounding.
    np.testing.assert_allclose(valid, one_process["valid_loss"], rtol=1e-3)
    np.testing.assert_allclose(rank0["embeddings"], one_process["embeddings"], atol=1e-3)
    np.testing.assert_allclose(rank0["output_r2"], one_process["output_r2"], atol=1e-3)


def test_two_processes_seed_and_errors(two_processes):
    rank0, rank1 = two_processes
    np.testing.assert_array_equal(rank0["unseeded"], rank1["unseeded"])
    for rank in (rank0, rank1):  # both processes raise (none is left waiting)
        assert str(rank["mismatch"]).startswith("ValueError: accelerator: the processes "
                                                "recorded different targets")
        assert str(rank["diverged"]).startswith("DivergenceError: DYNAMO training diverged")
    assert str(rank0["diverged"]) == str(rank1["diverged"])


@pytest.mark.parametrize("bad, error, match", [
    ("cpu", InvalidParameterError, "accelerator"),
    (type("Duck", (), {"prepare": print, "unwrap_model": print, "reduce": print})(),
     TypeError, "accelerator must be an accelerate.Accelerator"),
])
def test_wrong_accelerator_named(bad, error, match, tiny_models, tiny_probes, tiny_fitted):
    before = tiny_fitted.embeddings_.copy()
    with pytest.raises(error, match=match):
        tiny_fitted.set_params(accelerator=bad).fit(tiny_models)
    np.testing.assert_array_equal(tiny_fitted.embeddings_, before)  # untouched


def test_bfloat16_with_an_accelerator_is_refused(tiny_models, tiny_probes, tiny_fitted):
    before = tiny_fitted.embeddings_.copy()
    with pytest.raises(ValueError, match="precision='bfloat16'.*mixed_precision"):
        tiny_fitted.set_params(accelerator=Accelerator(cpu=True),
                               precision="bfloat16").fit(tiny_models)
    np.testing.assert_array_equal(tiny_fitted.embeddings_, before)  # untouched

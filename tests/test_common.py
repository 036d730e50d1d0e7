"""Common estimator checks for the four public estimators.

sklearn's API checks (called directly: its data-dependent checks generate 2-D arrays, which
our estimators honestly refuse), ``parametrize_with_checks`` with the one expected-failure
list, and skdynamo's own data checks for list-of-models estimators on tiny networks.
"""

import warnings

import numpy as np
import pytest
import torch
from sklearn.exceptions import SkipTestWarning
from sklearn.frozen import FrozenEstimator
from sklearn.utils.estimator_checks import parametrize_with_checks

from skdynamo import DynamoAverager, DynamoCluster, DynamoEmbedder, DynamoSemiSupervised
from skdynamo.datasets import RecurrentNetwork, make_leaky_integration
from skdynamo.utils import estimator_checks as sc

torch.set_num_threads(1)

TINY = dict(n_components=2, hidden_size=6, max_epochs=2, batch_size=64, n_starts=1,
            transform_max_iter=2, random_state=0)

ALL_DEFAULTS = [DynamoEmbedder(), DynamoCluster(), DynamoAverager(), DynamoSemiSupervised(),
                DynamoSemiSupervised(task="classification"),
                DynamoSemiSupervised(task="regression")]


def _id(est):
    task = est.get_params().get("task", "auto")
    return type(est).__name__ + ("" if task == "auto" else f"-{task}")


@pytest.fixture(scope="module")
def leaky():
    X, Y = make_leaky_integration(12, 8, random_state=0)
    return X, Y


@pytest.fixture(scope="module")
def nets():
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(3)
        return [RecurrentNetwork(3, 3, hidden_size=5, cell=c).eval()
                for c in ("rnn", "gru", "lstm", "gru")]


@pytest.fixture(scope="module")
def frozen(nets, leaky):
    return FrozenEstimator(DynamoEmbedder(probe_inputs=leaky[0], **TINY).fit(nets))


# ---------------------------------------------------------------- sklearn's own checks
with warnings.catch_warnings():
    # "Can't test estimator ... which requires input of type ...": expected, see the module
    # docstring of skdynamo.utils.estimator_checks.
    warnings.simplefilter("ignore", SkipTestWarning)
    _sklearn_checks = parametrize_with_checks(
        ALL_DEFAULTS, expected_failed_checks=sc.expected_failed_checks)


@_sklearn_checks
def test_sklearn_compatible_estimator(estimator, check):
    check(estimator)


@pytest.mark.parametrize("estimator", ALL_DEFAULTS, ids=_id)
@pytest.mark.parametrize("check", sc.SKLEARN_API_CHECKS, ids=lambda c: c.__name__)
def test_sklearn_api_checks(estimator, check):
    name = type(estimator).__name__
    reason = sc.expected_failed_checks(estimator).get(check.__name__)
    if reason is not None:
        with pytest.raises((AssertionError, ValueError, TypeError)):
            check(name, estimator)
        pytest.xfail(reason)
    check(name, estimator)


def test_expected_failures_are_known_checks():
    known = {c.__name__ for c in sc.SKLEARN_API_CHECKS} | {"check_estimator_cloneable"}
    for name, entries in sc.EXPECTED_FAILED_CHECKS.items():
        assert name in {type(e).__name__ for e in ALL_DEFAULTS}
        for check, reason in entries.items():
            assert check in known and len(reason) > 20, (name, check)


def test_tags_declare_the_input():
    from sklearn.utils import get_tags
    for est in ALL_DEFAULTS:
        tags = get_tags(est)
        assert not tags.input_tags.two_d_array
        assert tags.input_tags.three_d_array == isinstance(est, DynamoSemiSupervised)
        # a declared type comes with its type-specific tags (sklearn raises otherwise)
        if tags.estimator_type == "classifier":
            assert tags.classifier_tags is not None
        if tags.estimator_type == "regressor":
            assert tags.regressor_tags is not None


# ---------------------------------------------------------------- our data checks
def _tiny_estimators(leaky, frozen):
    probes = leaky[0]
    emb = DynamoEmbedder(probe_inputs=probes, **TINY)
    return {
        "DynamoEmbedder": emb,
        "DynamoCluster": DynamoCluster(emb, n_clusters=2, random_state=0),
        "DynamoAverager": DynamoAverager(emb, center="medoid"),
        "DynamoSemiSupervised": DynamoSemiSupervised(frozen, max_iter=3, n_starts=1,
                                                     random_state=0),
    }


@pytest.mark.parametrize("name", ["DynamoEmbedder", "DynamoCluster", "DynamoAverager",
                                  "DynamoSemiSupervised"])
@pytest.mark.parametrize("check", sc.MODEL_CHECKS, ids=lambda c: c.__name__)
def test_model_checks(name, check, nets, leaky, frozen):
    est = _tiny_estimators(leaky, frozen)[name]
    if name == "DynamoSemiSupervised":
        X, Y = leaky
        y = Y[:, -1].copy()
        y[6:] = np.nan
        check(est, X, y)
    else:
        check(est, nets)


def test_model_checks_population_left_unchanged(nets, leaky):
    X, Y = leaky
    y = Y[:, -1].copy()
    y[6:] = np.nan
    est = DynamoSemiSupervised(DynamoEmbedder(probe_inputs=X, **TINY), population=nets,
                               max_iter=2, n_starts=1, random_state=0)
    sc.check_models_unchanged_by_fit(est, X, y)


def test_check_model_estimator_reports_the_failing_check(nets, leaky):
    class Broken(DynamoEmbedder):
        def fit(self, X, y=None):
            super().fit(X, y)
            self.n_components = 3          # a fit that rewrites its own parameter

    est = Broken(probe_inputs=leaky[0], **TINY)
    with pytest.raises(AssertionError, match="check_params_unchanged_by_fit"):
        sc.check_model_estimator(est, nets, checks=[sc.check_params_unchanged_by_fit])

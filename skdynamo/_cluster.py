"""DynamoCluster: cluster models by the computation they perform (sklearn logic only)."""

from __future__ import annotations

from collections.abc import Sequence
from numbers import Integral

import numpy as np
from sklearn.base import BaseEstimator, ClusterMixin, clone
from sklearn.cluster import KMeans
from sklearn.metrics import silhouette_score
from sklearn.utils import check_random_state
from sklearn.utils._param_validation import HasMethods, Interval, StrOptions
from sklearn.utils.validation import check_is_fitted

from ._applications import embed_population, resolve_embedder
from ._embedder import reduce_behaviour
from .utils.validation import check_models

__all__ = ["DynamoCluster"]

_MAX_SEED = np.iinfo(np.int32).max
#: ``n_clusters='auto'``: relative margin within which a smaller number of clusters wins.
_SILHOUETTE_TOL = 0.01


class DynamoCluster(ClusterMixin, BaseEstimator):
    """Cluster a population of networks by their DYNAMO embeddings.

    The models are embedded with a :class:`DynamoEmbedder` (fitted here, or reused when
    wrapped in :class:`sklearn.frozen.FrozenEstimator`), then any scikit-learn clusterer
    groups them: by default by what the meta-model does at their embeddings
    (:meth:`DynamoEmbedder.behaviour`: emulated outputs, meta-model states and the
    geometry of those states on held-out probes, reduced by PCA), or by the embedding
    coordinates themselves (``space='embedding'``).
    Because the emulation absorbs reparameterisations, models that compute alike cluster
    together whatever their architecture or unit order.

    Parameters
    ----------
    embedder : DynamoEmbedder or FrozenEstimator, default=None
        Embeds the models. ``None`` uses ``DynamoEmbedder(random_state=random_state)``.
        It is cloned in :meth:`fit`; wrap a fitted embedder in ``FrozenEstimator`` to reuse
        it (its ``transform`` then embeds the models with the meta-model frozen).
    clusterer : estimator, default=None
        Any scikit-learn clusterer. ``None`` uses ``KMeans(n_init=10)``. It is cloned in
        :meth:`fit`.
    n_clusters : int or 'auto', default='auto'
        Number of clusters, set on the clusterer's ``n_clusters`` (or ``n_components``)
        parameter. ``'auto'`` scores ``2..min(max_clusters, n_models - 1)`` clusters by
        their silhouette and picks the fewest whose score is within 1% of the best (a
        finer partition that scores no better splits models that compute alike, for
        example by cell type within one task); clusterers without such a parameter (e.g.
        DBSCAN) are then fitted as they are.
    max_clusters : int, default=10
        Largest number of clusters tried by ``n_clusters='auto'``.
    space : {'behaviour', 'embedding'}, default='behaviour'
        What is clustered. ``'behaviour'``: the embedder's
        :meth:`~DynamoEmbedder.behaviour` features at each embedding, reduced by PCA to
        at most 10 components (fitted here, reused by :meth:`predict`). Distances there
        follow differences in behaviour; distances on the map are faithful only locally,
        since the meta-model can change quickly in one region of the map and slowly in
        another, which k-means on the coordinates cannot tell. ``'embedding'``: the
        embedding coordinates (any embedder with ``fit``/``transform``).
    random_state : int, RandomState instance or None, default=None
        Seeds the default embedder and clusterer (and a clusterer whose
        ``random_state`` is None).

    Attributes
    ----------
    labels_ : ndarray of shape (n_models,)
        Cluster of each training model.
    embeddings_ : ndarray of shape (n_models, n_components)
        Embeddings of the training models.
    features_ : ndarray of shape (n_models, n_features)
        What the clusterer was fitted on: the PCA-reduced behaviour features
        (``space='behaviour'``) or the embeddings.
    embedder_ : DynamoEmbedder or FrozenEstimator
        The fitted embedder.
    clusterer_ : estimator
        The fitted clusterer.
    n_clusters_ : int
        Number of clusters found (noise label -1 excluded).
    cluster_centers_ : ndarray of shape (``n_clusters_``, n_components)
        Mean embedding of each cluster (used by :meth:`predict` when the clusterer has no
        ``predict``).
    silhouette_scores_ : dict of {int: float}
        Silhouette score of each candidate when ``n_clusters='auto'`` (else empty).

    See Also
    --------
    DynamoEmbedder : The embedding used here.
    skdynamo.baselines.OutputSpaceEmbedding : The output-space baseline.

    Examples
    --------
    >>> import torch
    >>> from skdynamo import DynamoCluster, DynamoEmbedder
    >>> from skdynamo.datasets import RecurrentNetwork
    >>> _ = torch.manual_seed(0)
    >>> models = [RecurrentNetwork(3, 3, hidden_size=8) for _ in range(4)]
    >>> emb = DynamoEmbedder(hidden_size=8, max_epochs=2, random_state=0)
    >>> DynamoCluster(emb, n_clusters=2, random_state=0).fit_predict(models).shape
    (4,)
    """

    _parameter_constraints = {
        "embedder": [HasMethods(["fit", "transform"]), None],
        "clusterer": [HasMethods(["fit"]), None],
        "n_clusters": [Interval(Integral, 1, None, closed="left"), StrOptions({"auto"})],
        "max_clusters": [Interval(Integral, 2, None, closed="left")],
        "space": [StrOptions({"behaviour", "embedding"})],
        "random_state": ["random_state"],
    }

    def __init__(self, embedder=None, clusterer=None, n_clusters="auto", *, max_clusters=10,
                 space="behaviour", random_state=None):
        self.embedder = embedder
        self.clusterer = clusterer
        self.n_clusters = n_clusters
        self.max_clusters = max_clusters
        self.space = space
        self.random_state = random_state

    def _check_space(self, embedder):
        if self.space == "behaviour" and not hasattr(embedder, "behaviour"):
            raise TypeError(f"space='behaviour' needs an embedder with a behaviour() method "
                            f"(a DynamoEmbedder); {type(embedder).__name__} has none. Use "
                            "space='embedding' to cluster its embeddings.")

    def _features(self, embedder, Z, pca=None):
        """What the clusterer sees of embeddings ``Z`` (see ``space``), and the PCA that
        reduces behaviour features (fitted here when ``pca`` is None)."""
        if self.space == "embedding":
            return Z, None
        return reduce_behaviour(np.asarray(embedder.behaviour(Z), dtype=np.float64), pca)

    def _make_clusterer(self, seed):
        if self.clusterer is None:
            return KMeans(n_init=10, random_state=seed)
        est = clone(self.clusterer)
        params = est.get_params(deep=False)
        if "random_state" in params and params["random_state"] is None:
            est.set_params(random_state=seed)
        return est

    @staticmethod
    def _size_param(est):
        params = est.get_params(deep=False)
        for name in ("n_clusters", "n_components"):
            if name in params:
                return name
        return None

    def _fit_clusterer(self, Z, seed):
        est = self._make_clusterer(seed)
        key = self._size_param(est)
        scores = {}
        if self.n_clusters == "auto":
            if key is not None:
                hi = min(self.max_clusters, len(Z) - 1)
                if hi < 2:
                    raise ValueError(f"n_clusters='auto' needs at least 3 models to compare "
                                     f"silhouette scores; got {len(Z)}. Pass an integer.")
                fits = {}
                for k in range(2, hi + 1):
                    cand = clone(est).set_params(**{key: k})
                    labels = cand.fit_predict(Z)
                    n_found = len(set(labels.tolist()) - {-1})
                    s = (silhouette_score(Z, labels) if 2 <= n_found <= len(Z) - 1
                         else -np.inf)
                    scores[k], fits[k] = float(s), (cand, labels)
                # The fewest clusters within _SILHOUETTE_TOL of the best score: finer
                # partitions that score about as well split groups that compute alike.
                top = max(scores.values())
                k = min(k for k, s in scores.items()
                        if s >= top - _SILHOUETTE_TOL * abs(top))
                return fits[k][0], fits[k][1], scores
        else:
            if key is None:
                raise ValueError(f"n_clusters={self.n_clusters} cannot be applied: "
                                 f"{type(est).__name__} has no n_clusters or n_components "
                                 "parameter. Use n_clusters='auto' to fit it as it is.")
            if self.n_clusters > len(Z):
                raise ValueError(f"n_clusters={self.n_clusters} exceeds the number of models "
                                 f"({len(Z)}).")
            est.set_params(**{key: self.n_clusters})
        labels = est.fit_predict(Z)
        return est, labels, scores

    def fit(self, X: Sequence, y: None = None) -> DynamoCluster:
        """Embed the models and cluster their embeddings.

        Parameters
        ----------
        X : sequence of torch.nn.Module or Trajectories
            The population; each model is one sample.
        y : Ignored
            Not used, present for API consistency by convention.

        Returns
        -------
        self : DynamoCluster
            The fitted estimator.
        """
        self._validate_params()
        models = check_models(X)
        rng = check_random_state(self.random_state)
        seed = int(rng.randint(_MAX_SEED))
        embedder = resolve_embedder(self.embedder, seed)
        self._check_space(embedder)  # before any training
        Z = embed_population(embedder, models)
        features, pca = self._features(embedder, Z)
        clusterer, labels, scores = self._fit_clusterer(features, seed)
        labels = np.asarray(labels)
        ids = np.array(sorted(set(labels.tolist()) - {-1}))
        self.embedder_ = embedder
        self.clusterer_ = clusterer
        self.embeddings_ = Z
        self.features_, self._pca = features, pca
        self.labels_ = labels
        self.n_clusters_ = len(ids)
        self._center_labels = ids
        self.cluster_centers_ = (np.stack([Z[labels == i].mean(0) for i in ids]) if len(ids)
                                 else np.empty((0, Z.shape[1])))
        self.silhouette_scores_ = scores
        return self

    def predict(self, X: Sequence) -> np.ndarray:
        """Assign unseen models to the fitted clusters.

        The models are embedded with the fitted embedder (meta-model frozen) and described
        as in :meth:`fit` (see ``space``), then assigned by the clusterer's ``predict``, or
        to the nearest cluster centre when the clusterer has none.

        Parameters
        ----------
        X : sequence of torch.nn.Module or Trajectories
            The models to embed: members of the fitted family (or their recordings), with
            the inputs and outputs of the fitted population.

        Returns
        -------
        labels : ndarray of shape (n_models,)
            The cluster of each model (labels as in ``labels_``).
        """
        check_is_fitted(self)
        F, _ = self._features(self.embedder_, self.transform(X), self._pca)
        if hasattr(self.clusterer_, "predict"):
            return np.asarray(self.clusterer_.predict(F))
        if self.n_clusters_ == 0:
            raise ValueError("The clusterer found no cluster (all training models are noise); "
                             "nothing to assign new models to.")
        centres = np.stack([self.features_[self.labels_ == i].mean(0)
                            for i in self._center_labels])
        d = ((F[:, None] - centres[None]) ** 2).sum(-1)
        return self._center_labels[d.argmin(1)]

    def transform(self, X: Sequence) -> np.ndarray:
        """Embed (unseen) models with the fitted embedder.

        Parameters
        ----------
        X : sequence of torch.nn.Module or Trajectories
            The models to embed: members of the fitted family (or their recordings), with
            the inputs and outputs of the fitted population.

        Returns
        -------
        embeddings : ndarray of shape (n_models, n_components)
            One embedding per model, in the space of ``embeddings_``.
        """
        check_is_fitted(self)
        return np.asarray(self.embedder_.transform(check_models(X)), dtype=np.float64)

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        tags.input_tags.two_d_array = False
        return tags

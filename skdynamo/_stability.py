"""How much an embedding changes between refits: Procrustes-aligned disagreement."""

from __future__ import annotations

from collections.abc import Sequence
import itertools

import numpy as np
from scipy.linalg import orthogonal_procrustes

from ._docstrings import share_parameters

__all__ = ["embedding_disagreement", "model_disagreement"]


def _check_embeddings(embeddings):
    try:
        arrays = [np.asarray(e, dtype=np.float64) for e in embeddings]
    except (TypeError, ValueError) as exc:
        raise TypeError("embeddings must be a list of (n_models, n_components) arrays of "
                        "numbers.") from exc
    if len(arrays) < 2:
        raise ValueError(f"embeddings needs at least two refits to compare, got {len(arrays)}.")
    shapes = {a.shape for a in arrays}
    if len(shapes) != 1 or arrays[0].ndim != 2 or arrays[0].shape[0] < 2:
        raise ValueError(f"every embedding must be a 2-d array of the same shape (n_models >= 2, "
                         f"n_components); got shapes {sorted(shapes)}.")
    if not all(np.all(np.isfinite(a)) for a in arrays):
        raise ValueError("embeddings contain NaN or infinite values.")
    return arrays


def _mean_pairwise_distance(Z):
    diff = Z[:, None] - Z[None]
    d = np.sqrt((diff ** 2).sum(-1))
    n = len(Z)
    return d.sum() / (n * (n - 1))


def _aligned_residuals(reference, other):
    """Distance of each point of ``other`` from its match in ``reference`` after the best
    similarity transform of ``other`` (translation, rotation or reflection, uniform
    scale), divided by the mean distance between the reference's points: shape (n,)."""
    ref_c = reference - reference.mean(0)
    oth_c = other - other.mean(0)
    scale_ref = _mean_pairwise_distance(reference)
    if scale_ref == 0:
        raise ValueError("An embedding puts every model on one point: its disagreement with "
                         "another refit is undefined.")
    norm = (oth_c ** 2).sum()
    if norm == 0:
        aligned = np.zeros_like(oth_c)  # a collapsed refit is aligned to the centroid
    else:
        R, s = orthogonal_procrustes(oth_c, ref_c)
        aligned = oth_c @ R * (s / norm)  # least-squares scale given the rotation
    return np.sqrt(((aligned - ref_c) ** 2).sum(1)) / scale_ref


def _residual_table(embeddings):
    """Squared :func:`_aligned_residuals` of every ordered pair of refits, computed once:
    shape (R, R, n_models), ``(i, j)`` refit ``j`` aligned to refit ``i``, NaN on the
    diagonal. The map figure, each pair's and each model's are its means."""
    arrays = _check_embeddings(embeddings)
    table = np.full((len(arrays), len(arrays), len(arrays[0])), np.nan)
    for i, j in itertools.permutations(range(len(arrays)), 2):
        table[i, j] = _aligned_residuals(arrays[i], arrays[j]) ** 2
    return table


def _pairs_of(table):
    """Each ordered pair's figure (RMS over models) from a :func:`_residual_table`."""
    return np.sqrt(table.mean(2))


def _models_of(table):
    """Each model's figure (RMS over the ordered pairs) from a :func:`_residual_table`."""
    return np.sqrt(np.nanmean(table, axis=(0, 1)))


def embedding_disagreement(embeddings: Sequence[np.ndarray]) -> float:
    """Disagreement between embeddings of one population from refits (other random_state).

    For every pair of refits ``(a, b)`` (both orders), ``b`` is aligned to ``a`` by the
    similarity transform that minimises the squared error (translation, rotation or
    reflection, one uniform scale; orthogonal Procrustes), and the RMS distance between
    matching aligned points is divided by the mean distance between distinct models of
    ``a``. The result is the mean over ordered pairs: 0 when the refits agree up to a
    rotation, reflection, scale and shift; about 1 or more when they are unrelated.

    Parameters
    ----------
    embeddings : list of array-like of shape (n_models, n_components)
        At least two embeddings of the same models, in the same order.

    Returns
    -------
    disagreement : float
        0 for maps equal up to a similarity transform; about 1 or more for unrelated maps.

    Examples
    --------
    >>> import numpy as np
    >>> from skdynamo import embedding_disagreement
    >>> Z = np.random.default_rng(0).normal(size=(10, 2))
    >>> rot = np.array([[0.0, -1.0], [1.0, 0.0]])
    >>> round(embedding_disagreement([Z, 3 * Z @ rot + 1]), 6)
    0.0
    """
    return float(np.nanmean(pair_disagreements(embeddings)))


def pair_disagreements(embeddings):
    """:func:`embedding_disagreement` of each ordered pair of refits: an (R, R) array
    whose entry ``(i, j)`` compares refit ``j`` aligned to refit ``i`` (NaN diagonal).
    Their spread says how far one pair of refits can be from the mean."""
    return _pairs_of(_residual_table(embeddings))


def model_disagreement(embeddings: Sequence[np.ndarray]) -> np.ndarray:
    """How far each model moves between refits, once the refits are aligned.

    The per-model part of :func:`embedding_disagreement`: for every ordered pair of refits
    ``(a, b)``, ``b`` is aligned to ``a`` by the same similarity transform, and each
    model's distance from its position in ``a`` is divided by the mean distance between
    distinct models of ``a``; the result is each model's root mean square over the pairs.
    It says *where* a map is not reproducible: a few models with large values are points
    whose position should not be read, while the rest of the map may hold. The root mean
    square over models is close to :func:`embedding_disagreement` (never below it, by
    Jensen's inequality; equal when every pair of refits disagrees by the same amount).

    Parameters
    ----------
    {embeddings}

    Returns
    -------
    disagreement : ndarray of shape (n_models,)
        0 for a model that every refit puts at the same place relative to the others.

    Examples
    --------
    >>> import numpy as np
    >>> from skdynamo import model_disagreement
    >>> Z = np.random.default_rng(0).normal(size=(10, 2))
    >>> moved = Z.copy()
    >>> moved[3] += 2.0  # one model lands elsewhere in the second refit
    >>> int(np.argmax(model_disagreement([Z, moved])))
    3
    """
    return _models_of(_residual_table(embeddings))


share_parameters(model_disagreement, embedding_disagreement)

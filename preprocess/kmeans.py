"""K-means over dumped features: the reference's MiniBatchKMeans, as a scikit-learn estimator.

:class:`FeatureKMeans` fits ``sklearn.cluster.MiniBatchKMeans`` with the reference's
parameters (``learn_kmeans.py``: k-means++ init, 100 iterations, batches of 10,000, ``tol=0``,
``max_no_improvement=100``, 20 inits, no reassignment) and assigns frames to the nearest
centroid by squared Euclidean distance, vectorised in chunks so memory stays bounded
(the reference's ``ApplyKmeans``). :func:`sample_shard_features` draws the random fraction of
utterances per shard the model is fitted on; :func:`save_kmeans` / :func:`load_kmeans` use joblib.
"""

from __future__ import annotations

import logging
import os

import joblib
import numpy as np
from sklearn.base import BaseEstimator, ClusterMixin
from sklearn.cluster import KMeans, MiniBatchKMeans
from sklearn.utils.validation import check_is_fitted

from sf_fairseq.resume import atomic_path

from .feature_shards import iter_shard_items, read_shard

logger = logging.getLogger(__name__)


class FeatureKMeans(ClusterMixin, BaseEstimator):
    """Mini-batch k-means with the reference's defaults and chunked nearest-centroid prediction.

    Args:
        n_clusters: K, the number of cluster ids (labels ``0 .. K-1``).
        init, max_iter, batch_size, tol, max_no_improvement, n_init, reassignment_ratio,
            init_size: passed to ``MiniBatchKMeans`` (``compute_labels`` is always False).
        random_state: seed of the fit.
        predict_chunk_size: frames per distance computation in :meth:`predict`.

    Attributes (after :meth:`fit`):
        cluster_centers_: float32 ``[K, D]``.
        inertia_: the fitted model's inertia on the data it was fitted on.
        n_features_in_: D.
    """

    def __init__(
        self,
        n_clusters: int = 100,
        *,
        init: str = "k-means++",
        max_iter: int = 100,
        batch_size: int = 10000,
        tol: float = 0.0,
        max_no_improvement: int = 100,
        n_init: int = 20,
        reassignment_ratio: float = 0.0,
        init_size: int | None = None,
        random_state: int | None = 0,
        predict_chunk_size: int = 8192,
    ) -> None:
        self.n_clusters = n_clusters
        self.init = init
        self.max_iter = max_iter
        self.batch_size = batch_size
        self.tol = tol
        self.max_no_improvement = max_no_improvement
        self.n_init = n_init
        self.reassignment_ratio = reassignment_ratio
        self.init_size = init_size
        self.random_state = random_state
        self.predict_chunk_size = predict_chunk_size

    def fit(self, X: np.ndarray, y: None = None) -> FeatureKMeans:
        """Fit on frames ``X`` [N, D]."""
        X = np.asarray(X, dtype=np.float32)
        if X.ndim != 2:
            raise ValueError(f"expected features [N, D], got shape {X.shape}")
        if len(X) < self.n_clusters:
            raise ValueError(f"{len(X)} frames cannot make {self.n_clusters} clusters")
        km = MiniBatchKMeans(
            n_clusters=self.n_clusters,
            init=self.init,
            max_iter=self.max_iter,
            batch_size=self.batch_size,
            tol=self.tol,
            max_no_improvement=self.max_no_improvement,
            n_init=self.n_init,
            reassignment_ratio=self.reassignment_ratio,
            compute_labels=False,
            init_size=self.init_size,
            random_state=self.random_state,
        ).fit(X)
        self.cluster_centers_ = km.cluster_centers_.astype(np.float32)
        self.n_features_in_ = X.shape[1]
        # Computed here since compute_labels=False leaves MiniBatchKMeans without it; this is
        # the number the reference logs (``-km_model.score(feat) / len(feat)`` per frame).
        self.inertia_ = float(-km.score(X))
        logger.info("k-means: K=%d on %d frames, inertia %.5g (%.5g per frame)",
                    self.n_clusters, len(X), self.inertia_, self.inertia_ / len(X))
        return self

    def fit_predict(self, X: np.ndarray, y: None = None) -> np.ndarray:
        """Fit on ``X`` [N, D], then return its cluster ids [N] (computed by :meth:`predict`,
        as ``compute_labels=False`` leaves the fit without labels)."""
        return self.fit(X).predict(X)

    def predict(self, X: np.ndarray) -> np.ndarray:
        """Nearest centroid of each frame by squared Euclidean distance.

        Args:
            X: ``[N, D]``.

        Returns:
            int64 ``[N]`` cluster ids in ``0 .. K-1``.
        """
        check_is_fitted(self, "cluster_centers_")
        X = np.asarray(X)
        if X.ndim != 2 or X.shape[1] != self.n_features_in_:
            raise ValueError(f"expected features [N, {self.n_features_in_}], got shape {X.shape}")
        centers_t = self.cluster_centers_.T  # [D, K]
        center_sq = (self.cluster_centers_**2).sum(axis=1)  # [K]
        labels = np.empty(len(X), dtype=np.int64)
        for start in range(0, len(X), self.predict_chunk_size):
            x = np.asarray(X[start : start + self.predict_chunk_size], dtype=np.float32)
            # |x - c|^2 = |x|^2 - 2 x.c + |c|^2; |x|^2 is constant per row so not needed for argmin.
            dist = center_sq[None, :] - 2.0 * (x @ centers_t)
            labels[start : start + len(x)] = dist.argmin(axis=1)
        return labels


def sample_shard_features(
    feat_dir: str | os.PathLike, split: str, nshard: int, percent: float, seed: int = 0
) -> np.ndarray:
    """Frames of a random ``percent`` of the utterances of every shard (all of them if
    ``percent >= 1`` or ``percent < 0``), concatenated: float32 ``[N, D]``."""
    rng = np.random.default_rng(seed)
    parts: list[np.ndarray] = []
    for rank in range(nshard):
        feats, lengths = read_shard(feat_dir, split, rank, nshard)
        if not lengths:
            continue
        if 0 <= percent < 1:
            n_pick = int(np.ceil(len(lengths) * percent))
            picked = set(rng.choice(len(lengths), n_pick, replace=False).tolist())
        else:
            picked = set(range(len(lengths)))
        parts += [np.array(block) for i, block in enumerate(iter_shard_items(feats, lengths))
                  if i in picked]
    if not parts:
        raise ValueError(f"no features found for split {split!r} in {feat_dir}")
    sample = np.concatenate(parts).astype(np.float32, copy=False)
    logger.info("k-means sample: %d frames of %d dims from %s", *sample.shape, feat_dir)
    return sample


def save_kmeans(model: FeatureKMeans, path: str | os.PathLike) -> None:
    """Write with joblib, atomically."""
    with atomic_path(path) as tmp:
        joblib.dump(model, tmp)


def load_kmeans(path: str | os.PathLike) -> FeatureKMeans:
    """Load a model written by :func:`save_kmeans`, or a plain scikit-learn ``(MiniBatch)KMeans``
    such as the reference's ``learn_kmeans.py`` writes (joblib unpickles: trusted files only)."""
    model = joblib.load(path)
    if isinstance(model, FeatureKMeans):
        return model
    if isinstance(model, (MiniBatchKMeans, KMeans)) and hasattr(model, "cluster_centers_"):
        wrapped = FeatureKMeans(n_clusters=model.n_clusters)
        wrapped.cluster_centers_ = model.cluster_centers_.astype(np.float32)
        wrapped.n_features_in_ = model.cluster_centers_.shape[1]
        wrapped.inertia_ = float(getattr(model, "inertia_", np.nan))
        return wrapped
    raise TypeError(f"{path}: not a fitted k-means model ({type(model).__name__})")

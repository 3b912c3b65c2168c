"""FeatureKMeans: reference parameters, nearest-centroid assignment, joblib, sampling."""

from __future__ import annotations

import joblib
import numpy as np
import pytest
from sklearn.base import clone
from sklearn.cluster import MiniBatchKMeans

from sf_fairseq.preprocess.feature_shards import FeatureShardWriter
from sf_fairseq.preprocess.kmeans import FeatureKMeans, load_kmeans, sample_shard_features, save_kmeans


def _blobs(n_per: int = 200, k: int = 5, dim: int = 8, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    centers = rng.normal(scale=10.0, size=(k, dim))
    truth = np.repeat(np.arange(k), n_per)
    return (centers[truth] + rng.normal(size=(len(truth), dim))).astype(np.float32), truth


def test_reference_parameters() -> None:
    params = FeatureKMeans(500).get_params()
    assert params == {
        "n_clusters": 500, "init": "k-means++", "max_iter": 100, "batch_size": 10000, "tol": 0.0,
        "max_no_improvement": 100, "n_init": 20, "reassignment_ratio": 0.0, "init_size": None,
        "random_state": 0, "predict_chunk_size": 8192,
    }
    assert clone(FeatureKMeans(7, n_init=3)).get_params()["n_init"] == 3


def test_fit_recovers_separated_clusters() -> None:
    X, truth = _blobs()
    model = FeatureKMeans(5, n_init=2)
    labels = model.fit_predict(X)
    np.testing.assert_array_equal(labels, model.predict(X))
    assert model.cluster_centers_.shape == (5, 8) and model.cluster_centers_.dtype == np.float32
    # A perfect clustering up to renaming: each true blob maps to exactly one id.
    pairs = set(zip(truth.tolist(), labels.tolist()))
    assert len(pairs) == 5 and len({p[1] for p in pairs}) == 5
    assert model.inertia_ == pytest.approx(((X - model.cluster_centers_[labels]) ** 2).sum(), rel=1e-3)


@pytest.mark.parametrize("chunk", [1, 7, 8192])
def test_predict_equals_brute_force(chunk: int) -> None:
    rng = np.random.default_rng(1)
    model = FeatureKMeans(13, predict_chunk_size=chunk)
    model.cluster_centers_ = rng.normal(size=(13, 6)).astype(np.float32)
    model.n_features_in_ = 6
    X = rng.normal(size=(301, 6)).astype(np.float32)
    want = [min(range(13), key=lambda k: float(((x.astype(np.float64) - model.cluster_centers_[k]) ** 2).sum()))
            for x in X]
    got = model.predict(X)
    assert got.dtype == np.int64
    assert got.tolist() == want


def test_predict_rejects_wrong_dim() -> None:
    X, _ = _blobs(n_per=20)
    model = FeatureKMeans(5, n_init=1).fit(X)
    with pytest.raises(ValueError, match=r"\[N, 8\]"):
        model.predict(X[:, :4])


def test_joblib_round_trip(tmp_path) -> None:
    X, _ = _blobs(n_per=50)
    model = FeatureKMeans(5, n_init=2, random_state=3).fit(X)
    save_kmeans(model, tmp_path / "km.joblib")
    loaded = load_kmeans(tmp_path / "km.joblib")
    assert loaded.get_params() == model.get_params()
    np.testing.assert_array_equal(loaded.cluster_centers_, model.cluster_centers_)
    np.testing.assert_array_equal(loaded.predict(X), model.predict(X))
    assert loaded.inertia_ == model.inertia_


def test_loads_plain_sklearn_model(tmp_path) -> None:
    X, _ = _blobs(n_per=50)
    ref = MiniBatchKMeans(5, n_init=2, compute_labels=False, random_state=0).fit(X)
    joblib.dump(ref, tmp_path / "ref.km")
    np.testing.assert_array_equal(load_kmeans(tmp_path / "ref.km").predict(X), ref.predict(X))
    joblib.dump({"not": "a model"}, tmp_path / "bad.km")
    with pytest.raises(TypeError, match="bad.km"):
        load_kmeans(tmp_path / "bad.km")


def test_sample_takes_percent_of_utterances_per_shard(tmp_path) -> None:
    # Shard r, utterance i: 3 frames filled with the value 100 r + i.
    for rank in range(2):
        with FeatureShardWriter(tmp_path, "train", rank, 2) as shard:
            for i in range(10):
                shard.append(np.full((3, 2), 100 * rank + i, dtype=np.float32))
    sample = sample_shard_features(tmp_path, "train", 2, percent=0.3, seed=5)
    utts = sorted(set(sample[:, 0].tolist()))
    assert sample.shape == (2 * 3 * 3, 2)  # ceil(10 * 0.3) = 3 utterances per shard, whole
    assert sum(u < 100 for u in utts) == 3 and sum(u >= 100 for u in utts) == 3
    np.testing.assert_array_equal(sample, sample_shard_features(tmp_path, "train", 2, 0.3, seed=5))
    assert len(sample_shard_features(tmp_path, "train", 2, percent=-1)) == 60

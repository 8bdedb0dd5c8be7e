"""SMOTE's neighbour search in blocks: exact up to the block size, within blocks above it, SMOTE's draws either way."""

import numpy as np
import pandas as pd
import pytest
from imblearn.over_sampling import SMOTE
from sklearn.neighbors import NearestNeighbors

from ml_cloud_optimizer.imbalance import _block_neighbours, smote_resample


def _rows(n=300, positives=60, seed=0):
    rng = np.random.default_rng(seed)
    X = pd.DataFrame(rng.normal(size=(n, 3)), columns=["a", "b", "c"])
    y = np.zeros(n, dtype=bool)
    y[rng.choice(n, positives, replace=False)] = True
    return X, y


def test_up_to_the_block_size_it_is_imbalanced_learns_smote():
    X, y = _rows()
    ours, ours_y = smote_resample(X, y, random_state=7, block_rows=60)
    theirs, theirs_y = SMOTE(k_neighbors=5, random_state=7).fit_resample(X, y)
    pd.testing.assert_frame_equal(ours, theirs)
    np.testing.assert_array_equal(ours_y, theirs_y)


def test_block_neighbours_are_the_exact_ones_within_each_block_of_consecutive_rows():
    rows = np.random.default_rng(1).normal(size=(50, 4))
    found = _block_neighbours(4, 20).fit(rows).kneighbors(rows, return_distance=False)
    # 50 rows in blocks of at most 20: three equal blocks, 17, 17 and 16 rows
    for block in (np.arange(0, 17), np.arange(17, 34), np.arange(34, 50)):
        exact = NearestNeighbors(n_neighbors=4).fit(rows[block]).kneighbors(rows[block], return_distance=False)
        np.testing.assert_array_equal(found[block], block[exact])
    assert (found[:, 0] == np.arange(50)).all()  # each row is its own nearest, as SMOTE expects
    whole = _block_neighbours(4, 50).fit(rows).kneighbors(rows, return_distance=False)
    np.testing.assert_array_equal(whole, NearestNeighbors(n_neighbors=4).fit(rows).kneighbors(rows)[1])


def test_above_the_block_size_synthetic_rows_join_neighbours_of_one_block():
    # Minority rows in two far-apart clusters, alternating in order: full SMOTE would pair rows of
    # one cluster across the whole list; blocks of 10 consecutive rows still pair within a cluster.
    n_min = 40
    a = np.where(np.arange(n_min) % 2 == 0, 0.0, 100.0) + np.arange(n_min) * 0.01
    X = pd.DataFrame({"a": np.concatenate([a, np.full(200, 50.0)]), "b": 0.0})
    y = np.arange(len(X)) < n_min
    X_res, y_res = smote_resample(X, y, random_state=0, k_neighbors=3, block_rows=10)
    synthetic = X_res.iloc[len(X) :]
    assert len(synthetic) == 200 - n_min and np.asarray(y_res[len(X) :]).all()
    pd.testing.assert_frame_equal(X_res.iloc[: len(X)], X)
    # with 5 rows of each cluster per block, each row's 3 neighbours lie in its own cluster
    assert ((synthetic["a"] < 1.0) | (synthetic["a"] > 100.0)).all()
    again, _ = smote_resample(X, y, random_state=0, k_neighbors=3, block_rows=10)
    pd.testing.assert_frame_equal(X_res, again)


def test_block_neighbours_answer_smotes_query_only():
    search = _block_neighbours(3, 10).fit(np.zeros((30, 2)))
    with pytest.raises(NotImplementedError, match="SMOTE's query"):
        search.kneighbors(np.zeros((30, 2)), return_distance=True)
    with pytest.raises(NotImplementedError, match="SMOTE's query"):
        search.kneighbors(np.zeros((5, 2)), return_distance=False)

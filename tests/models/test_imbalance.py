"""SMOTE, class weights and the focal loss on small hand-made data."""

import numpy as np
import pandas as pd
import pytest
import torch

from ml_cloud_optimizer.imbalance import FocalLoss, cap_majority, class_weights, smote_resample


def _imbalanced(n=400, positives=20, seed=0):
    rng = np.random.default_rng(seed)
    X = pd.DataFrame(rng.normal(size=(n, 3)), columns=["a", "b", "c"])
    y = np.zeros(n, dtype=bool)
    y[:positives] = True
    X.loc[y, "a"] += 4.0  # minority rows sit apart
    return X, y


def test_smote_keeps_original_rows_and_adds_only_minority_rows():
    X, y = _imbalanced()
    X_res, y_res = smote_resample(X, y, random_state=0)

    pd.testing.assert_frame_equal(X_res.iloc[: len(X)].reset_index(drop=True), X.reset_index(drop=True))
    np.testing.assert_array_equal(np.asarray(y_res[: len(y)]), y)
    synthetic, synthetic_y = X_res.iloc[len(X) :], np.asarray(y_res[len(y) :])
    assert len(synthetic) == (~y).sum() - y.sum()  # "auto" balances the classes
    assert synthetic_y.all()
    # Interpolations between minority neighbours stay inside the minority rows' bounding box.
    lo, hi = X[y].min(), X[y].max()
    assert ((synthetic >= lo - 1e-12) & (synthetic <= hi + 1e-12)).all().all()


def test_smote_is_seeded():
    X, y = _imbalanced()
    a, _ = smote_resample(X, y, random_state=3)
    b, _ = smote_resample(X, y, random_state=3)
    c, _ = smote_resample(X, y, random_state=4)
    pd.testing.assert_frame_equal(a, b)
    assert not a.equals(c)


def test_smote_adapts_neighbours_to_a_tiny_minority():
    X, y = _imbalanced(n=100, positives=3)
    _X_res, y_res = smote_resample(X, y)
    assert np.asarray(y_res).sum() == (~y).sum()


@pytest.mark.parametrize(
    ("X", "y", "message"),
    [
        (np.array([[0.0], [np.nan], [1.0], [2.0]]), np.array([0, 0, 1, 1]), "NaN"),
        (np.zeros((5, 2)), np.zeros(5), "two classes"),
        (np.zeros((5, 2)), np.array([0, 0, 0, 0, 1]), "at least 2"),
    ],
)
def test_smote_rejects_bad_input_with_a_clear_message(X, y, message):
    with pytest.raises(ValueError, match=message):
        smote_resample(X, y)


def test_cap_majority_keeps_every_minority_row_and_a_seeded_sample_of_the_majority():
    _, y = _imbalanced(n=1_000, positives=30)
    keep = cap_majority(y, 200, random_state=1)
    assert keep[y].all() and keep[~y].sum() == 200
    np.testing.assert_array_equal(keep, cap_majority(y, 200, random_state=1))
    assert not np.array_equal(keep, cap_majority(y, 200, random_state=2))
    kept = np.flatnonzero(~y & keep)
    assert kept.min() < 300 and kept.max() > 700  # drawn across the rows, not the first 200


def test_cap_majority_keeps_all_at_or_below_the_cap_and_refuses_a_cap_below_one():
    _, y = _imbalanced(n=400, positives=20)
    for cap in (None, 380, 10_000):
        assert cap_majority(y, cap).all()
    assert cap_majority(np.zeros(50, dtype=bool), 10).all()  # one class: nothing to balance against
    with pytest.raises(ValueError, match="at least 1"):
        cap_majority(y, 0)


def test_class_weights_balance_the_classes():
    y = np.array([0] * 90 + [1] * 10)
    weights = class_weights(y)
    assert set(weights) == {0, 1}
    assert weights[0] * 90 == pytest.approx(weights[1] * 10)
    assert weights[0] * 90 + weights[1] * 10 == pytest.approx(len(y))


def test_focal_loss_without_focusing_is_cross_entropy():
    logits = torch.tensor([-2.0, -0.3, 0.1, 3.0])
    targets = torch.tensor([0.0, 1.0, 0.0, 1.0])
    bce = torch.nn.functional.binary_cross_entropy_with_logits(logits, targets)
    assert FocalLoss(gamma=0.0, alpha=None)(logits, targets).item() == pytest.approx(bce.item(), rel=1e-6)


def test_focal_loss_shrinks_easy_examples_more_than_hard_ones():
    targets = torch.tensor([1.0, 1.0])
    logits = torch.tensor([4.0, -1.0])  # an easy positive, a hard one
    bce = FocalLoss(gamma=0.0, alpha=None, reduction="none")(logits, targets)
    focal = FocalLoss(gamma=2.0, alpha=None, reduction="none")(logits, targets)
    ratio = focal / bce
    assert (focal < bce).all()
    assert ratio[0] < ratio[1] / 100


def test_focal_loss_alpha_weighs_positives():
    logits = torch.tensor([0.0, 0.0])
    targets = torch.tensor([1.0, 0.0])
    loss = FocalLoss(gamma=2.0, alpha=0.8, reduction="none")(logits, targets)
    assert loss[0].item() == pytest.approx(4 * loss[1].item())


def test_focal_loss_rejects_bad_parameters():
    with pytest.raises(ValueError, match="gamma"):
        FocalLoss(gamma=-1)
    with pytest.raises(ValueError, match="alpha"):
        FocalLoss(alpha=1.5)

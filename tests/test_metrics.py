"""Hand-written metrics against scikit-learn as the oracle."""
import numpy as np
import pytest
import torch
from sklearn import metrics as sk

from utils.metrics import (ConfusionMeter, accuracy, accuracy_from_confusion, balanced_accuracy,
                           balanced_accuracy_from_confusion, confusion_matrix)

CASES = [(seed, n) for seed in range(5) for n in (2, 10, 37)]


def random_labels(seed, num_classes, size=500, missing=()):
    rng = np.random.default_rng(seed)
    allowed = [c for c in range(num_classes) if c not in missing]
    return rng.choice(allowed, size), rng.integers(0, num_classes, size)


@pytest.mark.filterwarnings("ignore:y_pred contains classes not in y_true")  # intended: absent classes
@pytest.mark.parametrize("seed, num_classes", CASES)
def test_against_sklearn(seed, num_classes):
    missing = (0, num_classes - 1) if num_classes > 2 else ()  # classes absent from y_true
    y_true, y_pred = random_labels(seed, num_classes, missing=missing)
    expected_cm = sk.confusion_matrix(y_true, y_pred, labels=list(range(num_classes)))
    cm = confusion_matrix(torch.from_numpy(y_true), torch.from_numpy(y_pred), num_classes)
    assert cm.dtype == torch.int64 and np.array_equal(cm.numpy(), expected_cm)
    assert abs(accuracy(y_true, y_pred) - sk.accuracy_score(y_true, y_pred)) < 1e-12
    assert abs(accuracy_from_confusion(cm) - sk.accuracy_score(y_true, y_pred)) < 1e-12
    with np.errstate(all="ignore"):
        expected_bal = sk.balanced_accuracy_score(y_true, y_pred)
    assert abs(balanced_accuracy(y_true, y_pred, num_classes) - expected_bal) < 1e-12
    assert abs(balanced_accuracy_from_confusion(cm) - expected_bal) < 1e-12


def test_balanced_accuracy_differs_from_accuracy_on_imbalanced_data():
    y_true = [0] * 90 + [1] * 10
    y_pred = [0] * 100
    assert accuracy(y_true, y_pred) == pytest.approx(0.9)
    assert balanced_accuracy(y_true, y_pred) == pytest.approx(0.5)


def test_meter_over_batches_equals_one_shot():
    y_true, y_pred = random_labels(7, 10, size=1000)
    meter = ConfusionMeter(10)
    for start in range(0, 1000, 64):
        meter.update(torch.from_numpy(y_true[start:start + 64]), torch.from_numpy(y_pred[start:start + 64]))
    assert torch.equal(meter.compute(), confusion_matrix(y_true, y_pred, 10))
    assert meter.accuracy() == pytest.approx(sk.accuracy_score(y_true, y_pred), abs=1e-12)
    assert meter.balanced_accuracy() == pytest.approx(sk.balanced_accuracy_score(y_true, y_pred), abs=1e-12)
    meter.reset()
    assert meter.compute().sum() == 0


def test_out_of_range_labels_raise():
    with pytest.raises(ValueError, match=r"\[0, 3\)"):
        confusion_matrix([0, 3], [0, 1], 3)
    with pytest.raises(ValueError, match=r"\[0, 3\)"):
        confusion_matrix([0, 1], [-1, 1], 3)
    meter = ConfusionMeter(3)
    meter.update(torch.tensor([2]), torch.tensor([3]))
    with pytest.raises(ValueError):
        meter.compute()


@pytest.mark.parametrize("y_true, y_pred", [([0, 3], [0, 1]), ([0, 1], [0, 3]), ([-1, 1], [0, 1]), ([1, 2], [1, -2])])
def test_meter_rejects_every_out_of_range_value_instead_of_counting_it_elsewhere(y_true, y_pred):
    """Out-of-range pairs can alias a valid cell (1*3 + -2 == 1*3 + 1... ): they must raise, not be counted."""
    meter = ConfusionMeter(3)
    meter.update(torch.tensor([0, 1, 2]), torch.tensor([0, 1, 2]))
    meter.update(torch.tensor(y_true), torch.tensor(y_pred))
    with pytest.raises(ValueError, match=r"1 labels or predictions lie outside \[0, 3\)"):
        meter.compute()

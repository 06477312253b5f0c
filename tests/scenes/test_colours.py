"""Classed legends: quantile classes whose bounds differ, and the grids coloured by their cases."""

from __future__ import annotations

import numpy as np
import pytest

from scenes.colours import class_breaks, class_labels, classify


@pytest.mark.parametrize("values", [
    np.r_[np.zeros(90), 1, 1, 1, 2, 3, 5, 8, 13, 21, 40],  # most grids without open cases
    np.arange(100),
    np.r_[np.zeros(10), np.full(10, 7)],
    np.full(12, 4),
])
def test_classes_have_distinct_bounds_and_hold_every_value(values):
    edges = class_breaks(values)
    labels = class_labels(edges, integer=True)
    assert len(set(labels)) == len(labels), f"two classes with the same bounds: {labels}"
    assert np.all(np.diff(edges[1:]) > 0) and edges[0] == values.min() and edges[-1] == values.max()
    classes = classify(values, edges)
    assert classes.min() == 0 and classes.max() == len(labels) - 1, "every class holds a value"
    for k in range(len(labels)):  # each value lies within its class's bounds
        inside = values[classes == k]
        assert inside.min() >= edges[k] and inside.max() <= edges[k + 1]


def test_many_zeros_give_a_class_of_their_own_not_five_zero_labels():
    values = np.r_[np.zeros(90), np.arange(1, 11)]
    labels = class_labels(class_breaks(values), integer=True)
    assert labels[0] == "0" and labels.count("0") == 1 and len(labels) >= 3


def test_rates_get_decimal_labels():
    labels = class_labels(class_breaks(np.array([0.0, 0.4, 1.25, 2.5, 3.75, 9.0])), integer=False)
    assert labels[0].startswith("0.0–") and len(set(labels)) == len(labels)

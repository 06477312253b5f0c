"""Colours: distinct neighbouring grid colours and continuous scales."""

from __future__ import annotations

import numpy as np
import shapely

# Eight colours that stay apart on a dark background (Okabe-Ito and Tableau, adjusted).
CATEGORICAL = ("#4e79a7", "#f28e2b", "#59a14f", "#e15759", "#b07aa1", "#edc948", "#76b7b2", "#ff9da7")
SEQUENTIAL = ("#1b2a49", "#1f4e79", "#2471a3", "#2e9bc6", "#5cc8c8", "#a6e3a1", "#f9e2af", "#fab387", "#f38ba8")


def neighbour_distinct_classes(boundaries: np.ndarray, *, n_classes: int = len(CATEGORICAL)) -> np.ndarray:
    """Greedy colouring: touching polygons get different classes where possible.

    Parameters
    ----------
    boundaries : ndarray of shapely.Polygon, shape (n,)

    Returns
    -------
    ndarray of int, shape (n,)
        Class in ``[0, n_classes)`` per polygon.
    """
    n = len(boundaries)
    classes = np.full(n, -1, dtype=np.int64)
    if n == 0:
        return classes
    tree = shapely.STRtree(boundaries)
    a, b = tree.query(boundaries, predicate="intersects")
    pairs = a != b
    a, b = a[pairs], b[pairs]
    order = np.argsort(a, kind="stable")
    a, b = a[order], b[order]
    starts = np.searchsorted(a, np.arange(n + 1))
    degree = np.diff(starts)
    for i in np.argsort(-degree, kind="stable"):  # most-connected first
        used = set(classes[b[starts[i]:starts[i + 1]]].tolist())
        free = [c for c in range(n_classes) if c not in used]
        classes[i] = free[0] if free else int(np.argmin(np.bincount(classes[b[starts[i]:starts[i + 1]]]
                                                                     .clip(0), minlength=n_classes)))
    return classes


def sequential(values: np.ndarray, *, vmax: float | None = None) -> tuple[np.ndarray, float]:
    """Map values >= 0 to indices into :data:`SEQUENTIAL`; returns the indices and the top of the scale."""
    values = np.asarray(values, dtype=np.float64)
    top = float(vmax if vmax is not None else (np.nanpercentile(values, 98) if len(values) else 1.0)) or 1.0
    idx = np.clip((values / top) * (len(SEQUENTIAL) - 1), 0, len(SEQUENTIAL) - 1).round().astype(np.int64)
    return idx, top

"""Colours: distinct neighbouring grid colours and continuous scales."""

from __future__ import annotations

import numpy as np
import pyarrow as pa
import shapely

# Eight colours that stay apart on a dark background (Okabe-Ito and Tableau, adjusted).
CATEGORICAL = ("#4e79a7", "#f28e2b", "#59a14f", "#e15759", "#b07aa1", "#edc948", "#76b7b2", "#ff9da7")
# The ground under the buildings, muted map colours that stay darker than the buildings on the dark theme.
BASEMAP_COLOURS = {"green": "#2f5d45", "water": "#2a5f8f", "road": "#434c5e"}
SEQUENTIAL = ("#1b2a49", "#1f4e79", "#2471a3", "#2e9bc6", "#5cc8c8", "#a6e3a1", "#f9e2af", "#fab387", "#f38ba8")


def neighbour_distinct_classes_wkb(boundaries: pa.Array) -> np.ndarray:
    """:func:`neighbour_distinct_classes` of polygons given as WKB (a pyarrow binary array, cheap to send to
    another process: :func:`scenes.helper.in_helper`)."""
    return neighbour_distinct_classes(shapely.from_wkb(boundaries.to_numpy(zero_copy_only=False)))


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


# Five classes from the sequential ramp, dark (few) to warm (many).
CLASSED = ("#1f4e79", "#2e9bc6", "#a6e3a1", "#fab387", "#f38ba8")


def class_breaks(values: np.ndarray, *, n_classes: int = len(CLASSED)) -> np.ndarray:
    """Quantile classes with no two the same bounds: ``edges[0]`` is the minimum, then each class's top.

    Each class takes its share of the values not yet classed, so ties (many grids with 0 open cases)
    make one class of their own and the rest still spread over the others; fewer distinct values
    give fewer classes, never classes with the same bounds.

    Parameters
    ----------
    values : ndarray, shape (n,)
        Finite values per grid.

    Returns
    -------
    ndarray, shape (k + 1,)
        The minimum and the tops of ``k <= n_classes`` classes, strictly increasing after the first
        (``edges[1] == edges[0]`` when the lowest class is that one value).
    """
    rest = np.sort(np.asarray(values, dtype=np.float64))
    if len(rest) == 0:
        return np.array([0.0, 0.0])
    edges = [rest[0]]
    for left in range(n_classes, 0, -1):
        if len(rest) == 0:
            break
        top = rest[-1] if left == 1 else np.quantile(rest, 1 / left, method="inverted_cdf")
        edges.append(top)
        rest = rest[rest > top]
    return np.array(edges)


def classify(values: np.ndarray, edges: np.ndarray) -> np.ndarray:
    """Class index per value: class ``k`` holds ``edges[k] < v <= edges[k+1]`` (class 0 also ``edges[0]``)."""
    return np.searchsorted(edges[1:-1], np.asarray(values, dtype=np.float64), side="left")


def class_labels(edges: np.ndarray, *, integer: bool) -> list[str]:
    """A legend text per class: ``"0"``, ``"1–3"``, ``"4–12"`` for counts; ``"0.0–1.5"`` otherwise."""
    if integer:
        lows = [edges[0]] + [np.floor(e) + 1 for e in edges[1:-1]]
        return [f"{lo:,.0f}" if lo >= hi else f"{lo:,.0f}–{hi:,.0f}" for lo, hi in zip(lows, edges[1:])]
    return [f"{lo:,.1f}" if lo >= hi else f"{lo:,.1f}–{hi:,.1f}" for lo, hi in zip(edges[:-1], edges[1:])]

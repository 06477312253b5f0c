"""Building footprint shapes and the rectangle cuts of the demo district.

Footprints are built inside a bounding box ``(x0, y0, x1, y1)`` and returned
as ``(exterior, holes)`` coordinate lists; the cuts split rectangles into
cells and parcels that share exact coordinates, so siblings tile their parent.
"""

from __future__ import annotations

import numpy as np

# --------------------------------------------------------------------------- footprints

def _rect(b):
    x0, y0, x1, y1 = b
    return [(x0, y0), (x1, y0), (x1, y1), (x0, y1)], []


def _mirror(ext, b, mx, my):
    x0, y0, x1, y1 = b
    return [((x0 + x1 - x) if mx else x, (y0 + y1 - y) if my else y) for x, y in ext]


def _notched(b, rng):
    """A point tower with a light-well notch in the north and south faces."""
    x0, y0, x1, y1 = b
    w, d = x1 - x0, y1 - y0
    nw, nd = w * rng.uniform(.18, .3), d * rng.uniform(.15, .25)
    a = x0 + (w - nw) / 2
    c = a + nw
    return [(x0, y0), (a, y0), (a, y0 + nd), (c, y0 + nd), (c, y0), (x1, y0), (x1, y1), (c, y1),
            (c, y1 - nd), (a, y1 - nd), (a, y1), (x0, y1)], []


def _l_shape(b, rng):
    x0, y0, x1, y1 = b
    cw, cd = (x1 - x0) * rng.uniform(.35, .6), (y1 - y0) * rng.uniform(.35, .6)
    ext = [(x0, y0), (x1, y0), (x1, y1 - cd), (x1 - cw, y1 - cd), (x1 - cw, y1), (x0, y1)]
    return _mirror(ext, b, rng.random() < .5, rng.random() < .5), []


def _u_shape(b, rng):
    x0, y0, x1, y1 = b
    aw, bd = (x1 - x0) * rng.uniform(.2, .28), (y1 - y0) * rng.uniform(.3, .42)
    ext = [(x0, y0), (x1, y0), (x1, y1), (x1 - aw, y1), (x1 - aw, y0 + bd), (x0 + aw, y0 + bd),
           (x0 + aw, y1), (x0, y1)]
    return _mirror(ext, b, False, rng.random() < .4), []


def _h_shape(b, rng):
    x0, y0, x1, y1 = b
    ww, cd = (x1 - x0) * rng.uniform(.22, .3), (y1 - y0) * rng.uniform(.25, .4)
    c0 = y0 + ((y1 - y0) - cd) / 2
    return [(x0, y0), (x0 + ww, y0), (x0 + ww, c0), (x1 - ww, c0), (x1 - ww, y0), (x1, y0), (x1, y1),
            (x1 - ww, y1), (x1 - ww, c0 + cd), (x0 + ww, c0 + cd), (x0 + ww, y1), (x0, y1)], []


def _courtyard(b, depth):
    x0, y0, x1, y1 = b
    if min(x1 - x0, y1 - y0) < 2 * depth + 8:
        return _rect(b)
    hole = [(x0 + depth, y0 + depth), (x0 + depth, y1 - depth), (x1 - depth, y1 - depth), (x1 - depth, y0 + depth)]
    return _rect(b)[0], [hole]


def _place(rng, cell, w, d, margin):
    """A box of at most ``w`` x ``d`` inside ``cell``, at least ``margin`` from its edges."""
    x0, y0, x1, y1 = cell
    w = min(w, x1 - x0 - 2 * margin)
    d = min(d, y1 - y0 - 2 * margin)
    if w < 4 or d < 4:
        raise AssertionError(f"cell {cell} too small for a building")
    bx = x0 + margin + rng.uniform(0, x1 - x0 - 2 * margin - w)
    by = y0 + margin + rng.uniform(0, y1 - y0 - 2 * margin - d)
    return (bx, by, bx + w, by + d)


def _cells(rect, nx, ny):
    """Split ``rect`` into ``nx`` x ``ny`` cells sharing exact coordinates, north row first."""
    x0, y0, x1, y1 = rect
    xs = [x0] + [round(v, 2) for v in np.linspace(x0, x1, nx + 1)[1:-1]] + [x1]
    ys = [y0] + [round(v, 2) for v in np.linspace(y0, y1, ny + 1)[1:-1]] + [y1]
    return [(xs[i], ys[j], xs[i + 1], ys[j + 1]) for j in reversed(range(ny)) for i in range(nx)]


def _cut(rect, axis, f):
    x0, y0, x1, y1 = rect
    if axis == 0:
        c = round(x0 + (x1 - x0) * f, 2)
        return (x0, y0, c, y1), (c, y0, x1, y1)
    c = round(y0 + (y1 - y0) * f, 2)
    return (x0, y0, x1, c), (x0, c, x1, y1)


def _long_axis(rect):
    return 0 if rect[2] - rect[0] >= rect[3] - rect[1] else 1


def _split_n(rng, rect, n):
    """Guillotine ``rect`` into ``n`` (1-4) parcels, each touching the outside."""
    ax = _long_axis(rect)
    if n <= 1:
        return [rect]
    if n == 2:
        return list(_cut(rect, ax, rng.uniform(.42, .58)))
    if n == 3:
        a, b = _cut(rect, ax, rng.uniform(.3, .4))
        return [a, *_cut(b, 1 - ax, rng.uniform(.4, .6))]
    a, b = _cut(rect, ax, rng.uniform(.42, .58))
    return [*_cut(a, 1 - ax, rng.uniform(.4, .6)), *_cut(b, 1 - ax, rng.uniform(.4, .6))]


def _carve(rng, rect, depth):
    """Cut a strip of ``depth`` along a random side of ``rect``: (strip, rest)."""
    x0, y0, x1, y1 = rect
    side = int(rng.integers(4))
    if side == 0:
        return (x0, y0, x1, round(y0 + depth, 2)), (x0, round(y0 + depth, 2), x1, y1)
    if side == 1:
        return (x0, round(y1 - depth, 2), x1, y1), (x0, y0, x1, round(y1 - depth, 2))
    if side == 2:
        return (x0, y0, round(x0 + depth, 2), y1), (round(x0 + depth, 2), y0, x1, y1)
    return (round(x1 - depth, 2), y0, x1, y1), (x0, y0, round(x1 - depth, 2), y1)

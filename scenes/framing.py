"""Where the 3D view's eye goes to show a target: outside every building, framing the target's box.

Pure numpy on boxes relative to the district origin; the view (``view3d.js``) only flies there.
"""

from __future__ import annotations

import numpy as np

VIEW_ANGLE_DEG = 30.0  # vtk.js's default vertical view angle
ELEVATION_DEG = 40.0  # how steeply the eye looks down at the target
HEADING = (0.35, -0.8)  # from the target towards the eye, as the view's oblique preset (south-south-east)
CLEARANCE_M = 10.0  # the eye stays this far above the roofs it passes over
MIN_DISTANCE_M = 40.0


def frame_view(box: np.ndarray, boxes: np.ndarray, *, view_angle_deg: float = VIEW_ANGLE_DEG,
               elevation_deg: float = ELEVATION_DEG, clearance_m: float = CLEARANCE_M) -> tuple[np.ndarray, np.ndarray]:
    """The focal point and eye position that frame ``box`` from outside every building.

    The eye looks at the box's centre from far enough that the box's bounding sphere fits the view angle,
    from the south-south-east and above. It looks down more steeply (up to straight down) until no other
    building stands between it and the target, and it stays ``clearance_m`` above every roof under its sight
    line, so it is never inside a building.

    Parameters
    ----------
    box : ndarray, shape (6,)
        The target's ``xmin, ymin, zmin, xmax, ymax, zmax`` (m, relative to the origin).
    boxes : ndarray, shape (n, 6)
        Every building's box, in the same layout.

    Returns
    -------
    focal_point, eye : ndarray, shape (3,)
    """
    box = np.asarray(box, dtype=np.float64)
    lo, hi = box[:3], box[3:]
    centre = 0.5 * (lo + hi)
    radius = max(0.5 * float(np.linalg.norm(hi - lo)), 10.0)
    distance = max(1.1 * radius / np.sin(np.radians(view_angle_deg / 2)), MIN_DISTANCE_M)
    heading = np.asarray(HEADING) / np.hypot(*HEADING)
    boxes = np.asarray(boxes).reshape(-1, 6)  # float32 for a city: only the boxes near the sight line become float64
    others = ~(boxes == box.astype(boxes.dtype)).all(axis=1)
    for elevation in [*np.arange(elevation_deg, 89.0, 10.0), 89.0]:
        up = np.radians(elevation)
        eye = centre + distance * np.array([heading[0] * np.cos(up), heading[1] * np.cos(up), np.sin(up)])
        # The buildings under the sight line: their footprint boxes meet the line's box, widened a little.
        x0, x1 = sorted((centre[0], eye[0]))
        y0, y1 = sorted((centre[1], eye[1]))
        near = boxes[others & (boxes[:, 0] <= x1 + clearance_m) & (boxes[:, 3] >= x0 - clearance_m)
                     & (boxes[:, 1] <= y1 + clearance_m) & (boxes[:, 4] >= y0 - clearance_m)].astype(np.float64)
        if len(near):
            eye[2] = max(eye[2], float(near[:, 5].max()) + clearance_m)
        line = centre + np.linspace(0.0, 1.0, 64)[:, None] * (eye - centre)
        line = line[~((lo <= line) & (line <= hi)).all(axis=1)]  # what lies inside the target hides nothing
        blocked = ((near[None, :, :3] <= line[:, None, :]) & (line[:, None, :] <= near[None, :, 3:])).all(axis=2)
        if not blocked.any():
            break
    return centre, eye


def inside_any(point: np.ndarray, boxes: np.ndarray) -> bool:
    """Whether ``point`` (x, y, z) lies inside any of ``boxes`` (n x 6)."""
    boxes = np.asarray(boxes, dtype=np.float64).reshape(-1, 6)
    p = np.asarray(point, dtype=np.float64)
    return bool(((boxes[:, :3] <= p) & (p <= boxes[:, 3:])).all(axis=1).any())

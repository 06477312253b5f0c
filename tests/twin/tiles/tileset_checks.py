"""Reading an exported tileset back, independently of the exporter: the schema checks and vertex positions."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from twin.geo.crs import transformer  # cached: the checks transform each building's vertices on their own
from twin.tiles.glb import accessor_array, property_column, read_glb

TOLERANCE_M = 1e-6


def tiles(node: dict, parent: dict | None = None):
    """Every tile of a tileset, with its parent, parents first."""
    yield node, parent
    for child in node.get("children", []):
        yield from tiles(child, node)


def box_corners(box: list[float]) -> np.ndarray:
    c, h = np.array(box[:3]), np.array(box[3:]).reshape(3, 3)
    signs = np.array([[x, y, z] for x in (-1, 1) for y in (-1, 1) for z in (-1, 1)], dtype=float)
    return c + signs @ h


def outside_box(points: np.ndarray, box: list[float]) -> float:
    """How far (in units of the box's half-axes) the farthest point lies beyond the box; <= 0 inside."""
    c, h = np.array(box[:3]), np.array(box[3:]).reshape(3, 3)
    local = np.linalg.solve(h.T, (np.asarray(points) - c).T).T  # coordinates along each half-axis
    return float(np.abs(local).max() - 1.0)


NORMALIZED_MAX = {"<i1": 127, "<u1": 255, "<i2": 32767, "<u2": 65535}  # glTF: a normalized integer's 1.0


def content_features(out_dir: Path, uri: str) -> tuple[np.ndarray, np.ndarray, dict[str, list | np.ndarray]]:
    """A tile's vertices in the tileset's root frame (float64, metres), each vertex's feature, and the property
    table's columns (``buildings`` filled with its class default, 1, where the table leaves it out).

    As glTF has a viewer read them: a normalized integer is divided by its type's largest value, then the
    node's scale and translation apply; glTF is y-up, and 3D Tiles turns (x, y, z) into (x, -z, y) before the
    tile transforms.
    """
    document, binary = read_glb((out_dir / uri).read_bytes())
    primitive = document["meshes"][0]["primitives"][0]
    accessor = document["accessors"][primitive["attributes"]["POSITION"]]
    local = accessor_array(document, binary, primitive["attributes"]["POSITION"])
    if accessor.get("normalized"):
        local = local / NORMALIZED_MAX[local.dtype.str]
    node = document["nodes"][0]
    assert "matrix" not in node and "rotation" not in node, "the exporter writes translation and scale only"
    gltf = (local.astype(np.float64) * np.array(node.get("scale", [1, 1, 1]), dtype=np.float64)
            + np.array(node.get("translation", [0, 0, 0]), dtype=np.float64))
    enu = np.column_stack([gltf[:, 0], -gltf[:, 2], gltf[:, 1]])
    feature = accessor_array(document, binary, primitive["attributes"]["_FEATURE_ID_0"]).astype(np.int64)
    table = document["extensions"]["EXT_structural_metadata"]["propertyTables"][0]
    columns = {name: property_column(document, binary, name) for name in table["properties"]}
    columns.setdefault("buildings", np.ones(table["count"], dtype=np.uint32))
    return enu, feature, columns


def content_enu(out_dir: Path, uri: str) -> tuple[np.ndarray, list[str]]:
    """A tile's vertices in the tileset's root frame (float64, metres) and each vertex's building_id."""
    enu, feature, columns = content_features(out_dir, uri)
    ids = columns["building_id"]
    return enu, [ids[f] for f in feature]


def schema_problems(out_dir: Path) -> list[str]:
    """Every way the tileset breaks the rules: version, geometric errors, bounding volumes, uris."""
    tileset = json.loads((out_dir / "tileset.json").read_text())
    problems = []
    if tileset["asset"]["version"] != "1.1":
        problems.append(f"asset.version {tileset['asset']['version']!r}")
    root = tileset["root"]
    if len(root.get("transform", [])) != 16 or root.get("refine") not in ("ADD", "REPLACE"):
        problems.append("root needs a 4x4 transform and a refine")
    if tileset["geometricError"] < root["geometricError"]:
        problems.append("the tileset's geometric error is below its root's")
    diagonal = 2 * np.linalg.norm(np.array(root["boundingVolume"]["box"][3:]).reshape(3, 3).sum(axis=0))
    if tileset["geometricError"] < diagonal - 0.01:  # viewers stop drawing a tileset whose own error is small
        problems.append(f"the tileset's geometric error {tileset['geometricError']} is below the size of what it "
                        f"draws ({diagonal:.0f} m): seen from afar, it would not be drawn at all")
    referenced = set()
    under: dict[int, set[str]] = {}  # each tile's buildings: those of the leaves under it
    for node, _ in reversed(list(tiles(root))):
        if "children" in node:
            under[id(node)] = set().union(*(under[id(c)] for c in node["children"]))
        elif "content" in node:
            under[id(node)] = set(content_features(out_dir, node["content"]["uri"])[2]["building_id"])
    for node, parent in tiles(root):
        box = node["boundingVolume"]["box"]
        if parent is not None:
            if not node["geometricError"] < parent["geometricError"]:
                problems.append(f"{node.get('content')}: geometric error {node['geometricError']} "
                                f"not below its parent's {parent['geometricError']}")
            beyond = outside_box(box_corners(box), parent["boundingVolume"]["box"])
            if beyond > TOLERANCE_M:
                problems.append(f"{node.get('content')}: box leaves its parent's by {beyond}")
        if "content" in node:
            uri = node["content"]["uri"]
            referenced.add(uri)
            if not (out_dir / uri).is_file():
                problems.append(f"{uri} does not resolve")
                continue
            enu, _, columns = content_features(out_dir, uri)
            beyond = outside_box(enu, box)
            if beyond > TOLERANCE_M:
                problems.append(f"{uri}: content leaves the tile's box by {beyond}")
            if "children" in node:  # a coarse tile stands for every building under it, each once
                stands_for = int(np.sum(columns["buildings"]))
                if stands_for != len(under[id(node)]) or not set(columns["building_id"]) <= under[id(node)]:
                    problems.append(f"{uri}: stands for {stands_for} buildings, the leaves under it hold "
                                    f"{len(under[id(node)])}")
        else:
            problems.append(f"a tile at {box[:3]} has no content: every tile should draw its buildings")
    stray = {p.relative_to(out_dir).as_posix() for p in out_dir.rglob("*.glb")} - referenced
    if stray:
        problems.append(f"tiles no tile refers to: {sorted(stray)[:5]}")
    return problems


def to_district(out_dir: Path, enu: np.ndarray, crs: str) -> np.ndarray:
    """Root-frame points through the root transform to ECEF, then (pyproj) to the district CRS and height."""
    tileset = json.loads((out_dir / "tileset.json").read_text())
    matrix = np.array(tileset["root"]["transform"], dtype=np.float64).reshape(4, 4).T  # column-major
    ecef = enu @ matrix[:3, :3].T + matrix[:3, 3]
    lon, lat, h = transformer("EPSG:4978", "EPSG:4979").transform(*ecef.T)
    x, y = transformer("EPSG:4326", crs).transform(lon, lat)
    return np.column_stack([x, y, h])


def from_district(out_dir: Path, xyz: np.ndarray, crs: str) -> np.ndarray:
    """The inverse of :func:`to_district`: district CRS and height, through ECEF, to the root frame."""
    tileset = json.loads((out_dir / "tileset.json").read_text())
    matrix = np.array(tileset["root"]["transform"], dtype=np.float64).reshape(4, 4).T
    xyz = np.asarray(xyz, dtype=np.float64)
    lon, lat = transformer(crs, "EPSG:4326").transform(xyz[:, 0], xyz[:, 1])
    ecef = np.column_stack(transformer("EPSG:4979", "EPSG:4978")
                           .transform(lon, lat, xyz[:, 2]))
    return (ecef - matrix[:3, 3]) @ matrix[:3, :3]

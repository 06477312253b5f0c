"""One tile's binary glTF: triangles of many buildings, each a feature with a row of metadata.

Pure: arrays in, ``bytes`` out. The mesh is one primitive whose ``_FEATURE_ID_0`` vertex attribute
(``EXT_mesh_features``) indexes a property table (``EXT_structural_metadata``) holding one row per
feature. Positions are float32 relative to the tile's centre, which the root node's translation (float64
in the JSON) carries; glTF is y-up, and 3D Tiles turns it z-up, so east, north, up become x, -z, y.
Vertices are split where faces meet at an angle so each face gets its own normal (flat shading).
"""

from __future__ import annotations

import json
import struct
from collections.abc import Mapping, Sequence

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

# glTF constants
_ARRAY_BUFFER, _ELEMENT_ARRAY_BUFFER = 34962, 34963
_FLOAT, _UNSIGNED_SHORT, _UNSIGNED_INT = 5126, 5123, 5125
_TRIANGLES = 4
_GLB_MAGIC, _GLB_VERSION, _CHUNK_JSON, _CHUNK_BIN = 0x46546C67, 2, 0x4E4F534A, 0x004E4942

METADATA_ALIGNMENT = 8  # EXT_structural_metadata: every buffer view of a property table starts at a multiple of 8
NORMAL_STEPS = 127  # faces whose normals round to the same of 127 steps per axis share their vertices
SCALAR_DTYPES = {"INT8": "<i1", "UINT8": "<u1", "INT16": "<i2", "UINT16": "<u2", "INT32": "<i4", "UINT32": "<u4",
                 "INT64": "<i8", "UINT64": "<u8", "FLOAT32": "<f4", "FLOAT64": "<f8"}


def enu_to_gltf(enu: np.ndarray) -> np.ndarray:
    """East, north, up (n, 3) to glTF's y-up axes (x, y, z) = (east, up, -north)."""
    enu = np.asarray(enu)
    return np.column_stack([enu[:, 0], enu[:, 2], -enu[:, 1]])


def gltf_to_enu(xyz: np.ndarray) -> np.ndarray:
    """The inverse of :func:`enu_to_gltf` (what 3D Tiles' y-up to z-up rotation does)."""
    xyz = np.asarray(xyz)
    return np.column_stack([xyz[:, 0], -xyz[:, 2], xyz[:, 1]])


def flat_shaded(vertices: np.ndarray, triangles: np.ndarray, vertex_feature: np.ndarray
                ) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Split shared vertices where faces turn, so every face has its own normal.

    Parameters
    ----------
    vertices : ndarray, shape (V, 3), float64
        Metres in any right-handed frame.
    triangles : ndarray, shape (T, 3), int
        Indices into ``vertices``, counter-clockwise seen from outside.
    vertex_feature : ndarray, shape (V,)
        The feature each vertex belongs to.

    Returns
    -------
    vertices : ndarray, shape (V', 3), float64
    normals : ndarray, shape (V', 3), float32
        Unit length; degenerate triangles get the frame's +z.
    features : ndarray, shape (V',)
    triangles : ndarray, shape (T, 3), int64
    """
    triangles = np.asarray(triangles, dtype=np.int64)
    a, b, c = (vertices[triangles[:, k]] for k in range(3))
    normal = np.cross(b - a, c - a)
    length = np.linalg.norm(normal, axis=1)
    degenerate = ~(length > 0)
    normal[degenerate] = (0.0, 0.0, 1.0)
    length[degenerate] = 1.0
    normal /= length[:, None]
    steps = np.rint((normal + 1.0) * (NORMAL_STEPS / 2)).astype(np.int64)  # 0..NORMAL_STEPS per axis
    bucket = (steps[:, 0] * (NORMAL_STEPS + 1) + steps[:, 1]) * (NORMAL_STEPS + 1) + steps[:, 2]
    corner_key = triangles * (NORMAL_STEPS + 1) ** 3 + bucket[:, None]
    keys, first, inverse = np.unique(corner_key.ravel(), return_index=True, return_inverse=True)
    source_vertex = keys // (NORMAL_STEPS + 1) ** 3
    normals = normal[first // 3].astype(np.float32)
    normals /= np.linalg.norm(normals, axis=1, keepdims=True)  # unit in float32, as validators check
    return (vertices[source_vertex], normals, np.asarray(vertex_feature)[source_vertex],
            inverse.reshape(-1, 3).astype(np.int64))


class _Buffer:
    """The BIN chunk under construction and its buffer views."""

    def __init__(self) -> None:
        self.parts: list[bytes] = []
        self.length = 0
        self.views: list[dict] = []

    def add(self, data: bytes, *, align: int = 4, target: int | None = None) -> int:
        pad = -self.length % align
        if pad:
            self.parts.append(b"\0" * pad)
            self.length += pad
        view = {"buffer": 0, "byteOffset": self.length, "byteLength": len(data)}
        if target is not None:
            view["target"] = target
        self.views.append(view)
        self.parts.append(data)
        self.length += len(data)
        return len(self.views) - 1

    def bytes(self) -> bytes:
        return b"".join(self.parts) + b"\0" * (-self.length % METADATA_ALIGNMENT)


def _property_buffers(buffer: _Buffer, definition: Mapping, values: Sequence | np.ndarray) -> dict:
    """One property table property's buffer views, per its class property ``definition``."""
    kind = definition["type"]
    if kind == "STRING":
        # Arrow keeps strings exactly as the extension wants them: UTF-8 bytes end to end, and offsets
        strings = values if isinstance(values, pa.Array) else pa.array(values, type=pa.string())
        strings = pc.fill_null(strings.cast(pa.string()), "")  # cast first: a column of nulls only has no type
        _, offset_buffer, data_buffer = strings.buffers()
        offsets = np.frombuffer(offset_buffer, dtype="<i4")[strings.offset:strings.offset + len(strings) + 1]
        data = data_buffer.to_pybytes()[offsets[0]:offsets[-1]] if data_buffer is not None else b""
        # a buffer view is at least one byte long, even when every string is empty
        return {"values": buffer.add(data or b"\0", align=METADATA_ALIGNMENT),
                "stringOffsets": buffer.add((offsets - offsets[0]).astype("<u4").tobytes(),
                                            align=METADATA_ALIGNMENT),
                "stringOffsetType": "UINT32"}
    if kind == "SCALAR":
        array = np.asarray(values, dtype=SCALAR_DTYPES[definition["componentType"]])
        return {"values": buffer.add(array.tobytes(), align=METADATA_ALIGNMENT)}
    raise ValueError(f"property type {kind!r} is not written here; use STRING or SCALAR")


def tile_glb(*, positions: np.ndarray, normals: np.ndarray, features: np.ndarray, triangles: np.ndarray,
             translation: Sequence[float], schema: Mapping, class_name: str,
             columns: Mapping[str, Sequence | np.ndarray], colour: Sequence[float] = (0.8, 0.8, 0.78, 1.0),
             generator: str = "district-twin") -> bytes:
    """A binary glTF 2.0 of one tile.

    Parameters
    ----------
    positions : ndarray, shape (V, 3), float32
        glTF axes (y up), metres relative to ``translation``.
    normals : ndarray, shape (V, 3), float32
        Unit length, glTF axes.
    features : ndarray, shape (V,), int
        Each vertex's feature, 0 .. F-1, the row of ``columns``.
    triangles : ndarray, shape (T, 3), int
    translation : sequence of 3 float
        The tile centre in the tileset's frame, glTF axes (float64 in the JSON).
    schema : mapping
        An ``EXT_structural_metadata`` schema holding ``class_name``.
    columns : mapping of str to sequence, each of length F
        The property values of each feature, by property id of the class (strings as a list or a pyarrow
        array; None or null is written as the empty string).

    Returns
    -------
    bytes
        The GLB file.
    """
    positions = np.ascontiguousarray(positions, dtype="<f4")
    n_features = len(next(iter(columns.values()))) if columns else 0
    index_type, index_dtype = (_UNSIGNED_SHORT, "<u2") if len(positions) <= 0xFFFF else (_UNSIGNED_INT, "<u4")
    buffer = _Buffer()
    accessors = []

    def vertex_accessor(data: np.ndarray, kind: str, **extra) -> int:
        view = buffer.add(data.tobytes(), target=_ARRAY_BUFFER)
        accessors.append({"bufferView": view, "componentType": _FLOAT, "count": len(data), "type": kind, **extra})
        return len(accessors) - 1

    position = vertex_accessor(positions, "VEC3", min=positions.min(axis=0).tolist(),
                               max=positions.max(axis=0).tolist())
    normal = vertex_accessor(np.ascontiguousarray(normals, dtype="<f4"), "VEC3")
    # float ids: exact to 2**24, and 4-byte aligned as vertex attributes must be (unlike 2-byte shorts)
    feature = vertex_accessor(np.ascontiguousarray(features, dtype="<f4"), "SCALAR")
    index_view = buffer.add(np.ascontiguousarray(triangles, dtype=index_dtype).tobytes(),
                            target=_ELEMENT_ARRAY_BUFFER)
    accessors.append({"bufferView": index_view, "componentType": index_type, "count": int(np.size(triangles)),
                      "type": "SCALAR"})
    properties = schema["classes"][class_name]["properties"]
    table = {"class": class_name, "count": n_features,
             "properties": {name: _property_buffers(buffer, properties[name], values)
                            for name, values in columns.items()}}
    binary = buffer.bytes()
    document = {
        "asset": {"version": "2.0", "generator": generator},
        "extensionsUsed": ["EXT_mesh_features", "EXT_structural_metadata"],
        "extensions": {"EXT_structural_metadata": {"schema": dict(schema), "propertyTables": [table]}},
        "scene": 0,
        "scenes": [{"nodes": [0]}],
        "nodes": [{"mesh": 0, "translation": [float(t) for t in translation]}],
        "meshes": [{"primitives": [{
            "attributes": {"POSITION": position, "NORMAL": normal, "_FEATURE_ID_0": feature},
            "indices": len(accessors) - 1, "material": 0, "mode": _TRIANGLES,
            "extensions": {"EXT_mesh_features": {"featureIds": [
                {"featureCount": n_features, "attribute": 0, "propertyTable": 0}]}}}]}],
        "materials": [{"pbrMetallicRoughness": {"baseColorFactor": list(colour), "metallicFactor": 0.0,
                                                "roughnessFactor": 1.0},
                       "doubleSided": True}],  # BIM and scanned meshes do not always wind outward
        "accessors": accessors,
        "bufferViews": buffer.views,
        "buffers": [{"byteLength": len(binary)}],
    }
    text = json.dumps(document, separators=(",", ":"), ensure_ascii=False).encode("utf-8")
    # EXT_structural_metadata wants 8-byte alignment: the BIN chunk's data starts at a multiple of 8 in the file
    # (12-byte header, 8-byte chunk headers), so 64-bit values can be read in place
    text += b" " * (-(20 + len(text)) % METADATA_ALIGNMENT)
    total = 12 + 8 + len(text) + 8 + len(binary)
    return b"".join([struct.pack("<III", _GLB_MAGIC, _GLB_VERSION, total),
                     struct.pack("<II", len(text), _CHUNK_JSON), text,
                     struct.pack("<II", len(binary), _CHUNK_BIN), binary])


def read_glb(data: bytes) -> tuple[dict, bytes]:
    """The JSON document and the BIN chunk of a GLB file (for readers and tests)."""
    magic, version, total = struct.unpack_from("<III", data, 0)
    if magic != _GLB_MAGIC or version != _GLB_VERSION or total != len(data):
        raise ValueError(f"not a GLB 2 file (magic {magic:#x}, version {version}, length {total} of {len(data)})")
    json_length, _ = struct.unpack_from("<II", data, 12)
    document = json.loads(data[20:20 + json_length])
    bin_length, _ = struct.unpack_from("<II", data, 20 + json_length)
    start = 28 + json_length
    return document, data[start:start + bin_length]


def accessor_array(document: Mapping, binary: bytes, index: int) -> np.ndarray:
    """An accessor's data as a numpy array, shape (count,) or (count, components)."""
    accessor = document["accessors"][index]
    view = document["bufferViews"][accessor["bufferView"]]
    dtype = {_FLOAT: "<f4", _UNSIGNED_SHORT: "<u2", _UNSIGNED_INT: "<u4"}[accessor["componentType"]]
    width = {"SCALAR": 1, "VEC3": 3}[accessor["type"]]
    start = view["byteOffset"] + accessor.get("byteOffset", 0)
    array = np.frombuffer(binary, dtype=dtype, count=accessor["count"] * width, offset=start)
    return array if width == 1 else array.reshape(-1, width)


def property_column(document: Mapping, binary: bytes, name: str, *, table: int = 0) -> list | np.ndarray:
    """One property of a property table, decoded (strings as ``list[str]``, scalars as an array)."""
    metadata = document["extensions"]["EXT_structural_metadata"]
    table_doc = metadata["propertyTables"][table]
    definition = metadata["schema"]["classes"][table_doc["class"]]["properties"][name]
    prop = table_doc["properties"][name]
    views = document["bufferViews"]

    def view_bytes(i: int) -> bytes:
        return binary[views[i]["byteOffset"]:views[i]["byteOffset"] + views[i]["byteLength"]]

    if definition["type"] == "STRING":
        values = view_bytes(prop["values"])
        offsets = np.frombuffer(view_bytes(prop["stringOffsets"]), dtype="<u4")
        return [values[s:e].decode("utf-8") for s, e in zip(offsets[:-1], offsets[1:])]
    return np.frombuffer(view_bytes(prop["values"]), dtype=SCALAR_DTYPES[definition["componentType"]])

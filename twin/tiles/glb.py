"""One tile's binary glTF: triangles of many buildings, each a feature with a row of metadata.

Pure: arrays in, ``bytes`` out. The mesh is one primitive whose ``_FEATURE_ID_0`` vertex attribute
(``EXT_mesh_features``) indexes a property table (``EXT_structural_metadata``) holding one row per
feature. glTF is y-up, and 3D Tiles turns it z-up, so east, north, up become x, -z, y.

Compact by default (``KHR_mesh_quantization``):

- positions are 16-bit integers over the tile's cube (the node's translation, float64 in the JSON, is its
  centre, and its uniform scale the cube's half width) when that puts every vertex within the error the
  caller allows (a leaf: 5 mm, so any 1:500 map's centimetre holds), else float32 relative to the centre;
- no normals, and vertices shared between faces, when the caller says its viewers shade flat themselves (the
  app's view does; CesiumJS draws a mesh without normals unlit); else faces get their own vertices where
  they meet at an angle, with 8-bit normals;
- feature ids are 16-bit (float above 65,536 features), indices 16-bit up to 65,535 vertices.
"""

from __future__ import annotations

import json
import struct
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

# glTF constants
_ARRAY_BUFFER, _ELEMENT_ARRAY_BUFFER = 34962, 34963
_BYTE, _UNSIGNED_BYTE, _SHORT, _UNSIGNED_SHORT, _UNSIGNED_INT, _FLOAT = 5120, 5121, 5122, 5123, 5125, 5126
COMPONENT_DTYPES = {_BYTE: "<i1", _UNSIGNED_BYTE: "<u1", _SHORT: "<i2", _UNSIGNED_SHORT: "<u2",
                    _UNSIGNED_INT: "<u4", _FLOAT: "<f4"}
TYPE_WIDTHS = {"SCALAR": 1, "VEC2": 2, "VEC3": 3, "VEC4": 4}
_TRIANGLES = 4
_GLB_MAGIC, _GLB_VERSION, _CHUNK_JSON, _CHUNK_BIN = 0x46546C67, 2, 0x4E4F534A, 0x004E4942

QUANTIZATION = "KHR_mesh_quantization"
SHORT_MAX = 32767  # a normalized short's 1.0
BYTE_MAX = 127
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


@dataclass(frozen=True)
class Positions:
    """A tile's vertex positions as stored: ``values`` (V, 3), int16 normalized over the node's uniform
    ``scale`` or float32 (scale 1), relative to the node's ``translation`` (glTF axes, metres)."""

    values: np.ndarray
    translation: np.ndarray
    scale: float

    @property
    def quantized(self) -> bool:
        return self.values.dtype == np.int16

    def decoded(self) -> np.ndarray:
        """The positions as a viewer computes them (float64, glTF axes, the tileset's frame)."""
        unit = self.values.astype(np.float64) / SHORT_MAX if self.quantized else self.values.astype(np.float64)
        return unit * self.scale + self.translation


def encode_positions(positions: np.ndarray, *, max_error_m: float) -> Positions:
    """Positions (V, 3) float64 as 16-bit integers when every vertex then stays within ``max_error_m`` metres of
    where it is, else as float32; either way relative to their bounding box's centre (the node translation)."""
    positions = np.asarray(positions, dtype=np.float64)
    low, high = positions.min(axis=0), positions.max(axis=0)
    centre = (low + high) / 2
    half = max(float((high - low).max()) / 2, 1e-3)
    if np.sqrt(3) * half / SHORT_MAX / 2 <= max_error_m:  # half a step on each axis, at worst
        return Positions(np.rint((positions - centre) / half * SHORT_MAX).astype(np.int16), centre, half)
    return Positions((positions - centre).astype(np.float32), centre, 1.0)


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


def tile_glb(*, positions: Positions, normals: np.ndarray | None, features: np.ndarray, triangles: np.ndarray,
             schema: Mapping, class_name: str, columns: Mapping[str, Sequence | np.ndarray],
             colour: Sequence[float] = (0.8, 0.8, 0.78, 1.0), generator: str = "district-twin") -> bytes:
    """A binary glTF 2.0 of one tile.

    Parameters
    ----------
    positions : Positions
        From :func:`encode_positions` (glTF axes, y up).
    normals : ndarray, shape (V, 3), or None
        Unit length, glTF axes; None for none (viewers then shade flat themselves, or not at all).
    features : ndarray, shape (V,), int
        Each vertex's feature, 0 .. F-1, the row of ``columns``.
    triangles : ndarray, shape (T, 3), int
    schema : mapping
        An ``EXT_structural_metadata`` schema holding ``class_name``.
    columns : mapping of str to sequence, each of length F
        The property values of each feature, by property id of the class (strings as a list or a pyarrow
        array; None or null is written as the empty string); properties the class does not require may be
        left out.

    Returns
    -------
    bytes
        The GLB file.
    """
    n_vertices = len(positions.values)
    n_features = len(next(iter(columns.values()))) if columns else 0
    index_type = _UNSIGNED_SHORT if n_vertices <= 0xFFFF else _UNSIGNED_INT  # 65,535 itself may not be an index
    buffer = _Buffer()
    accessors = []

    def vertex_accessor(data: np.ndarray, component: int, kind: str, **extra) -> int:
        """``data`` (V, k) of ``component`` type, padded to whole 4-byte words per vertex as glTF asks."""
        data = np.ascontiguousarray(data, dtype=COMPONENT_DTYPES[component]).reshape(n_vertices, -1)
        width = TYPE_WIDTHS[kind]
        stride = -(-width * data.itemsize // 4) * 4
        if stride != width * data.itemsize:
            padded = np.zeros((n_vertices, stride // data.itemsize), dtype=data.dtype)
            padded[:, :width] = data
            data = padded
        view = buffer.add(data.tobytes(), target=_ARRAY_BUFFER)
        if stride != width * data.itemsize:
            buffer.views[view]["byteStride"] = stride
        accessors.append({"bufferView": view, "componentType": component, "count": n_vertices, "type": kind,
                          **extra})
        return len(accessors) - 1

    values = positions.values
    quantized = positions.quantized
    attributes = {"POSITION": vertex_accessor(values, _SHORT if quantized else _FLOAT, "VEC3",
                                              min=values.min(axis=0).tolist(), max=values.max(axis=0).tolist(),
                                              **({"normalized": True} if quantized else {}))}
    if normals is not None:
        attributes["NORMAL"] = vertex_accessor(np.rint(np.clip(normals, -1, 1) * BYTE_MAX), _BYTE, "VEC3",
                                               normalized=True)
    # feature ids: 16-bit while they fit (padded to 4 bytes a vertex all the same), else float (exact to 2**24)
    feature_type = _UNSIGNED_SHORT if n_features <= 0x10000 else _FLOAT
    attributes["_FEATURE_ID_0"] = vertex_accessor(features, feature_type, "SCALAR")
    index_view = buffer.add(np.ascontiguousarray(triangles, dtype=COMPONENT_DTYPES[index_type]).tobytes(),
                            target=_ELEMENT_ARRAY_BUFFER)
    accessors.append({"bufferView": index_view, "componentType": index_type, "count": int(np.size(triangles)),
                      "type": "SCALAR"})
    properties = schema["classes"][class_name]["properties"]
    table = {"class": class_name, "count": n_features,
             "properties": {name: _property_buffers(buffer, properties[name], values)
                            for name, values in columns.items()}}
    binary = buffer.bytes()
    node = {"mesh": 0, "translation": [float(t) for t in positions.translation]}
    if positions.scale != 1.0:
        node["scale"] = [float(positions.scale)] * 3
    extensions = ["EXT_mesh_features", "EXT_structural_metadata"]
    compact = quantized or normals is not None  # 8-bit normals are quantized too
    document = {
        "asset": {"version": "2.0", "generator": generator},
        "extensionsUsed": extensions + [QUANTIZATION] * compact,
        **({"extensionsRequired": [QUANTIZATION]} if compact else {}),
        "extensions": {"EXT_structural_metadata": {"schema": dict(schema), "propertyTables": [table]}},
        "scene": 0,
        "scenes": [{"nodes": [0]}],
        "nodes": [node],
        "meshes": [{"primitives": [{
            "attributes": attributes, "indices": len(accessors) - 1, "material": 0, "mode": _TRIANGLES,
            "extensions": {"EXT_mesh_features": {"featureIds": [
                {"featureCount": max(n_features, 1), "attribute": 0, "propertyTable": 0}]}}}]}],
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
    """An accessor's values as stored (a normalized one not divided out), shape (count,) or (count, components)."""
    accessor = document["accessors"][index]
    view = document["bufferViews"][accessor["bufferView"]]
    dtype = np.dtype(COMPONENT_DTYPES[accessor["componentType"]])
    width = TYPE_WIDTHS[accessor["type"]]
    stride = view.get("byteStride", width * dtype.itemsize)
    start = view["byteOffset"] + accessor.get("byteOffset", 0)
    array = np.ndarray((accessor["count"], width), dtype=dtype, buffer=binary, offset=start,
                       strides=(stride, dtype.itemsize)).copy()
    return array[:, 0] if width == 1 else array


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

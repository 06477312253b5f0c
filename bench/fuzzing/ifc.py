"""Fuzz target: the IFC loader's entry checks (a small real file mutated: header, schema, georeferencing, bytes)."""

from __future__ import annotations

import re
from pathlib import Path

from hypothesis import strategies as st

from bench.fuzzing.harness import INJECTIONS, SANE_BUILDINGS, Target, file_session, texts
from ingest.ifc import ingest_ifc
from twin.store.store import Store

# A small real file of the test data (read, not imported: bench/ imports nothing from tests/).
SMALL = Path(__file__).resolve().parents[2] / "tests" / "data" / "ifc" / "ifc4x3-geographic-referencing-utm" / "geographic-referencing-utm.ifc"
ORIGINAL = SMALL.read_bytes()
ANCHOR = "113.72,34.76,0,0"  # the small demo's origin: a model placed here lands on the district

step_numbers = st.one_of(st.floats(allow_nan=True, allow_infinity=True).map(lambda v: repr(v).upper()),
                         st.integers(-10**20, 10**20).map(str),
                         st.sampled_from(["$", "*", "''", "'x'", "1.E400", "-0.", ".T.", "#1", "()", "1000."]))


def _sub(pattern: str, count: int = 1):
    return lambda text, new: re.sub(pattern, lambda m: m.group(1) + new + m.group(2), text, count=count)


MUTATIONS = {
    # What the entry checks look at first: the STEP magic and FILE_SCHEMA.
    "magic": (_sub(r"^()ISO-10303-21;()"), st.one_of(st.sampled_from(["", "ISO-10303-2", "iso-10303-21;",
                                                                        "\ufeffISO-10303-21;", "  ISO-10303-21;"]),
                                                       texts(max_size=16))),
    "schema": (_sub(r"(FILE_SCHEMA \(\(')IFC4X3_ADD2('\)\);)"),
               st.one_of(st.sampled_from(["IFC4", "IFC2X3", "IFC4X3", "IFC4X1", "IFC5", "ifc4", "", "'",
                                          "IFC4'); DROP TABLE residents; --"]), texts(max_size=12))),
    # The georeferencing: the projected CRS and the map conversion's numbers.
    "crs": (_sub(r"(IFCPROJECTEDCRS\(')EPSG:25832(',)"),
            st.one_of(st.sampled_from(["EPSG:4547", "EPSG:4326", "EPSG:3857", "EPSG:0", "EPSG:99999999", "EPSG:",
                                       "EPSG:5555", "EPSG:9897", "WGS 84", ""]),
                      st.sampled_from(INJECTIONS).map(lambda s: s.replace("'", "''")))),
    "eastings": (_sub(r"(IFCMAPCONVERSION\(#100011,#1,)458657.30(,)"), step_numbers),
    "northings": (_sub(r"(IFCMAPCONVERSION\(#100011,#1,458657.30,)5438232.25(,)"), step_numbers),
    "axis": (_sub(r"(5438232.25,113.7,)0.270600445976,0.962691746426(,)"),
             st.tuples(step_numbers, step_numbers).map(",".join)),
    "scale": (_sub(r"(0.962691746426,)1000.(\);)"), step_numbers),
    "unit": (_sub(r"(#100061= IFCSIUNIT\(\*,.LENGTHUNIT.,).MILLI.(,)"),
             st.sampled_from(["$", ".KILO.", ".NANO.", ".FOO.", "''"])),
    "site_latitude": (_sub(r"(\.ELEMENT\.,)\(49,5,43,983700\)(,)"),
                      st.one_of(st.lists(step_numbers, max_size=5).map(lambda v: "(" + ",".join(v) + ")"),
                                st.sampled_from(["$", "()", "(91,0,0)", "(-90,-1,0)"]))),
    "points": (_sub(r"(IFCCARTESIANPOINTLIST3D\(\(\(0.0,0.0,0.0\),)\(-500.0(,)"),
               step_numbers.map(lambda v: "(" + v)),
}


@st.composite
def mutated(draw) -> dict:
    text = ORIGINAL.decode("latin-1")
    for name in draw(st.lists(st.sampled_from(sorted(MUTATIONS)), max_size=3, unique=True)):
        sub, values = MUTATIONS[name]
        text = sub(text, draw(values))
    data = text.encode("latin-1", errors="replace")
    for _ in range(draw(st.sampled_from([0, 0, 0, 1, 2]))):  # byte flips anywhere (mostly past the magic)
        at = draw(st.one_of(st.integers(0, len(data) - 1), st.integers(len(data) // 2, len(data) - 1)))
        data = data[:at] + bytes([draw(st.integers(0, 255))]) + data[at + 1:]
    if draw(st.sampled_from([False] * 7 + [True])):  # truncated
        data = data[:draw(st.integers(0, len(data)))]
    anchor = draw(st.one_of(st.none(), *[st.just(ANCHOR)] * 4,
                            st.sampled_from(["113.72,34.76,inf,0", "113.72,34.76,0,nan", "181,0,0,0", "1,2,3",
                                             "113.72,34.76,1e308,1e308", "nan,nan,0,0"]),
                            texts(max_size=20)))
    return {"data": data, "anchor": anchor}


def _load(store: Store, path: Path, value: dict) -> None:
    """Load the model with ``ingest_ifc`` in one transaction."""
    with store.transaction():
        ingest_ifc(store, path, anchor=value["anchor"])


session = file_session(lambda value: "model.ifc", lambda path, value: path.write_bytes(value["data"]), _load)


TARGET = Target("ingest.ifc", mutated(), ("buildings", "meshes", "elements", "meta"), session, sane=SANE_BUILDINGS)

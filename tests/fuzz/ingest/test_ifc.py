"""Fuzz the IFC loader's entry checks: small real files mutated (header, schema, georeferencing, bytes),
then loaded in one transaction on a store copy."""

from __future__ import annotations

from bench.fuzzing.harness import fuzz_a_copy, replay
from bench.fuzzing.ifc import ANCHOR, MUTATIONS, ORIGINAL, TARGET
from tests.conftest import copy_of

EXAMPLES = 250


def test_mutated_ifc_files_load_or_are_refused_without_a_trace(small_demo, tmp_path):
    tally = fuzz_a_copy(TARGET, small_demo, tmp_path, max_examples=EXAMPLES)
    assert tally.ok > 0 and tally.refused > 0


def _with(**subs) -> bytes:
    text = ORIGINAL.decode("latin-1")
    for name, new in subs.items():
        text = MUTATIONS[name][0](text, new)
    return text.encode("latin-1")


FOUND = [  # inputs fuzzing found that crashed (TypeError, AttributeError, ValueError) instead of an InputError
    {"data": _with(crs="EPSG:25832',$,$,$,$,$,$);\r\n#9= IFCSITE('x"), "anchor": None},
    {"data": _with(eastings="$"), "anchor": None},
    {"data": _with(northings="'x'"), "anchor": None},
    {"data": _with(eastings="1.E400"), "anchor": None},
    {"data": _with(scale="-1."), "anchor": None},
    {"data": _with(site_latitude="('a',1)"), "anchor": ANCHOR},
    {"data": _with(points="(1.E400"), "anchor": ANCHOR},
    {"data": ORIGINAL, "anchor": "113.72,34.76,inf,0"},
    {"data": ORIGINAL, "anchor": "113.72,34.76,0,nan"},
    # accepted before, leaving float32 infinities in the mesh: a height of 1e308 m, a model 4 km tall
    {"data": ORIGINAL, "anchor": "113.72,34.76,1e308,0"},
    {"data": _with(unit=".KILO."), "anchor": ANCHOR},
]


def test_what_fuzzing_found_is_refused(small_demo, tmp_path):
    tally = replay(TARGET, copy_of(small_demo, tmp_path), tmp_path, FOUND)
    assert tally.refused == len(FOUND), tally.as_dict()

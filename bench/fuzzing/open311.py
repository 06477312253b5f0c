"""Fuzz target: the Open311 intake (raw form bodies and decoded forms, taken in as cases)."""

from __future__ import annotations

import contextlib
from pathlib import Path
from urllib.parse import urlencode

from hypothesis import strategies as st

from bench.fuzzing.harness import INJECTIONS, SANE_CASES, Target, texts
from twin.cases.cases import load_taxonomy
from twin.cases.open311 import ATTRIBUTES, REQUEST_FIELDS, decode_form, submit_request
from twin.store.store import Store

CENTRE = (113.72, 34.76)
ATTRIBUTE_NAMES = tuple(f"attribute[{a['code']}]" for a in ATTRIBUTES)
PLACES = ("street", "indoor", "roof", "http://x.test/p.jpg", "javascript:alert(1)")
CODES = tuple(s["code"] for s in load_taxonomy()["subcategories"] if not s.get("ai"))

degrees = st.one_of(st.floats(-0.02, 0.02).map(lambda d: f"{CENTRE[1] + d:.7f}"),
                    st.floats(allow_nan=True, allow_infinity=True).map(repr), st.integers().map(str),
                    texts(max_size=12))
field_values = {
    "service_code": st.one_of(st.sampled_from(CODES), texts(max_size=20)),
    "lat": st.one_of(st.floats(-0.02, 0.02).map(lambda d: f"{CENTRE[1] + d:.7f}"), degrees),
    "long": st.one_of(st.floats(-0.02, 0.02).map(lambda d: f"{CENTRE[0] + d:.7f}"), degrees),
    "media_url": st.one_of(st.sampled_from(["http://x.test/a.jpg", "https://x.test/" + "a" * 3000,
                                            "javascript:alert(1)", "file:///etc/passwd", "http://"]), texts()),
    "description": st.one_of(texts(max_size=80, surrogates=True), st.just("描述" * 2001)),
}


@st.composite
def forms(draw) -> dict:
    """A valid form near the district with some fields fuzzed, dropped or added."""
    form = {"service_code": draw(st.sampled_from(CODES)), "lat": f"{CENTRE[1] + draw(st.floats(-0.01, 0.01)):.7f}",
            "long": f"{CENTRE[0] + draw(st.floats(-0.01, 0.01)):.7f}", "description": "占道经营"}
    for name in draw(st.lists(st.sampled_from(REQUEST_FIELDS), max_size=4, unique=True)):
        form[name] = draw(field_values.get(name, texts(surrogates=True)))
    for name in draw(st.lists(st.sampled_from(tuple(form)), max_size=2, unique=True)):
        del form[name]
    extra = draw(st.dictionaries(st.one_of(st.sampled_from(INJECTIONS[:8] + ("attribute[x]", "attribute[]") + ATTRIBUTE_NAMES),
                                           st.text(max_size=8)),
                                 st.one_of(texts(max_size=10), st.sampled_from(PLACES)), max_size=2))
    return {**form, **extra}


def _body(form: dict, mangle: bytes) -> bytes:
    return urlencode(form, errors="surrogatepass").encode("utf-8", errors="surrogatepass") + mangle


inputs = st.one_of(
    st.fixed_dictionaries({"form": forms()}),
    st.fixed_dictionaries({"body": st.builds(_body, forms(), st.sampled_from([b"", b"&", b"&&=", b"%", b"%ZZ",
                                                                              b"\xff\xfe", b"&lat=", b"&a=" * 200])),
                           "content_type": st.sampled_from(["application/x-www-form-urlencoded",
                                                            "application/x-www-form-urlencoded; charset=utf-8"])}),
    st.fixed_dictionaries({"body": st.binary(max_size=200),
                           "content_type": st.sampled_from(["application/x-www-form-urlencoded", "text/plain", ""])}),
)


@contextlib.contextmanager
def session(store_path: Path, workdir: Path):
    """Each input: decoded (when a raw body) and submitted as one transaction, as ``twin serve`` does."""
    with Store(store_path) as store:
        crs = store.district.crs

        def run(value: dict) -> None:
            form = value["form"] if "form" in value else decode_form(value["body"],
                                                                     content_type=value["content_type"])
            with store.transaction() as con:
                submit_request(con, form, district_crs=crs)

        yield store.con, run


TARGET = Target("twin.cases.open311", inputs, ("cases", "case_events", "meta"), session, sane=SANE_CASES)

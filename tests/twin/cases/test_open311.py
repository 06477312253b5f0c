"""Open311 GeoReport v2 without a server: services, request forms as real clients send them, answers, errors."""

from __future__ import annotations

from xml.etree import ElementTree

import numpy as np
import pytest

from twin.cases.cases import load_taxonomy
from twin.geo.crs import transform_xy
from twin.cases.open311 import Open311Error, find_requests, services, submit_request, to_xml
from twin.access.access import Principal
from twin.access.policy import Gate
from twin.store.store import Store, open_for_command


def reader(con) -> Gate:
    """A gate reading every case (a leader of the whole district): the API's reads go through one."""
    return Gate(con, Principal("open311-test", "leader"))


def a_form(db, **changes):
    with Store(db, read_only=True) as store:
        x, y = store.con.execute("SELECT label_x, label_y FROM buildings ORDER BY building_id LIMIT 1").fetchone()
    lon, lat = transform_xy(np.array([[x, y]]), "EPSG:4547", "EPSG:4326")[0]
    form = {"service_code": load_taxonomy()["subcategories"][0]["code"], "lat": f"{lat:.7f}", "long": f"{lon:.7f}",
            "address_string": "商都路 1号", "description": "路边摊占道", "api_key": "k"}
    return {**form, **changes}


def test_services_list_every_subcategory_in_json_and_xml():
    listed = services()
    assert len(listed) == len(load_taxonomy()["subcategories"])
    assert {"service_code", "service_name", "description", "metadata", "type", "keywords", "group"} <= set(listed[0])
    xml = ElementTree.fromstring(to_xml(listed, root="services", item="service").split("?>", 1)[1])
    assert len(xml.findall("service")) == len(listed) and xml.find("service/metadata").text == "true"


def test_a_request_becomes_a_case_and_reads_back(demo_copy_db):
    form = a_form(demo_copy_db)
    with open_for_command(demo_copy_db) as store:
        reply = submit_request(store.con, form, district_crs="EPSG:4547")
    with Store(demo_copy_db, read_only=True) as store:
        (record,) = find_requests(reader(store.con), {"service_request_id": reply["service_request_id"]},
                                  district_crs="EPSG:4547")
        source, = store.con.execute("SELECT source FROM cases WHERE case_id = ?",
                                    [reply["service_request_id"]]).fetchone()
        open_ones = find_requests(reader(store.con), {"status": "open"}, district_crs="EPSG:4547")
    assert source == "open311" and record["status"] == "open" and record["service_code"] == form["service_code"]
    assert abs(record["lat"] - float(form["lat"])) < 1e-6 and abs(record["long"] - float(form["long"])) < 1e-6
    assert reply["service_request_id"] in {r["service_request_id"] for r in open_ones}
    assert all(r["status"] == "open" for r in open_ones)


@pytest.mark.parametrize("changes, code, words", [
    ({"lat": ""}, 400, "lat is required"),
    ({"long": "east"}, 400, "long 'east' is not a number"),
    ({"lat": "91"}, 400, "outside"),
    ({"service_code": "nope"}, 404, "'nope' is not a service"),
    ({"description": "x" * 4001}, 400, "at most 4000"),
    ({"media_url": "javascript:alert(1)"}, 400, "not an http"),
    ({"colour": "red"}, 400, "unknown field"),
])
def test_malformed_requests_name_the_field_and_store_nothing(demo_copy_db, changes, code, words):
    with Store(demo_copy_db, read_only=True) as store:
        before = store.count("cases")
    form = a_form(demo_copy_db, **changes)
    with pytest.raises(Open311Error, match=words) as err, open_for_command(demo_copy_db) as store:
        submit_request(store.con, form, district_crs="EPSG:4547")
    assert err.value.code == code and err.value.body() == [{"code": code, "description": err.value.description}]
    with Store(demo_copy_db, read_only=True) as store:
        assert store.count("cases") == before


def test_a_point_outside_the_district_is_a_400(demo_copy_db):
    form = a_form(demo_copy_db, lat="39.9", long="116.4")
    with pytest.raises(Open311Error, match="outside every grid") as err, open_for_command(demo_copy_db) as store:
        submit_request(store.con, form, district_crs="EPSG:4547")
    assert err.value.code == 400


def test_filters_are_checked(demo_copy):
    with Store(demo_copy, read_only=True) as store:
        with pytest.raises(Open311Error, match="use open or closed"):
            find_requests(reader(store.con), {"status": "pending"}, district_crs="EPSG:4547")
        with pytest.raises(Open311Error, match="not an ISO 8601"):
            find_requests(reader(store.con), {"start_date": "yesterday"}, district_crs="EPSG:4547")
        recent = find_requests(reader(store.con), {"start_date": "2026-11-20T00:00:00+08:00"}, district_crs="EPSG:4547")
    assert recent and all(r["requested_datetime"] >= "2026-11-19" for r in recent)


# -- the public view, fuzzed -------------------------------------------------------------------------------
from hypothesis import HealthCheck, given, settings, strategies as st  # noqa: E402

from bench.fuzzing.harness import texts  # noqa: E402
from twin.access.policy import public_principal  # noqa: E402
from twin.cases.open311 import NAMES_IN_TEXT  # noqa: E402

phones = st.from_regex(r"1[3-9][0-9]{9}", fullmatch=True)
id_numbers = st.from_regex(r"[1-6][0-9]{16}[0-9X]", fullmatch=True)
house_numbers = st.one_of(st.from_regex(r"[1-9][0-9]{0,3}(号|号楼|栋|单元|室)", fullmatch=True),
                          st.from_regex(r"[一二三四五六七八九十]{1,3}(号|号楼|栋|单元)", fullmatch=True))
# Free text around them: words of the trade, and the fuzz harness's texts (injections, any script's characters).
fillers = st.one_of(st.text(st.sampled_from("路边有垃圾占道经营请处理 ,.;:-()abcXYZ"), max_size=12), texts(max_size=12))


@st.composite
def descriptions(draw) -> tuple[str, list[str]]:
    """A description mixing free text with phone, ID and house numbers: (text, the numbers planted in it)."""
    planted = draw(st.lists(st.one_of(phones, id_numbers, house_numbers), min_size=1, max_size=4))
    parts = [draw(fillers)]
    for secret in planted:
        parts += [secret, draw(fillers)]
    return "".join(parts), planted


@pytest.fixture(scope="module")
def public_store(small_demo, tmp_path_factory):
    import shutil

    path = tmp_path_factory.mktemp("public") / "s.duckdb"
    shutil.copy(small_demo, path)
    with Store(path) as store:
        case_id, = store.con.execute("SELECT case_id FROM cases ORDER BY case_id LIMIT 1").fetchone()
        yield store.con, case_id


@settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(description=descriptions(), house=house_numbers, named=st.booleans())
def test_the_public_view_never_holds_an_id_a_phone_or_a_house_number(public_store, description, house, named):
    con, case_id = public_store
    text, planted = description
    text = ("王先生说" + text) if named else text
    con.execute("UPDATE cases SET description = ?, address = ? WHERE case_id = ?", [text, f"商都路 {house}", case_id])
    (record,) = find_requests(Gate(con, public_principal()), {"service_request_id": case_id},
                              district_crs="EPSG:4547")
    assert record["address"] == "商都路", "the street, without its house number"
    if named:
        assert record["description"] is None, "a description naming someone is not public"
    else:
        assert record["description"] is not None or NAMES_IN_TEXT.search(text), "only a named one is left out"
        for secret in planted:
            assert secret not in (record["description"] or ""), f"{secret} is in the public view"
    assert record["media_url"] is None
    assert record["lat"] == round(record["lat"], 4) and record["long"] == round(record["long"], 4)
    (full,) = find_requests(reader(con), {"service_request_id": case_id}, district_crs="EPSG:4547")
    assert full["address"] == f"商都路 {house}", "a key's reader still sees the whole address"

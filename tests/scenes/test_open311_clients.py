"""Open311 GeoReport v2 over HTTP as civic apps read it: the `georeport` client from PyPI against `twin serve`.

The client sends no ``api_key`` when it reads (the spec asks for one only to post), so the keyed reads
here are the spec's documented requests (``requests.json?api_key=...``) with plain ``requests``.
"""

from __future__ import annotations

import json
import re
import shutil
from datetime import datetime, timedelta, timezone

import pytest
import requests
from georeport import GeoReport

from bench.browser import served
from tests.scenes.test_server import call, intake  # noqa: F401 (the fixture)
from twin.access.access import add_user
from twin.access.keys import add_key
from twin.cases.cases import load_taxonomy
from twin.store.store import Store, open_for_command

CODES = [s["code"] for s in load_taxonomy()["subcategories"]]
HOUSE_NUMBER = re.compile(r"\d+\s*号")


@pytest.fixture(scope="module")
def district(intake, tmp_path_factory):
    """The small demo with a key reading as the whole district and one bound to a grid (via its user)."""
    db, form = intake
    copy = tmp_path_factory.mktemp("open311") / "s.duckdb"
    shutil.copy(db, copy)
    with open_for_command(copy) as store:
        grid, = store.con.execute("SELECT grid_id FROM cases WHERE grid_id IS NOT NULL GROUP BY 1 "
                                  "ORDER BY count(*) DESC LIMIT 1").fetchone()
        bound = add_key(store.con, "grid-app")
        add_user(store.con, "grid-app", "a long password", role="leader", grids=[grid])
    return copy, form, bound, grid


def offset_of(stamp: str) -> timedelta | None:
    return datetime.fromisoformat(stamp).utcoffset()


def test_a_georeport_client_reads_services_definitions_and_requests(district):
    db, form, bound_key, grid = district
    with served(db) as url:
        base = url.rsplit("/", 1)[0] + "/open311/v2"
        client, xml_client = GeoReport(base), GeoReport(base, output_format="xml")
        listed = client.get_service_list()
        assert [s["service_code"] for s in listed] == CODES and all(s["metadata"] is True for s in listed)
        assert [s["service_code"] for s in xml_client.get_service_list()] == CODES
        definition = client.get_service_definition(CODES[0])
        attributes = {a["code"]: a for a in definition["attributes"]}
        assert attributes["photo"]["datatype"] == "string"
        assert attributes["place"]["datatype"] == "singlevaluelist"
        assert [v["key"] for v in attributes["place"]["values"]] == ["street", "building", "indoor", "compound"]
        xml_definition = xml_client.get_service_definition(CODES[0])
        assert [a["code"] for a in xml_definition["attributes"]["attribute"]] == ["photo", "place"]
        with pytest.raises(requests.HTTPError) as err:
            client.get_service_definition("nope")
        assert err.value.response.status_code == 404 and err.value.response.json()[0]["code"] == 404

        # Posting (with a key, and the service's attributes), then reading without a key, in both formats.
        status, body = call(f"{base}/requests.json", {**form, "attribute[place]": "indoor",
                                                      "attribute[photo]": "https://photos.test/1.jpg"})
        assert status == 201, body
        posted = json.loads(body)[0]["service_request_id"]
        assert call(f"{base}/requests.json", {**form, "attribute[place]": "roof"})[0] == 400
        status, body = call(f"{base}/requests.xml", form)
        assert status == 201 and "<service_requests><request><service_request_id>" in body, "XML for every method"
        status, body = call(f"{base}/requests.xml", {**form, "attribute[place]": "roof"})
        assert status == 400 and "<errors><error><code>400</code>" in body
        public = client.get_service_requests()
        assert posted in {r["service_request_id"] for r in public}
        for record in public:
            assert offset_of(record["requested_datetime"]) is not None, record["requested_datetime"]
            assert offset_of(record["updated_datetime"]) is not None
            assert record["media_url"] is None and not HOUSE_NUMBER.search(record["address"] or "")
            assert not re.search(r"\d", record["description"] or ""), "numbers are masked in the public view"
            assert record["lat"] == round(record["lat"], 4)
        assert len(xml_client.get_service_requests()) == len(public)
        one = client.get_service_request(posted)
        assert one["service_request_id"] == posted and offset_of(one["expected_datetime"]) == timedelta(hours=8)
        assert xml_client.get_service_request(posted)["service_request_id"] == posted

        # start_date and end_date in any offset: the same instant in Z and +08:00 selects the same requests.
        at = datetime.fromisoformat(public[len(public) // 2]["requested_datetime"])
        in_utc = at.astimezone(timezone.utc)
        after_local = client.get_service_requests(start_date=at.isoformat())
        after_utc = client.get_service_requests(start_date=in_utc.strftime("%Y-%m-%dT%H:%M:%SZ"))
        assert 0 < len(after_local) < len(public) and after_local == after_utc

        # With a key: a key without a user reads as a leader of the whole district, in full;
        # a key whose user is bound to a grid reads that grid's cases only.
        full = requests.get(f"{base}/requests.json", params={"api_key": form["api_key"]}, timeout=30).json()
        assert {r["service_request_id"] for r in full} == {r["service_request_id"] for r in public}
        assert any(HOUSE_NUMBER.search(r["address"] or "") for r in full), "a key reads whole addresses"
        mine = requests.get(f"{base}/requests.json", params={"api_key": bound_key}, timeout=30).json()
        assert mine and {r["agency_responsible"] for r in mine} <= {grid} and len(mine) < len(full)
    with Store(db, read_only=True) as store:
        attributes, = store.con.execute("SELECT attributes FROM cases WHERE case_id = ?", [posted]).fetchone()
        zone, = store.con.execute("SELECT value FROM meta WHERE key = 'timezone'").fetchone()
    assert json.loads(attributes) == {"photo": "https://photos.test/1.jpg", "place": "indoor"}
    assert zone == "Asia/Shanghai"


def test_discovery_names_the_endpoint_in_json_and_xml(district):
    db, *_ = district
    with served(db, args=("--open311-public", "off")) as url:
        root = url.rsplit("/", 1)[0]
        found = requests.get(f"{root}/open311/discovery.json", timeout=30).json()
        (endpoint,) = found["endpoints"]
        assert endpoint["specification"] == "http://wiki.open311.org/GeoReport_v2"
        assert endpoint["url"] == f"{root}/open311/v2" and endpoint["type"] == "production"
        assert set(endpoint["formats"]) == {"text/xml", "application/json"}
        assert found["contact"] and found["key_service"] and offset_of(found["changeset"]) is not None
        xml = requests.get(f"{root}/open311/discovery.xml", timeout=30)
        assert xml.headers["Content-Type"].startswith("text/xml")
        assert "<specification>http://wiki.open311.org/GeoReport_v2</specification>" in xml.text
        assert "<format>text/xml</format>" in xml.text

        # Public reading off: a keyless read is a 401 in the spec's error format; a key still reads.
        for path in ("requests.json", f"requests/{'x'}.json"):
            answer = requests.get(f"{root}/open311/v2/{path}", timeout=30)
            assert answer.status_code == 401 and answer.json()[0]["code"] == 401
        answer = requests.get(f"{root}/open311/v2/requests.xml", timeout=30)
        assert answer.status_code == 401 and "<errors><error><code>401</code>" in answer.text


def test_keyless_reading_is_limited_per_address(district):
    db, form, *_ = district
    with served(db, args=("--open311-public-rate", "1")) as url:
        base = url.rsplit("/", 1)[0] + "/open311/v2"
        answers = [requests.get(f"{base}/requests.json", timeout=30) for _ in range(5)]
        codes = [a.status_code for a in answers]
        assert codes[:2] == [200, 200] and 429 in codes, codes
        refused = answers[codes.index(429)]
        assert int(refused.headers["Retry-After"]) >= 1 and refused.json()[0]["code"] == 429
        keyed = requests.get(f"{base}/requests.json", params={"api_key": form["api_key"]}, timeout=30)
        assert keyed.status_code == 200, "a key reads at its own rate"

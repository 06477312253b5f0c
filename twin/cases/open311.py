"""Open311 GeoReport v2, the parts that need no web server: services, parsing requests, answering them.

The HTTP routes (served by ``twin serve``) are thin wrappers over these. Errors
follow the specification: a list of ``{"code", "description"}`` with the HTTP
status in ``code``. Date-times carry the store's offset (:mod:`twin.store.clock`).

What a reader gets is the :class:`~twin.access.policy.Gate`'s to decide: a key's client sees
the full record of the cases in its grids; anyone without a key (the ``public`` principal) sees
every case's public view (:func:`public_record`): no house number, a place rounded to
``PUBLIC_DECIMALS`` decimals of a degree (about 10 m), no photo, and the description only
when it names nobody (see :func:`public_description`).
"""

from __future__ import annotations

import json
import math
import re
from dataclasses import dataclass
from urllib.parse import parse_qsl, urlparse
from xml.etree import ElementTree

import duckdb
import numpy as np
import pandas as pd

from twin.cases.cases import OPEN_STATUSES, create_case, load_taxonomy, write_cases
from twin.cases.evaluations import new_token, open311_question, token_hash
from twin.geo.crs import transform_xy
from twin.errors import AccessError, InputError, TwinError
from twin.access.policy import Gate, mask_text
from twin.store.clock import store_timezone, to_store_time, with_offset

MAX_DESCRIPTION = 4000
MAX_FORM_BYTES = 64 * 1024
MAX_FORM_FIELDS = 100
SPECIFICATION = "http://wiki.open311.org/GeoReport_v2"
CHANGESET = "2026-12-05T00:00:00+08:00"  # when this API last changed (discovery's changeset)
PUBLIC_DECIMALS = 4  # of a degree: 11 m of latitude, 9 m of longitude here
MAX_ATTRIBUTE = 2000  # characters of an attribute's value
#: The attributes every service asks for (GET services/{code}), in the spec's shape.
ATTRIBUTES: tuple[dict, ...] = (
    {"variable": True, "code": "photo", "datatype": "string", "required": False, "order": 1,
     "datatype_description": "the http(s) URL of a photo of the problem", "description": "Photo", "values": []},
    {"variable": True, "code": "place", "datatype": "singlevaluelist", "required": False, "order": 2,
     "datatype_description": None, "description": "Where is it?",
     "values": [{"key": k, "name": n} for k, n in (("street", "on the street"), ("building", "at a building"),
                                                   ("indoor", "inside a building"), ("compound", "in a compound"))]},
)
# What makes a description personal beyond its numbers (masked anyway): a way to reach someone, or a name's
# marker (a title, "named", "contact"). Such a description is left out of the public view.
NAMES_IN_TEXT = re.compile(r"@|先生|女士|小姐|师傅|阿姨|大爷|大妈|大娘|老师|同志|姓|名叫|叫做|联系人|联系|"
                           r"\b(?:Mr|Mrs|Ms|Miss|Dr)\b\.?", re.IGNORECASE)
# Any script's digits (Unicode \d), and numbers in Chinese numerals before 号, 栋, 楼, 单元, 室...: house, unit and
# room numbers, and whatever mask_text left of a phone or ID number.
HOUSE_NUMBER = re.compile(r"\d|[零〇一二三四五六七八九十百千两]+(?=\s*[号號栋棟幢楼樓单單室户戶])")
REQUEST_FIELDS = ("service_code", "lat", "long", "address_string", "address_id", "email", "device_id", "account_id",
                  "first_name", "last_name", "phone", "description", "media_url", "api_key", "jurisdiction_id")


@dataclass
class Open311Error(TwinError):
    """An error to answer in the GeoReport format, with its HTTP status."""

    code: int
    description: str
    retry_after_s: float | None = None  # a 429's wait, for its Retry-After header

    def __str__(self) -> str:
        return self.description

    def body(self) -> list[dict]:
        return [{"code": self.code, "description": self.description}]


def services() -> list[dict]:
    """The service list (``GET services.json``): one service per taxonomy subcategory.

    Each asks for :data:`ATTRIBUTES` (``metadata`` true): :func:`service_definition` lists them.
    """
    categories = {c["code"]: c for c in load_taxonomy()["categories"]}
    return [{"service_code": s["code"], "service_name": s["name"], "description": s["name_en"],
             "metadata": bool(ATTRIBUTES), "type": "realtime", "keywords": ",".join(filter(None, [s["name_en"]])),
             "group": categories.get(s["category"], {}).get("name", s["category"])}
            for s in load_taxonomy()["subcategories"]]


def service_definition(code: str) -> dict:
    """``GET services/{code}``: the attributes the service asks for; 404 in the spec's form for an unknown code."""
    if code not in {s["code"] for s in load_taxonomy()["subcategories"]}:
        raise Open311Error(404, f"service_code {code!r} is not a service here; GET services.json lists them.")
    return {"service_code": code, "attributes": [dict(a) for a in ATTRIBUTES]}


def discovery(url: str, *, contact: str, key_service: str) -> dict:
    """The Service Discovery file (``GET /open311/discovery.json``) of the one endpoint at ``url``."""
    return {"changeset": CHANGESET, "contact": contact, "key_service": key_service,
            "endpoints": [{"specification": SPECIFICATION, "url": url, "changeset": CHANGESET, "type": "production",
                           "formats": ["text/xml", "application/json"]}]}


# The element of each item of a list in the XML forms (the spec's names).
XML_ITEMS = {"attributes": "attribute", "values": "value", "endpoints": "endpoint", "formats": "format",
             "choices": "choice"}


def _xml_node(parent: ElementTree.Element, key: str, value: object) -> None:
    node = ElementTree.SubElement(parent, key)
    if isinstance(value, dict):
        for k, v in value.items():
            _xml_node(node, k, v)
    elif isinstance(value, list):
        for v in value:
            _xml_node(node, XML_ITEMS.get(key, "item"), v)
    elif isinstance(value, bool):
        node.text = str(value).lower()
    else:
        node.text = "" if value is None else str(value)


def to_xml(items: list[dict] | dict, *, root: str, item: str | None = None) -> str:
    """The XML form of a GeoReport answer: a list (``services.xml``, ``requests.xml``: ``item`` per entry),
    or one record (``services/{code}.xml``, ``discovery.xml``: its fields under ``root``)."""
    top = ElementTree.Element(root)
    for key, value in (items.items() if isinstance(items, dict) else ((item, entry) for entry in items)):
        _xml_node(top, key, value)
    return '<?xml version="1.0" encoding="utf-8"?>' + ElementTree.tostring(top, encoding="unicode")


def _number(form: dict, name: str, low: float, high: float) -> float:
    text = (form.get(name) or "").strip()
    if not text:
        raise Open311Error(400, f"{name} is required: the location as WGS84 latitude and longitude in degrees "
                                "(this service does not geocode addresses).")
    try:
        value = float(text)
    except ValueError:
        raise Open311Error(400, f"{name} {text!r} is not a number; give decimal degrees.") from None
    if not (math.isfinite(value) and low <= value <= high):
        raise Open311Error(400, f"{name} {value} is outside [{low}, {high}] degrees.")
    return value


def decode_form(body: bytes, *, content_type: str | None = "application/x-www-form-urlencoded") -> dict[str, str]:
    """The fields of a ``POST requests`` body, as GeoReport v2 sends them (form-encoded UTF-8).

    Parameters
    ----------
    body : bytes
        The request body, at most ``MAX_FORM_BYTES``.
    content_type : str, optional
        The request's ``Content-Type``; it must be ``application/x-www-form-urlencoded``.

    Returns
    -------
    dict
        Field name to value; of a repeated field, the last value.

    Raises
    ------
    Open311Error
        413 for a body over ``MAX_FORM_BYTES``; 400 for another content type, a body that is
        not UTF-8 or one of more than ``MAX_FORM_FIELDS`` fields.
    """
    if len(body) > MAX_FORM_BYTES:
        raise Open311Error(413, f"the request body is over {MAX_FORM_BYTES // 1024} KB.")
    if not (content_type or "").startswith("application/x-www-form-urlencoded"):
        raise Open311Error(400, "send the request form-encoded (application/x-www-form-urlencoded), "
                                "as GeoReport v2 says.")
    try:
        text = body.decode("utf-8")
    except UnicodeDecodeError:
        raise Open311Error(400, "the form is not UTF-8.") from None
    try:
        pairs = parse_qsl(text, keep_blank_values=True, strict_parsing=False, max_num_fields=MAX_FORM_FIELDS)
    except ValueError:  # more fields than max_num_fields
        raise Open311Error(400, f"the form has more than {MAX_FORM_FIELDS} fields.") from None
    return dict(pairs)


def parse_request(form: dict[str, str]) -> dict:
    """Validate a ``POST requests`` form (already decoded); raise :class:`Open311Error` naming the field."""
    for name, value in form.items():
        if not isinstance(name, str) or not isinstance(value, str):
            raise Open311Error(400, f"field {name!r}: expected text, found {type(value).__name__}.")
        try:
            name.encode("utf-8"), value.encode("utf-8")
        except UnicodeEncodeError:  # lone surrogates: only a Python caller can send them, and DuckDB refuses them
            raise Open311Error(400, f"field {name!r} is not valid Unicode text.") from None
    unknown = sorted(set(form) - set(REQUEST_FIELDS) - {k for k in form if ATTRIBUTE_FIELD.fullmatch(k)})
    if unknown:
        raise Open311Error(400, f"unknown field(s) {', '.join(unknown)}; GeoReport v2 fields are "
                                f"{', '.join(REQUEST_FIELDS)}.")
    code = (form.get("service_code") or "").strip()
    if not code:
        raise Open311Error(400, "service_code is required; GET services.json lists them.")
    if code not in {s["code"] for s in load_taxonomy()["subcategories"]}:
        raise Open311Error(404, f"service_code {code!r} is not a service here; GET services.json lists them.")
    description = (form.get("description") or "").strip()
    if len(description) > MAX_DESCRIPTION:
        raise Open311Error(400, f"description is {len(description)} characters; at most {MAX_DESCRIPTION}.")
    media_url = (form.get("media_url") or "").strip() or None
    if media_url and urlparse(media_url).scheme not in ("http", "https"):
        raise Open311Error(400, f"media_url {media_url!r} is not an http(s) URL.")
    return {"service_code": code, "lat": _number(form, "lat", -90, 90), "long": _number(form, "long", -180, 180),
            "address_string": (form.get("address_string") or "").strip() or None, "description": description or None,
            "media_url": media_url, "attributes": parse_attributes(form)}


ATTRIBUTE_FIELD = re.compile(r"attribute\[([^\]]*)\]")


def parse_attributes(form: dict[str, str]) -> str | None:
    """The ``attribute[code]`` fields of a form, checked against :data:`ATTRIBUTES`, as JSON (None when none)."""
    asked = {a["code"]: a for a in ATTRIBUTES}
    found = {}
    for name, value in form.items():
        match = ATTRIBUTE_FIELD.fullmatch(name)
        if not match or not value.strip():
            continue
        code, value = match.group(1), value.strip()
        if code not in asked:
            raise Open311Error(400, f"{name}: no attribute {code!r}; the services ask for {', '.join(asked)} "
                                    "(GET services/{service_code}.json).")
        allowed = [v["key"] for v in asked[code]["values"]]
        if allowed and value not in allowed:
            raise Open311Error(400, f"{name} {value!r}: choose one of {', '.join(allowed)}.")
        if len(value) > MAX_ATTRIBUTE:
            raise Open311Error(400, f"{name} is {len(value)} characters; at most {MAX_ATTRIBUTE}.")
        if code == "photo" and urlparse(value).scheme not in ("http", "https"):
            raise Open311Error(400, f"{name} {value!r} is not an http(s) URL of a photo.")
        found[code] = value
    return json.dumps(found, ensure_ascii=False, sort_keys=True) if found else None


def submit_request(con: duckdb.DuckDBPyConnection, form: dict[str, str], *, district_crs: str,
                   **intake) -> dict:
    """Take in a request form as a case (inside the caller's transaction); the GeoReport reply.

    ``intake`` goes to :func:`twin.cases.cases.create_case` (``matcher``, ``numbers``, ``write``);
    the reply's ``case`` holds the case record, which is not part of the GeoReport answer.
    The reply's ``evaluation_token`` is the reporter's one-use token (:mod:`twin.cases.evaluations`), kept only
    as its hash: the server gives it as ``evaluation_url``.
    """
    request = parse_request(form)
    x, y = transform_xy(np.array([[request["long"], request["lat"]]]), "EPSG:4326", district_crs)[0]
    write = intake.pop("write", True)
    try:
        case = create_case(con, subcategory_code=request["service_code"], source="open311", x=float(x), y=float(y),
                           description=request["description"], address=request["address_string"],
                           media_url=request["media_url"], attributes=request["attributes"], actor="open311",
                           write=False, **intake)
    except InputError as exc:
        raise Open311Error(400, str(exc)) from exc
    token = new_token()
    case["token_hash"] = token_hash(token)
    if write:
        write_cases(con, [case])
    return {"service_request_id": case["case_id"], "service_notice": f"assigned to {case['worker']}",
            "account_id": None, "evaluation_token": token, "case": case}


def public_description(text: str | None) -> str | None:
    """A description fit for anyone: every number masked (ID, phone, house and room numbers); None when it
    names or reaches someone (:data:`NAMES_IN_TEXT`: a title, "named", "contact", an e-mail address)."""
    if not isinstance(text, str) or not text or NAMES_IN_TEXT.search(text):
        return None
    return HOUSE_NUMBER.sub(lambda m: "*" * len(m.group()), mask_text(text))


def coarse_address(address: str | None) -> str | None:
    """The street of an address, without its house number or anything after it (``商都路 12号`` -> ``商都路``)."""
    if not isinstance(address, str):
        return None
    street = HOUSE_NUMBER.split(address, maxsplit=1)[0].strip(" ,，-")
    return street or None


def describe(rows: pd.DataFrame, *, district_crs: str, zone, view: str = "full") -> list[dict]:
    """GeoReport request records from case rows (``case_id``, ``subcategory``, ``status``, ``x``, ``y``...).

    ``zone`` is the store's (:func:`twin.store.clock.store_timezone`): times go out with its offset.
    ``view`` is the reader's (:meth:`twin.access.policy.Gate.case_view`): ``"public"`` gives
    :func:`public_record` of each.
    """
    if rows.empty:
        return []
    names = {s["code"]: s["name"] for s in load_taxonomy()["subcategories"]}
    lonlat = transform_xy(rows[["x", "y"]].to_numpy(dtype=float), district_crs, "EPSG:4326")
    records = [{"service_request_id": r.case_id, "status": "open" if r.status in OPEN_STATUSES else "closed",
                "status_notes": r.status, "service_name": names.get(r.subcategory, r.subcategory),
                "service_code": r.subcategory, "description": mask_text(_text(r.description)),
                "agency_responsible": _text(r.grid_id), "address": _text(r.address),
                "requested_datetime": with_offset(r.reported_at, zone),
                "updated_datetime": with_offset(r.updated_at, zone), "expected_datetime": with_offset(r.due_at, zone),
                "lat": round(float(lat), 7), "long": round(float(lon), 7),
                "media_url": _text(getattr(r, "media_url", None)),
                "evaluation": open311_question(r.status, r.updated_at, _text(getattr(r, "evaluation", None)),
                                               zone=zone)}
               for r, (lon, lat) in zip(rows.itertuples(), lonlat)]
    return [public_record(r) for r in records] if view == "public" else records


def _text(value: object) -> str | None:
    """A text column's value, None for SQL NULL (which a frame holds as NaN, and JSON cannot carry)."""
    return value if isinstance(value, str) else None


def public_record(record: dict) -> dict:
    """The public view of a request record: coarse place and address, masked or no description, no photo."""
    return {**record, "description": public_description(record["description"]),
            "address": coarse_address(record["address"]), "media_url": None,
            "lat": round(record["lat"], PUBLIC_DECIMALS), "long": round(record["long"], PUBLIC_DECIMALS)}


def find_requests(gate: Gate, query: dict[str, str], *, district_crs: str, limit: int = 1000) -> list[dict]:
    """``GET requests``, read through ``gate`` (only the cases its principal may see): by ``service_request_id``
    (comma-separated), ``service_code``, ``status`` (open/closed), ``start_date`` and ``end_date`` (ISO 8601,
    any offset; one without is in the store's zone), newest first; the full records or the public view, as
    the gate's principal may see them.

    Raises
    ------
    Open311Error
        400 for a bad filter; 403 when the principal may not read cases, or when a ``service_request_id``
        names a case outside its grids (the refusal is audited by the gate).
    """
    zone = store_timezone(gate.con)
    where, params = [], []
    ids = [i.strip() for i in query.get("service_request_id", "").split(",") if i.strip()]
    if ids:
        where.append(f"case_id IN ({', '.join('?' for _ in ids)})")
        params += ids
    else:
        if query.get("service_code"):
            where.append("subcategory = ?")
            params.append(query["service_code"])
        status = query.get("status")
        if status not in (None, "", "open", "closed"):
            raise Open311Error(400, f"status {status!r}: use open or closed.")
        if status:
            placeholders = ", ".join("?" for _ in OPEN_STATUSES)
            where.append(f"status {'IN' if status == 'open' else 'NOT IN'} ({placeholders})")
            params += list(OPEN_STATUSES)
        for name, op in (("start_date", ">="), ("end_date", "<=")):
            if query.get(name):
                try:
                    stamp = pd.Timestamp(query[name])
                except ValueError:
                    raise Open311Error(400, f"{name} {query[name]!r} is not an ISO 8601 date.") from None
                where.append(f"reported_at {op} ?")
                params.append(to_store_time(stamp, zone))
    try:
        visible, visible_params = gate.case_filter(asked=ids)
        view = gate.case_view()
    except AccessError as exc:
        raise Open311Error(403, str(exc)) from exc
    sql = ("SELECT case_id, subcategory, status, description, address, grid_id, reported_at, updated_at, due_at, "
           "media_url, ST_X(location) AS x, ST_Y(location) AS y, (SELECT arg_max(result, \"at\") FROM evaluations e "
           "WHERE e.case_id = cases.case_id) AS evaluation FROM cases WHERE "
           + " AND ".join([*where, visible]) + f" ORDER BY reported_at DESC LIMIT {int(limit)}")
    return describe(gate.con.execute(sql, [*params, *visible_params]).df(), district_crs=district_crs, zone=zone,
                    view=view)

"""Open311 GeoReport v2, the parts that need no web server: services, parsing requests, answering them.

The HTTP routes (served by ``twin serve``) are thin wrappers over these. Errors
follow the specification: a list of ``{"code", "description"}`` with the HTTP
status in ``code``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from urllib.parse import parse_qsl, urlparse
from xml.etree import ElementTree

import duckdb
import numpy as np
import pandas as pd

from twin.cases.cases import OPEN_STATUSES, create_case, load_taxonomy
from twin.geo.crs import transform_xy
from twin.errors import AccessError, InputError, TwinError
from twin.access.policy import Gate, mask_text

MAX_DESCRIPTION = 4000
MAX_FORM_BYTES = 64 * 1024
MAX_FORM_FIELDS = 100
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
    """The service list (``GET services.json``): one service per taxonomy subcategory."""
    categories = {c["code"]: c for c in load_taxonomy()["categories"]}
    return [{"service_code": s["code"], "service_name": s["name"], "description": s["name_en"],
             "metadata": False, "type": "realtime", "keywords": ",".join(filter(None, [s["name_en"]])),
             "group": categories.get(s["category"], {}).get("name", s["category"])}
            for s in load_taxonomy()["subcategories"]]


def to_xml(items: list[dict], *, root: str, item: str) -> str:
    """The XML form of a GeoReport list (``services.xml``, ``requests.xml``)."""
    top = ElementTree.Element(root)
    for entry in items:
        node = ElementTree.SubElement(top, item)
        for key, value in entry.items():
            text = "" if value is None else str(value)
            ElementTree.SubElement(node, key).text = text.lower() if isinstance(value, bool) else text
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
    unknown = sorted(set(form) - set(REQUEST_FIELDS) - {k for k in form if k.startswith("attribute[")})
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
            "media_url": media_url}


def submit_request(con: duckdb.DuckDBPyConnection, form: dict[str, str], *, district_crs: str,
                   **intake) -> dict:
    """Take in a request form as a case (inside the caller's transaction); the GeoReport reply.

    ``intake`` goes to :func:`twin.cases.cases.create_case` (``matcher``, ``numbers``, ``write``);
    the reply's ``case`` holds the case record, which is not part of the GeoReport answer.
    """
    request = parse_request(form)
    x, y = transform_xy(np.array([[request["long"], request["lat"]]]), "EPSG:4326", district_crs)[0]
    try:
        case = create_case(con, subcategory_code=request["service_code"], source="open311", x=float(x), y=float(y),
                           description=request["description"], address=request["address_string"],
                           media_url=request["media_url"], actor="open311", **intake)
    except InputError as exc:
        raise Open311Error(400, str(exc)) from exc
    return {"service_request_id": case["case_id"], "service_notice": f"assigned to {case['worker']}",
            "account_id": None, "case": case}


def describe(rows: pd.DataFrame, *, district_crs: str) -> list[dict]:
    """GeoReport request records from case rows (``case_id``, ``subcategory``, ``status``, ``x``, ``y``...)."""
    if rows.empty:
        return []
    names = {s["code"]: s["name"] for s in load_taxonomy()["subcategories"]}
    lonlat = transform_xy(rows[["x", "y"]].to_numpy(dtype=float), district_crs, "EPSG:4326")
    return [{"service_request_id": r.case_id, "status": "open" if r.status in OPEN_STATUSES else "closed",
             "status_notes": r.status, "service_name": names.get(r.subcategory, r.subcategory),
             "service_code": r.subcategory, "description": mask_text(r.description), "agency_responsible": r.grid_id,
             "address": r.address, "requested_datetime": pd.Timestamp(r.reported_at).isoformat(),
             "updated_datetime": pd.Timestamp(r.updated_at).isoformat(),
             "expected_datetime": pd.Timestamp(r.due_at).isoformat() if pd.notna(r.due_at) else None,
             "lat": round(float(lat), 7), "long": round(float(lon), 7),
             "media_url": getattr(r, "media_url", None)}
            for r, (lon, lat) in zip(rows.itertuples(), lonlat)]


def find_requests(gate: Gate, query: dict[str, str], *, district_crs: str, limit: int = 1000) -> list[dict]:
    """``GET requests``, read through ``gate`` (only the cases its principal may see): by ``service_request_id``
    (comma-separated), ``service_code``, ``status`` (open/closed), ``start_date`` and ``end_date`` (ISO 8601),
    newest first.

    Raises
    ------
    Open311Error
        400 for a bad filter; 403 when the principal may not read cases, or when a ``service_request_id``
        names a case outside its grids (the refusal is audited by the gate).
    """
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
                params.append(stamp.tz_convert(None) if stamp.tzinfo else stamp)
    try:
        visible, visible_params = gate.case_filter(asked=ids)
    except AccessError as exc:
        raise Open311Error(403, str(exc)) from exc
    sql = ("SELECT case_id, subcategory, status, description, address, grid_id, reported_at, updated_at, due_at, "
           "media_url, ST_X(location) AS x, ST_Y(location) AS y FROM cases WHERE "
           + " AND ".join([*where, visible]) + f" ORDER BY reported_at DESC LIMIT {int(limit)}")
    return describe(gate.con.execute(sql, [*params, *visible_params]).df(), district_crs=district_crs)

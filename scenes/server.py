"""``twin serve``: the app and the Open311 intake, in one process on one store.

The process holds the store's one writable DuckDB connection. Browser sessions
read through cursors of it; each intake request is one transaction, committed
before its reply.
"""

from __future__ import annotations

import json
import logging
from urllib.parse import parse_qsl

import panel as pn
from tornado.web import RequestHandler

from scenes.screens import DistrictApp
from scenes.shared import SharedDistrict
from twin.keys import client_for
from twin.open311 import Open311Error, find_requests, services, submit_request, to_xml
from twin.store import Store

log = logging.getLogger(__name__)
MAX_BODY_BYTES = 64 * 1024


class _Open311(RequestHandler):
    """Common ground of the GeoReport routes: the store, the format, errors in the spec's shape."""

    def initialize(self, store: Store) -> None:
        self.store = store
        self.con = store.con.cursor()

    def reply(self, items: list[dict], *, fmt: str, root: str, item: str, status: int = 200) -> None:
        self.set_status(status)
        if fmt == "xml":
            self.set_header("Content-Type", "text/xml; charset=utf-8")
            self.finish(to_xml(items, root=root, item=item))
        else:
            self.set_header("Content-Type", "application/json; charset=utf-8")
            self.finish(json.dumps(items, ensure_ascii=False, default=str))

    def fail(self, error: Open311Error, *, fmt: str) -> None:
        self.reply(error.body(), fmt=fmt, root="errors", item="error", status=error.code)

    def query(self) -> dict[str, str]:
        return {k: v[-1].decode() for k, v in self.request.query_arguments.items()}


class ServicesHandler(_Open311):
    def get(self, fmt: str) -> None:
        self.reply(services(), fmt=fmt, root="services", item="service")


class RequestsHandler(_Open311):
    def get(self, fmt: str) -> None:
        try:
            found = find_requests(self.con, self.query(), district_crs=self.store.district.crs)
        except Open311Error as exc:
            return self.fail(exc, fmt=fmt)
        self.reply(found, fmt=fmt, root="service_requests", item="request")

    def post(self, fmt: str) -> None:
        try:
            if len(self.request.body) > MAX_BODY_BYTES:
                raise Open311Error(413, f"the request body is over {MAX_BODY_BYTES // 1024} KB.")
            if not self.request.headers.get("Content-Type", "").startswith("application/x-www-form-urlencoded"):
                raise Open311Error(400, "send the request form-encoded (application/x-www-form-urlencoded), "
                                        "as GeoReport v2 says.")
            try:
                form = dict(parse_qsl(self.request.body.decode("utf-8"), keep_blank_values=True, strict_parsing=False))
            except UnicodeDecodeError:
                raise Open311Error(400, "the form is not UTF-8.") from None
            client = client_for(self.con, form.get("api_key"))
            if client is None:
                raise Open311Error(403, "api_key is missing, unknown or revoked; ask the district for a key.")
            self.con.execute("BEGIN TRANSACTION")
            try:
                answer = submit_request(self.con, form, district_crs=self.store.district.crs)
                self.con.execute("COMMIT")  # durable before the reply
            except BaseException:
                self.con.execute("ROLLBACK")
                raise
        except Open311Error as exc:
            return self.fail(exc, fmt=fmt)
        log.info("open311: %s from %s", answer["service_request_id"], client)
        self.reply([answer], fmt=fmt, root="service_requests", item="request", status=201)


class RequestHandler(_Open311):
    def get(self, request_id: str, fmt: str) -> None:
        found = find_requests(self.con, {"service_request_id": request_id}, district_crs=self.store.district.crs)
        if not found:
            return self.fail(Open311Error(404, f"no service request {request_id!r}."), fmt=fmt)
        self.reply(found, fmt=fmt, root="service_requests", item="request")


def intake_routes(store: Store) -> list[tuple]:
    """Tornado routes of the GeoReport v2 intake."""
    args = {"store": store}
    return [(r"/open311/v2/services\.(json|xml)", ServicesHandler, args),
            (r"/open311/v2/requests\.(json|xml)", RequestsHandler, args),
            (r"/open311/v2/requests/([^/.]+)\.(json|xml)", RequestHandler, args)]


def serve(db: str, *, port: int, address: str, origins: list[str]) -> None:
    """Serve the app at ``/app`` and the intake at ``/open311/v2/`` until interrupted."""
    store = Store(db)
    shared = SharedDistrict(store.con.cursor())
    pn.extension("vtk", "tabulator", theme="dark", sizing_mode="stretch_width")

    def app() -> pn.viewable.Viewable:
        return DistrictApp(store.con.cursor(), shared)

    pn.serve({"app": app}, port=port, address=address, websocket_origin=origins, show=False,
             title="District twin", extra_patterns=intake_routes(store))

"""AI detections from camera feeds: validate, place at the camera's target, fold repeats into one case.

A video analytics box posts one detection per event it sees, often many per
minute for one parked car. Repeats from one camera and category within a
window (10 minutes by default) join the open case they belong to instead of
opening new ones.
"""

from __future__ import annotations

import math
from collections import OrderedDict
from typing import NamedTuple
from urllib.parse import urlparse
from zoneinfo import ZoneInfo

import duckdb
import pandas as pd

from twin.cases.cases import OPEN_STATUSES, CaseNumbers, LocationMatcher, create_case, load_taxonomy, write_cases
from twin.cases.evaluations import new_token, token_hash
from twin.errors import InputError
from twin.store.clock import now_in, store_timezone, to_store_time
from twin.store.schema import DEFAULT_TIMEZONE

DETECTION_FIELDS = ("camera_id", "category", "confidence", "detected_at", "snapshot_url", "bbox", "api_key")
DEDUPE_WINDOW_S = 600.0
MAX_CLOCK_SKEW = pd.Timedelta(minutes=5)  # a detection may not come from further in the future than this
EARLIEST = pd.Timestamp("2000-01-01")  # nor from before this (a camera whose clock was never set)


class DetectionError(InputError):
    """A detection body that cannot be taken in; ``field`` names the offending field."""

    def __init__(self, field: str, message: str) -> None:
        super().__init__(f"{field}: {message}")
        self.field = field


def ai_categories() -> list[str]:
    """The taxonomy subcategories that camera analytics report (``ai`` true)."""
    return [s["code"] for s in load_taxonomy()["subcategories"] if s.get("ai")]


def _is_text(value: object) -> bool:
    """A str that UTF-8 can carry (JSON's ``\\ud800`` escapes decode to lone surrogates, which DuckDB refuses)."""
    if not isinstance(value, str):
        return False
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def parse_detection(body: object, *, now: pd.Timestamp | None = None,
                    zone: ZoneInfo = ZoneInfo(DEFAULT_TIMEZONE)) -> dict:
    """Validate a detection (decoded JSON); raise :class:`DetectionError` naming the field and the fix.

    Returns
    -------
    dict
        ``camera_id``, ``category``, ``confidence`` (0-1), ``detected_at`` (naive, in the store's
        ``zone``: :func:`twin.store.clock.store_timezone`; a time sent without an offset is taken as in it),
        ``snapshot_url`` (or None), ``bbox`` (``[x, y, w, h]`` in image pixels, or None).
    """
    if not isinstance(body, dict):
        raise DetectionError("body", f"expected a JSON object, found {type(body).__name__}.")
    unknown = sorted(set(body) - set(DETECTION_FIELDS))
    if unknown:
        raise DetectionError("body", f"unknown field(s) {', '.join(map(repr, unknown))}; the fields are "
                                     f"{', '.join(DETECTION_FIELDS)}.")
    camera_id = body.get("camera_id")
    if not _is_text(camera_id) or not camera_id.strip():
        raise DetectionError("camera_id", "required: the id of the camera that saw it (text).")
    category = body.get("category")
    if category not in ai_categories():
        raise DetectionError("category", f"{category!r} is not an AI scene; use one of {', '.join(ai_categories())}.")
    confidence = body.get("confidence")
    if isinstance(confidence, bool) or not isinstance(confidence, int | float) or not 0 <= confidence <= 1:
        raise DetectionError("confidence", f"expected a number from 0 to 1, found {confidence!r}.")
    stamp = body.get("detected_at")
    try:
        detected_at = pd.Timestamp(stamp) if isinstance(stamp, str) and stamp.strip() else None
    except ValueError:
        detected_at = None
    if detected_at is None or pd.isna(detected_at):
        raise DetectionError("detected_at", f"expected an ISO 8601 time such as 2026-11-26T09:30:00+08:00, "
                                            f"found {stamp!r}.")
    detected_at = to_store_time(detected_at, zone)
    if detected_at < EARLIEST:
        raise DetectionError("detected_at", f"{stamp} is before {EARLIEST:%Y-%m-%d}; check the camera's clock.")
    now = now if now is not None else now_in(zone)
    if detected_at > now + MAX_CLOCK_SKEW:
        raise DetectionError("detected_at", f"{stamp} is in the future (now {now:%Y-%m-%d %H:%M:%S} {zone.key}); "
                                            "check the camera's clock.")
    snapshot_url = body.get("snapshot_url")
    if snapshot_url is not None and (not _is_text(snapshot_url)
                                     or urlparse(snapshot_url).scheme not in ("http", "https")
                                     or len(snapshot_url) > 2000):
        raise DetectionError("snapshot_url", f"expected an http(s) URL, found {snapshot_url!r}.")
    bbox = body.get("bbox")
    if bbox is not None:
        if (not isinstance(bbox, list) or len(bbox) != 4
                or not all(isinstance(v, int | float) and not isinstance(v, bool) and math.isfinite(v) for v in bbox)
                or bbox[2] <= 0 or bbox[3] <= 0):
            raise DetectionError("bbox", f"expected [x, y, width, height] in image pixels, found {bbox!r}.")
        bbox = [float(v) for v in bbox]
    return {"camera_id": camera_id.strip(), "category": category, "confidence": float(confidence),
            "detected_at": detected_at.floor("ms"), "snapshot_url": snapshot_url, "bbox": bbox}


def camera_target(x: float, y: float, z: float, *, heading_deg: float, pitch_deg: float,
                  range_m: float) -> tuple[float, float]:
    """Where a camera's optical axis meets the ground (metres, district CRS), at most ``range_m`` away.

    Heading is clockwise from north; a negative pitch looks down. A camera that looks
    level or up targets the point at its range.
    """
    pitch = math.radians(pitch_deg)
    reach = range_m if pitch >= -1e-6 else min(range_m, z / math.tan(-pitch))
    heading = math.radians(heading_deg)
    return x + reach * math.sin(heading), y + reach * math.cos(heading)


CAMERAS_KEPT = 20_000  # cameras a desk keeps in memory, those that sent last


class _Camera(NamedTuple):
    camera_id: str
    x: float
    y: float
    z: float
    heading_deg: float
    pitch_deg: float
    range_m: float


class DetectionDesk:
    """Takes detections into cases, for the one process that writes the store.

    Keeps the cameras that sent last, a :class:`LocationMatcher` and :class:`CaseNumbers` in memory, and
    the latest case per camera and category, so a repeat is recognised without a query.
    """

    def __init__(self, con: duckdb.DuckDBPyConnection, *, window_s: float = DEDUPE_WINDOW_S,
                 matcher: LocationMatcher | None = None, numbers: CaseNumbers | None = None) -> None:
        if not window_s >= 0:
            raise InputError(f"the de-duplication window must be 0 s or more, found {window_s!r}.")
        self.window = pd.Timedelta(seconds=window_s)
        self.matcher = matcher or LocationMatcher(con)
        self.numbers = numbers or CaseNumbers()
        self.zone = store_timezone(con)  # of the store's timestamps: a detection's received_at
        self._cameras: OrderedDict[str, _Camera] = OrderedDict()  # the cameras that sent last
        self._last: dict[tuple[str, str], tuple[str, pd.Timestamp]] = {}
        self._serial = int(con.execute("SELECT count(*) FROM detections").fetchone()[0])

    def camera(self, con: duckdb.DuckDBPyConnection, camera_id: str) -> _Camera | None:
        """A camera's place and view, read from the store once and kept while it keeps sending (a city's 1.5
        million cameras are not all held)."""
        camera = self._cameras.get(camera_id)
        if camera is None:
            row = con.execute(
                "SELECT camera_id, ST_X(position), ST_Y(position), coalesce(z, 4.0), coalesce(heading_deg, 0), "
                "coalesce(pitch_deg, -20), coalesce(range_m, 40) FROM cameras WHERE camera_id = ?",
                [camera_id]).fetchall()
            if not row:
                return None
            camera = self._cameras[camera_id] = _Camera(*row[0])
            if len(self._cameras) > CAMERAS_KEPT:
                self._cameras.popitem(last=False)
        self._cameras.move_to_end(camera_id)
        return camera

    def forget(self) -> None:
        """Drop what is remembered from the store (after a rolled-back transaction)."""
        self._last.clear()
        self.numbers.reset()

    def _recent_case(self, con: duckdb.DuckDBPyConnection, camera_id: str, category: str,
                     at: pd.Timestamp) -> str | None:
        key = (camera_id, category)
        if key not in self._last:  # the first of this pair since the server started: ask the store
            row = con.execute("SELECT d.case_id, max(d.detected_at) FROM detections d JOIN cases c USING (case_id) "
                              "WHERE d.camera_id = ? AND d.category = ? AND c.status IN (SELECT unnest(?)) "
                              "GROUP BY d.case_id ORDER BY 2 DESC LIMIT 1",
                              [camera_id, category, list(OPEN_STATUSES)]).fetchone()
            self._last[key] = (row[0], pd.Timestamp(row[1])) if row else None
        last = self._last[key]
        if last is not None and abs(at - last[1]) <= self.window:
            return last[0]
        return None

    def take(self, con: duckdb.DuckDBPyConnection, detection: dict, *, received_at: pd.Timestamp | None = None,
             write: bool = True) -> dict:
        """Record a parsed detection (inside the caller's transaction).

        Returns
        -------
        dict
            ``detection_id``, ``case_id``, ``duplicate`` (True when it joined an open case),
            ``evaluation_token`` (a new case's one-use token for its reporter, the client; None for a duplicate),
            ``detection`` (the row for the ``detections`` table) and ``case`` (the new case
            record, or None). With ``write=False`` nothing is written: pass the rows to
            :func:`write_detections` and :func:`twin.cases.cases.write_cases`.
        """
        camera = self.camera(con, detection["camera_id"])
        if camera is None:
            raise DetectionError("camera_id", f"no camera {detection['camera_id']!r} in the district; "
                                              "register the camera first.")
        received_at = received_at if received_at is not None else pd.Timestamp.now(tz=self.zone).tz_localize(
            None).floor("ms")
        at = detection["detected_at"]
        case_id = self._recent_case(con, camera.camera_id, detection["category"], at)
        case = token = None
        if case_id is None:
            x, y = camera_target(camera.x, camera.y, camera.z, heading_deg=camera.heading_deg,
                                 pitch_deg=camera.pitch_deg, range_m=camera.range_m)
            try:
                case = create_case(con, subcategory_code=detection["category"], source="ai", x=x, y=y,
                                   camera_id=camera.camera_id, media_url=detection["snapshot_url"], actor="ai",
                                   reported_at=at.floor("s"), matcher=self.matcher, numbers=self.numbers, write=False,
                                   description=f"AI detection, confidence {detection['confidence']:.2f}")
            except InputError as exc:
                raise DetectionError("camera_id", f"camera {camera.camera_id}'s target: {exc}") from exc
            case_id = case["case_id"]
            # The client that reported it is the case's reporter: its one-use link to evaluate the case once
            # handled (twin.cases.evaluations), as an Open311 receipt carries one; only the hash is kept.
            token = new_token()
            case["token_hash"] = token_hash(token)
        key = (camera.camera_id, detection["category"])
        seen = self._last.get(key)
        self._last[key] = (case_id, max(at, seen[1]) if seen and seen[0] == case_id else at)
        self._serial += 1
        row = {"detection_id": f"D{received_at:%Y%m%d%H%M%S}-{self._serial:07d}", **detection,
               "received_at": received_at, "case_id": case_id}
        if write:
            if case is not None:
                write_cases(con, [case])
            write_detections(con, [row])
        return {"detection_id": row["detection_id"], "case_id": case_id, "duplicate": case is None,
                "evaluation_token": token, "detection": row, "case": case}


def write_detections(con: duckdb.DuckDBPyConnection, rows: list[dict]) -> None:
    """Insert detection rows (inside the caller's transaction)."""
    if not rows:
        return
    columns = ("detection_id", "camera_id", "category", "confidence", "detected_at", "received_at", "snapshot_url",
               "bbox", "case_id")
    con.executemany(f"INSERT INTO detections ({', '.join(columns)}) VALUES ({', '.join('?' for _ in columns)})",
                    [[r[c] for c in columns] for r in rows])


def recent_detections(con: duckdb.DuckDBPyConnection, *, camera_id: str | None = None,
                      case_id: str | None = None, limit: int = 10) -> pd.DataFrame:
    """The latest detections of a camera or of a case, newest first."""
    if (camera_id is None) == (case_id is None):
        raise InputError("give exactly one of camera_id and case_id")
    column, value = ("camera_id", camera_id) if camera_id is not None else ("case_id", case_id)
    return con.execute(f"SELECT detection_id, camera_id, category, confidence, detected_at, snapshot_url, case_id "
                       f"FROM detections WHERE {column} = ? ORDER BY detected_at DESC LIMIT ?",
                       [value, int(limit)]).df()


"""Security benchmark (``twin bench security --json``): fuzzed inputs, and rate limits under a loopback burst.

1. Fuzzing, on a copy of the small demo district (the inputs are made around it:
   its origin, its cameras): each entry point of ``bench/fuzzing`` (footprint
   files, mutated IFC files, Open311 forms and bodies, detection JSON, the search
   box) is fed ``EXAMPLES`` inputs from a random seed. Counted per entry point:
   inputs tried, accepted, refused (a ``TwinError``), crashes (any other
   exception) and store changes after a refused input. Goal: 0 crashes, 0 changes.
   The search box is also fed text with lone surrogates (``"\\ud800"``, which a
   JSON-decoded text box can carry), which the test suite's run leaves out.
   The audit rows the sign-in burst left are counted too.
2. Over HTTP, against a real ``twin serve`` at its default intake rate: ``HTTP_FUZZ``
   fuzzed Open311 bodies and detection JSON bodies (the same strategies), and
   detection bodies whose ``api_key`` is not text. Counted: answers by status;
   goal: no 5xx.
3. Rate limits, against a real ``twin serve --intake-rate INTAKE_RATE`` on another
   copy, over loopback (``SIGNIN_CONNECTIONS`` / ``INTAKE_CONNECTIONS`` parallel
   connections, as fast as they go):

   - sign-in: ``SIGNIN_BURST`` wrong passwords for one user from one address
     (127.0.0.1), then ``SIGNIN_BURST`` wrong passwords for as many user names
     from another (127.0.0.2; all of 127/8 is loopback), then the right password
     from the first address. Counted: attempts checked (an answer other than 429)
     and refused with 429 (with a ``Retry-After``). Goal: at most 5 checked per
     user and address and 20 per address in a minute (plus what the limiter
     refills during the burst), and the right password refused too while locked.
   - intake: ``INTAKE_BURST`` Open311 requests with one API key; counted 201 and
     429. Goal: at most ``2 * INTAKE_RATE`` (the burst) + ``INTAKE_RATE`` per second
     of the burst accepted, every 429 with a ``Retry-After``, and another key's
     requests during the burst all accepted (the limit is per key).
"""

from __future__ import annotations

import http.client
import json
import shutil
import sys
import tempfile
import threading
import time
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from urllib.parse import urlencode, urlparse

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from bench.common import write_result  # noqa: E402
from bench.browser import served  # noqa: E402
from bench.fuzzing import detections, footprints, ifc, open311, search  # noqa: E402
from bench.fuzzing.harness import SURROGATES, fuzz, replay  # noqa: E402
from twin.access.keys import add_key  # noqa: E402
from twin.store.store import Store, open_for_command  # noqa: E402

TARGETS = {  # entry point: (target, inputs in a full run)
    "footprints": (footprints.TARGET, 400),
    "ifc": (ifc.TARGET, 500),
    "open311": (open311.TARGET, 1000),
    "detections": (detections.TARGET, 1000),
    "search": (search.TARGET, 1500),
}
QUICK_SHARE = 0.2
SIGNIN_BURST = 200
SIGNIN_CONNECTIONS = 16
SIGNIN_PER_USER = (5, 5 / 60)  # the contract: burst, refill per second
SIGNIN_PER_ADDRESS = (20, 20 / 60)
INTAKE_RATE = 20.0
INTAKE_BURST = 400
INTAKE_CONNECTIONS = 16
HTTP_FUZZ, HTTP_FUZZ_QUICK = 400, 100  # fuzzed bodies per intake route over HTTP
GOALS = {"crashes": 0, "store_changes_after_refusal": 0, "http_server_errors": 0, "signin_checked_per_user_and_address_at_most": 5,
         "signin_checked_per_address_at_most": 20, "intake_accepted_at_most": "2 * rate + rate * seconds"}


def fuzz_all(store: Path, work: Path, *, quick: bool, seed: int) -> dict:
    """Every entry point's fuzz run on its own copy of ``store``: counts and the first findings."""
    out = {}
    for name, (target, examples) in TARGETS.items():
        folder = work / f"fuzz-{name}"
        folder.mkdir()
        db = Path(shutil.copy(store, folder / "store.duckdb"))
        tally = fuzz(target, db, folder, max_examples=max(20, int(examples * (QUICK_SHARE if quick else 1))),
                     strict=False, derandomize=False, seed=seed)
        if name == "search":  # text a JSON-decoded box can carry that UTF-8 cannot: kept out of the test suite's run
            probes = replay(target, db, folder, [{"text": text, "limit": 10, "who": who} for text in SURROGATES
                                                 for who in ("inspector", "leader", "operator")], strict=False)
            for key in ("tried", "ok", "refused"):
                setattr(tally, key, getattr(tally, key) + getattr(probes, key))
            tally.crashes += probes.crashes
            tally.changed += probes.changed
        out[name] = {"entry_point": target.name, **tally.as_dict()}
        shutil.rmtree(folder, ignore_errors=True)
    return out


class Client:
    """Blocking HTTP posts over loopback from a chosen source address, one kept-alive connection per thread."""

    def __init__(self, base: str, *, source: str = "127.0.0.1") -> None:
        parsed = urlparse(base)
        self.host, self.port, self.source = parsed.hostname, parsed.port, source
        self._local = threading.local()

    def post(self, path: str, body: bytes, content_type: str, *, headers: dict | None = None) -> tuple[int, dict]:
        for attempt in (0, 1):
            con = getattr(self._local, "con", None)
            if con is None:
                con = self._local.con = http.client.HTTPConnection(self.host, self.port, timeout=60,
                                                                   source_address=(self.source, 0))
            try:
                con.request("POST", path, body=body, headers={"Content-Type": content_type, **(headers or {})})
                answer = con.getresponse()
                answer.read()
                return answer.status, {k.lower(): v for k, v in answer.getheaders()}
            except (http.client.HTTPException, OSError):
                con.close()
                self._local.con = None
                if attempt:
                    raise
        raise AssertionError("unreachable")


def burst(client: Client, requests: list[tuple[str, bytes, str]], *, connections: int) -> dict:
    """Post ``requests`` as fast as ``connections`` threads go; statuses, Retry-After on 429s, seconds taken."""
    started = time.perf_counter()
    with ThreadPoolExecutor(connections) as pool:
        answers = list(pool.map(lambda r: client.post(*r), requests))
    seconds = time.perf_counter() - started
    statuses = Counter(status for status, _ in answers)
    refused = [headers for status, headers in answers if status == 429]
    return {"sent": len(requests), "seconds": round(seconds, 2), "statuses": {str(k): v for k, v in statuses.items()},
            "refused_429": statuses[429], "checked": len(requests) - statuses[429],
            "retry_after_on_every_429": all("retry-after" in h for h in refused)}


def _login(username: str, password: str) -> tuple[str, bytes, str]:
    return "/login", urlencode({"username": username, "password": password}).encode(), \
        "application/x-www-form-urlencoded"


def signin_limits(base: str, user: str, password: str) -> dict:
    """Wrong passwords in bursts: one user from one address, many names from another; then the right one."""
    one = Client(base, source="127.0.0.1")
    same_user = burst(one, [_login(user, f"wrong-{k}") for k in range(SIGNIN_BURST)], connections=SIGNIN_CONNECTIONS)
    right_status, _ = one.post(*_login(user, password))
    many = Client(base, source="127.0.0.2")
    many_users = burst(many, [_login(f"guess{k}", "wrong-password") for k in range(SIGNIN_BURST)],
                       connections=SIGNIN_CONNECTIONS)
    user_bound = SIGNIN_PER_USER[0] + SIGNIN_PER_USER[1] * same_user["seconds"]
    address_bound = SIGNIN_PER_ADDRESS[0] + SIGNIN_PER_ADDRESS[1] * many_users["seconds"]
    return {
        "one_user_one_address": {**same_user, "checked_at_most": round(user_bound, 2)},
        "right_password_after_the_burst": {"status": right_status, "refused": right_status == 429},
        "many_users_one_address": {**many_users, "checked_at_most": round(address_bound, 2)},
        "holding": (same_user["checked"] <= user_bound and many_users["checked"] <= address_bound
                    and right_status == 429 and same_user["retry_after_on_every_429"]
                    and many_users["retry_after_on_every_429"]),
    }


def draw(strategy, count: int, *, seed: int) -> list:
    """``count`` inputs drawn from a hypothesis strategy (as a fuzz run would try them)."""
    from hypothesis import HealthCheck, given, settings
    from hypothesis import seed as with_seed

    drawn: list = []

    def keep(value) -> None:
        drawn.append(value)

    collect = settings(max_examples=count, deadline=None, database=None, suppress_health_check=list(HealthCheck),
                       phases=["generate"])(given(strategy)(keep))
    with_seed(seed)(collect)()
    return drawn[:count]


def _open311_request(value: dict, key: str) -> tuple[str, bytes, str]:
    if "form" in value:
        body = urlencode({**value["form"], "api_key": key}, errors="surrogatepass").encode("utf-8", "surrogatepass")
        return "/open311/v2/requests.json", body, "application/x-www-form-urlencoded"
    return "/open311/v2/requests.json", value["body"] + b"&api_key=" + key.encode(), value["content_type"]


def http_fuzz(base: str, key: str, *, count: int, seed: int) -> dict:
    """Fuzzed Open311 bodies and detection JSON through the real routes: no answer may be a 5xx."""
    client = Client(base)
    out = {}
    routes = {
        "open311": [_open311_request(v, key) for v in draw(open311.inputs, count, seed=seed)],
        "detections": [("/api/detections", text.encode("utf-8", "surrogatepass"), "application/json")
                       for text in draw(detections.inputs, count, seed=seed)],
        # API keys that are not text, or not Unicode a UTF-8 body can carry (a JSON escape)
        "detections_key_in_body": [("/api/detections", b'{"api_key": ' + k + b"}", "application/json")
                                   for k in (b'"\\ud800"', b"5", b'["x"]', b'{"a": 1}', b"null", b'""', b"true",
                                             b'"' + b"x" * 10_000 + b'"')],
    }
    for name, requests in routes.items():
        if name.startswith("detections"):  # the key goes in the header, as cameras send it
            result = burst(_KeyedClient(client, key if name == "detections" else None), requests, connections=4)
        else:
            result = burst(client, requests, connections=4)
        errors = {k: v for k, v in result["statuses"].items() if k.startswith("5")}
        out[name] = {"sent": result["sent"], "statuses": result["statuses"], "server_errors": sum(errors.values())}
    return out


class _KeyedClient:
    """A :class:`Client` that sends an ``X-API-Key`` header (or none)."""

    def __init__(self, client: Client, key: str | None) -> None:
        self.client, self.key = client, key

    def post(self, path: str, body: bytes, content_type: str) -> tuple[int, dict]:
        return self.client.post(path, body, content_type, headers={"X-API-Key": self.key} if self.key else {})


def _report(key: str, k: int) -> tuple[str, bytes, str]:
    form = {"service_code": open311.CODES[k % len(open311.CODES)], "lat": f"{34.76 + (k % 50) * 1e-4:.6f}",
            "long": f"{113.72 + (k % 37) * 1e-4:.6f}", "description": f"bench security {k}", "api_key": key}
    return "/open311/v2/requests.json", urlencode(form).encode(), "application/x-www-form-urlencoded"


def intake_limits(base: str, key: str, other_key: str) -> dict:
    """One key's burst beyond its rate, with another key's few requests in the middle of it."""
    client = Client(base)
    other: dict = {}

    def the_other_key() -> None:
        time.sleep(0.2)
        other.update(burst(client, [_report(other_key, k) for k in range(10)], connections=2))

    side = threading.Thread(target=the_other_key)
    side.start()
    main = burst(client, [_report(key, k) for k in range(INTAKE_BURST)], connections=INTAKE_CONNECTIONS)
    side.join()
    accepted = main["statuses"].get("201", 0)
    bound = 2 * INTAKE_RATE + INTAKE_RATE * main["seconds"]
    return {"rate_per_s": INTAKE_RATE, "burst": 2 * INTAKE_RATE, **main, "accepted": accepted,
            "accepted_at_most": round(bound, 1), "other_key_during_the_burst": other,
            "holding": (accepted <= bound and main["refused_429"] > 0 and main["retry_after_on_every_429"]
                        and other.get("statuses", {}).get("201", 0) == other.get("sent", -1))}


def run(*, db: str | None = None, quick: bool = False, seed: int | None = None) -> dict:
    """Run the benchmark; ``db`` is a store to fuzz and serve (default: a fresh small demo)."""
    from data.build import build_demo_store

    seed = int(time.time()) % 100_000 if seed is None else seed
    with tempfile.TemporaryDirectory(prefix="twin-bench-security-") as tmp:
        work = Path(tmp)
        source = work / "source.duckdb"
        if db is None:
            build_demo_store(source, scale="small", seed=0)
        else:
            shutil.copy(db, source)
        started = time.perf_counter()
        fuzzed = fuzz_all(source, work, quick=quick, seed=seed)
        fuzz_s = time.perf_counter() - started
        serve_db = Path(shutil.copy(source, work / "serve.duckdb"))
        with open_for_command(serve_db) as store:
            key, other_key = add_key(store.con, "bench-security"), add_key(store.con, "bench-security-other")
        with served(serve_db, args=("--intake-rate", str(INTAKE_RATE))) as url:
            base = url.rsplit("/", 1)[0]
            intake = intake_limits(base, key, other_key)
            signin = signin_limits(base, url.user, url.password)
        fuzz_db = Path(shutil.copy(source, work / "serve-fuzz.duckdb"))
        with open_for_command(fuzz_db) as store:
            fuzz_key = add_key(store.con, "bench-security-fuzz")
        with served(fuzz_db) as url:  # the default intake rate: every fuzzed request gets to the checks
            over_http = http_fuzz(url.rsplit("/", 1)[0], fuzz_key, count=HTTP_FUZZ_QUICK if quick else HTTP_FUZZ,
                                  seed=seed)
        with Store(serve_db, read_only=True) as store:
            audited = dict(store.con.execute(
                "SELECT coalesce(json_extract_string(detail, '$.reason'), '?'), count(*) FROM audit "
                "WHERE action = 'signin.failed' GROUP BY ALL").fetchall())
    signin["audit_rows_of_failed_signins"] = audited
    crashes = sum(f["crashes"] for f in fuzzed.values())
    changes = sum(f["store_changes_after_refusal"] for f in fuzzed.values())
    result = {
        "benchmark": "security",
        "db": db or "small demo (built)",
        "seed": seed,
        "fuzz": {"entry_points": fuzzed, "inputs": sum(f["tried"] for f in fuzzed.values()), "crashes": crashes,
                 "store_changes_after_refusal": changes, "seconds": round(fuzz_s, 1)},
        "over_http": {"routes": over_http,
                      "server_errors": sum(r["server_errors"] for r in over_http.values())},
        "rate_limits": {"signin": signin, "intake": intake},
        "goals": {**GOALS, "fuzz_met": crashes == 0 and changes == 0,
                  "http_met": all(r["server_errors"] == 0 for r in over_http.values()), "signin_met": signin["holding"],
                  "intake_met": intake["holding"]},
    }
    return write_result("security", result)


if __name__ == "__main__":
    db_arg = sys.argv[sys.argv.index("--db") + 1] if "--db" in sys.argv else None
    print(json.dumps(run(db=db_arg, quick="--quick" in sys.argv), indent=2, ensure_ascii=False))

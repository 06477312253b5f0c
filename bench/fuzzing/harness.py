"""The fuzzing harness shared by ``bench/security.py`` and ``tests/fuzz`` (which import it from here).

Each entry point is a :class:`Target`: a hypothesis strategy of inputs and a
runner that feeds one input to the product on a store copy. :func:`fuzz` tries
a fixed number of inputs and sorts each outcome:

- ``ok``: accepted (the store may change, as it should);
- ``refused``: a :class:`twin.errors.TwinError` subclass was raised, and the
  store must be as it was before (the same tables, the same checksums of the
  target's tables; and at the end of the run, the same :data:`UNTOUCHABLE` tables);
- ``crash``: any other exception;
- ``changed``: refused, but the store is not as it was.

In tests (``strict=True``) a crash or a change fails the test, and hypothesis
shrinks the input; in the benchmark they are counted. The numbers of examples
tried are collected in :data:`TALLIES` and printed at the end of the pytest run
(see ``tests/fuzz/conftest.py``). The targets live beside it in ``bench/fuzzing/``.
"""

from __future__ import annotations

import contextlib
import itertools
import shutil
import time
import traceback
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import duckdb
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from twin.errors import TwinError
from twin.store.store import Store

# Strings that break string-built SQL, LIKE patterns, parsers and displays; mixed into every text strategy.
INJECTIONS = (
    "'; DROP TABLE residents; --", "' OR '1'='1", "1' OR 1=1 --", "'); DELETE FROM cases; --",
    "\"; DROP TABLE cases; --", "%", "_", "\\", "%%", "\\%", "\\_", "%' --", "'", '"', "`", "--", "/*", "*/", ";",
    "\x00", "a\x00b", "\x00' OR '1'='1", "\r\n", "\t", "名字", "商都路 1号", "🏠", "\u202e", "\ufeff", "",
    " ", "NaN", "nan", "inf", "-inf", "Infinity", "1e309", "-0", "0x10", "1_000", "null", "None", "true", "$1",
    "?", ":name", "${jndi:ldap://x/a}", "<script>alert(1)</script>", "../../etc/passwd", "file:///etc/passwd",
    "CAM00001", "x" * 300, "ILIKE", "ESCAPE", "SELECT * FROM residents", "residents",
)
# Lone surrogates arrive only through JSON escapes (``"\\ud800"``) and Python callers; UTF-8 cannot carry them.
SURROGATES = ("\ud800", "a\udfffb", "\udc80")


def texts(*, max_size: int = 40, surrogates: bool = False) -> st.SearchStrategy[str]:
    """Text with the injection strings mixed in: alone, as prefix or suffix of random text, or random text."""
    known = st.sampled_from(INJECTIONS + (SURROGATES if surrogates else ()))
    free = st.text(max_size=max_size)
    joined = st.builds(lambda a, b: a + b, known, free) | st.builds(lambda a, b: a + b, free, known)
    return st.one_of(known, free, joined)


def checksums(con: duckdb.DuckDBPyConnection, tables: tuple[str, ...]) -> dict:
    """The store's table names, the residents' row count, and ``(count, sum(hash(row)))`` of each of ``tables``.

    One query (a few milliseconds on the small demo); the tables no input may change at all are
    checksummed in full once per run (:data:`UNTOUCHABLE`).
    """
    present = sorted(r[0] for r in con.execute("SELECT table_name FROM duckdb_tables()").fetchall())
    parts = [f"SELECT '{t}', count(*), sum(hash(x)) FROM {t} x" for t in tables if t in present]
    parts += [f"SELECT '{t}', count(*), NULL FROM {t}" for t in ("residents",) if t in present and t not in tables]
    rows = con.execute(" UNION ALL ".join(parts)).fetchall() if parts else []
    return {"tables": present, "hashes": {t: (n, h) for t, n, h in rows}}


@dataclass
class Tally:
    """Outcomes of one fuzz run."""

    name: str
    tried: int = 0
    ok: int = 0
    refused: int = 0
    crashes: list[dict] = field(default_factory=list)
    changed: list[dict] = field(default_factory=list)
    bad_accepts: list[dict] = field(default_factory=list)  # accepted, but left nonsense in the store
    seconds: float = 0.0
    reasons: Counter = field(default_factory=Counter)  # refusals by error class

    def as_dict(self) -> dict:
        return {"tried": self.tried, "accepted": self.ok, "refused": self.refused, "crashes": len(self.crashes),
                "store_changes_after_refusal": len(self.changed), "nonsense_accepted": len(self.bad_accepts),
                "seconds": round(self.seconds, 2),
                "refused_by": dict(self.reasons.most_common()),
                "first_crashes": self.crashes[:3], "first_changes": self.changed[:3],
                "first_nonsense": self.bad_accepts[:3]}


TALLIES: dict[str, Tally] = {}
# No input to any entry point may change these; checksummed at the start and end of each run.
UNTOUCHABLE = ("residents", "users", "api_keys", "grids", "compounds")

# No accepted input may leave a building or mesh that is not finite, or implausibly tall or far.
SANE_BUILDINGS = ("""
    WITH o AS (SELECT max(CASE WHEN key = 'origin_x' THEN value::DOUBLE END) AS x,
                      max(CASE WHEN key = 'origin_y' THEN value::DOUBLE END) AS y FROM meta)
    SELECT (SELECT count(*) FROM buildings WHERE NOT (isfinite(height) AND isfinite(base_z) AND height >= 0
                                                     AND height <= 1000 AND abs(base_z) <= 10000))
         + (SELECT count(*) FROM meshes, o WHERE NOT (greatest(abs(bbox_xmin - o.x), abs(bbox_xmax - o.x),
                                                               abs(bbox_ymin - o.y), abs(bbox_ymax - o.y)) <= 1e5
                                                      AND greatest(abs(bbox_zmin), abs(bbox_zmax)) <= 1e4))""")
# No accepted input may leave a case that is not on the map or not of this era.
SANE_CASES = ("SELECT count(*) FROM cases WHERE NOT (isfinite(ST_X(location)) AND isfinite(ST_Y(location))) "
              "OR reported_at < TIMESTAMP '2000-01-01' OR reported_at > TIMESTAMP '2100-01-01'")


class Finding(AssertionError):
    """A crash (not a TwinError) or a store change after a refused input."""


@dataclass
class Target:
    """One entry point to fuzz.

    Attributes
    ----------
    name : str
    strategy : SearchStrategy
        Inputs.
    tables : tuple of str
        Tables that a refused input must leave unchanged (checksummed; every table's row count is compared too).
    session : callable
        ``session(store_path, workdir)`` is a context manager yielding ``(con, run)``: the store's connection
        for the checksums and ``run(value)``, which feeds one input (raising on refusal, rolling back its
        own transaction).
    sane : str, optional
        A query counting the rows that no accepted input may leave in the store (a non-finite height, a
        case from the year 1); after each accepted input it must count 0.
    """

    name: str
    strategy: st.SearchStrategy
    tables: tuple[str, ...]
    session: Callable[..., contextlib.AbstractContextManager]
    sane: str | None = None  # SQL counting rows no accepted input may leave (non-finite heights, cases in year 1)


def file_session(file_name: Callable[[dict], str], write: Callable[[Path, dict], None],
                 load: Callable[[Store, Path, dict], None]) -> Callable[..., contextlib.AbstractContextManager]:
    """A :class:`Target` session for readers of files: each input is written by ``write(path, value)`` to a
    file of its own in the work folder (named ``N-{file_name(value)}``), loaded by ``load(store, path, value)``
    (which opens its own transaction), and removed."""

    @contextlib.contextmanager
    def session(store_path: Path, workdir: Path):
        counter = itertools.count()
        with Store(store_path) as store:

            def run(value: dict) -> None:
                path = Path(workdir) / f"{next(counter)}-{file_name(value)}"
                write(path, value)
                try:
                    load(store, path, value)
                finally:
                    path.unlink(missing_ok=True)

            yield store.con, run

    return session


@contextlib.contextmanager
def _timed(tally: Tally) -> Iterator[None]:
    started = time.perf_counter()
    try:
        yield
    finally:
        tally.seconds += time.perf_counter() - started


def _feeder(target: Target, con: duckdb.DuckDBPyConnection, run: Callable, tally: Tally, *,
            strict: bool) -> Callable:
    """``one(value)``: feed one input, sort its outcome into ``tally``, raise on a finding when ``strict``."""

    def one(value) -> None:
        tally.tried += 1
        before = checksums(con, target.tables)
        try:
            run(value)
        except TwinError as exc:
            tally.refused += 1
            tally.reasons[type(exc).__name__] += 1
            after = checksums(con, target.tables)
            if after != before:
                finding = {"input": repr(value)[:500], "error": f"{type(exc).__name__}: {exc}"[:300],
                           "tables": sorted(set(before["tables"]) ^ set(after["tables"]))
                           + sorted(t for t in before["hashes"] if before["hashes"][t] != after["hashes"].get(t))}
                tally.changed.append(finding)
                if strict:
                    raise Finding(f"{target.name}: store changed after a refused input: {finding}") from exc
        except Exception as exc:  # noqa: BLE001 - anything but a TwinError is what we look for
            finding = {"input": repr(value)[:500], "error": f"{type(exc).__name__}: {exc}"[:300],
                       "where": traceback.format_exc(limit=-3)[-1200:]}
            tally.crashes.append(finding)
            if strict:
                raise
        else:
            tally.ok += 1
            insane = con.execute(target.sane).fetchone()[0] if target.sane else 0
            if insane:
                finding = {"input": repr(value)[:500], "error": f"accepted, and left {insane} rows that "
                                                                 f"`{target.sane}` counts"}
                tally.bad_accepts.append(finding)
                if strict:
                    raise Finding(f"{target.name}: {finding}")

    return one


@contextlib.contextmanager
def _untouched(con: duckdb.DuckDBPyConnection, target: Target, tally: Tally, *, strict: bool) -> Iterator[None]:
    before = checksums(con, UNTOUCHABLE)["hashes"]
    yield
    after = checksums(con, UNTOUCHABLE)["hashes"]
    if after != before:
        finding = {"input": "(the whole run)", "error": "tables no input may change have changed",
                   "tables": sorted(t for t in after if after[t] != before[t])}
        tally.changed.append(finding)
        if strict:
            raise Finding(f"{target.name}: {finding}")


def fuzz(target: Target, store_path, workdir, *, max_examples: int, strict: bool = True,
         derandomize: bool = True, seed: int | None = None) -> Tally:
    """Try ``max_examples`` inputs of ``target`` on the store at ``store_path`` (which it changes).

    Parameters
    ----------
    strict : bool
        Raise :class:`Finding` on the first crash or change (hypothesis then shrinks it), as tests do;
        otherwise count them all, as the benchmark does.
    derandomize : bool
        The same inputs on every run (tests); the benchmark passes False and a ``seed``.
    """
    tally = Tally(target.name)
    TALLIES[target.name] = tally
    with _timed(tally), target.session(store_path, workdir) as (con, run):
        one = _feeder(target, con, run, tally, strict=strict)
        test = settings(max_examples=max_examples, deadline=None, derandomize=derandomize, database=None,
                        suppress_health_check=list(HealthCheck), print_blob=strict)(given(target.strategy)(one))
        if seed is not None:
            from hypothesis import seed as with_seed

            test = with_seed(seed)(test)
        with _untouched(con, target, tally, strict=strict):
            test()
    return tally


def fuzz_a_copy(target: Target, store_path, workdir, *, max_examples: int) -> Tally:
    """:func:`fuzz` on a copy of ``store_path`` (``workdir/store.duckdb``), as the tests run it; says how it went."""
    copy = Path(shutil.copy(store_path, Path(workdir) / "store.duckdb"))
    tally = fuzz(target, copy, workdir, max_examples=max_examples)
    print(f"\n{target.name}: {tally.tried} examples, {tally.ok} taken, {tally.refused} refused")
    return tally


def replay(target: Target, store_path, workdir, values: list, *, strict: bool = True) -> Tally:
    """Feed ``values`` (inputs fuzzing once found troublesome) to ``target``, as :func:`fuzz` does."""
    tally = Tally(target.name + " (replay)")
    with target.session(store_path, workdir) as (con, run):
        one = _feeder(target, con, run, tally, strict=strict)
        with _untouched(con, target, tally, strict=strict):
            for value in values:
                one(value)
    return tally

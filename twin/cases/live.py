"""Live intake for ``twin serve``: one writer thread that commits in batches, and a log of case changes.

Under load, each request's own transaction would cap intake near 100 cases
per second (a DuckDB commit costs milliseconds). The writer takes whatever
requests are waiting, runs them in one transaction, commits, and only then
answers each of them: every acknowledged case is on disk (group commit).

The :class:`CaseFeed` keeps the changes that were committed, numbered, so
every browser session can catch up with what it has not yet drawn.
"""

from __future__ import annotations

import asyncio
import logging
import queue
import random
import secrets
import threading
import time
from collections.abc import Callable
from concurrent.futures import Future
from dataclasses import dataclass, field
from typing import NamedTuple

import duckdb
import pandas as pd

from twin.access.access import audit
from twin.cases.cases import CaseNumbers, LocationMatcher, assign_worker, record_transition, write_cases
from twin.cases.evaluations import answer_evaluation, issue_token, sweep_evaluations
from twin.cases.detections import DetectionDesk, DetectionError, write_detections
from twin.cases.idempotency import kept_answer, request_digest, write_keys
from twin.errors import N_, InputError, TwinError
from twin.cases.open311 import Open311Error, submit_request
from twin.store.clock import now_in, store_timezone
from twin.store.notices import CASES, Listener, notify, sign_transaction
from twin.store.store import forget_meta, is_unavailable, unavailable

log = logging.getLogger(__name__)
MAX_BATCH = 512
SLOW_COMMIT_S = 0.2  # a commit slower than this is logged (DuckDB checkpoints now and then)
FEED_COLUMNS = ("case_id", "status", "x", "y", "building_id", "grid_id", "subcategory", "updated_at")


@dataclass
class Written:
    """What a job asks the writer to write in bulk for it, and what to answer."""

    answer: object
    cases: list[dict] = field(default_factory=list)
    detections: list[dict] = field(default_factory=list)
    changed: list[str] = field(default_factory=list)  # ids of existing cases that changed
    client: str | None = None  # the intake client whose new cases these are (for the audit trail)
    keys: list[dict] = field(default_factory=list)  # idempotency keys to keep with the cases (twin.cases.idempotency)
    # Try a CHECKPOINT after the commit, so a large change (a grid save) leaves the log at once.
    checkpoint: bool = False
    grids_changed: bool = False  # the job changed grids: the intake re-matches cases to them


class CaseFeed:
    """Committed case changes, numbered 1, 2, ...; sessions ask for those after the last they saw.

    With a PostgreSQL store, the changes that other processes commit come in too (:func:`follow_other_processes`).

    Thread-safe. Only the latest ``keep`` changes are held; a session that falls
    further behind is told to reload everything.
    """

    def __init__(self, *, keep: int = 200_000) -> None:
        self.origin = secrets.token_hex(8)  # names this feed's writer in notices to other processes
        self._lock = threading.Lock()
        self._rows: list[dict] = []
        self._first = 1  # the number of self._rows[0]
        self._keep = keep

    @property
    def version(self) -> int:
        """The number of the latest change (0 before any)."""
        with self._lock:
            return self._first + len(self._rows) - 1

    def publish(self, rows: list[dict]) -> int:
        """Append changed case records (``FEED_COLUMNS``); returns the new version."""
        with self._lock:
            self._rows.extend({c: r.get(c) for c in FEED_COLUMNS} for r in rows)
            if len(self._rows) > self._keep:
                drop = len(self._rows) - self._keep
                del self._rows[:drop]
                self._first += drop
            return self._first + len(self._rows) - 1

    def since(self, version: int) -> tuple[int, list[dict] | None]:
        """The changes after ``version`` and the version they bring one to; None when too far behind."""
        with self._lock:
            latest = self._first + len(self._rows) - 1
            if version < self._first - 1:
                return latest, None
            return latest, self._rows[version - self._first + 1:]


MISSED_MARGIN_S = 10.0  # how far before a lost connection the cases are read again (the processes' clocks differ)


def follow_other_processes(url: str, con: duckdb.DuckDBPyConnection, feed: CaseFeed) -> Listener:
    """Publish on ``feed`` the cases that other processes serving the PostgreSQL store at ``url`` create or change.

    ``con`` (a cursor of the store, for the listener's thread only) reads the rows that the notices name. After
    the listening connection was lost (the server restarted), the cases changed since a little before the loss
    are read and published again, so none that another process wrote meanwhile is left undrawn.
    """
    def follow(case_ids: list[str] | None) -> None:
        if case_ids is None:
            case_ids = cases_changed_since(con, listener.lost_at - MISSED_MARGIN_S)
            log.warning("listening was lost: %d cases changed since are published again", len(case_ids))
        feed.publish(changed_cases(con, case_ids))

    listener = Listener(url, CASES, follow, skip=lambda sender, _case_id: sender == feed.origin)
    return listener


def cases_changed_since(con: duckdb.DuckDBPyConnection, epoch_s: float) -> list[str]:
    """Ids of the cases updated between ``epoch_s`` (seconds since the epoch) and now, by the store's clock."""
    zone = store_timezone(con)
    since = pd.Timestamp(epoch_s, unit="s", tz="UTC").tz_convert(zone).tz_localize(None)
    until = now_in(zone) + pd.Timedelta(seconds=MISSED_MARGIN_S)
    return [r[0] for r in con.execute("SELECT case_id FROM cases WHERE updated_at BETWEEN ? AND ?",
                                      [since, until]).fetchall()]


def changed_cases(con: duckdb.DuckDBPyConnection, case_ids: list[str]) -> list[dict]:
    """Feed records of existing cases, read back after a change."""
    if not case_ids:
        return []
    frame = con.execute("SELECT case_id, status, ST_X(location) AS x, ST_Y(location) AS y, building_id, grid_id, "
                        "subcategory, updated_at FROM cases WHERE case_id IN (SELECT unnest(?))",
                        [list(case_ids)]).df()
    return frame.to_dict("records")


# Another process's writer took the same audit row, case number or key in the meantime (PostgreSQL store).
# The audit trail's and the points ledger's next rows, and a volunteer task's places (twin.volunteers), are numbered
# from what the transaction saw: another process's transaction taking the same number first is a conflict. Or another
# process kept the same idempotency key first: run again, the batch finds its answer.
CONFLICTS = ("could not serialize access", 'unique constraint "audit_pkey"', 'unique constraint "points_ledger_pkey"',
             'unique constraint "volunteer_grabs_pkey"', 'unique constraint "intake_keys_pkey"')
MAX_CONFLICTS = 50


def is_conflict(exc: BaseException) -> bool:
    """Whether a write failed only because another process's transaction wrote first (PostgreSQL store).

    The audit trail's next row is numbered from the chain's head as the transaction saw it; when another
    process appended first, the number is taken, and the whole transaction runs again on the new head. So the
    chain stays one line under concurrent writers: two rows can never follow the same one.
    """
    return isinstance(exc, duckdb.Error) and any(c in str(exc) for c in CONFLICTS)


class Conflict(NamedTuple):
    error: Exception


class Unreachable(NamedTuple):
    """The store's server could not be reached: the whole batch is refused, none of it answered as written."""

    error: Exception


class _Job(NamedTuple):
    run: Callable[[duckdb.DuckDBPyConnection], Written]
    future: Future | asyncio.Future
    writes: bool  # False: the job only reads, and hands what it wants written back in its Written
    quiet: bool = False  # True: it writes no table with a change trigger (NOTIFIED_TABLES): nothing to sign


class IntakeWriter:
    """The one thread that writes the store while ``twin serve`` runs.

    Every job is all or nothing: a job that raises leaves no trace in the store, and
    the other jobs of its batch still commit. DuckDB has no savepoints, so a job that
    may have written and then raises rolls its whole transaction back; the jobs before
    it run again in a transaction of their own, and the jobs after it in the next.
    The intake jobs (requests, detections) only read and return what to write, so
    their refusals cost nothing. While a PostgreSQL store's server cannot be reached
    (restarted, say), every job is refused with :class:`~twin.errors.StoreUnavailable`
    and none answered as written; the writer carries on, and its next transaction
    connects again.

    Parameters
    ----------
    con : duckdb.DuckDBPyConnection
        The store's writable connection. A cursor of it is made here, and only the
        writer's thread uses that cursor from then on (CHECKPOINT included).
    feed : CaseFeed
        Where committed case changes are published.
    dedupe_window_s : float
        Detections from one camera and category this close join one case.
    """

    def __init__(self, con: duckdb.DuckDBPyConnection, feed: CaseFeed, *, dedupe_window_s: float) -> None:
        self._con = con.cursor()
        self.feed = feed
        self._window_s = dedupe_window_s
        self._checkpoint_due = False
        self._keys: dict[tuple[str, str], dict] = {}  # idempotency keys taken in the open transaction
        self._unreachable = False  # the last job failed because the store's server could not be reached
        self._jobs: queue.Queue = queue.Queue()
        ready: Future = Future()
        self._thread = threading.Thread(target=self._run, args=(ready,), name="twin-intake-writer", daemon=True)
        self._thread.start()
        ready.result()  # the matcher is built (or its error raised here)

    def submit(self, job: Callable[[duckdb.DuckDBPyConnection], Written], *,
               loop: asyncio.AbstractEventLoop | None = None, quiet: bool = False) -> Future | asyncio.Future:
        """Queue a job; its future holds ``Written.answer`` once committed, or the job's error.

        A job that raises (anything) leaves nothing in the store, whatever it wrote
        before. It may run more than once, when a batch-mate is refused and the batch
        is run again without it: keep its effects to the store and the
        :class:`Written` it returns. Called from an event loop with ``loop``, the
        future is that loop's, and a batch's answers reach the loop together, in one
        wake-up. ``quiet``: the job writes no table that announces its changes (``NOTIFIED_TABLES``: keys, users,
        grids, meta), so a batch of such jobs skips naming its sender to the change triggers (a round trip).
        """
        return self._queue(job, loop=loop, writes=True, quiet=quiet)

    def _queue(self, job: Callable[[duckdb.DuckDBPyConnection], Written], *, loop: asyncio.AbstractEventLoop | None,
               writes: bool, quiet: bool = False) -> Future | asyncio.Future:
        future = loop.create_future() if loop is not None else Future()
        self._jobs.put(_Job(job, future, writes, quiet))
        return future

    def forget_meta(self) -> None:
        """Read the store's ``meta`` afresh from now on (another process changed it), here and in every cursor of
        the store's connection (:class:`twin.store.store.MetaCache`); any thread may call it."""
        forget_meta(self._con)

    def close(self) -> None:
        """Finish the jobs queued so far, then stop the thread and close its cursor."""
        self._jobs.put(None)
        self._thread.join()

    # Jobs for the routes ------------------------------------------------------
    def take_detection(self, detection: dict, *, client: str | None = None, key: str | None = None,
                       loop: asyncio.AbstractEventLoop | None = None) -> Future:
        """A detection (:func:`twin.cases.detections.parse_detection`); the answer names its case. With an
        idempotency ``key``, a resend gets the first sending's answer with ``replayed`` true, and nothing is written."""
        def job(con: duckdb.DuckDBPyConnection) -> Written:
            try:
                kept = self._kept(con, client, key, "detection", detection)
            except InputError as exc:  # the key came with another request
                raise DetectionError("Idempotency-Key", str(exc)) from exc
            if kept is not None:  # the first answer; a new case's evaluation token, kept only as a hash, made anew
                token = issue_token(con, kept["case_id"]) if kept["case_id"] and not kept["duplicate"] else None
                return Written({**kept, "evaluation_token": token, "replayed": True})
            taken = self._desk.take(con, detection, write=False)
            answer = {k: taken[k] for k in ("detection_id", "case_id", "duplicate", "evaluation_token")}
            return Written(answer, cases=[taken["case"]] if taken["case"] else [], detections=[taken["detection"]],
                           client=client, keys=self._keep(client, key, "detection", detection, taken["case_id"],
                                                          answer))
        return self._queue(job, loop=loop, writes=False, quiet=True)

    def take_request(self, form: dict[str, str], *, district_crs: str, client: str | None = None,
                     key: str | None = None, loop: asyncio.AbstractEventLoop | None = None) -> Future:
        """An Open311 request form; the answer is the GeoReport reply. With an idempotency ``key``, a resend gets
        the first sending's reply (with ``replayed`` true, and a new evaluation token: the first one is kept only as
        its hash), and no second case."""
        def job(con: duckdb.DuckDBPyConnection) -> Written:
            try:
                kept = self._kept(con, client, key, "open311", form)
            except InputError as exc:  # the key came with another request
                raise Open311Error(422, str(exc)) from exc
            if kept is not None:  # the first reply; its evaluation token, kept only as a hash, is made anew
                token = kept.get("evaluation_token") or issue_token(con, kept["service_request_id"])
                return Written({**kept, "evaluation_token": token, "replayed": True})
            reply = submit_request(con, form, district_crs=district_crs, matcher=self._matcher,
                                   numbers=self._numbers, write=False)
            answer = {k: v for k, v in reply.items() if k != "case"}
            return Written(answer, cases=[reply["case"]], client=client,
                           keys=self._keep(client, key, "open311", form, reply["service_request_id"], answer))
        return self._queue(job, loop=loop, writes=False, quiet=True)

    def take_report(self, form: dict[str, str], *, district_crs: str,
                    then: Callable[[duckdb.DuckDBPyConnection, dict], dict], client: str = "resident",
                    loop: asyncio.AbstractEventLoop | None = None) -> Future:
        """An Open311 request form taken in as :meth:`take_request` takes one (the same matching and numbering),
        with ``then(con, case)`` run in the same job on the case record before the batch writes it (a resident's
        小杜拍 report: its photo and row, :mod:`twin.volunteers.reports`). The answer is the request's id and
        ``then``'s answer; a :class:`TwinError` from either is the answer instead, and nothing of the job is written
        (``then`` checks before it writes)."""
        def job(con: duckdb.DuckDBPyConnection) -> Written:
            try:
                reply = submit_request(con, form, district_crs=district_crs, matcher=self._matcher,
                                       numbers=self._numbers, write=False)
                extra = then(con, reply["case"])
            except TwinError as exc:
                return Written(exc)
            return Written({"service_request_id": reply["service_request_id"], **extra}, cases=[reply["case"]],
                           client=client)
        return self.submit(job, loop=loop)

    def _kept(self, con: duckdb.DuckDBPyConnection, client: str | None, key: str | None, route: str,
              request: dict) -> dict | None:
        """The answer a request sent before with ``key`` got (this transaction's, or the store's), else None."""
        if key is None:
            return None
        digest = request_digest(request)
        pending = self._keys.get((client or "intake", key))
        if pending is not None:  # sent twice within one batch: the first is not written yet
            if (pending["route"], pending["request"]) != (route, digest):
                raise InputError(N_("the idempotency key {key!r} was sent before with another request; make a new "
                                    "key for each request, and send the same key only with the same request again."),
                                 key=key)
            return pending["first"]  # the same answer as the first sending's (its token too: both come at once)
        return kept_answer(con, client=client or "intake", key=key, route=route, digest=digest)

    def _keep(self, client: str | None, key: str | None, route: str, request: dict, case_id: str | None,
              answer: dict) -> list[dict]:
        """The row that keeps ``key`` with its answer (none without a key; an evaluation token is not kept, not even
        its hash), known to the rest of the batch."""
        if key is None:
            return []
        row = {"client": client or "intake", "key": key, "route": route, "request": request_digest(request),
               "case_id": case_id, "first": answer,
               "answer": {k: v for k, v in answer.items() if k != "evaluation_token"}}
        self._keys[(row["client"], key)] = row
        return [row]

    def transition(self, case_id: str, to_status: str, *, actor: str, note: str | None = None,
                   source: str | None = None, department: str | None = None) -> Future:
        """Move a case along the loop (:func:`twin.cases.cases.record_transition`, with its effects: dispatched to
        ``department``, or by the duties list); audited as ``case.transition`` with who and from where."""
        def job(con: duckdb.DuckDBPyConnection) -> Written:
            event = record_transition(con, case_id, to_status, actor=actor, note=note, department=department)
            audit(con, actor=actor, action="case.transition", target=case_id, source=source,
                  detail={"from": event["from_status"], "to": to_status, "note": event["note"],
                          **({"department": event["department"]} if "department" in event else {})})
            return Written(event, changed=[case_id])
        return self.submit(job)

    def assign(self, case_id: str, worker: str, *, actor: str, reason: str, source: str | None = None) -> Future:
        """Give a case to another worker (:func:`twin.cases.cases.assign_worker`, audited as ``case.assign``)."""
        return self.submit(lambda con: Written(assign_worker(con, case_id, worker, actor=actor, reason=reason,
                                                             source=source), changed=[case_id]))

    def evaluate(self, token: str, *, satisfied: bool, note: str | None = None, source: str | None = None,
                 loop: asyncio.AbstractEventLoop | None = None) -> Future | asyncio.Future:
        """A reporter's answer through their token (:func:`twin.cases.evaluations.answer_evaluation`)."""
        def job(con: duckdb.DuckDBPyConnection) -> Written:
            answer = answer_evaluation(con, token, satisfied=satisfied, note=note, source=source)
            return Written(answer, changed=[answer["case_id"]])
        return self.submit(job, loop=loop)

    def sweep_evaluations(self) -> Future:
        """Close the cases left unanswered as evaluated by default
        (:func:`twin.cases.evaluations.sweep_evaluations`)."""
        def job(con: duckdb.DuckDBPyConnection) -> Written:
            swept = sweep_evaluations(con, source="sweep")
            return Written(swept, changed=swept)
        return self.submit(job)

    def audit(self, **row) -> Future:
        """Append one audit row (``actor``, ``action``, ``target``, ``detail``, ``source``) in the next commit."""
        return self.submit(lambda con: Written(audit(con, **row)), quiet=True)

    def command(self, run: Callable[[duckdb.DuckDBPyConnection], dict], *, grids_changed: bool = False,
                loop: asyncio.AbstractEventLoop | None = None) -> Future | asyncio.Future:
        """A command as one job: handed over by the control channel (``twin keys|users|grids`` while serving), or
        asked for on the admin screen (with its event ``loop``, see :meth:`submit`)."""
        return self.submit(lambda con: Written(run(con), grids_changed=grids_changed, checkpoint=grids_changed),
                           loop=loop)

    # The thread ---------------------------------------------------------------
    def _run(self, ready: Future) -> None:
        try:
            self._numbers = CaseNumbers()
            self._matcher = LocationMatcher(self._con)
            self._desk = DetectionDesk(self._con, window_s=self._window_s, matcher=self._matcher,
                                       numbers=self._numbers)
        except BaseException as exc:
            self._con.close()
            ready.set_exception(exc)
            return
        ready.set_result(None)
        stop = False
        while not stop:
            batch = [self._jobs.get()]
            while len(batch) < MAX_BATCH and batch[-1] is not None:
                try:
                    batch.append(self._jobs.get_nowait())
                except queue.Empty:
                    break
            if batch[-1] is None:
                stop = True
                batch.pop()
            try:
                self._commit(batch)
            except Exception as exc:  # the connection itself failed: answer rather than leave callers waiting
                if is_unavailable(exc):
                    self._refuse_unreachable(batch, exc)
                    continue
                log.exception("intake: the writer failed")
                _settle([(job.future, None, exc) for job in batch if not job.future.done()])
        self._con.close()

    def _commit(self, batch: list[_Job]) -> None:
        """Run jobs in as few transactions as all-or-nothing per job allows, and answer each after its COMMIT."""
        conflicts = 0
        while batch:
            outcome = self._transaction(batch)
            if isinstance(outcome, Unreachable):  # every job would fail alike: refuse them all at once
                self._refuse_unreachable(batch, outcome.error)
                return
            if isinstance(outcome, Conflict):  # another process wrote the same row first: run the batch again
                conflicts += 1
                if conflicts > MAX_CONFLICTS:
                    log.error("writer: %d write conflicts in a row; the batch is refused", conflicts)
                    _settle([(job.future, None, outcome.error) for job in batch])
                    return
                time.sleep(random.uniform(0, 0.01 * conflicts))
                continue
            if isinstance(outcome, int):  # that many jobs were committed (or refused) and answered
                batch = batch[outcome:]
                continue
            failed, error = outcome  # rolled back: the jobs before it ran cleanly, so they run again without it
            log.log(logging.INFO if isinstance(error, TwinError) else logging.ERROR,
                    "writer: a job was refused and its transaction rolled back (%s)", error,
                    exc_info=not isinstance(error, TwinError))
            _settle([(batch[failed].future, None, error)])
            self._commit(batch[:failed])
            batch = batch[failed + 1:]

    def _transaction(self, batch: list[_Job]) -> int | tuple[int, Exception] | Conflict:
        """Run jobs in one transaction and commit them: the number of jobs answered, or, rolled back, the failed one,
        or a :class:`Conflict` with another process's writer (nothing answered; the batch may run again).

        A job that changes grids ends the transaction, so the jobs after it are matched
        to the new micro-grids.
        """
        con = self._con
        done: list[tuple[Future, Written]] = []
        refused: list[tuple[Future, TwinError]] = []
        self._keys.clear()
        con.execute("BEGIN TRANSACTION")
        try:  # the change triggers' notices name this process, which skips its own grid saves (scenes.server)
            if not all(job.quiet for job in batch):
                sign_transaction(con, self.feed.origin)
        except Exception as exc:
            self._roll_back()
            if is_unavailable(exc):
                return Unreachable(exc)
            raise
        for k, job in enumerate(batch):
            try:
                written = job.run(con)
            except Exception as exc:
                if not job.writes and isinstance(exc, TwinError):  # refused before anything was written
                    refused.append((job.future, exc))
                    continue
                self._roll_back()
                if is_unavailable(exc):
                    return Unreachable(exc)
                return Conflict(exc) if is_conflict(exc) else (k, exc)
            done.append((job.future, written))
            if written.grids_changed:
                break
        ran = len(done) + len(refused)
        try:
            new_cases = [c for _, w in done for c in w.cases]
            write_cases(con, new_cases)
            _audit_intake(con, [w for _, w in done if w.cases])
            write_detections(con, [d for _, w in done for d in w.detections])
            write_keys(con, [k for _, w in done for k in w.keys])
            changed = changed_cases(con, [c for _, w in done for c in w.changed])
            notify(con, CASES, [c["case_id"] for c in new_cases] + [c["case_id"] for c in changed],
                   sender=self.feed.origin)  # delivered at COMMIT
            started = time.perf_counter()
            con.execute("COMMIT")  # durable before any answer
            if time.perf_counter() - started > SLOW_COMMIT_S:
                log.warning("intake: a commit of %d took %.2f s", ran, time.perf_counter() - started)
        except Exception as exc:  # the bulk write failed: nothing of this batch was written
            self._roll_back()
            if is_conflict(exc):
                return Conflict(exc)
            if is_unavailable(exc):  # a COMMIT cut off may have committed: the callers are told to send again
                return Unreachable(exc)
            if ran > 1:
                log.warning("intake: a batch of %d was rolled back (%s); retrying one by one", ran, exc)
                for job in batch[:ran]:
                    self._commit([job])
            else:
                log.exception("intake: a job failed and was rolled back")
                _settle([(batch[0].future, None, exc)])
            return ran
        if self._unreachable:
            log.warning("writer: the store is reachable again")
            self._unreachable = False
        if self._checkpoint_due or any(w.checkpoint for _, w in done):
            self._checkpoint()
        self.feed.publish(new_cases + changed)
        _settle([(f, None, e) for f, e in refused] + [(f, w.answer, None) for f, w in done])
        if any(w.grids_changed for _, w in done):
            self._follow_grids()
        return ran

    def _refuse_unreachable(self, batch: list[_Job], error: Exception) -> None:
        """Answer every job of ``batch`` with :class:`~twin.errors.StoreUnavailable` (logged once per outage)."""
        if not self._unreachable:
            log.warning("writer: the store cannot be reached (%s); jobs are refused until it can", error)
            self._unreachable = True
        refusal = unavailable(error)
        _settle([(job.future, None, refusal) for job in batch if not job.future.done()])

    def _checkpoint(self) -> None:
        """Fold the log into the database file, now or, when refused, after a later commit.

        DuckDB refuses while another connection has a transaction older than the last
        commit (a session's read left unfinished); the log keeps the change safely meanwhile.
        """
        try:
            self._con.execute("CHECKPOINT")
        except duckdb.Error as exc:
            if not self._checkpoint_due:
                log.info("writer: CHECKPOINT refused for now (%s); tried again after the next commit", exc)
            self._checkpoint_due = True
        else:
            self._checkpoint_due = False

    def _roll_back(self) -> None:
        """Undo the open transaction, and forget what was counted or remembered inside it."""
        try:
            self._con.execute("ROLLBACK")
        except duckdb.Error:
            pass
        self._desk.forget()  # the numbers too
        self._keys.clear()

    def _follow_grids(self) -> None:
        """Match from now on to the micro-grids (and their workers) in force after a grid change."""
        started = time.perf_counter()
        self._matcher = self._desk.matcher = LocationMatcher(self._con)
        log.info("writer: matching follows the new grids (rebuilt in %.2f s)", time.perf_counter() - started)


def _audit_intake(con: duckdb.DuckDBPyConnection, written: list[Written]) -> None:
    """One audit row per intake client and batch, listing the cases it opened (cheap at hundreds a second)."""
    by_client: dict[str, list[str]] = {}
    for w in written:
        by_client.setdefault(w.client or "intake", []).extend(c["case_id"] for c in w.cases)
    for client, case_ids in by_client.items():
        audit(con, actor=client, action="case.intake", target=case_ids[0] if len(case_ids) == 1 else None,
              detail={"cases": case_ids}, source="intake")


def _settle(outcomes: list[tuple[Future | asyncio.Future, object, BaseException | None]]) -> None:
    """Answer futures: thread futures at once, each event loop's in one call on that loop."""
    by_loop: dict[asyncio.AbstractEventLoop, list] = {}
    for future, result, error in outcomes:
        if isinstance(future, asyncio.Future):
            by_loop.setdefault(future.get_loop(), []).append((future, result, error))
        elif error is not None:
            future.set_exception(error)
        else:
            future.set_result(result)
    for loop, items in by_loop.items():
        loop.call_soon_threadsafe(_settle_here, items)


def _settle_here(items: list) -> None:
    for future, result, error in items:
        if future.cancelled():
            continue
        if error is not None:
            future.set_exception(error)
        else:
            future.set_result(result)

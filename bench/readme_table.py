"""The README's benchmark table, made from the committed results (``bench/results/NAME.json``).

``python bench/readme_table.py`` rewrites the part of README.md between :data:`START` and :data:`END`;
with ``--check`` it only says whether the README agrees (exit status 1 if not). Every figure in the table is
read from a field of a results file, named in the row's last column; a bench whose file is missing (not run
on this branch yet) shows as "not measured". A file that lacks a field a row reads is an error naming both:
the bench and its row no longer agree.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "bench" / "results"
README = ROOT / "README.md"
START, END = "<!-- bench:start -->", "<!-- bench:end -->"
NOT_MEASURED = "not measured"


class MissingFigure(LookupError):
    """A results file lacks a field that a row of the table reads."""


class Figures:
    """One results file; ``figures("a.b")`` is the field ``b`` of ``a`` (None where a field on the way is null)."""

    def __init__(self, name: str, result: dict) -> None:
        self.name, self.result = name, result

    def __call__(self, path: str):
        value = self.result
        for key in path.split("."):
            if value is None:
                return None
            if not isinstance(value, dict) or key not in value:
                raise MissingFigure(f"bench/results/{self.name}.json has no field {path!r}, which the README's "
                                    f"table reads; rerun `twin bench {self.name}` or fix its row in "
                                    "bench/readme_table.py.")
            value = value[key]
        return value


def _absent(x) -> bool:
    return x is None


def _figure(x: float) -> str:
    """Three significant digits, and whole numbers from 100 up (never 1.2e+03)."""
    return f"{x:,.0f}" if abs(x) >= 100 else f"{x:.3g}"


def secs(x: float | None) -> str:
    return "—" if _absent(x) else f"{_figure(x)} s"


def ms(x: float | None) -> str:
    return "—" if _absent(x) else f"{_figure(x)} ms"


def times(x: float | None) -> str:
    return "—" if _absent(x) else f"{_figure(x)}×"


def count(x: int | float | None) -> str:
    return "—" if _absent(x) else f"{x:,.0f}"


def mb(x: int | None) -> str:
    return "—" if _absent(x) else f"{x / 1e6:.2f} MB"


def gb(x: int | None) -> str:
    return "—" if _absent(x) else f"{_figure(x / 1e9)} GB"


def pct(x: float | None) -> str:
    return "—" if _absent(x) else f"{100 * x:.1f} %"


@dataclass(frozen=True)
class Row:
    """One line of the table: what is measured, and ours and the baseline as text made from one results file."""

    label: str
    name: str  # bench/results/<name>.json
    ours: Callable[[Figures], str]
    baseline: Callable[[Figures], str] = lambda f: "—"


def _knee(f: Figures) -> str:
    if f("knee") is None:
        return "no step held"
    return f"{count(f('knee_offered_per_s'))} cases/s (p50 {ms(f('knee.p50_ms'))}, p99 {ms(f('knee.p99_ms'))})"


def _beyond_knee(f: Figures) -> str:
    failing = f("first_failing_step")
    if failing is None:
        return f"every step held, up to {count(f('steps')[-1]['offered_per_s'])}/s"
    why = "a case not acknowledged" if failing.get("not_acknowledged") else f"p99 {ms(failing.get('p99_ms'))}"
    if failing.get("lost") or failing.get("duplicated"):
        why = f"{failing['lost']} lost, {failing['duplicated']} duplicated"
    return f"at {count(failing['offered_per_s'])}/s: {why}"


def _scale_knee(f: Figures, at: str) -> str:
    """A knee of ``twin bench scale``'s intake (``at``: the backend's object), what broke the step after it, and the
    CPU per case."""
    knee = f(f"{at}.knee")
    head = "no step held" if knee is None else (f"{count(f(f'{at}.knee_offered_per_s'))} cases/s (p50 "
                                                f"{ms(knee['p50_ms'])}, p99 {ms(knee['p99_ms'])})")
    failing = f(f"{at}.first_failing_step")
    beyond = "" if failing is None else f"; at {count(failing['offered_per_s'])}/s p99 {ms(failing.get('p99_ms'))}"
    return (f"{head}{beyond}; {count(f(f'{at}.lost'))} lost, {count(f(f'{at}.duplicated'))} duplicated; "
            f"{ms(f(f'{at}.cpu_ms_per_case'))} CPU per case")


def _command_centre(f: Figures) -> str:
    c = f("command_centre")
    busy = (f"(measured on a machine busy with other work, load average up to "
            f"{_figure(max(f('sessions.machine_load').values()))}: rerun `twin bench scale` on a quiet one) "
            if f("command_centre.measured_on_a_busy_machine") else "")
    return (f"{busy}{count(c['workers'])} app processes ({c['app_cores']:.1f} cores busy, "
            f"{count(c['sessions_per_worker'])} sessions each), {gb(c['app_memory_bytes'])} of memory; PostgreSQL "
            f"{c['postgres_cores']:.1f} cores, {count(c['postgres_connections'])} connections; {count(c['cores'])} "
            f"cores in all; database {gb(c['database_bytes_now'])} now, +{gb(c['database_growth_bytes_per_day'])} "
            f"a day at that rate (+{gb(365 * c['database_growth_bytes_per_day'])} a year); the measured intake knee "
            f"is {_figure(c['intake_headroom']) if c['intake_headroom'] is not None else '—'}× the case rate")


def _fuzzed_http(f: Figures) -> int:
    return sum(route["sent"] for route in f("over_http.routes").values())


ROWS = (
    Row("footprint ingest, file to store, in-process (store opening apart)", "ingest",
        lambda f: f"{secs(f('ours_ingest_s'))} ({times(f('speedup_ingest'))})",
        lambda f: f"`trimesh.creation.extrude_polygon` loop: {secs(f('baseline_trimesh_extrude_loop_s'))}"),
    Row("footprint ingest, whole command, process start to exit", "ingest",
        lambda f: f"`twin ingest footprints`: {secs(f('whole_command.ours_twin_ingest_s'))} "
                  f"({times(f('whole_command.speedup'))})",
        lambda f: "a Python process reading the file, the same loop, the meshes saved: "
                  f"{secs(f('whole_command.baseline_process_s'))}"),
    Row("LOD1 meshing alone", "ingest",
        lambda f: f"{secs(f('ours_mesh_only_s'))} ({times(f('speedup_mesh_only'))})", lambda f: "the same loop"),
    Row("footprints at scale (the demo tiled), `twin ingest footprints`", "ingest",
        lambda f: f"{count(f('scale.footprints'))} in {secs(f('scale.seconds'))}, "
                  f"{f('scale.peak_rss_gb'):.2f} GB peak"),
    Row("bytes over the websocket before the first frame (1920×1080, a leader)", "view",
        lambda f: f"{mb(f('first_frame.ours.bytes_before_first_frame'))} "
                  f"({_figure(f('bytes_vs_smaller_stock'))} of the smaller stock pane's)",
        lambda f: f"`pn.pane.VTK`: {mb(f('first_frame.pn_pane_vtk.bytes_before_first_frame'))}; "
                  f"`pn.pane.DeckGL`: {mb(f('first_frame.pn_pane_deckgl.bytes_before_first_frame'))}"),
    Row("first frame, pixels on screen (screenshots of the canvas every 0.1 s)", "view",
        lambda f: f"{secs(f('first_frame.ours.first_frame_ms') / 1000)} "
                  f"({_figure(f('time_vs_faster_stock'))} of the faster stock pane's); the JavaScript mark after "
                  f"render(): {secs(f('first_frame.ours.marks_ms.renderCall') / 1000)}",
        lambda f: f"`pn.pane.VTK`: {secs(f('first_frame.pn_pane_vtk.first_frame_ms') / 1000)}; "
                  f"`pn.pane.DeckGL`: {secs(f('first_frame.pn_pane_deckgl.first_frame_ms') / 1000)}"),
    Row("server time per pick, an operator through the access gate, the look audited through the writer", "view",
        lambda f: f"p95 {ms(f('served_pick_ms.p95_ms'))}, median {ms(f('served_pick_ms.median_ms'))}, "
                  f"first {ms(f('served_pick_ms.first_ms'))}, worst {ms(f('served_pick_ms.max_ms'))}, "
                  f"{count(f('served_pick_ms.failures'))} failed of {count(f('served_pick_ms.samples'))}"),
    Row("click to inspector filled", "view",
        lambda f: f"{ms(f('click_to_inspector_ms.median_ms'))} median, p95 {ms(f('click_to_inspector_ms.p95_ms'))}, "
                  f"first {ms(f('click_to_inspector_ms.first_ms'))}, worst {ms(f('click_to_inspector_ms.max_ms'))}, "
                  f"{count(f('click_to_inspector_ms.failures'))} failed of {count(f('click_to_inspector_ms.samples'))}"),
    Row("click to inspector filled while another session saves grid edits (an operator; the planner's saves "
        "through the real screen)", "concurrency",
        lambda f: f"p95 {ms(f('click_to_inspector_ms.while_saving.p95_ms'))}, "
                  f"median {ms(f('click_to_inspector_ms.while_saving.p50_ms'))}, "
                  f"worst {ms(f('click_to_inspector_ms.while_saving.worst_ms'))}, "
                  f"{count(f('click_to_inspector_ms.while_saving.failures'))} failed of "
                  f"{count(f('click_to_inspector_ms.while_saving.clicks'))}; "
                  f"{count(f('grid_saves.during_loaded_clicks'))} saves meanwhile",
        lambda f: f"no saves, same run: p95 {ms(f('click_to_inspector_ms.no_saves.p95_ms'))}, "
                  f"median {ms(f('click_to_inspector_ms.no_saves.p50_ms'))}"),
    Row("live intake capacity: the highest offered rate with p99 ≤ 200 ms and nothing lost "
        "(Open311 over loopback, a browser open)", "feed",
        lambda f: f"{_knee(f)} ({f('connections')} connections); {_beyond_knee(f)}; {count(f('lost'))} lost, "
                  f"{count(f('duplicated'))} duplicated in all steps",
        lambda f: "one transaction per case, the same matching, in-process: "
                  f"{count(f('in_process.baseline_one_transaction_per_case.cases_per_s'))} cases/s"),
    Row("what group commit buys: the writer's code in-process, no HTTP", "feed",
        lambda f: f"batched: {count(f('in_process.group_commit.cases_per_s'))} cases/s "
                  f"({times(f('in_process.group_commit_speedup'))})",
        lambda f: f"one transaction per case: {count(f('in_process.baseline_one_transaction_per_case.cases_per_s'))} "
                  "cases/s"),
    Row("matching a case to its building, micro-grid and worker", "feed",
        lambda f: f"{_figure(f('in_process.match_in_memory_us'))} µs in memory",
        lambda f: f"SQL on the store: {ms(f('in_process.match_sql_ms'))}"),
    Row("reply to the case's marker drawn in the open browser, at the knee", "feed",
        lambda f: f"median {ms(f('knee.marker.median_ms'))}, max {ms(f('knee.marker.max_ms'))} "
                  f"({count(f('knee.marker.probes'))} probes)"),
    Row("grid edit to updated figures, warm (reassignment + rules; the session's assets in memory)", "grids",
        lambda f: f"{ms(1000 * f('one_edit.figures_follow_s'))} ({ms(1000 * f('one_edit.reassign_s'))} + "
                  f"{ms(1000 * f('one_edit.rules_s'))}): {times(f('speedup_one_edit'))}, "
                  f"{times(f('speedup_one_edit_with_rules'))} with rules",
        lambda f: "geopandas `sjoin` of every building, camera and open case with every micro-grid, residents "
                  f"counted per building beforehand: {secs(f('baseline_sjoin_s'))}"),
    Row("grid edit, cold: a fresh process opens the store, reads and follows the edit (start to exit)", "grids",
        lambda f: f"{secs(f('cold.ours.process_s'))} ({times(f('cold.speedup'))})",
        lambda f: f"the same `sjoin` in a fresh process: {secs(f('cold.baseline.process_s'))}"),
    Row("re-partition of a community", "grids",
        lambda f: f"{count(f('repartition.grids_changed'))} grids in {ms(1000 * f('repartition.reassign_s'))} "
                  f"({times(f('speedup_repartition'))})", lambda f: "the same `sjoin`"),
    Row("micro-grid proposal", "grids",
        lambda f: f"{pct(f('proposal_district.proposed.share_in_70_80'))} in 70–80 households "
                  f"({pct(f('proposal_district.proposed.share_ok'))} with stand-alone high-rises), Polsby–Popper "
                  f"median {f('proposal_district.proposed.polsby_popper_median'):.2f} "
                  f"({count(f('proposal_district.communities'))} communities)",
        lambda f: f"current grids: {f('proposal_district.current.polsby_popper_median'):.2f}"),
    Row("fuzzing, `twin bench security`", "security",
        lambda f: f"{count(f('fuzz.inputs'))} inputs over footprint files, IFC, Open311, detections, search: "
                  f"{count(f('fuzz.crashes'))} crashes, {count(f('fuzz.store_changes_after_refusal'))} store changes "
                  f"after a refusal; {count(_fuzzed_http(f))} fuzzed HTTP bodies: "
                  f"{count(f('over_http.server_errors'))} server errors"),
    Row("sign-in and intake limits under a loopback burst", "security",
        lambda f: f"{count(f('rate_limits.signin.one_user_one_address.sent'))} wrong passwords for one user: "
                  f"{count(f('rate_limits.signin.one_user_one_address.checked'))} checked, "
                  f"{count(f('rate_limits.signin.one_user_one_address.refused_429'))} × 429; "
                  f"{count(f('rate_limits.intake.sent'))} intake requests at "
                  f"{count(f('rate_limits.intake.rate_per_s'))}/s: {count(f('rate_limits.intake.accepted'))} taken, "
                  f"{count(f('rate_limits.intake.refused_429'))} × 429"),
    Row("per-grid figures from 1.127 M residents, PostgreSQL store (DuckDB attaching it, the same SQL); goal ≤ 1 s",
        "backends",
        lambda f: f"{secs(f('grid_figures.postgres_attached.median_s'))}",
        lambda f: f"the DuckDB file: {secs(f('grid_figures.duckdb_file.median_s'))}; PostgreSQL itself over psycopg, "
                  f"the core aggregate only: {secs(f('grid_figures.postgres_native_core_aggregate.median_s'))}"),
    Row("a building's card (its residents counted, grid path, cameras), PostgreSQL store", "backends",
        lambda f: f"{ms(1000 * f('building_card.postgres_attached.median_s'))}",
        lambda f: f"the DuckDB file: {ms(1000 * f('building_card.duckdb_file.median_s'))}; PostgreSQL itself, the "
                  f"residents lookup only: {ms(1000 * f('building_card.postgres_native_residents_lookup.median_s'))}"),
    Row("`twin store copy`, the full demo, file to PostgreSQL / back (checksums included)", "backends",
        lambda f: f"{secs(f('copy_s.file_to_postgres'))} / {secs(f('copy_s.postgres_to_file'))}"),
    Row("intake capacity on PostgreSQL, 2 app processes behind nginx (p99 ≤ 200 ms, nothing lost; no browser "
        "open; CPU of the app processes, nginx and PostgreSQL)", "scale",
        lambda f: _scale_knee(f, "intake.postgres_workers_behind_nginx.intake")
        + f" (+ PostgreSQL {ms(f('intake.postgres_workers_behind_nginx.postgres_cpu_ms_per_case'))})",
        lambda f: "one process on the DuckDB file, same run: " + _scale_knee(f, "intake.duckdb_file_one_process")),
    Row("simulated operator sessions through nginx on 2 app processes (PostgreSQL; Bokeh's websocket protocol, no "
        "browsers): pick → the inspector card in the session's document; goal p95 ≤ 300 ms", "scale",
        lambda f: f"{count(f('sessions.sessions'))} sessions, one click each every "
                  f"{_figure(f('sessions.pick_to_inspector.think_s')[0])}–"
                  f"{_figure(f('sessions.pick_to_inspector.think_s')[1])} s: p95 "
                  f"{ms(f('sessions.pick_to_inspector.p95_ms'))}, median {ms(f('sessions.pick_to_inspector.p50_ms'))}"
                  f", worst {ms(f('sessions.pick_to_inspector.max_ms'))}, "
                  f"{count(f('sessions.pick_to_inspector.failed'))} failed of "
                  f"{count(f('sessions.pick_to_inspector.count'))}; CPU per click "
                  f"{ms(f('sessions.cpu.workers_per_pick_ms'))} + PostgreSQL "
                  f"{ms(f('sessions.cpu.postgres_per_pick_ms'))}"
                  f", per open session {_figure(f('sessions.cpu.idle_ms_per_session_second'))} ms a second; "
                  f"machine load {_figure(f('sessions.machine_load.before_picks'))} when the clicks began",
        lambda f: f"one click at a time, the same sessions open: p95 {ms(f('sessions.one_click_at_a_time.p95_ms'))}, "
                  f"median {ms(f('sessions.one_click_at_a_time.p50_ms'))}"),
    Row("memory per session (the app processes' resident memory over their baseline with none)", "scale",
        lambda f: f"{mb(f('sessions.memory.per_session_after_picks_bytes'))} after the clicks "
                  f"({mb(f('sessions.memory.per_session_bytes'))} just opened)",
        lambda f: f"an app process with no session: {mb(min(f('sessions.memory.workers_rss_baseline_bytes')))}"),
    Row("a case posted to one app process, in sessions on the other (PostgreSQL NOTIFY): post → the marker "
        "update in the session's document; goal p95 ≤ 1 s", "scale",
        lambda f: f"p95 {ms(f('sessions.live.cross_process.p95_ms'))}, median "
                  f"{ms(f('sessions.live.cross_process.p50_ms'))}, worst {ms(f('sessions.live.cross_process.max_ms'))}"
                  f", {count(f('sessions.live.cross_process.missed'))} missed of "
                  f"{count(f('sessions.live.cross_process.count') + f('sessions.live.cross_process.missed'))}",
        lambda f: f"sessions on the process that took the case: p95 {ms(f('sessions.live.same_process.p95_ms'))}, "
                  f"median {ms(f('sessions.live.same_process.p50_ms'))}"),
    Row("a city command centre on paper: 500 operator sessions clicking as above and 2,000 cases a minute "
        "(see [the extrapolation](#a-city-command-centre-on-paper))", "scale", _command_centre,
        lambda f: "each app process at most "
                  f"{pct(f('command_centre.worker_busy_at_most'))} busy, from the costs measured above"),
    Row("IFC geometry, FZK-Haus / Duplex", "ifc",
        lambda f: f"{f('files.fzk_haus.ours_model_elements.elements_per_s'):.0f} / "
                  f"{f('files.duplex.ours_model_elements.elements_per_s'):.0f} elements/s on {f('cores')} cores",
        lambda f: f"one-process loop: {f('files.fzk_haus.baseline_create_shape_loop.elements_per_s'):.0f} / "
                  f"{f('files.duplex.baseline_create_shape_loop.elements_per_s'):.0f} elements/s"),
    Row("3D Tiles export of the demo district, `twin export tiles`, process start to exit", "tiles",
        lambda f: f"{secs(f('full.command_s'))} (the export itself {secs(f('full.export_s'))}): "
                  f"{count(f('full.features'))} buildings in {count(f('full.tiles'))} tiles, {mb(f('full.bytes'))}; "
                  f"again unchanged "
                  f"{secs(f('unchanged.command_s'))} ({count(f('unchanged.written'))} written); after one building "
                  f"changed {secs(f('one_building.command_s'))} ({count(f('one_building.written'))} written)",
        lambda f: f"goal: ≤ {secs(f('goal_s'))} on 2 cores"),
    Row("the grid worker's phone page, first load to the list painted (390×844, CPU 4× slower, Slow 4G); "
        "goal ≤ 3 s, ≤ 500 KB", "field",
        lambda f: f"{secs(f('first_load.worker_page.ms') / 1000)}, {f('first_load.worker_page.kb'):,.0f} KB",
        lambda f: f"the same list as a Panel document: {secs(f('first_load.panel_baseline.ms') / 1000)}, "
                  f"{f('first_load.panel_baseline.kb'):,.0f} KB"),
    Row("200 grid workers checking in every 30 s while intake takes 100 cases/s; goal p99 ≤ 300 ms", "field",
        lambda f: f"p99 {ms(f('positions.under_intake.p99_ms'))}, median {ms(f('positions.under_intake.p50_ms'))}; "
                  f"{count(f('positions.lost_check_ins'))} check-ins and {count(f('positions.lost_cases'))} cases "
                  "lost",
        lambda f: f"check-ins alone: p99 {ms(f('positions.alone.p99_ms'))}"),
    Row("the city of 1,037,853 buildings as tiles, a leader at 1920×1080: first frame (goal ≤ 4 s), bytes before it "
        "(≤ 5 MB), browser PSS (≤ 1.5 GB), server memory (≤ 1 GB), fly to a far grid (≤ 2 s), click to inspector "
        "(median ≤ 300 ms)", "city",
        lambda f: f"{secs(f('city.first_frame.first_frame_ms') / 1000)}, {mb(f('city.first_frame.bytes'))}, "
                  f"{gb(f('city.browser_pss_bytes'))}, {gb(f('city.server_rss_bytes'))} (after the sessions "
                  f"{gb(f('city.server_rss_after_bytes'))}), fly {secs(f('city.fly_to_far_grid_ms') / 1000)}, "
                  f"click {ms(f('city.click_to_inspector_ms.median_ms'))}",
        lambda f: "the district as tiles / as one buffer, first frame: "
                  f"{secs(f('district.tiles.first_frame.first_frame_ms') / 1000)} / "
                  f"{secs(f('district.buffer.first_frame.first_frame_ms') / 1000)}"),
    Row("50 residents grabbing a 10-place volunteer task at once over HTTP (文明小杜): places taken, the burst's "
        "answers; the DuckDB file / PostgreSQL / two processes behind nginx", "volunteers",
        lambda f: " / ".join(f"{count(f(k + '.succeeded'))} of {count(f(k + '.grabs'))} in {secs(f(k + '.burst_s'))}"
                             for k in ("duckdb", "postgres", "postgres_2_processes")),
        lambda f: "one grab at a time, median: " + " / ".join(ms(f(k + ".one_at_a_time.p50_ms"))
                                                               for k in ("duckdb", "postgres", "postgres_2_processes"))),
)


def load_results(results: Path = RESULTS) -> dict[str, dict]:
    """Every ``NAME.json`` in ``results``, by NAME."""
    return {path.stem: json.loads(path.read_text(encoding="utf-8")) for path in sorted(results.glob("*.json"))}


def _cell(text: str) -> str:
    return text.replace("|", "\\|").replace("\n", " ")


def _provenance(name: str, result: dict | None) -> str:
    if result is None:
        return f"- `{name}.json`: {NOT_MEASURED}"
    measured = result.get("measured") or {}
    when = measured.get("date")
    if when:
        when = dt.datetime.fromisoformat(when).astimezone(dt.timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    parts = [f"commit {measured.get('commit', '?')[:12]}{'+dirty' if '+dirty' in measured.get('commit', '') else ''}",
             when or "date unknown", f"{measured.get('cores', '?')} cores"]
    if measured.get("quick"):
        parts.append("`--quick`")
    if measured.get("webgl_renderer"):
        parts.append(f"WebGL: {measured['webgl_renderer']}")
    return f"- `{name}.json`: " + ", ".join(parts)


def render(results: dict[str, dict]) -> str:
    """The table and, under it, where and when each file was measured (the text between the markers)."""
    lines = ["| benchmark | ours | baseline | from |", "|---|---|---|---|"]
    for row in ROWS:
        result = results.get(row.name)
        if result is None:
            ours = baseline = NOT_MEASURED
        else:
            figures = Figures(row.name, result)
            ours, baseline = row.ours(figures), row.baseline(figures)
        lines.append(f"| {_cell(row.label)} | {_cell(ours)} | {_cell(baseline)} | `{row.name}.json` |")
    names = list(dict.fromkeys(row.name for row in ROWS))
    lines += ["", "Measured (from `bench/results/`):", ""] + [_provenance(n, results.get(n)) for n in names]
    return "\n".join(lines)


def replace_section(text: str, section: str) -> str:
    """``text`` with what lies between :data:`START` and :data:`END` replaced by ``section``."""
    if text.count(START) != 1 or text.count(END) != 1 or text.index(START) > text.index(END):
        raise ValueError(f"README.md must hold {START} once, then {END} once, around the benchmark table.")
    head, rest = text.split(START)
    _, tail = rest.split(END)
    return f"{head}{START}\n{section}\n{END}{tail}"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--check", action="store_true", help="exit 1 if the README's table is not what the "
                                                             "results make, without writing")
    args = parser.parse_args(argv)
    text = README.read_text(encoding="utf-8")
    wanted = replace_section(text, render(load_results()))
    if args.check:
        if wanted != text:
            print("README.md's benchmark table differs from bench/results/*.json: run `make bench-table`.",
                  file=sys.stderr)
            return 1
        return 0
    if wanted != text:
        README.write_text(wanted, encoding="utf-8")
    return 0


if __name__ == "__main__":
    sys.exit(main())

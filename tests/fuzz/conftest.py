"""Fuzzing in the default suite: print how many inputs each entry point was fed, and what came of them."""

from __future__ import annotations

from bench.fuzzing.harness import TALLIES


def pytest_terminal_summary(terminalreporter, exitstatus, config):
    if not TALLIES:
        return
    terminalreporter.section("fuzzing: examples tried per entry point")
    total = 0
    for name, t in TALLIES.items():
        total += t.tried
        terminalreporter.write_line(
            f"{name:<28} {t.tried:>5} examples  {t.ok:>5} accepted  {t.refused:>5} refused  "
            f"{len(t.crashes)} crashes  {len(t.changed)} store changes  {len(t.bad_accepts)} nonsense accepted  "
            f"{t.seconds:6.1f} s")
    terminalreporter.write_line(f"{'total':<28} {total:>5} examples")

"""The view's JavaScript parses: a syntax error there leaves every page without its 3D view, and only the
browser tests (slow, and easy to blame on load) would say so."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest

SOURCE = Path(__file__).parents[2] / "scenes" / "view3d.js"
SCENES = Path(__file__).parents[2] / "scenes"
WORKER = SCENES / "worker.js"  # the phone pages' scripts (classic scripts, after phone.js's helpers)


@pytest.mark.skipif(shutil.which("node") is None, reason="needs Node.js (make test-setup installs it)")
@pytest.mark.parametrize("source, name", [(SOURCE, "view3d.mjs"), (WORKER, "worker.js"),
                                                (SCENES / "volunteer.js", "volunteer.js"), (SCENES / "phone.js", "phone.js")])
def test_the_views_javascript_parses(tmp_path, source, name):
    module = tmp_path / name  # the component's source is an ES module
    module.write_text(source.read_text(encoding="utf-8"), encoding="utf-8")
    checked = subprocess.run(["node", "--check", str(module)], capture_output=True, text=True)
    assert checked.returncode == 0, checked.stderr

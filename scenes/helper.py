"""A helper process for the server's big computations, so that their objects never fill its heap.

Shapely makes a C object per polygon. At city scale a computation over every micro-grid makes 650,000 of them;
freed, they leave the server's C heap in pieces that it cannot give back (hundreds of MB held for the
server's life). :func:`in_helper` runs such a computation in a new Python process and returns only its result.
"""

from __future__ import annotations

import pickle
import subprocess
import sys
from collections.abc import Callable
from typing import TypeVar

T = TypeVar("T")
HELPER_ABOVE = 50_000  # polygons: fewer are computed in the server itself (a process costs 2-3 s to start)
# The helper's side: read (sys.path, function, args) from stdin, answer ("ok", result) or ("error", exception)
# on its stdout.
_RUN = """
import os, pickle, sys
answers = os.fdopen(os.dup(1), "wb")
os.dup2(2, 1)  # what the work prints (DuckDB's progress bar) goes to stderr, not into the answer
path, function, args = pickle.loads(sys.stdin.buffer.read())
sys.path[:0] = [p for p in path if p not in sys.path]
import logging
logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
try:
    answer = ("ok", function(*args))
except BaseException as exc:
    answer = ("error", exc)
answers.write(pickle.dumps(answer))
answers.close()
"""


def in_helper(function: Callable[..., T], *args: object) -> T:
    """``function(*args)`` in a new Python process (nothing of this one's memory, threads or store goes with it);
    ``function`` must be importable and its arguments and result picklable (pyarrow arrays travel as buffers).
    Raises what ``function`` raised."""
    # The pickle is read by the helper only, which this process starts: it is not data from outside.
    done = subprocess.run([sys.executable, "-c", _RUN], input=pickle.dumps((sys.path, function, args)),
                          stdout=subprocess.PIPE, check=False)
    if done.returncode != 0 or not done.stdout:
        raise RuntimeError(f"the helper process for {function.__qualname__} stopped (exit code {done.returncode}); "
                           "its error is above in the log")
    status, value = pickle.loads(done.stdout)
    if status == "error":
        raise value
    return value

"""Execute chapter notebooks in place, the way nbval will re-run them.

Usage: python tools/execute_notebook.py chapters/path/to/chapter.ipynb [...]

Runs each notebook top to bottom in its own folder with a fresh kernel, stores the
outputs, and prints the wall time, the kernel's CPU time and its peak resident
memory, so the chapter budgets (<= 120 s, <= 1 GB) can be checked. On a busy machine
the CPU time is the better estimate of the runtime on an idle one.
"""

from __future__ import annotations

import argparse
import collections
import os
import sys
import time
from pathlib import Path

import nbformat
from nbclient import NotebookClient

ROOT = Path(__file__).resolve().parents[1]
# The kernel's peak memory (kB) and CPU seconds. CPU time hardly changes when other
# jobs share the cores, so it estimates the runtime on an idle machine.
PEAK_CELL = (
    "import resource as _r; _u = _r.getrusage(_r.RUSAGE_SELF); "
    "print(_u.ru_maxrss, _u.ru_utime + _u.ru_stime)"
)


def execute(path: Path, timeout: int = 600) -> tuple[float, float, float]:
    nb = nbformat.read(path, as_version=4)
    os.environ.setdefault("LMBOOK_DATA_DIR", str(ROOT.parent / "shared" / "data"))
    os.environ.setdefault("MPLBACKEND", "module://matplotlib_inline.backend_inline")
    client = NotebookClient(
        nb,
        timeout=timeout,
        kernel_name="python3",
        resources={"metadata": {"path": str(path.parent)}},
        store_widget_state=False,
    )
    # nbclient's Output-widget hook indexes widget_state even when it is not stored
    client.widget_state = collections.defaultdict(dict)
    start = time.perf_counter()
    with client.setup_kernel():
        for index, cell in enumerate(nb.cells):
            client.execute_cell(cell, index)
        seconds = time.perf_counter() - start
        probe = nbformat.v4.new_code_cell(PEAK_CELL)
        nb.cells.append(probe)
        client.execute_cell(probe, len(nb.cells) - 1)
        nb.cells.pop()
        peak_kb, cpu_seconds = map(float, probe.outputs[0]["text"].split())
    nbformat.write(nb, path)
    return seconds, cpu_seconds, peak_kb / 1024


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("notebooks", nargs="+", type=Path)
    parser.add_argument(
        "--timeout", type=int, default=600, help="seconds a cell may run (600)"
    )
    args = parser.parse_args()
    print(f"{'chapter':60s} {'seconds':>8s} {'CPU s':>8s} {'peak MB':>8s}")
    for path in args.notebooks:
        seconds, cpu, peak_mb = execute(path, args.timeout)
        print(f"{str(path):60s} {seconds:8.1f} {cpu:8.1f} {peak_mb:8.0f}", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())

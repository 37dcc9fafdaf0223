"""Copy the markdown cells of a regenerated chapter into its executed notebook.

    python drafts/sync_markdown.py drafts/05-practice/make_x.py chapters/.../x.ipynb

Runs the generator with its output redirected to a temporary file, checks that
the code cells are unchanged (else the chapter must be executed again), and
replaces the markdown cells of the executed notebook, keeping its outputs.
"""

import runpy
import sys
import tempfile
from pathlib import Path

import nbformat

generator, target = sys.argv[1], Path(sys.argv[2])
executed = nbformat.read(target, as_version=4)
with tempfile.TemporaryDirectory() as tmp:
    fresh_path = Path(tmp) / target.name
    real_write = nbformat.write
    nbformat.write = lambda nb, path, *a, **k: real_write(nb, fresh_path, *a, **k)
    try:
        runpy.run_path(generator, run_name="__main__")
    finally:
        nbformat.write = real_write
    fresh = nbformat.read(fresh_path, as_version=4)
kinds = [c.cell_type for c in executed.cells]
if kinds != [c.cell_type for c in fresh.cells]:
    sys.exit("cell layout changed: execute the chapter again")
for old, new in zip(executed.cells, fresh.cells):
    if old.cell_type == "code" and old.source != new.source:
        sys.exit("a code cell changed: execute the chapter again")
    if old.cell_type == "markdown":
        old.source = new.source
nbformat.write(executed, target)
print("markdown synced into", target)

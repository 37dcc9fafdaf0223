"""Build the student edition of the website: every page, no solutions.

    python tools/build_student.py      # or `make student`; into _build/student/html

It is `make book`'s build (`jupyter-book build . -W -n --keep-going`, same
configuration) with sphinx-exercise's `hide_solutions` switched on, so every
``{solution}`` is left out and every ``{exercise}`` stays. Its own doctrees
(_build/student/.doctrees) keep the two editions from rebuilding each other.
The copies of the notebooks that the pages' download button offers (_sources/)
lose their ``{solution}`` blocks too.
"""

from __future__ import annotations

import json
import re
import sys
from pathlib import Path

from jupyter_book.cli.main import build
from jupyter_book.sphinx import build_sphinx

ROOT = Path(__file__).resolve().parents[1]
OUTPUT = ROOT / "_build" / "student" / "html"
# A MyST {solution} directive, fenced with backticks or colons, up to the line that
# closes its fence (a fence inside it is shorter, or it would close it).
SOLUTION = re.compile(
    r"^(?P<fence>`{3,}|:{3,})\{solution\}.*?^(?P=fence)[ \t]*(?:\n|\Z)", re.M | re.S
)


def strip_solutions(markdown: str) -> str:
    return SOLUTION.sub("", markdown)


def strip_source(path: Path) -> None:
    """Remove the {solution} blocks from a notebook's or a page's source."""
    text = path.read_text("utf-8")
    if "{solution}" not in text:
        return
    if path.suffix == ".ipynb":
        notebook = json.loads(text)
        for cell in notebook["cells"]:
            if cell["cell_type"] == "markdown":
                source = strip_solutions("".join(cell["source"]))
                cell["source"] = source.splitlines(keepends=True)
        text = json.dumps(notebook, indent=1, ensure_ascii=False) + "\n"
    else:
        text = strip_solutions(text)
    path.write_text(text, "utf-8")


def main() -> int:
    # The configuration `jupyter-book build . -n` would use (it finds _config.yml
    # and _toc.yml), then the one override.
    path_config, source, overrides = build.callback(
        path_source=str(ROOT),
        path_output=None,
        config=None,
        toc=None,
        warningiserror=True,
        nitpick=True,
        keep_going=True,
        freshenv=False,
        builder="html",
        custom_builder=None,
        verbose=0,
        quiet=0,
        individualpages=False,
        get_config_only=True,
    )
    overrides["hide_solutions"] = True
    print(f"Student edition (no solutions): {OUTPUT}", flush=True)
    result = build_sphinx(
        source,
        OUTPUT,
        use_external_toc=True,
        noconfig=True,
        path_config=path_config,
        confoverrides=overrides,
        builder="html",
        warningiserror=True,
        keep_going=True,
    )
    if isinstance(result, Exception):
        return 1
    for source in sorted((OUTPUT / "_sources").rglob("*.*")):
        strip_source(source)
    return int(result or 0)


if __name__ == "__main__":
    sys.exit(main())

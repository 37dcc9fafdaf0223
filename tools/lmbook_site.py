"""Sphinx extension for the lmbook website (listed in _config.yml).

- MathJax is served by the site itself, so that equations render offline: the
  npm package `mathjax` (pinned in package.json, installed by `make book` with
  `npm ci`) is copied into ``_static/mathjax``, where `mathjax_path` points.
- Each line of highlighted code is wrapped in ``<span class="lmbook-line">``, with
  its indentation in ``--indent`` (in characters), so that _static/lmbook.css can
  wrap a long line with a hanging indent: its continuation starts 2 characters
  deeper than the line itself, between two levels of Python's indentation, and
  cannot be mistaken for a statement of its own. The text
  of the block is unchanged (copy buttons copy the same code).

The student edition (`make student`, tools/build_student.py) needs nothing here:
sphinx-exercise's own `hide_solutions` drops every ``{solution}``.
"""

from __future__ import annotations

import html
import re
import shutil
from pathlib import Path

from pygments.formatters import HtmlFormatter
from sphinx.application import Sphinx
from sphinx.errors import ExtensionError

MATHJAX_ENTRY = "tex-mml-chtml.js"  # the combined component Sphinx uses by default
# Folders MathJax may load from after its entry file: TeX extensions (autoload),
# CommonHTML fonts, the menu, and the accessibility tools the menu can switch on.
MATHJAX_FOLDERS = ("a11y", "adaptors", "input", "output", "sre", "ui")


TAG = re.compile(r"<[^>]+>")


class LineFormatter(HtmlFormatter):
    """Pygments' HTML formatter, with each source line in a span of its own."""

    def wrap(self, source):
        return super().wrap(self._lines(source))

    @staticmethod
    def _lines(source):
        for is_line, text in source:
            if not is_line:
                yield is_line, text
                continue
            end = "\n" if text.endswith("\n") else ""
            body = text[: len(text) - len(end)]
            plain = html.unescape(TAG.sub("", body)).expandtabs(8)
            indent = len(plain) - len(plain.lstrip(" "))
            style = f' style="--indent: {indent}"' if indent else ""
            yield is_line, f'<span class="lmbook-line"{style}>{body}</span>{end}'


def _mathjax_source(app: Sphinx) -> Path:
    return Path(app.confdir, app.config.lmbook_mathjax_dir)


def _on_builder_inited(app: Sphinx) -> None:
    if app.builder.format != "html":
        return
    app.builder.highlighter.formatter = LineFormatter
    entry = _mathjax_source(app) / MATHJAX_ENTRY
    if not entry.is_file():
        raise ExtensionError(
            f"{entry} is missing: run `npm ci` (as `make book` does) to install "
            "MathJax, which the site serves itself so that it renders offline"
        )


def _on_build_finished(app: Sphinx, exception: Exception | None) -> None:
    if exception is not None or app.builder.format != "html":
        return
    source, target = _mathjax_source(app), Path(app.outdir, "_static", "mathjax")
    target.mkdir(parents=True, exist_ok=True)
    shutil.copy2(source / MATHJAX_ENTRY, target / MATHJAX_ENTRY)
    for folder in MATHJAX_FOLDERS:
        shutil.copytree(source / folder, target / folder, dirs_exist_ok=True)
    shutil.copy2(source.parent / "LICENSE", target / "LICENSE")


def setup(app: Sphinx) -> dict:
    # where `npm ci` puts MathJax's browser files, relative to the book's root
    app.add_config_value("lmbook_mathjax_dir", "node_modules/mathjax/es5", "html")
    app.connect("builder-inited", _on_builder_inited)
    app.connect("build-finished", _on_build_finished)
    return {"parallel_read_safe": True, "parallel_write_safe": True}

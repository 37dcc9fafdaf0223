"""Tiny helpers that the chapter generators in drafts/ share: collect markdown and
code cells, then write the notebook (outputs are added by executing it with
tools/execute_notebook.py)."""

from __future__ import annotations

import nbformat as nbf


class Notebook:
    """Cells in order; `md` and `code` append, `write` saves the .ipynb."""

    def __init__(self):
        self.cells = []

    def md(self, text: str) -> None:
        self.cells.append(nbf.v4.new_markdown_cell(text.strip("\n")))

    def code(self, text, tags=None, alt=None, caption=None, name=None) -> None:
        """A code cell. A first line "# NBVAL_IGNORE_OUTPUT (reason)" becomes the
        nbval-ignore-output cell tag (nbval 0.11 only matches the marker as a
        whole line) and a plain comment giving the reason. alt/caption/name make
        the cell's figure accessible and referable (myst-nb metadata)."""
        text = text.strip("\n")
        if text.startswith("# NBVAL_IGNORE_OUTPUT"):
            first, _, rest = text.partition("\n")
            reason = first.removeprefix("# NBVAL_IGNORE_OUTPUT").strip(" ()")
            text = f"# Output not compared by the tests:\n# {reason}.\n{rest}"
            tags = [*(tags or []), "nbval-ignore-output"]
        cell = nbf.v4.new_code_cell(text)
        if tags:
            cell.metadata["tags"] = tags
        if alt:
            cell.metadata["mystnb"] = {
                "image": {"alt": alt},
                "figure": {"caption": caption, "name": name},
            }
        self.cells.append(cell)

    def write(self, path: str) -> None:
        for i, cell in enumerate(self.cells):
            cell.id = f"cell-{i:03d}"  # stable ids: regenerating gives no id churn
        nb = nbf.v4.new_notebook(cells=self.cells)
        nb.metadata = {
            "kernelspec": {
                "display_name": "Python 3",
                "language": "python",
                "name": "python3",
            },
            "language_info": {"name": "python"},
        }
        nbf.write(nb, path)
        print("written", path)


SETUP = r"""
# Colab and Binder set-up: install lmbook if missing, then fix the seeds.
try:
    import lmbook
except ImportError:  # on Colab
    %pip install -q "lmbook[hf,widgets] @ git+https://github.com/lmbook/lmbook"
    import lmbook
lmbook.set_seed(0)
"""

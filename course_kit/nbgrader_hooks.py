"""nbgrader plug-ins for the kit (named in ``nbgrader_config.py``).

:class:`HideHiddenTracebacks` keeps hidden tests out of the feedback students get back:
nbgrader's ``ClearHiddenTests`` removes the hidden *source*, but a failing cell's traceback still
quotes the hidden lines. For every grade cell that holds hidden tests, this replaces its error
outputs with the exception's name and message only.
"""

from __future__ import annotations

from nbconvert.preprocessors import Preprocessor
from traitlets import Bool, Unicode

HIDDEN_MARK = "BEGIN HIDDEN TESTS"


class HideHiddenTracebacks(Preprocessor):
    """Shorten tracebacks of cells that contain hidden tests to ``ename: evalue``."""

    enabled = Bool(True, help="nbconvert runs only enabled preprocessors").tag(config=True)
    marker = Unicode(HIDDEN_MARK, help="text that marks a hidden-test region").tag(config=True)

    def preprocess_cell(self, cell, resources, index):  # type: ignore[no-untyped-def]
        if cell.cell_type != "code" or self.marker not in cell.source:
            return cell, resources
        for output in cell.get("outputs", []):
            if output.get("output_type") == "error":
                ename, evalue = output.get("ename", "Error"), output.get("evalue", "")
                summary = f"{ename}: {evalue}" if evalue else ename
                output["traceback"] = [
                    summary,
                    "(a test in this cell failed; the details of hidden tests are not shown)",
                ]
        return cell, resources

"""The judge (course_kit.judge) on reports made by course_lib.grading.report, without a kernel:
what counts as a match, and what a forged, repeated, missing or malformed report scores."""

from __future__ import annotations

import math

import nbformat
import numpy as np
import pytest
import torch
from nbformat.v4 import new_code_cell, new_notebook, new_output

from course_kit import judge
from course_lib.grading import REPORT_MIME, _encode


def payload(key, compute, **judging):
    """What report() displays, built the same way (the kernel side's own encoder)."""
    try:
        result = {"value": _encode(compute())}
    except Exception as err:  # noqa: BLE001
        result = {"raised": type(err).__name__, "message": str(err)}
    return {"key": key, **result, "judging": judging}


def entry(key, compute, hidden=False, **judging):
    p = payload(key, compute, **judging)
    compare = judging.get("compare", "raises" if "raised" in p else "close")
    return {
        "payload": {k: p[k] for k in ("value", "raised") if k in p},
        "judging": {**judging, "compare": compare},
        "hidden": hidden,
    }


def cell_with(grade_id, *payloads, extra_outputs=()):
    cell = new_code_cell("report(...)")
    cell.metadata["nbgrader"] = {"grade": True, "grade_id": grade_id, "points": 2, "locked": True}
    cell.outputs = [
        new_output("display_data", data={REPORT_MIME: p, "text/plain": "(reported)"})
        for p in payloads
    ] + list(extra_outputs)
    return cell


EXPECTED = judge.Expected(
    {
        "t": {
            "visible": entry("visible", lambda: np.array([0.6, 0.8])),
            "hidden": entry("hidden", lambda: torch.tensor([1.0, -2.0, 2.0]) / 3, hidden=True),
        }
    }
)


def verdict_for(*payloads, **kw):
    nb = new_notebook(cells=[cell_with("t", *payloads, **kw)])
    return judge.judge_notebook(nb, EXPECTED)["t"]


def test_matching_reports_pass_tensor_or_array_alike():
    v = verdict_for(
        payload("visible", lambda: torch.tensor([0.6, 0.8])),  # a tensor where NumPy was used
        payload("hidden", lambda: np.array([1.0, -2.0, 2.0]) / 3 + 1e-9),
    )
    assert v.ok and v.passed == 2


def test_wrong_value_fails_and_hidden_values_are_not_shown():
    v = verdict_for(
        payload("visible", lambda: np.array([0.6, 0.9])),
        payload("hidden", lambda: np.array([1.0, -2.0, 2.0])),
    )
    assert not v.ok and v.passed == 0
    text = judge.verdict_text(v)
    assert "check 'visible' failed" in text and "expected 0.8" in text  # visible: expected/got
    assert "hidden check 'hidden' failed" in text
    assert "0.333" not in text and "0.666" not in text and "-0.667" not in text


def test_missing_duplicated_and_malformed_reports_score_zero():
    good = payload("visible", lambda: np.array([0.6, 0.8]))
    hidden = payload("hidden", lambda: np.array([1.0, -2.0, 2.0]) / 3)
    assert not verdict_for(good).ok  # hidden one missing
    # a forged duplicate next to the real one (a hook that adds reports after each cell)
    assert not verdict_for(good, hidden, dict(hidden, value=_encode(np.zeros(3)))).ok
    assert not verdict_for(good, {"key": "hidden", "value": {"array": "nonsense"}}).ok
    assert not verdict_for(good, {"key": "hidden"}).ok  # no result at all
    assert not verdict_for(good, {"value": 1.0}).ok  # no key
    assert verdict_for(good, hidden).ok


def test_judging_options_come_from_the_solution_only():
    # a submission asking for a huge tolerance gains nothing
    forged = payload("hidden", lambda: np.zeros(3), rtol=1e9, atol=1e9)
    v = verdict_for(payload("visible", lambda: np.array([0.6, 0.8])), forged)
    assert not v.ok


def test_raises_shape_equal_and_containers():
    exp = judge.Expected(
        {
            "c": {
                "r": entry("r", lambda: math.sqrt(-1), compare="raises"),
                "s": entry("s", lambda: np.zeros((2, 3)), compare="shape"),
                "e": entry("e", lambda: np.array([1, 2, 3]), compare="equal"),
                "t": entry("t", lambda: (np.ones(2), 3.0, {"a": "x"})),
            }
        }
    )

    def run(**answers):
        cell = cell_with("c", *(payload(k, f) for k, f in answers.items()))
        return judge.judge_notebook(new_notebook(cells=[cell]), exp)["c"]

    ok = dict(
        r=lambda: math.sqrt(-1),
        s=lambda: np.ones((2, 3)),
        e=lambda: [1, 2, 3],
        t=lambda: (torch.ones(2), 3.0, {"a": "x"}),
    )
    assert run(**ok).ok
    assert not run(**{**ok, "r": lambda: 0.0}).ok  # did not raise
    assert not run(**{**ok, "r": lambda: [][1]}).ok  # IndexError, not ValueError
    assert not run(**{**ok, "s": lambda: np.ones((3, 2))}).ok
    assert not run(**{**ok, "e": lambda: np.array([1, 2, 4])}).ok
    assert not run(**{**ok, "t": lambda: (np.ones(2), 3.0, {"a": "y"})}).ok
    assert not run(**{**ok, "t": lambda: (np.ones(2), 3.0)}).ok


def test_nan_positions_must_agree():
    exp = judge.Expected({"n": {"k": entry("k", lambda: np.array([1.0, np.nan]))}})
    same = cell_with("n", payload("k", lambda: np.array([1.0, np.nan])))
    other = cell_with("n", payload("k", lambda: np.array([np.nan, 1.0])))
    assert judge.judge_notebook(new_notebook(cells=[same]), exp)["n"].ok
    assert not judge.judge_notebook(new_notebook(cells=[other]), exp)["n"].ok


def test_a_test_cell_missing_or_twice_fails_and_annotate_replaces_reports():
    exp = EXPECTED
    nb = new_notebook(cells=[])
    assert judge.judge_notebook(nb, exp)["t"].messages == ["the test cell is missing"]
    good = [
        payload("visible", lambda: np.array([0.6, 0.8])),
        payload("hidden", lambda: np.array([1.0, -2.0, 2.0]) / 3),
    ]
    nb = new_notebook(cells=[cell_with("t", *good), cell_with("t", *good)])
    assert not judge.judge_notebook(nb, exp)["t"].ok
    nb = new_notebook(cells=[cell_with("t", *good)])
    verdicts = judge.judge_notebook(nb, exp)
    judge.annotate(nb, verdicts)
    outs = nb.cells[0].outputs
    assert all(REPORT_MIME not in o.get("data", {}) for o in outs)
    assert "all 2 checks of this cell passed" in outs[-1]["data"]["text/plain"]


def test_expected_reports_from_the_solution(tmp_path):
    """The trusted run: reports per graded cell, hidden ones marked, cached by content."""
    nb = new_notebook()
    nb.metadata["kernelspec"] = {
        "name": "python3",
        "display_name": "Python 3",
        "language": "python",
    }
    cell = new_code_cell(
        "from course_lib.grading import report\nimport os\n"
        "report('mode', lambda: os.environ.get('NBGRADER_EXECUTION'), compare='equal')\n"
        "### BEGIN HIDDEN TESTS\nreport('h', lambda: 2.0 ** 0.5)\n### END HIDDEN TESTS\n"
    )
    cell.metadata["nbgrader"] = {"grade": True, "grade_id": "g", "points": 1, "locked": True}
    path = tmp_path / "a" / "a.ipynb"
    path.parent.mkdir()
    nbformat.write(nb := new_notebook(cells=[cell], metadata=nb.metadata), path)
    exp = judge.expected_reports(path, cache_dir=tmp_path / "cache")
    assert exp.cells["g"]["mode"]["payload"]["value"] == "autograde"
    assert exp.cells["g"]["mode"]["hidden"] is False and exp.cells["g"]["h"]["hidden"] is True
    assert exp.cells["g"]["h"]["payload"]["value"] == {"float": pytest.approx(2**0.5)}
    cached = (tmp_path / "cache" / "a-expected.json").read_text()
    assert "autograde" in cached
    # a broken solution is the instructor's error, said plainly
    nb.cells[0].source = "from course_lib.grading import report\nreport('x', lambda: 1)\n1/0\n"
    nbformat.write(nb, path)
    with pytest.raises(judge.JudgeError, match="ZeroDivisionError"):
        judge.expected_reports(path, cache_dir=tmp_path / "cache")

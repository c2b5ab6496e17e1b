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


# ---- hostile reports (issue 24.1): any value a kernel can report scores 0, never raises ----


def _deep(n):
    value = {"float": 1.0}
    for _ in range(n):
        value = {"sequence": [value]}
    return value


HOSTILE_VALUES = {
    "huge int": 10**400,
    "int64 array holding 1e30": {"array": [10**30, 1], "dtype": "int64", "shape": [2]},
    "float array holding 1e400": {"array": [10**400, 1], "dtype": "float64", "shape": [2]},
    "nan string": {"float": "NaN"},
    "bare nan": float("nan"),
    "inf in array": {"array": [float("inf"), "-Infinity"], "dtype": "float64", "shape": [2]},
    "huge float": {"float": 10**400},
    "deep nesting": _deep(200),
    "million entries": {"sequence": [{"float": 0.5}] * 1_000_000},
    "wrong types": {"array": {"a": 1}, "dtype": ["x"], "shape": "two"},
    "negative shape": {"array": [1.0, 2.0], "dtype": "float64", "shape": [-1, -2]},
    "shape as floats": {"array": [1.0, 2.0], "dtype": "float64", "shape": [2.0]},
    "giant shape": {"array": [], "dtype": "float64", "shape": [10**400]},
    "object dtype": {"array": [1, 2], "dtype": "object", "shape": [2]},
    "bad mask": {"array": [1.0, 2.0], "dtype": "float64", "shape": [2], "nonfinite": [1, 2, 3]},
    "mapping list": {"mapping": [1, 2]},
    "float list": {"float": [1.0]},
    "list": [1, 2, 3],
}


SCALAR_AND_ARRAY = judge.Expected(
    {
        "t": {
            "scalar": entry("scalar", lambda: 5.0),
            "array": entry("array", lambda: np.array([0.6, 0.8])),
            "ok": entry("ok", lambda: 2.0),
        }
    }
)


@pytest.mark.parametrize("what", sorted(HOSTILE_VALUES))
def test_any_reported_value_scores_zero_with_a_note_never_raises(what):
    """Attack: a replaced report() sends values the judge cannot convert (an OverflowError
    once stopped the whole batch), where a number and where an array is expected."""
    bad = [{"key": k, "value": HOSTILE_VALUES[what], "judging": {}} for k in ("scalar", "array")]
    nb = new_notebook(cells=[cell_with("t", *bad, payload("ok", lambda: 2.0))])
    v = judge.judge_notebook(nb, SCALAR_AND_ARRAY)["t"]
    assert v.passed == 1 and not v.ok  # only the honest report passes
    for key in ("scalar", "array"):
        assert any(f"check '{key}'" in m for m in v.messages), v.messages


def test_malformed_outputs_and_payloads_are_named_not_raised():
    cell = cell_with("t")
    cell.outputs = [
        "not an output",
        {"output_type": "display_data", "data": ["x"], "metadata": {}},
        {"output_type": "display_data", "data": {REPORT_MIME: "[" * 100_000}, "metadata": {}},
        {"output_type": "display_data", "data": {REPORT_MIME: ["key"]}, "metadata": {}},
        {"output_type": "display_data", "data": {REPORT_MIME: {"key": "visible"}}, "metadata": 7},
    ]
    unchecked = nbformat.NotebookNode(cells=[cell])  # as a kernel may leave it: not validated
    v = judge.judge_notebook(unchecked, EXPECTED)["t"]
    assert v.passed == 0 and "not JSON" in " ".join(v.messages)
    cell.outputs = {"not": "a list"}
    v = judge.judge_notebook(unchecked, EXPECTED)["t"]
    assert v.passed == 0 and "cannot be read" in v.messages[0]
    cell.outputs = ["junk", 5, {"data": 3}, {"data": {}, "metadata": 7}]
    judge.annotate(unchecked, {"t": v})  # drops what is not an output, adds the verdict
    assert len(cell.outputs) == 1 and "scores 0" in cell.outputs[0]["data"]["text/plain"]


def test_a_huge_raised_name_is_cut_in_the_message():
    bad = {"key": "visible", "raised": "E" * 10**6, "message": "m" * 10**6}
    v = verdict_for(bad)
    assert all(len(m) < 600 for m in v.messages)

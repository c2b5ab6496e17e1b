"""course_lib.claims: a sentence checked against its number; course_kit.nbrun reads them."""

from __future__ import annotations

import nbformat
import pytest
import torch

from course_kit.nbrun import claims_in
from course_lib.claims import ClaimFailed, claim


def test_true_claim_prints_its_number_and_returns_nothing(capsys, monkeypatch):
    monkeypatch.setenv("COURSE_QUICK", "0")
    # None: a cell that ends with a claim shows no stray True/False
    assert (
        claim("seam-cheaper", 0.4123, lambda v: v < 0.9, "the cut is cheaper", expect="< 0.9")
        is None
    )
    out = capsys.readouterr().out
    assert out.strip() == "CLAIM ok   [seam-cheaper] the cut is cheaper: 0.412 (holds: < 0.9)"


def test_false_claim_raises_in_default_mode_and_names_the_number(capsys, monkeypatch):
    monkeypatch.setenv("COURSE_QUICK", "0")
    monkeypatch.delenv("NBGRADER_EXECUTION", raising=False)
    with pytest.raises(ClaimFailed, match=r"\[psnr\].*computed 12\.500"):
        claim("psnr", 12.5, lambda v: v > 20, "the copy is sharp", expect="> 20 dB")
    assert "CLAIM FAIL [psnr]" in capsys.readouterr().out


def test_false_claim_in_quick_mode_says_the_full_run_checks_it(capsys, monkeypatch):
    monkeypatch.delenv("COURSE_CLAIMS", raising=False)
    monkeypatch.setenv("COURSE_QUICK", "1")
    claim("psnr", torch.tensor(12.5), lambda v: v > 20, "the copy is sharp", expect="> 20 dB")
    out = capsys.readouterr().out
    assert out.strip() == (
        "CLAIM full [psnr] the copy is sharp: 12.500 (checked in the full run, where it needs "
        "> 20 dB)"
    )
    assert "FAIL" not in out


def test_strict_setting_overrides_the_mode(capsys, monkeypatch):
    monkeypatch.setenv("COURSE_QUICK", "1")
    monkeypatch.setenv("COURSE_CLAIMS", "strict")
    with pytest.raises(ClaimFailed):
        claim("x", 1, lambda v: v > 1, "t")
    assert "CLAIM FAIL [x]" in capsys.readouterr().out
    monkeypatch.setenv("COURSE_QUICK", "0")
    monkeypatch.setenv("COURSE_CLAIMS", "report")
    claim("x", 1, lambda v: v > 1, "t")
    assert "CLAIM FAIL [x] t: 1 (does not hold)" in capsys.readouterr().out


def test_nan_never_holds(capsys, monkeypatch):
    monkeypatch.setenv("COURSE_QUICK", "0")
    monkeypatch.setenv("COURSE_CLAIMS", "report")
    claim("n", float("nan"), lambda v: v == v or v != v, "anything")
    assert "CLAIM FAIL [n]" in capsys.readouterr().out


@pytest.mark.parametrize(
    "condition",
    [True, False, 0.3 < 0.9, torch.tensor(True), lambda v: True, lambda _: 0.3 < 0.9],
    ids=["True", "False", "evaluated-comparison", "bool-tensor", "lambda-True", "ignores-value"],
)
def test_a_condition_that_cannot_read_the_value_is_refused(condition):
    """02's `same-choices` survived its sabotage: claim(name, same, True, ...) always held."""
    with pytest.raises(
        TypeError, match=r"claim\('c'\): `condition` (must be a function|never reads)"
    ):
        claim("c", 0.3, condition, "t")


@pytest.mark.parametrize("value", [True, torch.tensor(False)], ids=["bool", "bool-tensor"])
def test_a_bool_value_is_refused(value):
    with pytest.raises(TypeError, match=r"`value` is a bool .*pass the number"):
        claim("c", value, lambda v: v, "t")


def test_conditions_that_read_the_value_are_accepted(capsys, monkeypatch):
    monkeypatch.setenv("COURSE_QUICK", "0")
    outer = 0.5

    def nested(v):
        return (lambda: v < outer)()  # reads v through a closure

    claim("a", 0.3, nested, "t")
    claim("b", 0.3, outer.__gt__, "t")  # no Python bytecode: accepted
    claim("c", 0.3, lambda v, limit=outer: v < limit, "t")
    assert capsys.readouterr().out.count("CLAIM ok") == 3


@pytest.mark.parametrize(
    "kwargs, match",
    [
        ({"name": "two words"}, "`name` must be a short id"),
        ({"text": 3}, "`text` must be the sentence"),
        ({"condition": "yes"}, "`condition` must be a function of the value"),
    ],
)
def test_bad_arguments_name_the_argument(kwargs, match):
    args = {"name": "ok", "value": 1.0, "condition": lambda v: v > 0, "text": "t"} | kwargs
    with pytest.raises(TypeError, match=match):
        claim(**args)


def test_claims_in_reads_verdicts_from_an_executed_notebook():
    cell = nbformat.v4.new_code_cell("")
    cell.outputs = [
        nbformat.v4.new_output(
            "stream",
            name="stdout",
            text="hello\nCLAIM ok   [a] x: 1.000 (holds)\nCLAIM FAIL [b] y: 2.000 (expected < 1)\n"
            "CLAIM full [c] z: 3.000 (checked in the full run, where it needs < 1)\n",
        ),
        nbformat.v4.new_output("stream", name="stdout", text="CLAIM ok   [b] y again: 0.5\n"),
    ]
    nb = nbformat.v4.new_notebook(cells=[cell])
    assert claims_in(nb) == {"a": True, "b": True, "c": False}

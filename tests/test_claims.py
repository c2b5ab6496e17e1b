"""course_lib.claims: a sentence checked against its number; course_kit.nbrun reads them."""

from __future__ import annotations

import nbformat
import pytest
import torch

from course_kit.nbrun import claims_in
from course_lib.claims import ClaimFailed, claim


def test_true_claim_prints_its_number_and_returns_true(capsys, monkeypatch):
    monkeypatch.setenv("COURSE_QUICK", "0")
    assert claim("seam-cheaper", 0.4123, lambda v: v < 0.9, "the cut is cheaper", expect="< 0.9")
    out = capsys.readouterr().out
    assert out.strip() == "CLAIM ok   [seam-cheaper] the cut is cheaper: 0.412 (holds: < 0.9)"


def test_false_claim_raises_in_default_mode_and_names_the_number(capsys, monkeypatch):
    monkeypatch.setenv("COURSE_QUICK", "0")
    monkeypatch.delenv("NBGRADER_EXECUTION", raising=False)
    with pytest.raises(ClaimFailed, match=r"\[psnr\].*computed 12\.500"):
        claim("psnr", 12.5, lambda v: v > 20, "the copy is sharp", expect="> 20 dB")
    assert "CLAIM FAIL [psnr]" in capsys.readouterr().out


def test_false_claim_only_reports_in_quick_mode(capsys, monkeypatch):
    monkeypatch.setenv("COURSE_QUICK", "1")
    assert claim("psnr", torch.tensor(12.5), False, "the copy is sharp") is False
    assert "CLAIM FAIL [psnr] the copy is sharp: 12.500 (does not hold)" in capsys.readouterr().out


def test_strict_setting_overrides_the_mode(monkeypatch):
    monkeypatch.setenv("COURSE_QUICK", "1")
    monkeypatch.setenv("COURSE_CLAIMS", "strict")
    with pytest.raises(ClaimFailed):
        claim("x", 1, False, "t")
    monkeypatch.setenv("COURSE_QUICK", "0")
    monkeypatch.setenv("COURSE_CLAIMS", "report")
    assert claim("x", 1, False, "t") is False


def test_nan_never_holds(monkeypatch):
    monkeypatch.setenv("COURSE_QUICK", "1")
    assert claim("n", float("nan"), lambda v: True, "anything") is False


@pytest.mark.parametrize(
    "kwargs, match",
    [
        ({"name": "two words"}, "`name` must be a short id"),
        ({"text": 3}, "`text` must be the sentence"),
        ({"condition": "yes"}, "`condition` must be a bool or a function"),
    ],
)
def test_bad_arguments_name_the_argument(kwargs, match):
    args = {"name": "ok", "value": 1.0, "condition": True, "text": "t"} | kwargs
    with pytest.raises(TypeError, match=match):
        claim(**args)


def test_claims_in_reads_verdicts_from_an_executed_notebook():
    cell = nbformat.v4.new_code_cell("")
    cell.outputs = [
        nbformat.v4.new_output(
            "stream",
            name="stdout",
            text="hello\nCLAIM ok   [a] x: 1.000 (holds)\nCLAIM FAIL [b] y: 2.000 (expected < 1)\n",
        ),
        nbformat.v4.new_output("stream", name="stdout", text="CLAIM ok   [b] y again: 0.5\n"),
    ]
    nb = nbformat.v4.new_notebook(cells=[cell])
    assert claims_in(nb) == {"a": True, "b": True}

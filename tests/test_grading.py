"""course_lib.grading: checks pass on right answers and explain wrong ones."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from course_lib import grading


def test_check_close_reports_the_largest_difference_and_where():
    expected = torch.zeros(2, 3)
    actual = expected.clone()
    actual[1, 2] = 0.5
    with pytest.raises(grading.CheckFailed) as err:
        grading.check_close("G", actual, expected, hint="divide by C*H*W")
    msg = str(err.value)
    assert "1 of 6 entries" in msg and "(1, 2)" in msg and "0.5" in msg
    assert "Hint: divide by C*H*W" in msg
    grading.check_close("G", expected + 1e-8, expected)
    grading.check_close("a", np.arange(3), [0, 1, 2])


def test_check_close_shape_and_nan():
    with pytest.raises(grading.CheckFailed, match=r"shape \(3,\)"):
        grading.check_close("v", torch.zeros(2), torch.zeros(3))
    with pytest.raises(grading.CheckFailed, match="differ"):
        grading.check_close("v", torch.tensor([float("nan")]), torch.tensor([0.0]))


def test_shape_dtype_type_finite_true():
    grading.check_shape("G", torch.zeros(2, 3, 3), (2, None, 3))
    with pytest.raises(grading.CheckFailed, match=r"shape \(2, 3\); got \(3, 2\)"):
        grading.check_shape("G", torch.zeros(3, 2), (2, 3))
    with pytest.raises(grading.CheckFailed, match="did the function return"):
        grading.check_shape("G", None, (2, 3))
    grading.check_dtype("path", np.zeros(3, np.int64), "integer")
    grading.check_dtype("path", torch.zeros(3, dtype=torch.int32), "integer")
    with pytest.raises(grading.CheckFailed, match="dtype integer"):
        grading.check_dtype("path", np.zeros(3), "integer")
    grading.check_dtype("mask", torch.zeros(2, dtype=torch.bool), "bool")
    grading.check_type("loss", torch.tensor(1.0), torch.Tensor)
    with pytest.raises(grading.CheckFailed, match="should be a Tensor; got float"):
        grading.check_type("loss", 1.0, torch.Tensor)
    with pytest.raises(grading.CheckFailed, match="1 NaN"):
        grading.check_finite("x", torch.tensor([0.0, float("inf")]))
    with pytest.raises(grading.CheckFailed, match="symmetric"):
        grading.check_true(False, "G should be symmetric")


def test_check_raises_and_check_implemented():
    def boom():
        raise ValueError("no")

    grading.check_raises("f", boom, ValueError)
    with pytest.raises(grading.CheckFailed, match="returned without an error"):
        grading.check_raises("f", lambda: 1, ValueError)
    with pytest.raises(grading.CheckFailed, match="it raised TypeError"):
        grading.check_raises("f", lambda: int([]), ValueError)

    def todo(x):
        raise NotImplementedError()

    with pytest.raises(grading.CheckFailed, match="todo is not implemented yet"):
        grading.check_implemented(todo, 1)
    assert grading.check_implemented(lambda x: x + 1, 1) == 2
    assert issubclass(grading.CheckFailed, AssertionError)


# ---- stand-ins: stand_ins() and Recorded tables ----------------------------------------------


def _table(fn, *calls):
    rec = grading.Recorder(fn, "fn")
    for args in calls:
        rec(*args)
    return rec.table()


def test_recorded_answers_only_recorded_inputs_and_says_so():
    x = torch.rand(2, 3, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    table = grading.Recorded("gram_matrix", _table(lambda t: t @ t.T, (x,)))
    got = table(x.clone())
    assert isinstance(got, torch.Tensor) and got.dtype == torch.float64
    torch.testing.assert_close(got, x @ x.T)
    got.add_(1)  # a caller changing the answer does not change the table
    torch.testing.assert_close(table(x), x @ x.T)
    torch.testing.assert_close(table(x + 1e-9), x @ x.T)  # floats are rounded before lookup
    with pytest.raises(grading.StandInError, match="gram_matrix.*did not record"):
        table(x + 1e-3)
    with pytest.raises(grading.StandInError):
        table(x.T)  # another shape


def test_recorded_numpy_sequences_and_keywords():
    mask = np.eye(3, dtype=bool)
    table = grading.Recorded(
        "block_mask",
        _table(lambda e, o, *, left=False: (mask, o, [e.sum()]), (np.ones((3, 3)), 2)),
    )
    answer = table(np.ones((3, 3)), 2)
    assert isinstance(answer[0], np.ndarray) and answer[0].dtype == bool and answer[1] == 2
    with pytest.raises(grading.StandInError, match="keywords \\['left'\\]"):
        table(np.ones((3, 3)), 2, left=True)


def test_stand_ins_swap_restore_and_close_even_after_an_error():
    namespace: dict = {}
    exec("def gram(x):\n    return 'real'\n\ndef loss(x):\n    return gram(x)", namespace)
    loss = namespace["loss"]
    table = grading.Recorded("gram", _table(lambda x: "recorded", (1,)))
    with pytest.raises(ZeroDivisionError):
        with grading.stand_ins(loss, gram=table, helper=len):
            assert loss(1) == "recorded" and namespace["helper"] is len
            raise ZeroDivisionError("the test fails inside the block")
    assert loss(1) == "real" and "helper" not in namespace  # restored, the new name removed
    with pytest.raises(grading.StandInError, match="closed"):
        table(1)  # emptied: a function that kept it cannot look anything up later
    assert grading.with_stand_ins(loss, lambda: loss(2), gram=lambda x: x * 10) == 20
    with pytest.raises(TypeError, match="`fn` must be a function"):
        grading.stand_ins(object(), gram=len)

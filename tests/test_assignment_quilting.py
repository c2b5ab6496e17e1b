"""The `quilting` assignment (solutions/quilting/quilting.ipynb).

(a) The solution's functions, as written in the notebook, against independent computations
(explicit loops, a brute force over every connected boundary). (b) The grade cells pass for the
solution and fail for realistic student mistakes, made by editing the solution's source.
"""

from __future__ import annotations

import itertools
from functools import partial

import numpy as np
import pytest
from source_notebook import (
    grade_ids,
    hidden_share,
    namespace,
    run_every_grade_cell,
    run_grade_cell,
)

from course_kit.nbrun import ROOT, tagged_namespace

NB = ROOT / "solutions" / "quilting" / "quilting.ipynb"


_namespace = partial(namespace, NB)  # the tagged cells, with ``old -> new`` edits by grade id
_run_grade_cell = partial(run_grade_cell, NB)
GRADE_CELLS = grade_ids(NB)


@pytest.fixture(scope="module")
def ns() -> dict:
    return tagged_namespace(NB)


def _paths(h: int, w: int):
    """Every connected top-to-bottom boundary of an (h, w) overlap, by brute force."""
    for path in itertools.product(range(w), repeat=h):
        if all(abs(a - b) <= 1 for a, b in zip(path, path[1:])):
            yield path


# ----------------------------------------------------------------------------- (a) solution


def test_overlap_error_matches_loop(ns):
    r = np.random.default_rng(0)
    a, b = r.random((3, 5, 2)), r.random((3, 5, 2))
    e = ns["overlap_error"](a, b)
    assert e.shape == (3, 5) and e.dtype == np.float64
    for h, w in itertools.product(range(3), range(5)):
        assert e[h, w] == pytest.approx(
            (a[h, w, 0] - b[h, w, 0]) ** 2 + (a[h, w, 1] - b[h, w, 1]) ** 2
        )
    with pytest.raises(ValueError, match=r"\(3, 5, 2\) and \(3, 4, 2\)"):
        ns["overlap_error"](a, b[:, :4])


@pytest.mark.parametrize("shape", [(1, 1), (1, 4), (5, 1), (4, 3), (5, 4), (3, 6)])
def test_boundary_cut_is_the_brute_force_minimum_with_ties_to_smaller_columns(ns, shape):
    r = np.random.default_rng(sum(shape))
    for _ in range(5):
        err = r.integers(0, 3, size=shape).astype(float)  # many ties
        best = min(
            _paths(*shape), key=lambda p: (sum(err[i, p[i]] for i in range(len(p))), p[::-1])
        )
        path = ns["min_error_boundary_cut"](err)
        assert path.dtype == np.int64
        assert tuple(path) == best


def test_boundary_cut_errors(ns):
    for bad in (np.zeros(3), np.zeros((0, 2)), np.zeros((2, 0)), np.zeros((2, 2, 2))):
        with pytest.raises(ValueError, match="`error`"):
            ns["min_error_boundary_cut"](bad)


def test_masks(ns):
    r = np.random.default_rng(3)
    err = r.random((6, 6))
    mask = ns["cut_mask"](err[:, :2])
    path = ns["min_error_boundary_cut"](err[:, :2])
    assert mask.dtype == bool
    assert all(mask[i].tolist() == [j >= path[i] for j in range(2)] for i in range(6))
    both = ns["block_mask"](err, 2, left=True, top=True)
    left = ns["block_mask"](err, 2, left=True, top=False)
    top = ns["block_mask"](err, 2, left=False, top=True)
    np.testing.assert_array_equal(both, left & top)
    np.testing.assert_array_equal(top[:2], ns["cut_mask"](err[:2].T).T)
    assert left[:, 2:].all() and top[2:].all()


def test_candidate_errors_matches_loop(ns):
    r = np.random.default_rng(4)
    tex, target = r.random((9, 8, 3)), r.random((4, 4, 3))
    valid = np.zeros((4, 4), bool)
    valid[:, :2] = valid[:1] = True
    got = ns["candidate_errors"](tex, target, valid)
    assert got.shape == (6, 5)
    for y, x in itertools.product(range(6), range(5)):
        d = ((tex[y : y + 4, x : x + 4] - target) ** 2).sum(-1)
        assert got[y, x] == pytest.approx(d[valid].sum(), abs=1e-10)


def test_quilt_reproducible_and_made_of_texture_pixels(ns):
    tex = np.random.default_rng(5).random((16, 17, 3))
    kw = dict(block_size=6, overlap=2, tolerance=0.1)
    a = ns["quilt"](tex, (20, 13), rng=np.random.default_rng(9), **kw)
    b = ns["quilt"](tex, (20, 13), rng=np.random.default_rng(9), **kw)
    assert a.shape == (20, 13, 3)
    np.testing.assert_array_equal(a, b)
    pixels = {tuple(p) for p in tex.reshape(-1, 3)}
    assert all(tuple(p) in pixels for p in a.reshape(-1, 3))
    with pytest.raises(TypeError, match="rng"):
        ns["quilt"](tex, 10, rng=0, **kw)
    with pytest.raises(ValueError, match="overlap"):
        ns["quilt"](tex, 10, block_size=6, overlap=6, tolerance=0.1, rng=np.random.default_rng())


# ----------------------------------------------------------------------------- (b) grade cells


def test_solution_passes_every_grade_cell():
    assert run_every_grade_cell(NB) >= 10


def test_points_mostly_hidden():
    assert hidden_share(NB) > 0.5


MISTAKES = {
    "error averaged over channels": (
        {"overlap_error": [("diff2.sum(axis=-1)", "diff2.mean(axis=-1)")]},
        ["overlap_error_visible", "overlap_error_hidden"],
    ),
    "error not squared": (
        {"overlap_error": [("diff2 = (a - b) ** 2", "diff2 = np.abs(a - b)")]},
        ["overlap_error_hidden"],
    ),
    "seam not connected (argmin per row)": (
        {
            "min_error_boundary_cut": [
                ("path = np.empty(height, dtype=np.int64)", "return np.argmin(e, axis=1)")
            ]
        },
        ["cut_visible", "cut_hidden_bruteforce"],
    ),
    "ties to the larger column": (
        {
            "min_error_boundary_cut": [
                (
                    "path[-1] = int(np.argmin(cost[-1]))",
                    "path[-1] = width - 1 - int(np.argmin(cost[-1][::-1]))",
                ),
                (
                    "path[i] = lo + int(np.argmin(cost[i, lo:hi]))",
                    "path[i] = hi - 1 - int(np.argmin(cost[i, lo:hi][::-1]))",
                ),
            ]
        },
        ["cut_hidden_ties"],
    ),
    "greedy seam from the top": (
        {
            "min_error_boundary_cut": [
                ("cost[i] += np.minimum", "cost[i] += 0 * np.minimum"),
            ]
        },
        ["cut_hidden_bruteforce"],
    ),
    "mask strictly right of the seam": (
        {"cut_mask": [(">= path[:, None]", "> path[:, None]")]},
        ["cut_mask_visible", "cut_mask_hidden"],
    ),
    "L-shaped overlap combined with OR": (
        {
            "block_mask": [
                (
                    "mask[:overlap, :] &= cut_mask(error[:overlap, :].T).T",
                    "mask[:overlap, :] = cut_mask(error[:overlap, :].T).T | (~mask[:overlap, :])",
                )
            ]
        },
        ["block_mask_hidden"],
    ),
    "top strip cut without transposition": (
        {
            "block_mask": [
                (
                    "mask[:overlap, :] &= cut_mask(error[:overlap, :].T).T",
                    "mask[:overlap, :] &= cut_mask(error[:overlap, :])",
                )
            ]
        },
        ["block_mask_visible", "block_mask_hidden"],
    ),
    "quilt draws from the global NumPy generator": (
        {"quilt": [("int(rng.choice(good))", "int(np.random.choice(good))")]},
        ["quilt_visible", "quilt_hidden_basic"],
    ),
    "quilt ignores the overlap error": (
        {"quilt": [("<= (1 + tolerance) * errors.min()", "<= np.inf")]},
        ["quilt_hidden_structure"],
    ),
    "quilt forgets to crop": (
        {"quilt": [("return canvas[:out_h, :out_w]", "return canvas")]},
        ["quilt_visible", "quilt_hidden_basic"],
    ),
}


@pytest.mark.parametrize("mistake", list(MISTAKES))
def test_grade_cells_catch_mistake(mistake):
    mutations, failing = MISTAKES[mistake]
    namespace = _namespace(mutations)
    for gid in failing:
        with pytest.raises(AssertionError):
            _run_grade_cell(namespace, gid)

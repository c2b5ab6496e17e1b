"""The `quilting` assignment (solutions/quilting/quilting.ipynb).

(a) The solution's functions, as written in the notebook, against independent computations
(explicit loops, a brute force over every connected boundary). (b) The grade cells report results
that the judge compares with the solution's; a table of realistic student mistakes (made by
editing the solution's source) measures which lose points: every one must, and only in the tests
of the function where it is made.
"""

from __future__ import annotations

import itertools

import numpy as np
import pytest
from source_notebook import (
    check_grading,
    check_local_equals_judged,
    check_mistake,
    check_named_in_a_visible_cell,
    check_stand_ins,
    grade_ids,
)

from course_kit.nbrun import ROOT, tagged_namespace

NB = ROOT / "solutions" / "quilting" / "quilting.ipynb"


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


def _transfer_loop(ns, texture, target, previous, b, o, alpha):
    """One transfer pass written with explicit loops over candidate positions (no correlation)."""
    th, tw = target.shape[:2]
    step = b - o
    rows, cols = (max(1, -(-(n - o) // step)) for n in (th, tw))
    hh, ww = rows * step + o, cols * step + o
    tgt = np.pad(target, ((0, hh - th), (0, ww - tw), (0, 0)), mode="edge").mean(-1)
    prev = None
    if previous is not None:
        prev = np.pad(previous, ((0, hh - th), (0, ww - tw), (0, 0)), mode="edge")
    canvas = np.zeros((hh, ww, texture.shape[2]))
    for i, j in itertools.product(range(rows), range(cols)):
        y, x = i * step, j * step
        region = canvas[y : y + b, x : x + b]
        best, where = np.inf, None
        for ty, tx in itertools.product(
            range(texture.shape[0] - b + 1), range(texture.shape[1] - b + 1)
        ):
            blk = texture[ty : ty + b, tx : tx + b]
            e = (1 - alpha) * ((blk.mean(-1) - tgt[y : y + b, x : x + b]) ** 2).sum()
            sq = ((blk - region) ** 2).sum(-1)
            if j > 0:
                e += alpha * sq[:, :o].sum()
            if i > 0:
                e += alpha * sq[:o, :].sum() - (alpha * sq[:o, :o].sum() if j > 0 else 0)
            if prev is not None:
                e += alpha * ((blk - prev[y : y + b, x : x + b]) ** 2).sum()
            if e < best - 1e-12:
                best, where = e, (ty, tx)
        blk = texture[where[0] : where[0] + b, where[1] : where[1] + b]
        keep = np.ones((b, b), bool)
        if i or j:
            keep = ns["block_mask"](((blk - region) ** 2).sum(-1), o, left=j > 0, top=i > 0)
        region[keep] = blk[keep]
    return canvas[:th, :tw]


@pytest.mark.parametrize("alpha, with_previous", [(0.0, False), (0.4, False), (0.7, True)])
def test_transfer_step_matches_a_loop(ns, alpha, with_previous):
    r = np.random.default_rng(7)
    tex, target = r.random((9, 10, 3)), r.random((11, 8, 1))
    prev = r.random((11, 8, 3)) if with_previous else None
    got = ns["transfer_step"](tex, target, prev, block_size=5, overlap=2, alpha=alpha)
    np.testing.assert_allclose(got, _transfer_loop(ns, tex, target, prev, 5, 2, alpha))


def test_texture_transfer_schedule_and_result(ns):
    r = np.random.default_rng(8)
    tex, target = r.random((20, 20, 3)), r.random((12, 12, 3))
    out = ns["texture_transfer"](tex, target, block_size=9, iterations=3)
    prev = None
    for i, b in enumerate([9, 6, 4]):  # B * 2**i // 3**i; overlap max(1, B // 6) = 1
        alpha = 0.8 * i / 2 + 0.1  # 0.1, 0.5, 0.9
        prev = ns["transfer_step"](tex, target, prev, block_size=b, overlap=1, alpha=alpha)
    np.testing.assert_array_equal(out, prev)
    # a target that is a crop of the texture is rendered back exactly (correspondence error 0)
    crop = tex[3:14, 5:16]  # (11, 11): the grid of blocks 6, overlap 1 covers it exactly
    again = ns["texture_transfer"](tex, crop, block_size=6, iterations=1)
    np.testing.assert_allclose(again, crop)


# ----------------------------------------------------------------------------- (b) grade cells

OWNERS = [  # grade-id prefix -> the function its cells test (longest prefixes first)
    ("overlap_error_", "overlap_error"),
    ("cut_mask_", "cut_mask"),
    ("cut_", "min_error_boundary_cut"),
    ("block_mask_", "block_mask"),
    ("quilt_", "quilt"),
    ("transfer_step_", "transfer_step"),
    ("texture_transfer_", "texture_transfer"),
]


def test_every_grade_cell_reports_the_solution_scores_full_marks_a_third_visible():
    check_grading(NB, total=22, min_cells=18)


def test_test_cells_hold_no_reference_code():
    """Stand-ins are plainly different functions or the solution's recorded answers (fresh, and
    not for the inputs of the function's own tests); none is a reference implementation."""
    check_stand_ins(NB)


ROWS = "    rows, cols = (max(1, int(np.ceil((n - overlap) / step))) for n in (out_h, out_w))\n"

MISTAKES = {
    "error averaged over channels": {
        "overlap_error": [("diff2.sum(axis=-1)", "diff2.mean(axis=-1)")]
    },
    "error not squared": {"overlap_error": [("diff2 = (a - b) ** 2", "diff2 = np.abs(a - b)")]},
    "error broadcasts different shapes": {
        "overlap_error": [("if a.shape != b.shape:", "if False:")]
    },
    "error sums 2-D inputs over their columns": {
        "overlap_error": [
            ("return diff2 if diff2.ndim == 2 else diff2.sum(axis=-1)", "return diff2.sum(axis=-1)")
        ]
    },
    "seam not connected (argmin per row)": {
        "min_error_boundary_cut": [
            ("path = np.empty(height, dtype=np.int64)", "return np.argmin(e, axis=1)")
        ]
    },
    "ties to the larger column": {
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
    "greedy seam (no accumulated cost)": {
        "min_error_boundary_cut": [("cost[i] += np.minimum", "cost[i] += 0 * np.minimum")]
    },
    "backtracking over the whole row": {
        "min_error_boundary_cut": [
            ("lo, hi = max(path[i + 1] - 1, 0), min(path[i + 1] + 2, width)", "lo, hi = 0, width")
        ]
    },
    "greedy top-down seam": {
        "min_error_boundary_cut": [
            (
                "    path[-1] = int(np.argmin(cost[-1]))\n"
                "    for i in range(height - 2, -1, -1):\n"
                "        lo, hi = max(path[i + 1] - 1, 0), min(path[i + 1] + 2, width)\n"
                "        path[i] = lo + int(np.argmin(cost[i, lo:hi]))",
                "    path[0] = int(np.argmin(e[0]))\n"
                "    for i in range(1, height):\n"
                "        lo, hi = max(path[i - 1] - 1, 0), min(path[i - 1] + 2, width)\n"
                "        path[i] = lo + int(np.argmin(e[i, lo:hi]))",
            )
        ]
    },
    "backtracking on the raw errors": {
        "min_error_boundary_cut": [
            (
                "path[i] = lo + int(np.argmin(cost[i, lo:hi]))",
                "path[i] = lo + int(np.argmin(e[i, lo:hi]))",
            )
        ]
    },
    "backtracking looks at columns j-1..j only": {
        "min_error_boundary_cut": [("min(path[i + 1] + 2, width)", "min(path[i + 1] + 1, width)")]
    },
    "block_mask strip one column too wide": {
        "block_mask": [
            (
                "mask[:, :overlap] &= cut_mask(error[:, :overlap])",
                "mask[:, : overlap + 1] &= cut_mask(error[:, : overlap + 1])",
            )
        ]
    },
    "neighbours wrap around the overlap": {
        "min_error_boundary_cut": [
            ("left = np.concatenate(([np.inf], above[:-1]))", "left = np.roll(above, 1)"),
            ("right = np.concatenate((above[1:], [np.inf]))", "right = np.roll(above, -1)"),
        ]
    },
    "seam of floats": {
        "min_error_boundary_cut": [("np.empty(height, dtype=np.int64)", "np.empty(height)")]
    },
    "mask strictly right of the seam": {"cut_mask": [(">= path[:, None]", "> path[:, None]")]},
    "mask inverted": {"cut_mask": [(">= path[:, None]", "< path[:, None]")]},
    "mask from the argmin of each row": {
        "cut_mask": [
            ("path = min_error_boundary_cut(error)", "path = np.argmin(np.asarray(error), axis=1)")
        ]
    },
    "mask of integers": {
        "cut_mask": [
            (">= path[:, None]  # (H, W)", ">= path[:, None]).astype(int)  # ("),
            ("return np.arange", "return (np.arange"),
        ]
    },
    "L-shaped overlap combined with OR": {
        "block_mask": [
            (
                "mask[:overlap, :] &= cut_mask(error[:overlap, :].T).T",
                "mask[:overlap, :] = cut_mask(error[:overlap, :].T).T | (~mask[:overlap, :])",
            )
        ]
    },
    "top strip cut without transposition": {
        "block_mask": [
            (
                "mask[:overlap, :] &= cut_mask(error[:overlap, :].T).T",
                "mask[:overlap, :] &= cut_mask(error[:overlap, :])",
            )
        ]
    },
    "left and top swapped": {
        "block_mask": [
            ("    if left:\n", "    if top:\n"),
            ("    if top:\n        mask[:overlap", "    if left:\n        mask[:overlap"),
        ]
    },
    "top strip ignored when there is a left one": {
        "block_mask": [("    if top:", "    elif top:")]
    },
    "no check of the overlap": {"block_mask": [("if not 1 <= overlap <= size:", "if False:")]},
    "quilt draws from the global NumPy generator": {
        "quilt": [("int(rng.choice(good))", "int(np.random.choice(good))")]
    },
    "quilt ignores the overlap error": {
        "quilt": [("<= (1 + tolerance) * errors.min()", "<= np.inf")]
    },
    "quilt forgets to crop": {"quilt": [("return canvas[:out_h, :out_w]", "return canvas")]},
    "quilt ignores the tolerance": {"quilt": [("(1 + tolerance) * errors.min()", "errors.min()")]},
    "quilt always cuts": {"quilt": [("if cut and (i > 0 or j > 0):", "if i > 0 or j > 0:")]},
    "quilt never cuts": {"quilt": [("if cut and (i > 0 or j > 0):", "if False:")]},
    "quilt compares the whole block, not the overlap": {
        "quilt": [
            (
                "valid = np.zeros((block_size, block_size), dtype=bool)",
                "valid = np.ones((block_size, block_size), dtype=bool)",
            )
        ]
    },
    "quilt compares the left strip of the first column too": {
        "quilt": [("valid[:, :overlap] |= j > 0", "valid[:, :overlap] = True")]
    },
    "quilt ignores the overlap (step B - 1)": {
        "quilt": [("step = block_size - overlap", "step = block_size - 1")]
    },
    "quilt draws the first block's x before y": {
        "quilt": [
            (
                "ty = int(rng.integers(0, height - block_size + 1))\n"
                "                tx = int(rng.integers(0, width - block_size + 1))",
                "tx = int(rng.integers(0, width - block_size + 1))\n"
                "                ty = int(rng.integers(0, height - block_size + 1))",
            )
        ]
    },
    "quilt's grid one block short": {
        "quilt": [
            (ROWS, "    rows, cols = (max(1, (n - overlap) // step) for n in (out_h, out_w))\n")
        ]
    },
    "transfer with alpha and 1 - alpha swapped": {
        "transfer_step": [
            ("errors = (1 - alpha) * candidate_errors", "errors = alpha * candidate_errors"),
            (
                "errors + alpha * candidate_errors(texture, region",
                "errors + (1 - alpha) * candidate_errors(texture, region",
            ),
            (
                "errors + alpha * candidate_errors(texture, prev",
                "errors + (1 - alpha) * candidate_errors(texture, prev",
            ),
        ]
    },
    "transfer ignores the previous pass": {
        "transfer_step": [("if prev is not None:", "if False:")]
    },
    "transfer compares the previous pass on the overlap only": {
        "transfer_step": [
            (
                "candidate_errors(texture, prev[window], ones)",
                "candidate_errors(texture, prev[window], np.zeros_like(ones) | (i > 0 or j > 0))",
            )
        ]
    },
    "transfer matches colours, not luminance": {
        "transfer_step": [
            (
                'lum_target = np.pad(target, pad, mode="edge").mean(axis=-1, keepdims=True)',
                'lum_target = np.pad(target, pad, mode="edge")',
            ),
            (
                "lum_texture = texture.mean(axis=-1, keepdims=True)",
                "lum_texture = texture if target.shape[2] == 3 else "
                "texture.mean(axis=-1, keepdims=True)",
            ),
        ]
    },
    "transfer without the cut": {
        "transfer_step": [
            (
                "            if i > 0 or j > 0:\n                keep",
                "            if False:\n                keep",
            )
        ]
    },
    "transfer pads the target with zeros": {
        "transfer_step": [
            ('lum_target = np.pad(target, pad, mode="edge")', "lum_target = np.pad(target, pad)")
        ]
    },
    "transfer without alpha on the overlap term": {
        "transfer_step": [
            (
                "errors + alpha * candidate_errors(texture, region",
                "errors + candidate_errors(texture, region",
            )
        ]
    },
    "transfer without the alpha check": {
        "transfer_step": [("if not 0 <= alpha <= 1:", "if False:")]
    },
    "iterations: blocks shrink by compounding the rounded size": {
        "texture_transfer": [
            (
                "size = max(3, block_size * 2**i // 3**i)",
                "size = max(3, block_size if i == 0 else size * 2 // 3)",
            )
        ]
    },
    "iterations: alpha over N instead of N - 1": {
        "texture_transfer": [
            (
                "0.8 * i / (iterations - 1) + 0.1 if iterations > 1 else 0.1",
                "0.8 * i / iterations + 0.1",
            )
        ]
    },
    "iterations: the previous pass is not passed on": {
        "texture_transfer": [
            ("texture, target, output, block_size", "texture, target, None, block_size")
        ]
    },
    "iterations: overlap can be 0": {
        "texture_transfer": [("overlap=max(1, size // 6)", "overlap=size // 6")]
    },
    "iterations: alpha constant": {"texture_transfer": [("alpha=alpha\n", "alpha=0.1\n")]},
    "iterations: no check of the count": {
        "texture_transfer": [("if iterations < 1:", "if False:")]
    },
}


VISIBLE_MESSAGES = {  # mistakes that a visible cell names (issue 30.2): mistake -> its message
    "greedy seam (no accumulated cost)": r"cumulative costs",
    "greedy top-down seam": r"not a greedy walk",
    "backtracking on the raw errors": r"cumulative costs \(not the\s+raw errors\)",
    "backtracking looks at columns j-1..j only": r"j - 1, j, j \+ 1",
    "L-shaped overlap combined with OR": r"logical AND",
    "block_mask strip one column too wide": r"columns :overlap",
    "quilt ignores the tolerance": r"not always the best",
    "quilt draws the first block's x before y": r"y drawn first",
    "error averaged over channels": r"not their mean",
}


@pytest.mark.parametrize("mistake", list(VISIBLE_MESSAGES))
def test_mistake_fails_a_visible_check_that_names_it(mistake):
    check_named_in_a_visible_cell(NB, MISTAKES[mistake], VISIBLE_MESSAGES[mistake])


def test_local_verdict_is_the_judged_verdict():
    """Every visible cell, for the solution and every mistake of the table: "visible tests
    passed" <=> the cell earns its points (30.1)."""
    check_local_equals_judged(NB, MISTAKES)


@pytest.mark.parametrize("mistake", list(MISTAKES))
def test_mistake_loses_points_only_in_its_own_tests(mistake):
    check_mistake(NB, mistake, MISTAKES[mistake], OWNERS)

"""The benchmark scripts still run: each, at a tiny size, prints a Markdown table whose rows hold
numbers. (Their timings are measured and committed in benchmarks/README.md, never asserted.)"""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from course_kit.nbrun import ROOT

CASES = {
    "benchmarks.efros_leung": ["--cases", "12:16:5", "--threads", "1"],
    "benchmarks.quilting": ["--sample", "48", "--block", "16", "--sizes", "48"],
    "benchmarks.style_transfer": ["--sizes", "32", "--steps", "1", "--rounds", "1"],
    "benchmarks.threads": "--scale 0.02 --repeats 1 --only small --threads 1".split(),
    "benchmarks.startup": ["--notebooks", "notebooks/00_start_here.ipynb", "--repeats", "1"],
    "benchmarks.setup_cost": ["--dry-run"],
    "benchmarks.grading": ["--students", "1", "--modes", "none", "--timeout", "30"],
    "benchmarks.grading_scale": ["--students", "2", "--no-dask", "--timeout", "30"],
    "benchmarks.gpu": ["--scale", "0.25", "--steps", "1", "--repeats", "1"],
}


@pytest.mark.parametrize("module", sorted(CASES))
def test_benchmark_prints_a_table(module: str) -> None:
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(ROOT)}
    done = subprocess.run(
        [sys.executable, "-m", module, *CASES[module]],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert done.returncode == 0, done.stderr[-2000:]
    rows = [line for line in done.stdout.splitlines() if line.startswith("|")]
    assert len(rows) >= 3, done.stdout  # header, separator, at least one measurement
    header, data = rows[0].split("|")[1:-1], rows[2].split("|")[1:-1]
    assert len(data) == len(header), (rows[0], rows[2])
    assert any(any(ch.isdigit() for ch in cell) for cell in data[1:]), rows[2]


def test_host_reads_counts_reads_by_our_code_and_restores_torch():
    import torch

    from benchmarks.gpu import host_reads

    before = dict(torch.Tensor.__dict__)
    x = torch.arange(6.0)
    with host_reads() as counts:
        int(x[2]), float(x[3]), x.tolist(), x.sum().item(), torch.nonzero(x > 2), bool(x[1])
        torch.optim.SGD([torch.zeros(2, requires_grad=True)], lr=0.1).step()  # torch's own: not
    assert dict(counts) == {
        "__int__": 1, "__float__": 1, "tolist": 1, "item": 1, "nonzero": 1, "__bool__": 1
    }  # fmt: skip
    assert dict(torch.Tensor.__dict__) == before and torch.nonzero.__module__ != __name__
    with host_reads() as counts:
        pass
    assert not counts and int(x[2]) == 2
    # the data-sized operations wait too: a boolean mask index, masked_select (x[i] does not)
    with host_reads() as counts:
        x[x > 2], x[:, None][x > 2, 0], x.masked_select(x > 1), torch.masked_select(x, x > 4)
        x[2], x[torch.tensor([0, 1])], x[1:3], x[None]
    assert dict(counts) == {"mask index": 2, "masked_select": 2}, dict(counts)
    assert dict(torch.Tensor.__dict__) == before and torch.masked_select.__module__ != __name__


def test_host_reads_counts_all_three_waits_per_level_of_efros_leung():
    """Notebook 02's `pick_exact` waits three times per dependency level on a GPU (the near
    windows' nonzero, then two boolean-mask picks): all three are counted."""
    import torch

    from benchmarks.gpu import host_reads
    from course_kit.nbrun import tagged_namespace

    ns = tagged_namespace(ROOT / "notebooks/02_efros_leung.ipynb")
    near = torch.tensor([[True, False, True], [False, True, True]])
    patches = torch.rand(3, 1, 9, dtype=torch.float64)
    templates, known = torch.rand(2, 1, 9), torch.ones(2, 9, dtype=torch.bool)
    gauss = torch.full((9,), 1 / 9, dtype=torch.float64)
    u = torch.tensor([0.2, 0.7], dtype=torch.float64)
    with host_reads() as counts:
        ns["pick_exact"](patches, templates, known, gauss, near, u, eps=0.1)
    assert dict(counts) == {"nonzero": 1, "mask index": 2}, dict(counts)


def test_image_analogy_reads_the_host_per_level_not_per_pixel():
    """The wavefront's host reads do not grow with the image: on a GPU it waits per level."""
    import torch

    from benchmarks.gpu import host_reads
    from course_kit.nbrun import tagged_namespace

    ns = tagged_namespace(ROOT / "notebooks/04_image_analogies.ipynb")
    reads = []
    for n in (16, 32):
        a = torch.rand(1, 1, n, n, generator=torch.Generator().manual_seed(n))
        with host_reads() as counts:
            ns["image_analogy"](a, 1 - a, a.flip(-1), levels=2, progress=False)
        reads.append(sum(counts.values()))
    assert reads[0] == reads[1] <= 4 * 2, reads  # a few per level, 2 levels
    with host_reads() as counts:  # the scan-line loop copies each level to NumPy and back
        ns["image_analogy"](a, 1 - a, a.flip(-1), levels=2, method="scan", progress=False)
    assert sum(counts.values()) > reads[1]


def test_quilting_reads_the_host_a_few_times_per_block():
    import torch

    from benchmarks.gpu import host_reads
    from course_kit.nbrun import tagged_namespace

    ns = tagged_namespace(ROOT / "notebooks/03_image_quilting.ipynb")
    texture = torch.rand(1, 3, 32, 32, generator=torch.Generator().manual_seed(0))
    per_block = []
    for size in (40, 72):  # 4 and 16 blocks of 12 with overlap 2
        history = []
        gen = torch.Generator().manual_seed(1)
        with host_reads() as counts:
            ns["quilt"](texture, size, block=12, overlap=2, generator=gen, history=history,
                        progress=False)  # fmt: skip
        per_block.append(sum(counts.values()) / len(history))
    assert max(per_block) <= 3.5, per_block  # choose_block: nonzero, the draw, the index


def test_quilting_notebooks_compact_efros_leung_waits_per_layer_not_per_pixel():
    """Notebook 03's one-cell Efros–Leung draws its pixels' choices on the device: its host reads
    grow with the onion layers (about n/2 of them), not with the n² pixels (it used to wait
    twice per pixel: the candidates' nonzero and the random pick's int)."""
    import torch

    from benchmarks.gpu import host_reads
    from course_kit.nbrun import tagged_namespace
    from course_lib import samples

    ns = tagged_namespace(ROOT / "notebooks/03_image_quilting.ipynb")
    sample = samples.load_sample("radishes", 12, channels=3)
    reads = []
    for n in (8, 12):
        with host_reads() as counts:
            out = ns["efros_leung"](
                sample, n, window=5, generator=torch.Generator().manual_seed(0), progress=False
            )
        reads.append(sum(counts.values()))
        assert out.shape == (1, 3, n, n)
        # every pixel is a copy of a window centre of the sample
        centres = sample[0, :, 2:-2, 2:-2].flatten(1).T  # (64, 3)
        pixels = out[0].flatten(1).T  # (n², 3)
        assert bool((pixels[:, None] == centres[None]).all(-1).any(1).all())
    assert reads[1] - reads[0] <= 16 and reads[1] < 12 * 12 / 2, reads

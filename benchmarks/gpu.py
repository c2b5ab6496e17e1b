"""Each notebook's main loop, as written in the notebook, timed on the CPU and on CUDA.

    .venv/bin/python -m benchmarks.gpu [--devices cpu cuda] [--scale 1.0] [--steps 5]
                                       [--repeats 3] [--only 02 06] [--threads N]

For every notebook with a main loop (02-14) the script loads the notebook's own functions from
its cells tagged ``testable`` (``course_kit.nbrun.tagged_namespace``), builds that loop's inputs
on each device, and times a small, fixed amount of the loop: one synthesis (02, 03, 04), or
``--steps`` optimisation or training steps (05-14). Image optimisations (05, 06, 07) use Adam, so
that every step is exactly one loss evaluation on both devices (the notebooks use L-BFGS, whose
line search evaluates the loss a varying number of times). Networks have random weights; nothing
is downloaded. Devices: ``cpu``, plus ``cuda`` when ``torch.cuda.is_available()``.

Per row and device: one warm-up call, then ``--repeats`` calls, each timed with
``time.perf_counter`` between two ``course_lib.device.synchronize(device)``; the table gives the
median and (min-max) wall seconds, and the CPU / CUDA ratio of the medians, measured in the same
run. After each CUDA call every tensor of the result (images, trained networks' parameters and
buffers) must be on CUDA: the "stays on device" column (a row that leaves one on the host is
marked "no" and the script exits with status 1). The last column counts the host reads of one
more call on the first device (:func:`host_reads`: the reads by name, ``nonzero``,
``masked_select`` and boolean-mask indexing): on CUDA each is a wait for the device. It is a
count of those calls, not a bound on a GPU run's waits (see :data:`HOST_READS`).
``--scale`` shrinks every image side (0.25 for the test); ``--steps`` sets the steps of rows
05-14.
"""

from __future__ import annotations

import argparse
import collections
import contextlib
import dataclasses
import functools
import math
import os
import platform
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path

import torch
from torch import nn

ROOT = Path(__file__).resolve().parent.parent

from course_kit.nbrun import tagged_namespace  # noqa: E402
from course_lib import domains, images, nets, samples, style_setup  # noqa: E402
from course_lib.device import synchronize  # noqa: E402
from course_lib.features import VGGFeatures  # noqa: E402
from course_lib.optim import optimize_image  # noqa: E402

NOTEBOOKS = ROOT / "notebooks"
Build = Callable[[dict, torch.device, float, int], tuple[str, Callable[[], object]]]


@dataclasses.dataclass(frozen=True)
class Row:
    """One notebook's main loop: ``build(ns, device, scale, steps)`` returns (what is timed, a
    call that runs it once and returns what it made)."""

    number: str
    title: str
    notebook: str
    loop: str
    build: Build


def side(base: int, scale: float, *, multiple: int = 1, least: int = 1) -> int:
    """``base × scale`` rounded to a multiple of ``multiple``, at least ``least``."""
    return max(least, multiple * round(base * scale / multiple))


def steps_of(n: int, what: str = "steps") -> str:
    """``"1 step"``, ``"5 steps"``; ``what`` is the plural."""
    return f"{n} {what[:-1] if n == 1 else what}"


def gen(seed: int) -> torch.Generator:
    """A fresh CPU generator: every call of a row draws the same numbers."""
    return torch.Generator().manual_seed(seed)


# ----------------------------------------------------------------- classic texture synthesis


def efros_leung(ns: dict, device, scale: float, steps: int):
    n, out = side(48, scale, least=16), side(96, scale, least=20)
    window = 11 if n >= 24 else 5
    sample = samples.load_sample("rocks", n, channels=3, device=device)  # (1, 3, n, n)

    def run():
        return ns["synthesise"](sample, out, window, seed=0, progress=False)  # (image, source)

    return f"{out}² from {n}², window {window}", run


def quilting(ns: dict, device, scale: float, steps: int):
    n, out, block = side(128, scale, least=32), side(256, scale, least=48), side(36, scale, least=9)
    texture = samples.load_sample("bricks", n, channels=3, device=device)
    overlap = max(1, block // 6)

    def run():
        return ns["quilt"](
            texture, out, block=block, overlap=overlap, generator=gen(2), progress=False
        )

    return f"{out}² from {n}², block {block}, overlap {overlap}", run


def analogies(ns: dict, device, scale: float, steps: int):
    levels = 2
    n = side(48, scale, multiple=2 ** (levels - 1), least=16)
    a = samples.load_sample("astronaut", n, channels=1, device=device)
    b = samples.load_sample("camera", n, channels=1, device=device)
    a_prime = ns["emboss"](a)  # the notebook's first example: A' = emboss(A)

    def run():
        return ns["image_analogy"](
            a, a_prime, b, levels=levels, kappa=0.5, remap=False, progress=False
        )

    return f"B' {n}² from A, A' {n}², {levels} levels", run


def portilla_simoncelli(ns: dict, device, scale: float, steps: int):
    n = side(128, scale, multiple=16, least=32)
    opts = dict(n_scales=4 if n >= 128 else 3, n_orientations=4, width=7)
    texture = samples.load_sample("rocks", n, channels=1, device=device)  # (1, 1, n, n)
    stats, loss = ns["ps_statistics"], ns["ps_loss"]

    def run():  # the notebook's synthesise_ps (an untagged cell), with Adam
        target = {k: v.detach() for k, v in stats(texture, **opts).items()}
        scales = ns["group_scales"](target)
        noise = torch.randn((1, 1, n, n), generator=gen(1)).to(texture)
        init = (texture.mean() + texture.std() * noise).clamp(0, 1)
        return optimize_image(
            lambda im: loss(stats(im, **opts), target, scales),
            init,
            steps=steps,
            method="adam",
            progress=False,
        )

    return f"{n}², {opts['n_scales']} scales: statistics + {steps_of(steps, 'Adam steps')}", run


# ----------------------------------------------------------------- optimising with VGG-19


def gatys_texture(ns: dict, device, scale: float, steps: int):
    n = side(96, scale, multiple=16, least=32)
    layers = ["relu1_1", "pool1", "pool2", "pool3", "pool4"]  # notebook 06's STYLE_LAYERS
    vgg = VGGFeatures(layers, weights="random", pooling="avg", seed=0).to(device)
    texture = samples.load_sample("radishes", n, channels=3, device=device)

    def run():
        return ns["synthesise_texture"](
            texture, vgg, layers=layers, size=n, steps=steps, generator=gen(2), method="adam"
        )

    return f"{n}², random VGG-19 to pool4, {steps_of(steps, 'Adam steps')}", run


def style_transfer(ns: dict, device, scale: float, steps: int):
    n = side(96, scale, multiple=16, least=32)
    layers = [*ns["STYLE_LAYERS"], ns["CONTENT_LAYER"]]
    vgg = VGGFeatures(layers, weights="random", pooling="avg").to(device)
    content = samples.load_sample("chelsea", n, channels=3, device=device)
    style = samples.load_sample("swirls", n, channels=3, device=device)

    def run():
        return ns["style_transfer"](content, style, vgg, steps=steps, method="adam", progress=False)

    return f"{n}², random VGG-19 to relu5_1, {steps_of(steps, 'Adam steps')}", run


# ----------------------------------------------------------------- feed-forward training


def fast_style(ns: dict, device, scale: float, steps: int):
    n, batch, width = side(64, scale, multiple=4, least=16), 4, 16
    layers = style_setup.style_layers(4)  # notebook 08's CPU settings, crops 64² (not 96²)
    settings = dict(content_layer="relu2_2", style_layers=layers, style_weight=5e3, tv_weight=1e-4)
    vgg = VGGFeatures(["relu2_2", *layers], weights="random").to(device)
    photos = style_setup.load_photos(style_setup.TRAIN_PHOTOS, 2 * n, device=device)
    style = samples.load_sample("swirls", 2 * n, device=device)
    with torch.no_grad():
        grams = {j: ns["gram_matrix"](f) for j, f in vgg(style).items() if j in layers}
    torch.manual_seed(0)
    net = ns["TransformerNet"](width=width).to(device)

    def run():
        ns["train_transformer"](
            net,
            vgg,
            photos,
            grams,
            steps=steps,
            size=n,
            batch=batch,
            generator=gen(0),
            loss_settings=settings,
        )
        return net

    return f"{steps_of(steps)}, {batch} crops {n}², width {width}", run


def adain(ns: dict, device, scale: float, steps: int):
    n, batch, depth = side(64, scale, multiple=4, least=16), 4, 3  # relu3_1, as on a CPU
    layers = style_setup.style_layers(depth)
    settings = dict(encoder_layer=f"relu{depth}_1", style_layers=layers, style_weight=10.0)
    vgg = VGGFeatures(layers, weights="random").to(device)
    photos = style_setup.load_photos(style_setup.TRAIN_PHOTOS, 2 * n, device=device)
    styles = style_setup.load_photos(["swirls", "mosaic", "waves", "bricks"], 2 * n, device=device)
    torch.manual_seed(0)
    decoder = ns["Decoder"](depth, slim=2).to(device)

    def run():
        ns["train_decoder"](
            decoder,
            vgg,
            photos,
            styles,
            steps=steps,
            size=n,
            batch=batch,
            generator=gen(0),
            lr=1e-3,
            loss_settings=settings,
        )
        return decoder

    return f"{steps_of(steps)}, {batch} pairs {n}², encoder relu{depth}_1", run


def pix2pix(ns: dict, device, scale: float, steps: int):
    n = side(64, scale, multiple=32, least=32)
    a, b = domains.paired("labels2texture", 16, n, seed=0)  # on the CPU, as in the notebook
    config = ns["Pix2PixConfig"](steps=steps, batch=8, ngf=8)

    def run():
        torch.manual_seed(0)  # dropout draws from the global RNG
        return ns["train_pix2pix"](a, b, config=config, device=device, generator=gen(1))

    return f"{steps_of(steps)}, batch 8 of {n}², ngf 8", run


def cyclegan(ns: dict, device, scale: float, steps: int):
    n = side(48, scale, multiple=4, least=16)
    a, b = domains.unpaired("bricks2grass", 16, n, seed=0)  # on the CPU, as in the notebook
    config = ns["CycleGANConfig"](steps=steps, batch=4, ngf=8, n_blocks=3, lambda_idt=0.0)

    def run():
        return ns["train_cyclegan"](a, b, config=config, device=device, generator=gen(1))

    return f"{steps_of(steps)}, batch 4 of {n}², ngf 8, 3 blocks", run


def unit(ns: dict, device, scale: float, steps: int):
    n, ngf = side(32, scale, multiple=4, least=32), 16
    a, b = domains.unpaired("bricks2grass", 16, n, seed=0)  # the notebook's make_domains
    b = ns["rotate_hue"](b, torch.rand(16, generator=gen(0)) * 2 * math.pi)
    model = nets.init_weights(ns["UNIT"](ngf=ngf), seed=0)
    disc = ns["make_discriminators"](ndf=ngf, device=device, seed=0)
    config = ns["TrainConfig"](steps=steps, batch=4, lr=1e-3)

    def run():
        ns["train"](
            model,
            disc,
            ns["unit_generator_objective"],
            a,
            b,
            config=config,
            generator=gen(0),
            device=device,
        )
        return model, disc

    return f"{steps_of(steps)}, batch 4 of {n}², ngf {ngf}", run


def cut(ns: dict, device, scale: float, steps: int):
    n = side(64, scale, multiple=4, least=16)
    g = gen(0)
    pools = [
        torch.cat([images.random_crop(photo, n, generator=g) for _ in range(16)])  # (16, 3, n, n)
        for photo in (samples.load_sample(m, 2 * n, channels=3) for m in ("chelsea", "waves"))
    ]
    patches = side(128, scale, least=16)
    config = ns["CUTConfig"](steps=steps, batch=4, num_patches=patches, ngf=16)

    def run():
        return ns["train_cut"](*pools, config=config, device=device)

    return f"{steps_of(steps)}, batch 4 of {n}², {patches} patches, ngf 16", run


def cooccurrence(ns: dict, device, scale: float, steps: int):
    n = side(128, scale, least=32)
    names = ["bricks", "tiles", "weave", "dots", "radishes", "rocks", "grass", "swirls"]
    imgs = torch.cat([samples.load_sample(m, n, channels=3) for m in names])  # CPU, as there
    torch.manual_seed(0)
    disc = ns["CooccurrenceDiscriminator"]()
    config = ns["CoocConfig"](steps=steps, batch=8)

    def run():
        return ns["train_cooccurrence"](disc, imgs, config=config, generator=gen(0), device=device)

    return f"{steps_of(steps)}, 8 images {n}², crops 16², 4 references", run


ROWS = [
    Row("02", "Efros–Leung", "02_efros_leung", "`synthesise` (`efros_leung_fast`)", efros_leung),
    Row("03", "image quilting", "03_image_quilting", "`quilt`, cut", quilting),
    Row("04", "image analogies", "04_image_analogies", "`image_analogy`", analogies),
    Row(
        "05",
        "Portilla–Simoncelli",
        "05_parametric_textures",
        "`ps_statistics` + `ps_loss`",
        portilla_simoncelli,
    ),
    Row(
        "06", "Gatys texture", "06_neural_texture_synthesis", "`synthesise_texture`", gatys_texture
    ),
    Row("07", "style transfer", "07_neural_style_transfer", "`style_transfer`", style_transfer),
    Row("08", "fast style transfer", "08_fast_style_transfer", "`train_transformer`", fast_style),
    Row("09", "AdaIN", "09_adain", "`train_decoder`", adain),
    Row("10", "pix2pix", "10_pix2pix", "`train_pix2pix`", pix2pix),
    Row("11", "CycleGAN", "11_cyclegan", "`train_cyclegan`", cyclegan),
    Row("12", "UNIT", "12_unit_munit", "`train` (UNIT objective)", unit),
    Row("13", "CUT", "13_cut_patchnce", "`train_cut`", cut),
    Row("14", "co-occurrence D", "14_texture_discrimination", "`train_cooccurrence`", cooccurrence),
]


# ----------------------------------------------------------------- measuring


@contextlib.contextmanager
def quiet():
    """Progress bars and notebook prints go nowhere (the table stays readable)."""
    with open(os.devnull, "w") as sink:
        with contextlib.redirect_stdout(sink), contextlib.redirect_stderr(sink):
            yield


def load(row: Row) -> dict:
    """The notebook's cells tagged ``testable``, run in quick mode (their set-up cells load
    small data sets at import; the sizes timed here are this script's own)."""
    saved = os.environ.get("COURSE_QUICK")
    os.environ["COURSE_QUICK"] = "1"
    try:
        with quiet():
            return tagged_namespace(NOTEBOOKS / f"{row.notebook}.ipynb")
    finally:
        if saved is None:
            os.environ.pop("COURSE_QUICK", None)
        else:
            os.environ["COURSE_QUICK"] = saved


def tensors(result: object) -> list[torch.Tensor]:
    """Every tensor in a result: tensors, networks' parameters and buffers, containers,
    dataclasses (``OptimResult``); NumPy arrays and floats are not on a device and are skipped."""
    if isinstance(result, torch.Tensor):
        return [result]
    if isinstance(result, nn.Module):
        return [*result.parameters(), *result.buffers()]
    if isinstance(result, dict):
        result = list(result.values())
    if dataclasses.is_dataclass(result) and not isinstance(result, type):
        result = [getattr(result, f.name) for f in dataclasses.fields(result)]
    if isinstance(result, (list, tuple)):
        return [t for item in result for t in tensors(item)]
    return []


# What brings a tensor's values to the host: on CUDA each call waits for the device. Counted
# when the kit's or a notebook's code makes the call (not torch's own internals, such as an
# optimiser reading its step counter, which it keeps on the CPU), on whatever device a row runs.
# Besides the reads by name, the operations whose output size depends on the data wait too:
# ``nonzero`` (method and function), ``masked_select``, and indexing with a boolean mask
# (``x[mask]``, counted as "mask index"). It is a COUNT of these calls, not a bound on a GPU
# run's waits either way: on the CPU a CPU tensor's ``int()`` (a random draw from a CPU
# generator, say) counts but would not wait on a GPU, and what is not listed here (``unique``,
# a ``torch.where`` with one argument, a mask assignment ``x[mask] = t``, a Python ``if`` on a
# tensor inside torch) waits without being counted.
HOST_READS = ("item", "tolist", "numpy", "cpu", "__int__", "__float__", "__bool__", "__index__")
DATA_SIZED = ("nonzero", "masked_select")
TORCH_DIR = str(Path(torch.__file__).parent)


def _is_mask(index: object) -> bool:
    """Whether an index (or one element of a tuple index) is a boolean tensor."""
    parts = index if isinstance(index, tuple) else (index,)
    return any(isinstance(p, torch.Tensor) and p.dtype == torch.bool for p in parts)


@contextlib.contextmanager
def host_reads():
    """Count, by name, the calls of :data:`HOST_READS` and :data:`DATA_SIZED` (method and
    function) and the boolean-mask indexings ("mask index") made inside the block: yields a
    ``collections.Counter`` filled as the block runs."""
    counts: collections.Counter = collections.Counter()

    def ours() -> bool:
        return not sys._getframe(2).f_code.co_filename.startswith(TORCH_DIR)

    def counting(name: str, method):
        @functools.wraps(method)
        def wrapper(*args, **kwargs):
            if ours():
                counts[name] += 1
            return method(*args, **kwargs)

        return wrapper

    getitem = torch.Tensor.__getitem__

    @functools.wraps(getitem)
    def masked_getitem(self, index):
        if _is_mask(index) and ours():
            counts["mask index"] += 1
        return getitem(self, index)

    own = {name: torch.Tensor.__dict__.get(name) for name in (*HOST_READS, *DATA_SIZED)}
    own["__getitem__"] = torch.Tensor.__dict__.get("__getitem__")
    functions = {name: getattr(torch, name) for name in DATA_SIZED}
    for name in (*HOST_READS, *DATA_SIZED):
        setattr(torch.Tensor, name, counting(name, getattr(torch.Tensor, name)))
    torch.Tensor.__getitem__ = masked_getitem
    for name, function in functions.items():
        setattr(torch, name, counting(name, function))
    try:
        yield counts
    finally:
        for name, function in functions.items():
            setattr(torch, name, function)
        for name, method in own.items():
            if method is None:  # inherited from torch._C.TensorBase: remove the wrapper
                delattr(torch.Tensor, name)
            else:
                setattr(torch.Tensor, name, method)


def reads_per_call(run: Callable[[], object]) -> int:
    """Host reads (see :func:`host_reads`) of one call of ``run``."""
    with quiet(), host_reads() as counts:
        run()
    return sum(counts.values())


def measure(run: Callable[[], object], device: torch.device, repeats: int):
    """Wall seconds of ``repeats`` calls after one warm-up, and the last call's result."""
    times = []
    with quiet():
        result = run()  # warm-up: allocations, cuDNN's choices, the FFT plans
        for _ in range(repeats):
            synchronize(device)
            start = time.perf_counter()
            result = run()
            synchronize(device)
            times.append(time.perf_counter() - start)
    return times, result


def spread(times: list[float]) -> str:
    """``median (min–max)`` with 3 significant digits."""
    return f"{statistics.median(times):.3g} ({min(times):.3g}–{max(times):.3g})"


def on_device(result: object, device: torch.device) -> str:
    """``yes`` when every tensor of ``result`` is on ``device``'s type, else ``no (…)``."""
    found = tensors(result)
    away = [t for t in found if t.device.type != device.type]
    if not found:
        return "— (no tensor in the result)"
    if not away:
        return "yes"
    where = ", ".join(sorted({t.device.type for t in away}))
    return f"no ({len(away)} of {len(found)} tensors on {where})"


def time_row(row: Row, ns: dict, devices: list[torch.device], args) -> tuple[str, dict, str, str]:
    """(what is timed, device type -> seconds or the error, stays-on-device text, host reads of
    one call on the first device, after the timed calls)."""
    work, cells, kept, reads = "", {}, "—", "—"
    for device in devices:
        try:
            torch.manual_seed(0)
            with quiet():
                work, run = row.build(ns, device, args.scale, args.steps)
            times, result = measure(run, device, args.repeats)
            if reads == "—":
                reads = str(reads_per_call(run))
        except Exception as err:  # noqa: BLE001 - reported in the table, the run goes on
            cells[device.type] = f"failed: {type(err).__name__}: {str(err)[:80]}"
            continue
        cells[device.type] = times
        if device.type == "cuda":
            kept = on_device(result, device)
    return work, cells, kept, reads


def machine_line(devices: list[torch.device], args) -> str:
    """torch, threads, the CPU's model and the GPU's name, and the run's settings."""
    cpu = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    gpu = (
        f"GPU {torch.cuda.get_device_name(0)}"
        if torch.cuda.is_available()
        else "no GPU (torch.cuda.is_available() is False)"
    )
    return (
        f"torch {torch.__version__}, {torch.get_num_threads()} CPU threads (OMP_NUM_THREADS="
        f"{os.environ.get('OMP_NUM_THREADS')}), {cpu}, {os.cpu_count()} CPUs; {gpu}; devices "
        f"{' '.join(d.type for d in devices)}; scale {args.scale}, {args.steps} steps, warm-up + "
        f"{args.repeats} repeats, wall seconds median (min–max)\n"
    )


def cell(cells: dict, name: str, missing: str) -> str:
    """A device's column: ``median (min–max)``, its error, or ``missing``."""
    value = cells.get(name)
    if value is None:
        return missing
    return value if isinstance(value, str) else spread(value)


def ratio(cells: dict) -> str:
    """CPU median / CUDA median, when both ran."""
    cpu, cuda = cells.get("cpu"), cells.get("cuda")
    if not isinstance(cpu, list) or not isinstance(cuda, list):
        return "—"
    return f"{statistics.median(cpu) / statistics.median(cuda):.2g}×"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--devices",
        nargs="+",
        choices=["cpu", "cuda"],
        default=None,
        help="default: cpu, and cuda when torch.cuda.is_available()",
    )
    parser.add_argument("--scale", type=float, default=1.0, help="image sides × this (0.25: tiny)")
    parser.add_argument("--steps", type=int, default=5, help="steps of rows 05-14")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--only", nargs="+", default=None, help="notebook numbers, e.g. 02 13")
    parser.add_argument(
        "--threads",
        type=int,
        default=None,
        help="torch CPU threads (default: the kit's policy, as pick_device())",
    )
    args = parser.parse_args()
    if args.scale <= 0 or args.steps < 1 or args.repeats < 1:
        parser.error(
            f"--scale > 0, --steps >= 1, --repeats >= 1; got {args.scale}, "
            f"{args.steps}, {args.repeats}"
        )
    names = args.devices or ["cpu"] + (["cuda"] if torch.cuda.is_available() else [])
    if "cuda" in names and not torch.cuda.is_available():
        parser.error("--devices cuda: torch.cuda.is_available() is False here")
    devices = [torch.device(n) for n in dict.fromkeys(names)]
    rows = [r for r in ROWS if args.only is None or r.number in args.only]
    if not rows:
        parser.error(f"--only {' '.join(args.only)}: no such notebook among 02-14")
    spaces = {row.number: load(row) for row in rows}  # their set-ups apply the thread policy
    if args.threads is not None:
        torch.set_num_threads(args.threads)

    no_cuda = "— (not run)" if torch.cuda.is_available() else "—, no CUDA here"
    print(machine_line(devices, args))
    print(
        "| notebook | main loop | work | cpu s | cuda s | cpu / cuda | stays on device "
        "| host reads per call (a count, not a bound) |"
    )
    print("|---|---|---|---|---|---|---|---|")
    status = 0
    for row in rows:
        work, cells, kept, reads = time_row(row, spaces[row.number], devices, args)
        failed = any(isinstance(v, str) for v in cells.values()) or kept.startswith("no")
        status = status or int(failed)
        print(
            f"| {row.number} {row.title} | {row.loop} | {work} | "
            f"{cell(cells, 'cpu', '— (not run)')} | {cell(cells, 'cuda', no_cuda)} | "
            f"{ratio(cells)} | {kept} | {reads} |",
            flush=True,
        )
    return status


if __name__ == "__main__":
    sys.exit(main())

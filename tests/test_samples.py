"""course_lib.samples: the catalogue loads offline, at the requested size, deterministically."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from course_lib import samples


def test_catalogue_covers_the_lecture():
    kinds = {s.kind for s in samples.list_samples()}
    assert kinds == {"texture", "photo", "style", "text"}
    regularity = {s.regularity for s in samples.list_samples("texture")}
    assert regularity == {"regular", "near-regular", "stochastic"}
    names = {s.name for s in samples.list_samples()}
    assert {"brick", "grass", "gravel", "astronaut", "grace_hopper", "text_page"} <= names
    table = samples.catalogue_table()
    assert "starry_night" in table and "procedural" in table


@pytest.mark.parametrize("sample", samples.list_samples(), ids=lambda s: s.name)
def test_every_sample_loads_in_range(sample):
    x = samples.load_sample(sample.name, 24)
    assert x.shape == (1, sample.channels, 24, 24) and x.dtype == torch.float32
    assert 0 <= float(x.min()) and float(x.max()) <= 1
    assert float(x.std()) > 0.01  # not blank


def test_sizes_channels_and_determinism():
    a = samples.load_sample("rocks", (16, 40), channels=1)
    assert a.shape == (1, 1, 16, 40)
    assert torch.equal(a, samples.load_sample("rocks", (16, 40), channels=1))
    g = samples.load_sample("grass", 8, channels=3)
    assert torch.equal(g[:, 0], g[:, 2])
    assert samples.load_sample("chelsea").shape == (1, 3, 300, 451)


@pytest.mark.parametrize(
    "size, error, words",
    [
        (96.5, TypeError, ["`size`", "an int or a pair of ints", "float 96.5", "e.g. 96"]),
        ("96", TypeError, ["`size`", "an int or a pair of ints", "str '96'", "not '96'"]),
        ((64, 32.0), TypeError, ["`size`", "pair of ints", "(64, 32.0)"]),
        (True, TypeError, ["`size`", "bool True"]),
        (5000, ValueError, ["`size`", "MAX_SIZE = 1024", "got 5000", "minutes"]),
        ((64, 2048), ValueError, ["`size`", "MAX_SIZE = 1024", "(64, 2048)"]),
        (0, ValueError, ["`size`", "between 1 and", "got 0"]),
    ],
)
def test_bad_sizes_name_the_argument_the_expectation_and_the_value(size, error, words):
    with pytest.raises(error) as info:
        samples.load_sample("bricks", size)
    for word in words:
        assert word in str(info.value), (word, str(info.value))


def test_sizes_up_to_the_documented_maximum_and_numpy_ints():
    assert samples.MAX_SIZE == 1024 and "1024" in samples.load_sample.__doc__
    assert samples.load_sample("text_photo", samples.MAX_SIZE).shape == (1, 1, 1024, 1024)
    x = samples.load_sample("bricks", np.int64(40))
    assert x.shape == (1, 3, 40, 40) and torch.equal(x, samples.load_sample("bricks", 40))
    assert samples.load_sample("bricks", [24, 40]).shape == (1, 3, 24, 40)


def test_catalogue_table_fits_its_width_without_breaking_words():
    for width in (80, 100):
        table = samples.catalogue_table(width)
        lines = table.splitlines()
        assert max(map(len, lines)) <= width
        # every description comes back whole when its continuation lines are joined
        col = lines[0].index("description")
        text = " ".join(line[col:].strip() for line in lines[1:])
        for s in samples.list_samples():
            assert s.description in text, s.description
        for d in samples.DOWNLOADS.values():
            assert d.description in text
        assert all(line[:col].strip() or line[col:] for line in lines)
    with pytest.raises(ValueError, match="`width`"):
        samples.catalogue_table(10)


def test_unknown_name_suggests_close_ones():
    with pytest.raises(ValueError, match="'bricks'"):
        samples.load_sample("brics")
    with pytest.raises(ValueError, match="`channels`"):
        samples.load_sample("bricks", channels=2)


def test_glyphs_are_centred_ink_on_paper():
    glyphs, fonts = samples.load_glyphs(["DejaVuSans.ttf", "DejaVuSerif.ttf"], "AIO", size=24)
    assert glyphs.shape == (2, 3, 1, 24, 24) and fonts == ["DejaVuSans.ttf", "DejaVuSerif.ttf"]
    assert float(glyphs[..., 0, :].max()) < 0.05  # margins are paper (0)
    ys, xs = torch.meshgrid(torch.arange(24.0), torch.arange(24.0), indexing="ij")
    o = glyphs[0, 2, 0]
    centre = ((o * xs).sum() / o.sum(), (o * ys).sum() / o.sum())
    assert abs(centre[0] - 11.5) < 1.5 and abs(centre[1] - 11.5) < 1.5
    assert not torch.allclose(glyphs[0], glyphs[1])  # fonts differ
    with pytest.raises(ValueError, match="`fonts`"):
        samples.load_glyphs(["Comic.ttf"])


def test_download_offline_names_the_alternatives(tmp_path, monkeypatch):
    monkeypatch.setenv("COURSE_KIT_CACHE", str(tmp_path))
    with pytest.raises(RuntimeError, match="swirls"):
        samples.download("starry_night")
    assert not list(tmp_path.iterdir())  # nothing half-written
    with pytest.raises(ValueError, match="download"):
        samples.load_sample("starry_night")


def test_download_checks_the_pinned_hash(tmp_path, monkeypatch):
    import hashlib

    monkeypatch.setenv("COURSE_KIT_CACHE", str(tmp_path))
    from course_lib.images import to_pil

    payload = tmp_path / "src.jpg"
    to_pil(torch.rand(1, 3, 8, 8)).save(payload)
    url = payload.as_uri()
    good = samples.Download(
        url=url, sha256=hashlib.sha256(payload.read_bytes()).hexdigest(), description="test"
    )
    bad = samples.Download(url=url, sha256="0" * 64, description="test")
    monkeypatch.setitem(samples.DOWNLOADS, "good", good)
    monkeypatch.setitem(samples.DOWNLOADS, "bad", bad)
    with pytest.raises(RuntimeError, match="expected 0000"):
        samples.download("bad")
    path = samples.download("good")
    assert path.read_bytes() == payload.read_bytes()
    assert samples.load_sample("good", 8).shape == (1, 3, 8, 8)


def test_start_here_widget_changes_size_and_crop(monkeypatch):
    """Notebook 00's slider promise: `size` changes the texture, `crop` the enlarged window."""
    from course_kit.nbrun import ROOT, tagged_namespace

    monkeypatch.setenv("MPLBACKEND", "Agg")
    monkeypatch.setenv("NBGRADER_EXECUTION", "")  # sliders, not the static fallback
    ns = tagged_namespace(ROOT / "notebooks" / "00_start_here.ipynb")
    draw, crop_side = ns["draw_sample"], ns["CROP"]

    def panels(**kw):
        fig = draw(**kw)
        return [ax.images[0].get_array() for ax in fig.axes if ax.images]

    full, window = panels(name="bricks", size=128, crop=0.0)
    assert full.shape[:2] == (128, 128) and window.shape[:2] == (crop_side, crop_side)
    np.testing.assert_array_equal(window, full[:crop_side, :crop_side])
    _, corner = panels(name="bricks", size=128, crop=1.0)
    np.testing.assert_array_equal(corner, full[-crop_side:, -crop_side:])
    assert not np.array_equal(window, corner)  # the crop moves
    bigger, _ = panels(name="bricks", size=192, crop=0.0)
    assert bigger.shape[:2] == (192, 192)  # the size changes
    expected = samples.load_sample("bricks", 128, channels=3)[0].permute(1, 2, 0).numpy()
    np.testing.assert_allclose(np.asarray(full, dtype=np.float32), expected, atol=1 / 255)

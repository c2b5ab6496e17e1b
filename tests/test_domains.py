"""course_lib.domains: offline translation data, the CycleGAN folder loader, the download path
(never touching the network: the tests make tiny folders and zips themselves)."""

from __future__ import annotations

import io
import urllib.request
import zipfile

import numpy as np
import pytest
import torch
from PIL import Image
from scipy import ndimage

from course_lib import domains
from course_lib.samples import load_glyphs

UNPAIRED = ["sans2serif", "bricks2grass", "photo2painted"]
PAIRED = ["labels2texture", "edges2photo"]


def test_list_domains_names_and_kinds():
    assert [d.name for d in domains.list_domains("unpaired")] == UNPAIRED
    assert [d.name for d in domains.list_domains("paired")] == PAIRED
    assert len(domains.list_domains()) == 5
    with pytest.raises(ValueError, match="kind"):
        domains.list_domains("aligned")


@pytest.mark.parametrize("name", UNPAIRED)
def test_unpaired_shapes_range_and_seed(name):
    A, B = domains.unpaired(name, 3, 20, seed=4)
    for x in (A, B):
        assert x.shape == (3, 3, 20, 20) and x.dtype == torch.float32
        assert x.min() >= 0 and x.max() <= 1
    A2, B2 = domains.unpaired(name, 3, 20, seed=4)
    assert torch.equal(A, A2) and torch.equal(B, B2)
    A3, _ = domains.unpaired(name, 3, 20, seed=5)
    assert not torch.equal(A, A3)


@pytest.mark.parametrize("name", PAIRED)
def test_paired_shapes_range_and_seed(name):
    A, B = domains.paired(name, 2, 24, seed=1)
    assert A.shape == B.shape == (2, 3, 24, 24)
    assert 0 <= A.min() and A.max() <= 1 and 0 <= B.min() and B.max() <= 1
    A2, B2 = domains.paired(name, 2, 24, seed=1)
    assert torch.equal(A, A2) and torch.equal(B, B2)


def test_sans2serif_draws_from_the_right_fonts():
    size = 16
    A, B = domains.unpaired("sans2serif", 5, size, seed=0)
    sans, _ = load_glyphs(list(domains.SANS), domains.LETTERS, size)  # (S, L, 1, h, w), ink 1
    serif, _ = load_glyphs(list(domains.SERIF), domains.LETTERS, size)

    def nearest(x, glyphs):  # distance of dark-on-light x to the closest glyph of a font set
        flat = (1 - glyphs).reshape(-1, size * size)  # (S*L, h*w)
        return (flat - x[0].reshape(1, -1)).abs().amax(1).min().item()

    for a, b in zip(A, B):
        assert torch.equal(a[0], a[1]) and torch.equal(a[0], a[2])  # grey, as RGB
        assert nearest(a, sans) < 1e-6 and nearest(a, serif) > 1e-3
        assert nearest(b, serif) < 1e-6 and nearest(b, sans) > 1e-3


def test_bricks2grass_differ_in_colour_not_in_background():
    A, B = domains.unpaired("bricks2grass", 8, 32, seed=0)
    paper = torch.tensor([0.93, 0.91, 0.86]).view(1, 3, 1, 1)
    for x in (A, B):  # the corners are background
        assert torch.allclose(x[..., 0, 0], paper[..., 0, 0].expand(8, 3))
    shape_a = (A - paper).abs().sum(1) > 1e-6  # (n, H, W) where the texture is
    shape_b = (B - paper).abs().sum(1) > 1e-6
    red_a = (A[:, 0] - A[:, 1])[shape_a].mean()
    red_b = (B[:, 0] - B[:, 1])[shape_b].mean()
    assert red_a > 0.1 and red_b < -0.1  # bricks are red, grass is green


def test_labels2texture_labels_use_the_palette():
    A, B = domains.paired("labels2texture", 3, 32, seed=0)
    pixels = A.permute(0, 2, 3, 1).reshape(-1, 3)  # (n*H*W, 3)
    dist = (pixels[:, None] - domains.LABEL_COLOURS).abs().amax(-1)  # (n*H*W, K)
    assert dist.min(1).values.max() < 1e-6
    assert not torch.allclose(A, B)


def test_edges_match_an_independent_sobel():
    rng = np.random.default_rng(0)
    x = torch.from_numpy(rng.random((2, 3, 9, 11))).float()
    got = domains.edges(x, threshold=0.3)
    lum = 0.299 * x[:, 0] + 0.587 * x[:, 1] + 0.114 * x[:, 2]  # (B, H, W)
    for i in range(2):
        gy = ndimage.sobel(lum[i].numpy().astype(np.float64), axis=0, mode="nearest") / 4
        gx = ndimage.sobel(lum[i].numpy().astype(np.float64), axis=1, mode="nearest") / 4
        want = ~(np.hypot(gx, gy) > 0.15)
        assert np.array_equal(got[i, 0].numpy().astype(bool), want)
    assert torch.equal(got[:, 0], got[:, 2])


def test_painted_flattens_colours_and_keeps_shape():
    photos, _ = domains.paired("edges2photo", 2, 32, seed=3)
    photos = photos.double()
    out = domains.painted(photos)
    assert out.shape == photos.shape and out.dtype == torch.float64
    assert 0 <= out.min() and out.max() <= 1
    flat = domains.painted(torch.full((1, 3, 16, 16), 0.5))
    assert torch.allclose(flat, flat[..., :1, :1].expand_as(flat))  # uniform stays uniform


def test_bad_requests_have_clear_errors():
    with pytest.raises(ValueError, match="did you mean 'bricks2grass'"):
        domains.unpaired("brick2grass", 2, 32)
    with pytest.raises(ValueError, match=r"paired\('edges2photo'"):
        domains.unpaired("edges2photo", 2, 32)
    with pytest.raises(ValueError, match=r"unpaired\('sans2serif'"):
        domains.paired("sans2serif", 2, 32)
    with pytest.raises(ValueError, match="`size` must be >= 16"):
        domains.unpaired("sans2serif", 2, 8)
    with pytest.raises(ValueError, match="`n` must be >= 1"):
        domains.paired("labels2texture", 0, 32)


# ----------------------------------------------------------------------------- folders


def _write(path, size, mode="RGB"):
    path.parent.mkdir(parents=True, exist_ok=True)
    arr = np.random.default_rng(len(str(path))).integers(0, 256, size[::-1] + (3,), np.uint8)
    Image.fromarray(arr).convert(mode).save(path)


def _tiny_dataset(root):
    _write(root / "trainA" / "a1.png", (40, 30))
    _write(root / "trainA" / "a2.jpg", (30, 50), "L")  # grey: must come back as RGB
    _write(root / "trainB" / "b1.png", (32, 32))
    (root / "trainB" / "notes.txt").write_text("not an image")
    _write(root / "testA" / "t.png", (20, 20))
    _write(root / "testB" / "t.png", (20, 20))
    return root


def test_image_folder_domains_loads_the_cyclegan_layout(tmp_path):
    data = domains.ImageFolderDomains(_tiny_dataset(tmp_path / "toy"), size=16)
    assert len(data.files_a) == 2 and len(data.files_b) == 1 and len(data) == 2
    a, b = data[1]
    assert a.shape == b.shape == (3, 16, 16)
    A, B = data.load(3, seed=0)
    assert A.shape == B.shape == (3, 3, 16, 16) and 0 <= A.min() and A.max() <= 1
    A_default, _ = data.load()
    assert A_default.shape[0] == 1  # the smaller domain's count
    test = domains.ImageFolderDomains(tmp_path / "toy", split="test", size=16)
    assert len(test) == 1 and "1 A images" in repr(test)


def test_image_folder_domains_errors(tmp_path):
    with pytest.raises(FileNotFoundError, match="not a folder"):
        domains.ImageFolderDomains(tmp_path / "nowhere")
    _write(tmp_path / "half" / "trainA" / "a.png", (20, 20))
    with pytest.raises(FileNotFoundError, match=r"trainB.*found: \['trainA'\]"):
        domains.ImageFolderDomains(tmp_path / "half")
    (tmp_path / "half" / "trainB").mkdir()
    with pytest.raises(ValueError, match="no images in"):
        domains.ImageFolderDomains(tmp_path / "half")
    with pytest.raises(ValueError, match="split"):
        domains.ImageFolderDomains(tmp_path / "half", split="val")


# ----------------------------------------------------------------------------- downloads


def test_download_dataset_uses_an_existing_folder(tmp_path):
    _tiny_dataset(tmp_path / "horse2zebra")
    assert domains.download_dataset("horse2zebra", tmp_path) == tmp_path / "horse2zebra"


def test_download_dataset_offline_names_the_offline_domains(tmp_path):
    # conftest blocks the network, so this is what a user without one sees.
    with pytest.raises(RuntimeError, match="sans2serif, bricks2grass, photo2painted"):
        domains.download_dataset("horse2zebra", tmp_path)
    assert not (tmp_path / "horse2zebra").exists()


def _zip(files):
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as zf:
        for name, data in files.items():
            zf.writestr(name, data)
    return buf.getvalue()


class _Response(io.BytesIO):
    def __enter__(self):
        return self

    def __exit__(self, *exc):
        return False


def _png():
    buf = io.BytesIO()
    Image.new("RGB", (20, 20), (10, 200, 30)).save(buf, format="PNG")
    return buf.getvalue()


def test_download_dataset_unpacks_a_zip(tmp_path, monkeypatch, capsys):
    png = _png()
    files = {f"horse2zebra/{s}/x.png": png for s in ("trainA", "trainB", "testA", "testB")}
    payload = _zip(files)
    monkeypatch.setattr(urllib.request, "urlopen", lambda *a, **k: _Response(payload))
    root = domains.download_dataset("horse2zebra", tmp_path)
    assert (root / "trainA" / "x.png").is_file()
    assert "sha256 =" in capsys.readouterr().out  # trust on first use: the hash is printed
    A, B = domains.ImageFolderDomains(root, size=16).load(1)
    assert torch.allclose(A[0, :, 0, 0], torch.tensor([10, 200, 30]) / 255, atol=1e-6)


def test_download_dataset_checks_the_pinned_hash(tmp_path, monkeypatch):
    payload = _zip({"horse2zebra/trainA/x.png": _png()})
    monkeypatch.setattr(urllib.request, "urlopen", lambda *a, **k: _Response(payload))
    entry = domains.DATASETS["horse2zebra"]
    pinned = domains.Download(url=entry.url, sha256="0" * 64, description=entry.description)
    monkeypatch.setitem(domains.DATASETS, "horse2zebra", pinned)
    with pytest.raises(RuntimeError, match="expected 0000"):
        domains.download_dataset("horse2zebra", tmp_path)
    assert not (tmp_path / "horse2zebra").exists()


def test_download_dataset_refuses_paths_that_escape(tmp_path, monkeypatch):
    payload = _zip({"../evil/trainA/x.png": b"x"})
    monkeypatch.setattr(urllib.request, "urlopen", lambda *a, **k: _Response(payload))
    with pytest.raises(RuntimeError, match="leaves the folder"):
        domains.download_dataset("horse2zebra", tmp_path / "data")
    assert not (tmp_path / "evil").exists()

"""`ganforge inpaint` and `ganforge eval-inpaint` end to end on a tiny run."""

import importlib.util
import json

import numpy as np
import pytest
import torch
from PIL import Image

from ganforge.cli import main

HAVE_BASELINES = all(importlib.util.find_spec(m) is not None for m in ("cv2", "skimage"))


def _png(arr, path):
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(arr).save(path)
    return path


def _photo(seed, size=28):
    rng = np.random.default_rng(seed)
    ramp = np.linspace(0, 60, size)[None, :]
    return np.clip(rng.uniform(60, 180) + ramp + rng.normal(0, 5, (size, size)), 0, 255).astype(np.uint8)


def _box_mask(size=28, box=(8, 20)):
    m = np.zeros((size, size), np.uint8)
    m[box[0]:box[1], box[0]:box[1]] = 255
    return m


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("cli")
    data = tmp / "photos"
    for i in range(24):
        _png(_photo(i), data / f"{i:03d}.png")
    run = tmp / "run"
    args = ["train", "--run-dir", str(run), f"data.dataset={data}", "data.channels=1", "model.arch=inpaint",
            "loss.name=hinge", "model.g_width=4", "model.d_width=4", "model.res_blocks=1", "train.batch_size=8",
            "train.steps=3", "train.log_every=1", "train.sample_every=3", "train.ckpt_every=3",
            "train.ema_decay=0.5"]
    assert main(args) == 0
    return run


def test_inpaint_one_file(run_dir, tmp_path, capsys):
    img = _png(_photo(100), tmp_path / "in.png")
    mask = _png(_box_mask(), tmp_path / "mask.png")
    out = tmp_path / "out.png"
    assert main(["inpaint", str(run_dir), "--image", str(img), "--mask", str(mask), "--out", str(out)]) == 0
    assert "inpainted 1 image" in capsys.readouterr().out
    a, b = np.asarray(Image.open(img)), np.asarray(Image.open(out))
    known = _box_mask() < 128
    assert b.shape == a.shape and np.array_equal(a[known], b[known])


def test_inpaint_a_folder_with_matching_masks_and_with_one_mask(run_dir, tmp_path):
    images = tmp_path / "images"
    masks = tmp_path / "masks"
    for i in range(3):
        _png(_photo(200 + i), images / f"p{i}.png")
    _png(_box_mask(), masks / "p0.png")
    _png(_box_mask(box=(2, 9)), masks / "p1.bmp")  # matched by name, other extension
    _png(_box_mask(box=(15, 27)), masks / "p2.png")
    out = tmp_path / "out"
    assert main(["inpaint", str(run_dir), "--image", str(images), "--mask", str(masks), "--out", str(out)]) == 0
    assert sorted(p.name for p in out.iterdir()) == ["p0.png", "p1.png", "p2.png"]
    a, b = np.asarray(Image.open(images / "p1.png")), np.asarray(Image.open(out / "p1.png"))
    known = _box_mask(box=(2, 9)) < 128
    assert np.array_equal(a[known], b[known]) and not np.array_equal(a, b)
    one = _png(_box_mask(), tmp_path / "one.png")
    o2 = tmp_path / "o2"
    assert main(["inpaint", str(run_dir), "--image", str(images), "--mask", str(one), "--out", str(o2)]) == 0
    assert len(list(o2.iterdir())) == 3


def test_eval_inpaint_prints_a_table_and_writes_json(run_dir, tmp_path, capsys):
    out = tmp_path / "eval.json"
    baselines = [] if HAVE_BASELINES else ["--baselines", "none"]
    rc = main(["eval-inpaint", str(run_dir), "--masks", "center", "--n", "6", "--ratio", "0.25", "--no-fid",
               "--json", str(out), *baselines])
    assert rc == 0
    text = capsys.readouterr().out
    assert "psnr_hole" in text and "ssim_hole" in text and "ganforge" in text
    result = json.loads(out.read_text())
    assert result["n"] == 6 and result["masks"] == "center"
    methods = set(result["results"])
    assert "ganforge" in methods
    if HAVE_BASELINES:
        assert {"telea", "navier-stokes", "biharmonic"} <= methods
        assert "telea" in text and "biharmonic" in text
    for metrics in result["results"].values():
        assert 0 < metrics["psnr_hole"] <= metrics["psnr"] and -1 <= metrics["ssim_hole"] <= 1
    last = json.loads((run_dir / "metrics.jsonl").read_text().splitlines()[-1])
    assert last["eval"] == "inpaint" and "inpaint/ganforge/psnr_hole" in last


class _FakeInception:
    """Stands in for the Inception network: a fixed random projection of the pixels (fast, deterministic)."""

    protocol = "fake projection"

    def __init__(self, weights=None, device="cpu", precision="fp32", batch_size=64):
        self.proj = None

    def extract(self, images):
        x = images.float().flatten(1) / 255.0
        if self.proj is None:
            self.proj = torch.randn(x.shape[1], 8, generator=torch.Generator().manual_seed(0))
        return x @ self.proj

    def iter_features(self, images):
        yield self.extract(images)


def test_eval_inpaint_fid_with_cached_reference_statistics(run_dir, tmp_path, monkeypatch):
    import ganforge.metrics.evaluator as pipeline

    monkeypatch.setattr(pipeline, "InceptionFeatures", _FakeInception)
    monkeypatch.setenv("GANFORGE_CACHE", str(tmp_path / "cache"))
    baselines = ["--baselines", "telea"] if HAVE_BASELINES else ["--baselines", "none"]
    results = []
    for i in range(2):
        out = tmp_path / f"fid{i}.json"
        assert main(["eval-inpaint", str(run_dir), "--n", "5", *baselines, "--json", str(out)]) == 0
        results.append(json.loads(out.read_text()))
    first, second = results
    assert first["results"]["ganforge"]["fid5_test"] >= 0
    assert first["protocol"]["fid"] == "fake projection"
    assert any("biased" in note for note in first["notes"])
    cached = sorted(p.name for p in (tmp_path / "cache" / "stats").iterdir())
    assert len(cached) == (2 if HAVE_BASELINES else 1)  # originals (+ telea); never the generator
    for method, metrics in first["results"].items():
        assert second["results"][method]["fid5_test"] == pytest.approx(metrics["fid5_test"])


def _bad(tmp_path):
    img = _png(_photo(1), tmp_path / "img.png")
    small = _png(np.full((20, 28), 255, np.uint8), tmp_path / "small_mask.png")
    empty = _png(np.zeros((28, 28), np.uint8), tmp_path / "empty_mask.png")
    good = _png(_box_mask(), tmp_path / "mask.png")
    junk = tmp_path / "junk.png"
    junk.write_bytes(b"\x89PNG but not really")
    return {
        "mask size differs": (img, small, "small_mask.png"),
        "empty mask": (img, empty, "no missing pixels"),
        "unreadable image": (junk, good, "cannot read the image"),
        "missing image": (tmp_path / "nope.png", good, "not found"),
        "missing mask": (img, tmp_path / "nomask.png", "not found"),
    }


@pytest.mark.parametrize("case", ["mask size differs", "empty mask", "unreadable image", "missing image",
                                  "missing mask"])
def test_bad_inputs_exit_2_with_one_line(run_dir, tmp_path, capsys, case):
    image, mask, expect = _bad(tmp_path)[case]
    rc = main(["inpaint", str(run_dir), "--image", str(image), "--mask", str(mask), "--out", str(tmp_path / "o.png")])
    err = capsys.readouterr().err
    assert rc == 2
    assert err.startswith("error: ") and err.count("\n") == 1 and expect in err
    assert not (tmp_path / "o.png").exists()


def test_eval_inpaint_rejects_a_non_inpainting_run(tmp_path, capsys):
    rc = main(["eval-inpaint", str(tmp_path / "nothing"), "--n", "2"])
    assert rc == 2 and capsys.readouterr().err.startswith("error: ")

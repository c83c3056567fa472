"""Saved generator folders: the model card, the recorded step, atomic writes, and every consumer accepts them."""

import errno
import json
import os

import numpy as np
import pytest
import torch
from PIL import Image
from safetensors.torch import save_file

from conftest import pid_of_a_finished_process, tiny_config, tiny_dataset
from ganforge.artifacts import export_generator, load_generator
from ganforge.cli import main
from ganforge.config import dump_yaml
from ganforge.errors import CheckpointError
from ganforge.models import build_models, from_pretrained, save_pretrained
from ganforge.models import pretrained


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory):
    """A 4-step DCGAN run with an EMA generator and evaluation records of several kinds."""
    from ganforge.train.trainer import Trainer

    tmp = tmp_path_factory.mktemp("pretrained")
    cfg = tiny_config(tmp, "train.steps=4", "train.ckpt_every=4", "train.ema_decay=0.5")
    Trainer(cfg, tmp / "run", dataset=tiny_dataset()).train()
    records = [
        {"step": 2, "event": "eval", "fid2k_test": 210.5, "train_seconds": 1.0, "eval_seconds": 3.0},
        {"step": 4, "event": "eval", "fid2k_test": 123.25, "train_seconds": 2.0, "eval_seconds": 3.0},
        {"event": "eval", "step": 4, "generator": "ema-if-present", "fid64_test": 150.0, "kid64_test": [0.1, 0.01],
         "protocol": "generated images quantised to uint8; real: tiny test (64 images)", "n_fake": 64},
        {"event": "eval", "step": 4, "generator": "raw", "fid64_test": 999.0, "protocol": "raw protocol"},
    ]
    with open(tmp / "run" / "metrics.jsonl", "a", encoding="utf-8") as f:
        f.writelines(json.dumps(r) + "\n" for r in records)
    return tmp / "run"


def test_export_writes_one_self_describing_folder_with_a_model_card(run_dir, tmp_path):
    out = export_generator(run_dir, tmp_path / "g")
    assert sorted(p.name for p in out.iterdir()) == ["README.md", "config.yaml", "export.json",
                                                    "generator.safetensors"]
    info = json.loads((out / "export.json").read_text())
    assert info["step"] == 4 and info["source"] == "ema" and info["arch"] == "dcgan"
    card = (out / "README.md").read_text()
    assert "fashion-mnist" in card and "4 generator steps" in card and "EMA of the generator" in card
    assert "`fid2k_test` | 123.2" in card and "periodic evaluation during training" in card
    assert "`kid64_test` | 0.1 ± 0.01" in card and "real: tiny test (64 images)" in card
    assert "210.5" not in card and "999" not in card  # another step's and the raw generator's scores
    G, cfg, step = from_pretrained(out)
    assert step == 4 and G.config == cfg
    a, _, _ = load_generator(run_dir)
    for x, y in zip(a.state_dict().values(), G.state_dict().values()):
        assert torch.equal(x, y)


def test_card_of_the_raw_generator_lists_only_its_own_scores(run_dir, tmp_path):
    card = (export_generator(run_dir, tmp_path / "raw", ema=False) / "README.md").read_text()
    assert "999" in card and "123.2" not in card and "the generator (no EMA)" in card


def test_card_without_a_measurement_of_these_weights_says_so(tmp_path):
    cfg = tiny_config(tmp_path)
    G, _ = build_models(cfg)
    card = (save_pretrained(G, tmp_path / "fresh", step=0) / "README.md").read_text()
    assert "No evaluation of these weights is recorded" in card and "| metric |" not in card


def test_sampling_an_export_reports_the_step_it_records(run_dir, tmp_path, capsys):
    assert main(["export", str(run_dir), "--out", str(tmp_path / "g")]) == 0
    capsys.readouterr()
    assert main(["sample", str(tmp_path / "g"), "--n", "4", "--out", str(tmp_path / "s.png")]) == 0
    assert "from step 4" in capsys.readouterr().out


def test_an_older_export_without_a_card_still_loads_with_its_step(run_dir, tmp_path, capsys):
    """The layout ganforge export wrote before save_pretrained: no README.md, step 5000 in export.json."""
    G, cfg, _ = load_generator(run_dir)
    old = tmp_path / "old"
    old.mkdir()
    tensors = {k: v.contiguous().clone() for k, v in G.state_dict().items()}
    save_file(tensors, str(old / "generator.safetensors"), metadata={"ganforge_step": "5000", "source": "ema"})
    (old / "config.yaml").write_text(dump_yaml(cfg))
    (old / "export.json").write_text(json.dumps({"step": 5000, "ganforge_step": "5000", "source": "ema"}))
    assert load_generator(old)[2] == 5000
    assert main(["sample", str(old), "--n", "4", "--out", str(tmp_path / "s.png")]) == 0
    assert "from step 5000" in capsys.readouterr().out
    save_file(tensors, str(old / "generator.safetensors"))  # no metadata: export.json still says it
    assert load_generator(old)[2] == 5000


def test_an_onnx_export_folder_says_how_to_run_it(run_dir, tmp_path, capsys):
    onnx = tmp_path / "onnx"
    onnx.mkdir()
    (onnx / "generator.onnx").write_bytes(b"\x08\x07")  # never read: the layout is enough
    (onnx / "config.yaml").write_text((run_dir / "config.yaml").read_text())
    (onnx / "export.json").write_text(json.dumps({"step": 4, "format": "onnx"}))
    assert main(["sample", str(onnx), "--n", "4", "--out", str(tmp_path / "s.png")]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1
    assert "ONNX export" in err and "onnxruntime" in err and "ganforge export" in err
    assert "no valid checkpoint" not in err
    with pytest.raises(CheckpointError, match="onnxruntime"):
        from_pretrained(onnx)


def test_writes_are_atomic_and_a_full_disk_leaves_nothing(run_dir, tmp_path, monkeypatch):
    G, _, _ = load_generator(run_dir)
    out = save_pretrained(G, tmp_path / "g", step=4)
    before = (out / "generator.safetensors").read_bytes()

    def full(*args, **kwargs):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(pretrained, "save_file", full)
    with pytest.raises(CheckpointError, match="No space left on device") as err:
        save_pretrained(G, tmp_path / "g", step=5)
    assert "\n" not in str(err.value)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["g"]  # no temporary folder left behind
    assert (out / "generator.safetensors").read_bytes() == before and from_pretrained(out)[2] == 4
    with pytest.raises(CheckpointError):
        save_pretrained(G, tmp_path / "new", step=5)
    assert not (tmp_path / "new").exists()
    monkeypatch.undo()
    assert from_pretrained(save_pretrained(G, tmp_path / "g", step=6))[2] == 6  # replaces a saved generator


def test_the_next_write_tidies_what_a_killed_writer_left(run_dir, tmp_path):
    G, _, _ = load_generator(run_dir)
    dead = pid_of_a_finished_process()
    # A writer killed between its two renames: the previous folder swapped out, the new one not yet in.
    os.rename(save_pretrained(G, tmp_path / "old", step=4), tmp_path / f".old-g-{dead}")
    partial = tmp_path / f".g.tmp-{dead}-0badc0de"
    partial.mkdir()
    (partial / "generator.safetensors").write_bytes(b"half a file")
    running = tmp_path / f".g.tmp-{os.getppid()}-12345678"  # a writer that still runs is left alone
    running.mkdir()
    other = tmp_path / f".h.tmp-{dead}-0badc0de"  # another target's leftovers are not this write's to touch
    other.mkdir()

    touched = pretrained.recover_interrupted(tmp_path / "g")
    assert sorted(p.name for p in touched) == sorted([partial.name, f".old-g-{dead}"])
    assert from_pretrained(tmp_path / "g")[2] == 4  # the swapped-out folder is back: no saved work lost
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(["g", running.name, other.name])

    os.rename(save_pretrained(G, tmp_path / "old", step=5), tmp_path / f".old-g-{dead}")
    assert from_pretrained(save_pretrained(G, tmp_path / "g", step=6))[2] == 6  # the write itself tidies
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(["g", running.name, other.name])


def test_targets_that_are_links_or_hold_other_files_are_refused(run_dir, tmp_path):
    G, _, _ = load_generator(run_dir)
    outside = tmp_path / "outside"
    outside.mkdir()
    (tmp_path / "link").symlink_to(outside, target_is_directory=True)
    with pytest.raises(CheckpointError, match="symbolic link"):
        save_pretrained(G, tmp_path / "link", step=1)
    assert not any(outside.iterdir())
    (outside / "notes.txt").write_text("mine")
    with pytest.raises(CheckpointError, match="not empty"):
        save_pretrained(G, outside, step=1)
    assert [p.name for p in outside.iterdir()] == ["notes.txt"]
    with pytest.raises(ValueError, match="build_models"):
        save_pretrained(torch.nn.Linear(2, 2), tmp_path / "x")


def test_serve_loads_saved_folders(run_dir, tmp_path):
    from ganforge.serve import handlers as H

    folder = export_generator(run_dir, tmp_path / "g")
    generators, inpainters = H.load_runs([str(folder)])
    assert list(generators) == ["g"] and not inpainters and generators["g"].step == 4
    assert H.generate_grid(generators["g"], seed=0, n=4).size[0] > 0


@pytest.fixture(scope="module")
def inpaint_folder(tmp_path_factory):
    """An untrained inpainting generator saved as a folder (the pipeline only needs a generator)."""
    tmp = tmp_path_factory.mktemp("inpaint")
    cfg = tiny_config(tmp, "model.arch=inpaint", "model.g_width=4", "model.d_width=4", "model.res_blocks=1")
    G, _ = build_models(cfg)
    return save_pretrained(G, tmp / "inpainter", step=7)


def test_inpaint_command_takes_a_saved_folder(inpaint_folder, tmp_path, capsys):
    rng = np.random.default_rng(0)
    Image.fromarray(rng.integers(0, 255, (28, 28), dtype=np.uint8)).save(tmp_path / "in.png")
    mask = np.zeros((28, 28), np.uint8)
    mask[8:20, 8:20] = 255
    Image.fromarray(mask).save(tmp_path / "mask.png")
    assert main(["inpaint", str(inpaint_folder), "--image", str(tmp_path / "in.png"), "--mask",
                 str(tmp_path / "mask.png"), "--out", str(tmp_path / "out.png")]) == 0
    a, b = np.asarray(Image.open(tmp_path / "in.png")), np.asarray(Image.open(tmp_path / "out.png"))
    assert np.array_equal(a[mask == 0], b[mask == 0])  # known pixels come back unchanged


def test_serve_and_the_pipeline_take_a_saved_inpainting_folder(inpaint_folder):
    from ganforge.inpaint.pipeline import InpaintingPipeline
    from ganforge.serve import handlers as H

    assert InpaintingPipeline.from_run(inpaint_folder).step == 7
    generators, inpainters = H.load_runs([str(inpaint_folder)])
    assert not generators and inpainters["inpainter"].step == 7


def test_exports_of_a_saved_folder_keep_its_source_and_survive_a_damaged_card(tmp_path):
    import json

    import pytest

    from conftest import tiny_config
    from ganforge.artifacts import export_generator
    from ganforge.models import build_models, save_pretrained

    G, _ = build_models(tiny_config(tmp_path), training=False)
    src = save_pretrained(G, tmp_path / "raw", step=7, source="generator")
    (src / "README.md").write_bytes(b"\xff\xfe not utf-8")
    copy = export_generator(src, tmp_path / "copy")
    assert json.loads((copy / "export.json").read_text())["source"] == "generator"
    assert "step" in (copy / "README.md").read_text(encoding="utf-8")  # a new card replaces the unreadable one
    pytest.importorskip("onnxruntime")
    from ganforge.onnx_export import export_run_onnx

    export_run_onnx(src, tmp_path / "onnx")
    info = json.loads((tmp_path / "onnx" / "export.json").read_text())
    assert info["source"] == "generator" and info["step"] == 7

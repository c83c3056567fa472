"""Safe loading: pickles refused (and never executed), malformed safetensors refused, exports round-trip."""

import errno
import os
import pickle
import struct

import pytest
import torch
from safetensors.torch import save_file

from conftest import tiny_config, tiny_dataset
from ganforge.cli import main
from ganforge.errors import CheckpointError
from ganforge.models import build_models
from ganforge import checkpoint as ckpt
from ganforge.train.trainer import Trainer
from ganforge.weights import load_weights, read_state_file


class _Payload:
    """Unpickling this runs os.system: the attack a poisoned checkpoint carries."""

    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


def _malicious(tmp_path, suffix):
    marker = tmp_path / f"pwned{suffix}"
    path = tmp_path / f"evil{suffix}"
    with open(path, "wb") as f:
        pickle.dump({"weight": _Payload(marker)}, f)
    return path, marker


@pytest.mark.parametrize("suffix", [".pt", ".pth", ".pkl", ".ckpt", ".bin"])
def test_pickles_are_refused_and_never_executed(tmp_path, suffix):
    path, marker = _malicious(tmp_path, suffix)
    with pytest.raises(CheckpointError, match="refused"):
        read_state_file(path)
    # even with the explicit unsafe flag, only the weights-only unpickler runs
    with pytest.raises(CheckpointError, match="weights-only"):
        read_state_file(path, unsafe_pickle=True)
    assert not marker.exists()


def test_a_malicious_torch_save_zip_is_not_executed(tmp_path):
    marker = tmp_path / "pwned-zip"
    path = tmp_path / "evil_zip.pt"
    torch.save({"w": _Payload(marker)}, path)  # torch's zip format with the payload inside
    with pytest.raises(CheckpointError):
        read_state_file(path, unsafe_pickle=True)
    assert not marker.exists()


def test_a_plain_tensor_pickle_loads_only_with_the_flag(tmp_path):
    cfg = tiny_config(tmp_path)
    G, _ = build_models(cfg)
    path = tmp_path / "g.pt"
    torch.save(G.state_dict(), path)
    other, _ = build_models(cfg)
    with pytest.raises(CheckpointError):
        load_weights(other, path)
    load_weights(other, path, unsafe_pickle=True)
    for a, b in zip(G.state_dict().values(), other.state_dict().values()):
        assert torch.equal(a, b)


def _header_file(path, header: bytes, payload: bytes = b""):
    path.write_bytes(struct.pack("<Q", len(header)) + header + payload)
    return path


@pytest.mark.parametrize("make", [
    lambda p: p.write_bytes(b""),
    lambda p: p.write_bytes(b"\x00" * 3),
    lambda p: _header_file(p, b"{not json"),
    lambda p: _header_file(p, b'{"w": {"dtype": "F32", "shape": [4], "data_offsets": [0, 16]}}', b"\x00" * 8),
    lambda p: _header_file(p, b'{"w": {"dtype": "F32", "shape": [2], "data_offsets": [0, 99999999]}}'),
    lambda p: p.write_bytes(struct.pack("<Q", 2**62) + b"{}"),
])
def test_malformed_safetensors_are_refused(tmp_path, make):
    path = tmp_path / "bad.safetensors"
    make(path)
    with pytest.raises(CheckpointError):
        read_state_file(path)


def test_wrong_names_shapes_dtypes_and_nonfinite_values_are_refused(tmp_path):
    cfg = tiny_config(tmp_path)
    G, _ = build_models(cfg)
    good = {k: v.clone() for k, v in G.state_dict().items()}
    cases = {
        "missing": {k: v for k, v in list(good.items())[1:]},
        "extra": {**good, "intruder": torch.zeros(1)},
        "shape": {**good, next(iter(good)): torch.zeros(3, 3)},
        "dtype": {k: (v.double() if v.is_floating_point() else v) for k, v in good.items()},
        "nan": {k: (torch.full_like(v, float("nan")) if v.is_floating_point() else v) for k, v in good.items()},
    }
    for name, state in cases.items():
        path = tmp_path / f"{name}.safetensors"
        save_file({k: v.contiguous() for k, v in state.items()}, str(path))
        with pytest.raises(CheckpointError):
            load_weights(G, path)


def test_export_round_trip_and_sampling_from_export(tmp_path):
    cfg = tiny_config(tmp_path, "train.steps=2", "train.ema_decay=0.9")
    Trainer(cfg, tmp_path / "run", dataset=tiny_dataset()).train()
    assert main(["export", str(tmp_path / "run"), "--out", str(tmp_path / "exported")]) == 0
    assert (tmp_path / "exported" / "generator.safetensors").is_file()
    assert main(["sample", str(tmp_path / "exported"), "--n", "4", "--out", str(tmp_path / "s.png")]) == 0
    from ganforge.artifacts import load_generator

    a, _, _ = load_generator(tmp_path / "run")
    b, _, _ = load_generator(tmp_path / "exported")
    for x, y in zip(a.state_dict().values(), b.state_dict().values()):
        assert torch.equal(x, y)


def test_disk_full_while_saving_keeps_previous_checkpoint(tmp_path, monkeypatch):
    cfg = tiny_config(tmp_path)
    t = Trainer(cfg, tmp_path / "run", dataset=tiny_dataset())
    t.train_step()
    first = t.save()
    t.train_step()

    def full(*args, **kwargs):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(ckpt, "save_file", full)
    with pytest.raises(CheckpointError, match="No space left"):
        t.save()
    root = tmp_path / "run" / "checkpoints"
    assert [p.name for p in root.iterdir()] == [first.name]  # no temporary left behind
    assert ckpt.find_latest(tmp_path / "run").step == 1

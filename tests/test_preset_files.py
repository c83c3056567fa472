"""Built-in presets: shipped in the package, found by name, listed with their own comments."""

from pathlib import Path

import pytest

from ganforge.cli import main
from ganforge.config import load_config
from ganforge.errors import ConfigError
from ganforge.perf.bench_presets import default_config_dir
from ganforge.preset_files import PRESET_DIR, all_presets, find_preset, preset_names

ROOT = Path(__file__).resolve().parents[1]


def test_configs_is_the_package_folder():
    assert (ROOT / "configs").resolve() == PRESET_DIR.resolve()
    assert "dcgan-fashion-mnist" in preset_names() and len(preset_names()) >= 10


def test_a_name_a_path_and_configs_fallback_load_the_same(tmp_path, monkeypatch):
    by_path = load_config(ROOT / "configs" / "dcgan-fashion-mnist.yaml")
    monkeypatch.chdir(tmp_path)  # no configs/ here: as from an installed wheel
    assert load_config("dcgan-fashion-mnist") == by_path
    assert load_config("configs/dcgan-fashion-mnist.yaml") == by_path
    assert find_preset("dcgan-fashion-mnist.yaml") == PRESET_DIR / "dcgan-fashion-mnist.yaml"
    assert default_config_dir() == PRESET_DIR


def test_a_local_file_wins_over_a_preset(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "dcgan-fashion-mnist.yaml").write_text("train:\n  steps: 7\n")
    assert load_config("dcgan-fashion-mnist.yaml").train.steps == 7


def test_unknown_name_lists_the_presets(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    with pytest.raises(ConfigError, match="dcgan-fashion-mnist"):
        find_preset("no-such-preset")
    with pytest.raises(ConfigError, match="not found"):
        load_config("configs/no-such-preset.yaml")
    assert main(["train", "--config", "no-such-preset", "--dry-run"]) == 2
    assert capsys.readouterr().err.count("\n") == 1


def test_every_preset_says_what_it_is_for_and_reaches():
    for info in all_presets():
        assert info.purpose and info.purpose[-1] in ".)", info.name
        assert info.reaches != "not stated", info.name


def test_presets_command(capsys):
    assert main(["presets"]) == 0
    out = capsys.readouterr().out
    assert "dcgan-fashion-mnist\n" in out and "reaches: FID-10k 28.8" in out
    assert "Radford et al. 2016" in out  # a sentence is not cut at "et al."


def test_pyproject_ships_the_presets():
    assert '"presets/*.yaml"' in (ROOT / "pyproject.toml").read_text()

"""What a writer killed before its rename leaves beside a file, and how the next write of that file tidies it."""

import errno
import os

import numpy as np
import pytest
from PIL import Image

from conftest import pid_of_a_finished_process
from ganforge.atomic import remove_stale_temporaries, remove_stale_temporaries_in, write_text
from ganforge.errors import DataError
from ganforge.imageio import save_png
from ganforge.metrics.stats import FeatureStats


@pytest.fixture
def leftovers(tmp_path):
    """Beside ``out.png``: a killed writer's file and folder, a running writer's file, another name's file."""
    dead, running = pid_of_a_finished_process(), os.getppid()
    paths = {
        "dead file": tmp_path / f".out.png.tmp-{dead}-k3x_9q1z",
        "dead folder": tmp_path / f".out.png.tmp-{dead}-0badc0de",
        "running": tmp_path / f".out.png.tmp-{running}-a1b2c3d4",
        "other name": tmp_path / f".other.png.tmp-{dead}-k3x_9q1z",
    }
    for name, path in paths.items():
        if name == "dead folder":
            path.mkdir()
            (path / "part").write_bytes(b"half")
        else:
            path.write_bytes(b"half a file")
    return paths


def _hidden(folder) -> list[str]:
    return sorted(p.name for p in folder.iterdir() if p.name.startswith("."))


def test_only_a_dead_writers_temporaries_of_that_name_are_removed(tmp_path, leftovers):
    removed = remove_stale_temporaries(tmp_path / "out.png")
    assert sorted(removed) == sorted([leftovers["dead file"], leftovers["dead folder"]])
    assert _hidden(tmp_path) == sorted([leftovers["running"].name, leftovers["other name"].name])


def test_a_folder_of_many_files_is_tidied_once_for_every_name(tmp_path, leftovers):
    removed = remove_stale_temporaries_in(tmp_path)
    assert sorted(removed) == sorted([leftovers["dead file"], leftovers["dead folder"], leftovers["other name"]])
    assert _hidden(tmp_path) == [leftovers["running"].name]
    save_png(np.zeros((2, 2), np.uint8), tmp_path / "000000.png", tidy=False)  # no listing per file
    assert _hidden(tmp_path) == [leftovers["running"].name]


@pytest.mark.parametrize("writer", ["save_png", "write_text", "feature stats"])
def test_each_atomic_writer_tidies_before_it_writes(tmp_path, leftovers, writer):
    out = tmp_path / "out.png"
    if writer == "save_png":
        save_png(np.full((4, 5, 3), 7, np.uint8), out)
        assert np.asarray(Image.open(out)).shape == (4, 5, 3)
    elif writer == "write_text":
        write_text(out, "text")
        assert out.read_text() == "text"
    else:
        stats = FeatureStats()
        stats.append(np.ones((3, 2)))
        stats.save(out)
        assert FeatureStats.load(out).mean().shape == (2,)
    assert _hidden(tmp_path) == sorted([leftovers["running"].name, leftovers["other name"].name])


def test_a_full_disk_while_saving_an_image_names_the_file_and_keeps_the_old_one(tmp_path, monkeypatch):
    out = save_png(np.zeros((2, 2), np.uint8), tmp_path / "grid.png")
    before = out.read_bytes()

    def full(self, fp, *args, **kwargs):
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    monkeypatch.setattr(Image.Image, "save", full)
    with pytest.raises(DataError, match="grid.png") as err:
        save_png(np.ones((2, 2), np.uint8), out)
    assert "\n" not in str(err.value) and "No space left" in str(err.value)
    assert out.read_bytes() == before and _hidden(tmp_path) == []

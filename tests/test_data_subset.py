"""data.classes / data.limit: exactly the images they say, seeded, labels kept; bad values are one-line errors."""

import pytest
import torch

from conftest import tiny_config, tiny_dataset
from ganforge.config import load_config
from ganforge.data import ImageDataset
from ganforge.data.subset import select, select_indices
from ganforge.errors import ConfigError
from ganforge.train.trainer import Trainer


def _labelled(n=200, classes=10):
    # Labels 0..9 repeating, pixel (0, 0) = index: each selected image can be traced back.
    images = torch.zeros(n, 1, 4, 4, dtype=torch.uint8)
    images[:, 0, 0, 0] = torch.arange(n, dtype=torch.uint8)
    return ImageDataset(images, torch.arange(n) % classes, classes, "toy", [f"c{i}" for i in range(classes)])


def test_classes_keep_exactly_those_labels_unchanged():
    ds = _labelled()
    sub = select(ds, classes=[3, 7])
    assert len(sub) == 40 and set(sub.labels.tolist()) == {3, 7}
    origin = sub.images[:, 0, 0, 0].long()
    assert torch.equal(sub.labels, ds.labels[origin])  # labels kept, not renumbered
    assert sub.num_classes == 8 and sub.class_names == ds.class_names
    assert "classes=3+7" in sub.name


def test_limit_takes_n_images_of_the_selected_classes_by_a_seeded_shuffle():
    ds = _labelled()
    a = select(ds, classes=[9], limit=12, seed=5)
    assert len(a) == 12 and set(a.labels.tolist()) == {9}
    idx = a.images[:, 0, 0, 0].long()
    assert torch.equal(idx, idx.sort().values)  # original order kept
    b = select(ds, classes=[9], limit=12, seed=5)
    assert torch.equal(a.images, b.images)  # the same seed picks the same images
    c = select(ds, classes=[9], limit=12, seed=6)
    assert not torch.equal(a.images, c.images)
    expected = torch.arange(200)[ds.labels == 9][torch.randperm(20, generator=torch.Generator().manual_seed(5))[:12]]
    assert torch.equal(idx, expected.sort().values)  # "the first N after a seeded shuffle"


def test_limit_alone_and_no_subset():
    ds = _labelled()
    assert select(ds) is ds
    sub = select(ds, limit=50)
    assert len(sub) == 50 and len(set(sub.images[:, 0, 0, 0].tolist())) == 50
    assert sub.num_classes == 10


@pytest.mark.parametrize("kwargs, key, words", [
    (dict(classes=[10]), "data.classes", "no class 10"),
    (dict(classes=[9], limit=21), "data.limit", "more than the 20"),
    (dict(limit=201), "data.limit", "more than the 200"),
])
def test_impossible_subsets_are_one_line_errors(kwargs, key, words):
    with pytest.raises(ConfigError, match=words) as info:
        select(_labelled(), **kwargs)
    assert info.value.where == key and "\n" not in str(info.value)


def test_classes_of_an_unlabelled_data_set_are_refused():
    ds = ImageDataset(torch.zeros(4, 1, 4, 4, dtype=torch.uint8), None, 0, "unlabelled")
    with pytest.raises(ConfigError, match="no labels"):
        select_indices(ds.labels, len(ds), classes=[0], name=ds.name)
    assert len(select(ds, limit=2)) == 2


@pytest.mark.parametrize("override, words", [
    ("data.classes=[]", "empty"),
    ("data.classes=[1, 1]", "twice"),
    ("data.classes=[-1]", ">= 0"),
    ("data.classes=3", "expected a list"),
    ("data.classes=[1, two]", "expected an integer"),
    ("data.limit=-5", r"must be in \[0, "),
])
def test_bad_subset_config_values(override, words):
    with pytest.raises(ConfigError, match=words) as info:
        load_config(None, [override])
    assert str(info.value).startswith("data.")


def test_list_values_round_trip_through_the_resolved_config(tmp_path):
    from ganforge.config import dump_yaml

    cfg = load_config(None, ["data.classes=[2, 5]", "data.limit=30"])
    assert cfg.data.classes == [2, 5] and cfg.data.limit == 30
    path = tmp_path / "config.yaml"
    path.write_text(dump_yaml(cfg))
    assert load_config(path).data.classes == [2, 5]
    assert load_config(None, []).data.classes is None


def test_the_trainer_trains_on_the_subset(tmp_path):
    cfg = tiny_config(tmp_path, "data.classes=[1, 2]", "data.limit=20", "data.subset_seed=3")
    ds = tiny_dataset(n=200)
    t = Trainer(cfg, tmp_path / "run", dataset=ds)
    assert len(t.dataset) == 20 and set(t.dataset.labels.tolist()) <= {1, 2}
    images, labels = next(t.batcher)
    assert set(labels.tolist()) <= {1, 2}

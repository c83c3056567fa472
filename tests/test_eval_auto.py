"""train.eval_metrics=[auto]: FID on a GPU, the classifier's Frechet distance on a CPU for named labelled data."""

import pytest
import torch

from conftest import tiny_config
from ganforge.errors import ConfigError
from ganforge.metrics.catalog import get_metrics
from ganforge.train.periodic_eval import auto_eval_metrics

CPU, CUDA = torch.device("cpu"), torch.device("cuda")


def test_default_is_auto(tmp_path):
    assert tiny_config(tmp_path).train.eval_metrics == ["auto"]


@pytest.mark.parametrize("dataset, device, want", [
    ("fashion-mnist", CPU, "cls_fid"), ("fashion-mnist", CUDA, "fid"), ("some/folder", CPU, "fid"),
])
def test_auto_rule(tmp_path, dataset, device, want):
    cfg = tiny_config(tmp_path, f"data.dataset={dataset}")
    names, why = auto_eval_metrics(cfg, device)
    assert names == [want] and why.startswith("auto")
    if dataset == "some/folder":
        assert "biased" in why


def test_explicit_metrics_are_kept(tmp_path):
    cfg = tiny_config(tmp_path, "train.eval_metrics=[fid, kid]")
    assert auto_eval_metrics(cfg, CPU) == (["fid", "kid"], "train.eval_metrics")


def test_auto_is_given_alone(tmp_path):
    with pytest.raises(ConfigError, match="alone"):
        tiny_config(tmp_path, "train.eval_metrics=[auto, fid]")


def test_cls_fid_is_lower_is_better_and_one_key():
    (metric,) = get_metrics(["cls_fid"])
    assert metric.better == "lower" and metric.needs == ("classifier",)

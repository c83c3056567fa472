"""benchmarks/eval_cost.py: the statistics + Frechet part agrees between the previous and current code."""

from pathlib import Path

import pytest
import torch

from conftest import load_script


@pytest.fixture
def eval_cost():
    return load_script("eval_cost")


def test_frechet_alone_reports_both_paths_and_they_agree(eval_cost):
    out = eval_cost.frechet_alone(300, torch.device("cpu"), batch=64, repeats=2, d=24)
    for key in ("statistics_previous_s", "statistics_now_s", "frechet_previous_s", "frechet_now_first_s",
                "frechet_now_steady_s"):
        assert out[key] >= 0
    assert out["frechet_now_first_s"] >= out["frechet_reference_setup_s"]
    assert out["statistics_max_rel_diff"] < 1e-12
    assert out["fid_previous"] > 0 and out["fid_rel_diff"] < 1e-9


def test_arguments_are_checked(eval_cost):
    with pytest.raises(SystemExit):
        eval_cost.parse_args(["--paths", "previous,bogus"])
    args = eval_cost.parse_args(["--n", "500", "--paths", "monitor"])
    assert args.path_list == ["monitor"] and args.n == 500 and args.grid == []


def test_extraction_grid_times_each_setting_and_restores_the_extractor(eval_cost, stand_in_extractor):
    from ganforge.metrics.evaluator import inception_extractor

    images = torch.randint(0, 256, (40, 1, 28, 28), dtype=torch.uint8)
    rows = eval_cost.extraction_grid(images, torch.device("cpu"), [(16, 1, 0), (32, 0, 1)], repeats=2)
    assert [(r["batch"], r["channels_last"], r["cudnn_benchmark"]) for r in rows] == [(16, True, False),
                                                                                     (32, False, True)]
    assert all(r["seconds"] > 0 and r["images_per_s"] > 0 for r in rows)
    assert rows[0]["fid_to_first"] == 0.0 and rows[1]["max_rel_feature_diff"] < 1e-6
    assert abs(rows[1]["fid_to_first"]) < 1e-9
    ext = inception_extractor(None, "cpu", "fp32", 16, reuse=True)
    assert ext.batch_size == 16 and ext.channels_last is True and ext.cudnn_benchmark is True


@pytest.mark.parametrize("grid", ["250", "250:2:0", "a:b:c", "0:1:1"])
def test_bad_extraction_grid_is_refused(eval_cost, grid):
    with pytest.raises(SystemExit):
        eval_cost.parse_args(["--extraction-grid", grid])
    assert eval_cost.parse_args(["--extraction-grid", "250:1:0;500:0:1"]).grid == [(250, 1, 0), (500, 0, 1)]


def test_a_class_subset_preset_is_refused_with_one_line(eval_cost, capsys):
    preset = Path(__file__).parent.parent / "configs" / "finetune-fashion-mnist-class.yaml"
    code = eval_cost.main(["--config", str(preset), "--paths", "none", "--n", "100"])
    err = capsys.readouterr().err.strip()
    assert code == 2 and len(err.splitlines()) == 1 and "data.classes" in err

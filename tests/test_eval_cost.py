"""benchmarks/eval_cost.py: the statistics + Frechet part agrees between the previous and current code."""

import importlib.util
from pathlib import Path

import pytest
import torch

SCRIPT = Path(__file__).parent.parent / "benchmarks" / "eval_cost.py"


@pytest.fixture
def eval_cost():
    spec = importlib.util.spec_from_file_location("eval_cost", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


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
    assert args.path_list == ["monitor"] and args.n == 500 and not args.cudnn_benchmark

"""BatchNorm statistics of the EMA generator recomputed from its own samples (train.ema_bn_batches)."""

import copy
import json

import pytest
import torch
from torch import nn

from conftest import tiny_config, tiny_dataset, write_gray_npz
from ganforge import checkpoint as ckpt
from ganforge.cli import main
from ganforge.metrics.catalog import register_metric, unregister_metric
from ganforge.train.ema import EMA, batchnorm_layers, generator_draws, recompute_batchnorm_statistics
from ganforge.train.trainer import Trainer


def _batches(n: int, seed: int = 0) -> list[torch.Tensor]:
    gen = torch.Generator().manual_seed(seed)
    return [torch.randn(8, 3, generator=gen) * (1 + i) + i for i in range(n)]


def test_statistics_are_the_plain_average_over_the_batches():
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(3, 4), nn.BatchNorm1d(4), nn.ReLU(), nn.Linear(4, 2))
    model(torch.randn(8, 3))  # running statistics from an unrelated batch, to be replaced
    params = [p.detach().clone() for p in model.parameters()]
    xs = _batches(3)
    assert recompute_batchnorm_statistics(model, lambda i: (xs[i],), 3) == 1
    with torch.no_grad():
        h = [model[0](x) for x in xs]
    bn = model[1]
    torch.testing.assert_close(bn.running_mean, torch.stack([a.mean(0) for a in h]).mean(0))
    torch.testing.assert_close(bn.running_var, torch.stack([a.var(0, unbiased=True) for a in h]).mean(0))
    assert int(bn.num_batches_tracked) == 3
    assert all(torch.equal(a, b) for a, b in zip(params, model.parameters()))
    assert bn.momentum == 0.1 and model.training and bn.training  # modes and momentum restored


def test_a_model_in_eval_mode_stays_in_eval_mode_and_no_batchnorm_means_no_work():
    model = nn.Sequential(nn.Linear(3, 4), nn.BatchNorm1d(4), nn.Dropout(0.5)).eval()
    calls = []
    recompute_batchnorm_statistics(model, lambda i: calls.append(i) or (_batches(1)[0],), 2)
    assert calls == [0, 1] and not model.training and not model[1].training and not model[2].training
    before = model[1].running_mean.clone()
    assert recompute_batchnorm_statistics(model, lambda i: calls.append(i), 0) == 0  # 0 batches: untouched
    assert recompute_batchnorm_statistics(nn.Linear(3, 3), lambda i: calls.append(i), 5) == 0
    assert calls == [0, 1] and torch.equal(model[1].running_mean, before)


def test_ema_refreshes_once_per_update_and_the_update_copies_g_again():
    torch.manual_seed(0)
    G = nn.Sequential(nn.Linear(3, 4), nn.BatchNorm1d(4))
    G(torch.randn(8, 3) + 5)
    ema = EMA(G, decay=0.9)
    xs = _batches(2)
    assert ema.refresh_statistics(lambda i: (xs[i],), 2)
    mean = batchnorm_layers(ema.model)[0].running_mean.clone()
    assert not torch.allclose(mean, G[1].running_mean)
    assert not ema.refresh_statistics(lambda i: (xs[i],), 2)  # nothing changed since: no work
    G(torch.randn(8, 3))
    ema.update(G, 1)
    for e, b in zip(ema.model.buffers(), G.buffers()):  # training still sees G's statistics
        assert torch.equal(e, b)
    assert ema.refresh_statistics(lambda i: (xs[i],), 2)


def test_checkpoints_hold_the_ema_generators_own_statistics(tmp_path):
    cfg = tiny_config(tmp_path, "train.ema_decay=0.9", "train.ema_bn_batches=4", "train.steps=3")
    t = Trainer(cfg, tmp_path / "run", dataset=tiny_dataset())
    t.train()
    saved = ckpt.find_latest(tmp_path / "run").weights
    names = [k for k in saved["G_ema"] if k.endswith("running_mean")]
    assert names
    # The saved EMA weights with G's statistics put back, recomputed the same way: the same numbers.
    model = copy.deepcopy(t.ema.model)
    model.load_state_dict(saved["G_ema"])
    for k, v in saved["G"].items():
        if "running" in k or "num_batches" in k:
            model.get_buffer(k).copy_(v)
    ema = EMA(model, decay=0.9)
    assert ema.refresh_statistics(generator_draws(t.task_cls, cfg), 4)
    for k in names:
        assert torch.equal(ema.model.get_buffer(k), saved["G_ema"][k]), k
        assert not torch.equal(saved["G_ema"][k], saved["G"][k]), k


@pytest.fixture
def mean_pixel(monkeypatch, tmp_path):
    """A metric that reads every generated pixel: the mean of the generated images (0-255)."""
    monkeypatch.setenv("GANFORGE_CACHE", str(tmp_path / "cache"))

    @register_metric("toy_mean_pixel", needs=("images",), better="lower")
    def _mean(images, *, tag, split, options):
        return {f"toy_mean_pixel{tag}_{split}": images.fake.double().mean().item()}

    yield "toy_mean_pixel"
    unregister_metric("toy_mean_pixel")


def test_eval_recomputes_the_statistics_of_a_run_saved_without_them_as_training_would(tmp_path, mean_pixel):
    data = write_gray_npz(tmp_path / "d.npz", n=32)
    common = [f"data.dataset={data}", "data.split=all", "train.ema_decay=0.9", "train.steps=3"]
    runs = {}
    for n in (0, 4):  # the same trajectory (training never reads the EMA's statistics), saved two ways
        cfg = tiny_config(tmp_path, *common, f"train.ema_bn_batches={n}")
        Trainer(cfg, tmp_path / f"bn{n}").train()
        runs[n] = tmp_path / f"bn{n}"
    args = ["--metrics", mean_pixel, "--n", "16", "--split", "all"]
    for run, extra in ((runs[0], []), (runs[0], ["--bn-batches", "4"]), (runs[4], [])):
        assert main(["eval", str(run), *args, *extra]) == 0
    last = [json.loads((r / "metrics.jsonl").read_text().splitlines()[-1]) for r in (runs[0], runs[4])]
    copied = json.loads((runs[0] / "metrics.jsonl").read_text().splitlines()[-2])
    key = f"{mean_pixel}16_all"
    assert last[0]["bn_batches"] == 4 and "recomputed from 4 batches of 16" in last[0]["protocol"]
    assert last[0][key] == last[1][key] != copied[key]
    assert "bn_batches" not in copied and "bn_batches" not in last[1]


@pytest.mark.parametrize("argv, says", [(["--real", "a", "--fake", "b", "--bn-batches", "4"], "run's generator"),
                                         (["x", "--bn-batches", "0"], "--bn-batches")])
def test_bad_bn_batches_is_one_line_exit_2(argv, says, capsys):
    assert main(["eval", *argv]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and says in err[0]


def test_bn_batches_on_a_generator_without_batchnorm_is_refused(tmp_path, mean_pixel, capsys):
    data = write_gray_npz(tmp_path / "d.npz", n=32)
    cfg = tiny_config(tmp_path, f"data.dataset={data}", "data.split=all", "train.ema_decay=0.9", "train.steps=1",
                      "model.arch=r3gan", "model.g_width=8", "model.d_width=8")
    Trainer(cfg, tmp_path / "run").train()
    capsys.readouterr()  # training's progress lines
    assert main(["eval", str(tmp_path / "run"), "--metrics", mean_pixel, "--n", "8", "--split", "all",
                 "--bn-batches", "2"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "--bn-batches" in err[0] and "no BatchNorm" in err[0]

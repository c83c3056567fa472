"""The one training step: both tasks, lazy penalties, frozen parameters, recorded draws."""

import pytest
import torch

from conftest import tiny_config, tiny_dataset
from ganforge.regularizers import DRegularization, Penalty
from ganforge.tasks.base import Task
from ganforge.tasks.draws import Draws
from ganforge.train.trainer import Trainer


def _trainer(tmp_path, *overrides, dataset=None):
    cfg = tiny_config(tmp_path, *overrides)
    return Trainer(cfg, tmp_path / "run", dataset=dataset or tiny_dataset())


INPAINT = ("model.arch=inpaint", "model.g_width=8", "model.d_width=8", "model.res_blocks=1",
           "inpaint.masks=boxes", "loss.name=hinge")


@pytest.mark.parametrize("overrides", [(), ("model.num_classes=10",), INPAINT], ids=["gen", "cond", "inpaint"])
def test_one_step_serves_every_task(tmp_path, overrides):
    t = _trainer(tmp_path, "optim.n_dis=2", *overrides)
    assert isinstance(t.task, Task)
    g0 = [p.detach().clone() for p in t.G.parameters()]
    d0 = [p.detach().clone() for p in t.D.parameters()]
    logs = t.train_step()
    assert {"d_loss", "g_loss", "d_real", "d_fake"} <= set(logs)
    assert all(torch.isfinite(torch.tensor(v)) for v in logs.values())
    assert t.step == 1 and t.counters.images_seen == 2 * 16
    assert any(not torch.equal(a, b) for a, b in zip(g0, t.G.parameters()))
    assert any(not torch.equal(a, b) for a, b in zip(d0, t.D.parameters()))
    # D's parameters are trainable again after the G phase switched them off.
    assert all(p.requires_grad for p in t.D.parameters())


def test_lazy_penalty_is_due_on_its_d_steps_and_scaled_by_its_interval(tmp_path):
    t = _trainer(tmp_path, "optim.n_dis=1", "model.arch=mlp", "model.dropout=0")
    calls = []

    def fn(critic, real, fake, draws):
        calls.append(t.step)
        return critic(real).float().mean() * 0 + 2.0

    t.step_fn.regs = DRegularization([Penalty("probe", 0.5, every=3, fn=fn)])
    logged = [("probe" in t.train_step()) for _ in range(7)]
    assert calls == [0, 3, 6] and logged == [True, False, False, True, False, False, True]
    # weight * every * value = 0.5 * 3 * 2 is added to D's loss on those steps only
    total, logs = t.step_fn.regs.penalty(3, lambda x: x.flatten(1).sum(1), torch.zeros(2, 1, 2, 2),
                                         torch.zeros(2, 1, 2, 2), t.streams.draws)
    assert total.item() == pytest.approx(3.0) and logs["probe"].item() == 2.0
    assert t.step_fn.regs.penalty(4, None, None, None, None) == (None, {})


def test_frozen_parameters_stay_frozen_through_the_step(tmp_path):
    t = _trainer(tmp_path, "model.arch=mlp", "model.dropout=0")
    frozen = list(t.D.parameters())[:2]
    for p in frozen:
        p.requires_grad_(False)
    # Rebuild the optimizer and step over the trainable parameters only, as a fine-tuning run does.
    from ganforge.train.optim import build_adam
    from ganforge.train.step import optimizer_params

    t.opt_d = t.step_fn.opt_d = build_adam([p for p in t.D.parameters() if p.requires_grad],
                                           t.cfg.optim.lr_d, t.cfg.optim, t.plan)
    t.step_fn.d_params = optimizer_params(t.opt_d)
    before = [p.detach().clone() for p in frozen]
    for _ in range(2):
        t.train_step()
    assert all(torch.equal(a, b) for a, b in zip(before, frozen))
    assert not any(p.requires_grad for p in frozen)


def test_recorded_draws_replay_the_eager_stream():
    eager = Draws(torch.Generator().manual_seed(3))
    recorded = Draws(torch.Generator().manual_seed(3))

    def one_step(d):
        return [d.normal(4, 2), d.integers(10, 4), d.uniform(4, 1, 1, 1)]

    want = [one_step(eager) for _ in range(3)]
    recorded.record()
    first = one_step(recorded)
    recorded.arm()
    got = [first]
    for _ in range(2):
        recorded.refill()
        got.append([t.clone() for t in one_step(recorded)])
    for a, b in zip(want, got):
        for x, y in zip(a, b):
            assert torch.equal(x, y)
    recorded.stop()
    assert recorded.normal(2).shape == (2,)

"""Adam for both players, implemented as the execution plan says.

The plan decides the implementation (fused kernels, capturable state for CUDA
graphs); the config decides the algorithm (learning rates, betas). Loading an
optimizer state saved by another run (another device or plan) re-applies this
run's implementation with :func:`apply_plan`.

Under CUDA graphs each group's learning rate is a one-element tensor on the
parameters' device: the fused kernel reads it from device memory at every
replay, so :func:`set_learning_rates` can change it in place (a schedule, a
rollback) without capturing the step again. Elsewhere it stays a Python float.
"""

from __future__ import annotations

import torch
from torch import nn

from ganforge.config import OptimConfig
from ganforge.train.plan import ExecutionPlan


def build_adam(params: list[nn.Parameter] | list[dict], lr: float, cfg: OptimConfig,
               plan: ExecutionPlan) -> torch.optim.Adam:
    """Adam(``lr``, betas from ``optim.beta1/beta2``) over ``params`` (a list, or parameter groups)."""
    opt = torch.optim.Adam(params, lr=lr, betas=(cfg.beta1, cfg.beta2))
    apply_plan(opt, plan)
    return opt


def apply_plan(opt: torch.optim.Optimizer, plan: ExecutionPlan) -> None:
    """Fused / capturable flags as ``plan`` wants them, also for state loaded from a checkpoint."""
    for group in opt.param_groups:
        group["fused"] = plan.fused_optim or None
        group["capturable"] = plan.cuda_graphs
        if plan.fused_optim:
            group["foreach"] = None
        lr = group["lr"]
        if plan.cuda_graphs and not torch.is_tensor(lr):
            # A CPU scalar would be read once, at capture; a device tensor is read at each replay.
            group["lr"] = torch.tensor(float(lr), dtype=torch.float32, device=group["params"][0].device)
        elif not plan.cuda_graphs and torch.is_tensor(lr):
            group["lr"] = float(lr)
    on_device = plan.fused_optim or plan.cuda_graphs
    for p, state in opt.state.items():
        if torch.is_tensor(state.get("step")):
            state["step"] = state["step"].to(p.device if on_device else "cpu", torch.float32)


def set_learning_rates(opt: torch.optim.Optimizer, base_lr: float, factor: float) -> None:
    """Each group's rate = ``base_lr * factor`` times the group's own multiplier (``lr_mult``, default 1).

    A tensor rate (CUDA graphs) is filled in place: a captured step keeps reading the same tensor.
    """
    for group in opt.param_groups:
        lr = base_lr * factor * group.get("lr_mult", 1.0)
        if torch.is_tensor(group["lr"]):
            group["lr"].fill_(lr)
        else:
            group["lr"] = lr


def set_beta2(opt: torch.optim.Optimizer, beta2: float) -> None:
    """Adam's second-moment decay of every group (a schedule, ganforge.train.schedule); beta1 unchanged.

    A Python float, read at each step: a CUDA-graph-captured step would keep the captured value,
    so the trainer does not capture a run whose beta2 is scheduled.
    """
    for group in opt.param_groups:
        group["betas"] = (group["betas"][0], float(beta2))

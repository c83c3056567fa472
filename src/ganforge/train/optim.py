"""Adam for both players, implemented as the execution plan says.

The plan decides the implementation (fused kernels, capturable state for CUDA
graphs); the config decides the algorithm (learning rates, betas). Loading an
optimizer state saved by another run (another device or plan) re-applies this
run's implementation with :func:`apply_plan`.
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
    on_device = plan.fused_optim or plan.cuda_graphs
    for p, state in opt.state.items():
        if torch.is_tensor(state.get("step")):
            state["step"] = state["step"].to(p.device if on_device else "cpu", torch.float32)


def set_learning_rates(opt: torch.optim.Optimizer, base_lr: float, factor: float) -> None:
    """Each group's rate = ``base_lr * factor`` times the group's own multiplier (``lr_mult``, default 1)."""
    for group in opt.param_groups:
        group["lr"] = base_lr * factor * group.get("lr_mult", 1.0)

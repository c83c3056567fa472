"""``ganforge train``: train a model from a config (or resume a run)."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from ganforge.commands._options import add_threads_option
from ganforge.errors import CheckpointError, ConfigError

# Keys that may change when resuming without --allow-config-change: they do not
# affect the state being continued, only how long and how often things happen. The
# execution plan adds the keys that only change how the same arithmetic is executed
# (a run moved to another machine picks that machine's fastest path). Keys that change
# the algorithm (loss, model, optimizer, train.fast, reuse_fake, batch_d, sync_bn)
# still need the flag.
CADENCE_KEYS = ("train.steps", "train.max_seconds", "train.log_every", "train.sample_every", "train.ckpt_every",
                "train.keep_last", "train.eval_every", "train.eval_n", "train.tensorboard")
# Keys that decide which weights a run started from and which parameters its optimizers
# hold: a resumed run cannot change them even with --allow-config-change (start a new
# run from this one with train.init_from instead).
FIXED_ON_RESUME = ("train.init_from", "train.init_partial", "train.freeze_d", "train.freeze_g")


class _Registered(str):
    """``train --help``'s epilog: the registered tasks, model families and losses, looked up when printed.

    The registries import torch (~1.5 s); building the parser for every command must
    not, so argparse's ``%(prog)`` substitution is the moment the names are read.
    """

    def __contains__(self, item) -> bool:
        return item == "%(prog)" or super().__contains__(item)

    def __mod__(self, params) -> str:
        from ganforge.losses import LOSSES
        from ganforge.models import model_names
        from ganforge.tasks import task_names

        return (f"registered: task {' | '.join(task_names())}; model.arch {' | '.join(model_names())}; "
                f"loss.name {' | '.join(LOSSES)}")


def register(sub) -> None:
    p = sub.add_parser("train", help="train a GAN", description="Train a GAN from a YAML config with "
                       "section.key=value overrides, or resume a run.", epilog=_Registered("registered names"))
    p.add_argument("--config", "-c", help="YAML config file, or a built-in preset's name (`ganforge presets`)")
    p.add_argument("--resume", metavar="RUN_DIR", help="continue a run from its newest checkpoint")
    p.add_argument("--allow-config-change", action="store_true",
                   help="resume even if overrides change keys that affect training")
    p.add_argument("--dry-run", action="store_true", help="print the resolved config and exit")
    p.add_argument("--run-dir", help="exact run directory (default: out_dir/name, suffixed if taken)")
    p.add_argument("overrides", nargs="*", metavar="KEY=VALUE", help="e.g. train.steps=500 optim.lr_g=1e-4")
    add_threads_option(p)
    p.set_defaults(func=run)


def _dry_run(cfg) -> int:
    """``--dry-run``: refuse what training would refuse about the networks, then print the resolved config.

    G and D are built on the meta device (shapes only: no memory, no compute), so
    an architecture the config cannot have (e.g. a ``model.attention`` size that
    is not a feature-map size of both networks) is the same one-line error here.
    """
    import torch

    from ganforge.config import dump_yaml
    from ganforge.models import build_models
    from ganforge.tasks import task_class

    task_class(cfg).check_config(cfg)
    with torch.device("meta"):
        build_models(cfg)
    print(dump_yaml(cfg), end="")
    return 0


def run(args: argparse.Namespace) -> int:
    from ganforge import checkpoint as ckpt
    from ganforge.commands._paths import check_output_dir
    from ganforge.config import diff_configs, load_config
    from ganforge.train import distributed
    from ganforge.train.plan import EXECUTION_KEYS
    from ganforge.train.rundir import new_run_dir
    from ganforge.train.trainer import Trainer

    if args.threads is not None:  # the execution plan applies and records it
        args.overrides = [*(args.overrides or []), f"train.threads={args.threads}"]
    if args.resume:
        run_dir = Path(args.resume)
        if not (run_dir / "config.yaml").is_file():
            raise ConfigError("--resume", f"{run_dir} is not a run directory (no config.yaml)")
        saved = load_config(run_dir / "config.yaml")
        cfg = load_config(run_dir / "config.yaml", args.overrides)
        resumable = CADENCE_KEYS + EXECUTION_KEYS
        changed = {k: v for k, v in diff_configs(saved, cfg).items() if k not in resumable}
        fixed = [k for k in changed if k in FIXED_ON_RESUME]
        if fixed:
            (a, b), key = changed[fixed[0]], fixed[0]
            raise ConfigError("--resume", f"{key} cannot change when resuming ({a!r} -> {b!r}); "
                              f"start a new run with train.init_from={run_dir}")
        if changed and not args.allow_config_change:
            keys = ", ".join(f"{k} ({a!r} -> {b!r})" for k, (a, b) in changed.items())
            raise ConfigError("--resume", f"config differs from the run's: {keys}; pass --allow-config-change")
        if args.dry_run:
            return _dry_run(cfg)
        check_output_dir(run_dir, "--resume")  # before the data is loaded: a read-only run fails in a second
        if distributed.launched_world_size() == 1:  # under torchrun rank 0 tidies, in Trainer.resume
            ckpt.clean_stale(run_dir / "checkpoints")  # first: a killed save's parked step is found again
        latest = ckpt.find_latest(run_dir)  # verified once, then handed to the trainer
        if latest is not None:
            trainer = Trainer.resume(run_dir, cfg, checkpoint=latest)
            if trainer.dist.is_main:
                print(f"resuming {run_dir} at step {trainer.step}", file=sys.stderr)
        else:
            trainer = _restart(Trainer, cfg, run_dir)
    else:
        cfg = load_config(args.config, args.overrides)
        if args.dry_run:
            return _dry_run(cfg)
        run_dir = Path(args.run_dir) if args.run_dir else new_run_dir(cfg)
        check_output_dir(run_dir, "--run-dir" if args.run_dir else "out_dir")  # before the data is loaded
        if not (run_dir / "checkpoints").exists():
            trainer = Trainer(cfg, run_dir)
        elif ckpt.has_valid_checkpoint(run_dir):
            raise ConfigError("--run-dir", f"{run_dir} already holds a run; use --resume {run_dir}")
        else:
            trainer = _restart(Trainer, cfg, run_dir)
    try:
        summary = trainer.train()
        distributed.shutdown(wait_for_peers=True)  # every rank has finished: leave together
    except OSError as exc:  # e.g. the disk filled up while writing metrics or samples
        raise CheckpointError(exc.filename or run_dir, f"cannot write the run ({exc.strerror or exc}); "
                              f"the checkpoints written so far are intact") from None
    finally:
        distributed.shutdown()  # after an error: leave without waiting (no-op once left, or without torchrun)
    if trainer.dist.is_main:  # under torchrun every rank runs this; one summary is enough
        print(f"run directory: {summary['run_dir']}")
        if summary["samples"]:
            print(f"sample grid:   {summary['samples']}")
        print(f"checkpoint:    {summary['checkpoint']}")
        print(f"steps: {summary['step']}  images/s: {summary['images_per_s']:.0f}  time: {summary['seconds']:.1f}s")
        if summary.get("out_of_time"):
            print(f"time budget reached (train.max_seconds={cfg.train.max_seconds:g}); continue with: "
                  f"ganforge train --resume {summary['run_dir']} train.max_seconds=0")
        elif summary["stopped_early"]:
            print(f"stopped early; continue with: ganforge train --resume {summary['run_dir']}")
    if trainer.dist.enabled:
        distributed.exit_process(0)
    return 0


def _restart(trainer_cls, cfg, run_dir: Path):
    """Start a run that holds no valid checkpoint again from step 0, in place.

    This is a run stopped (killed, disk full) before its first checkpoint was complete:
    there is nothing to resume, and refusing to reuse the directory would leave it stuck.
    Unusable checkpoint directories are kept as ``rejected-step_*``.
    """
    from ganforge import checkpoint as ckpt

    trainer = trainer_cls(cfg, run_dir)
    if trainer.dist.is_main:
        try:
            rejected = ckpt.set_aside_invalid(run_dir / "checkpoints")
            trainer.metrics.truncate_after(0)  # records of the interrupted attempt
        except OSError as exc:
            raise CheckpointError(exc.filename or run_dir, f"cannot prepare the restart ({exc.strerror or exc})") from None
        why = (f"none of its checkpoints loads (kept as {', '.join(p.name for p in rejected)})" if rejected
               else "it stopped before its first checkpoint was complete")
        print(f"{run_dir} has no valid checkpoint ({why}): starting it again from step 0", file=sys.stderr)
    trainer.dist.barrier()
    return trainer

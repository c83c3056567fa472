"""Transfer learning on real data: fine-tuning a pretrained GAN on 500 images of an unseen class vs training from scratch.

Recipe (Fashion-MNIST, the DCGAN preset at 28x28 with widths ``--width``; the defaults are
configs/dcgan-fashion-mnist-0-8.yaml and configs/finetune-fashion-mnist-class.yaml):

1. pretrain on the train images of classes 0-8 (``data.classes``), ``--pretrain-steps`` steps;
2. on 500 train images of the held-out class 9, ankle boot (``data.classes=[9] data.limit=500``),
   train each variant for ``--steps`` steps: from scratch, from scratch with DiffAugment,
   fine-tuned from step 1 (``train.init_from``), fine-tuned with FreezeD (``train.freeze_d``),
   fine-tuned with FreezeD and DiffAugment; plus scratch for pretrain + fine-tune steps
   (the same total training time as pretraining and fine-tuning together);
3. evaluate each generator on ``--n`` samples: FID against the held-out class's 1,000 test
   images (TF-Inception pool3, the protocol of ``ganforge eval``), and the Fashion-MNIST
   domain classifier's view: the share of samples it labels as the held-out class and the
   Frechet distance of its features to the same test images.

Writes JSON (``--json``), copies every final sample grid next to it, and prints a table::

    PYTHONPATH=src OMP_WAIT_POLICY=PASSIVE nice -n 10 python benchmarks/transfer_demo.py --extra \\
        --work runs/transfer-demo --json benchmarks/results/transfer_demo.json
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
import time
from pathlib import Path

import numpy as np
import torch

from ganforge.perf.machine import device_name

ROOT = Path(__file__).resolve().parents[1]
PRESET = ROOT / "configs" / "dcgan-fashion-mnist.yaml"
DA = "train.augment=color,translation,cutout"


def variants(init: str, steps: int, pretrain_steps: int, freeze_d: int) -> dict[str, list[str]]:
    """Name -> overrides of each fine-tuning variant (all on the same images)."""
    init_from, fd = f"train.init_from={init}", f"train.freeze_d={freeze_d}"
    return {
        "scratch": [],
        "scratch+DA": [DA],
        "finetune": [init_from],
        "finetune+FreezeD": [init_from, fd],
        "finetune+FreezeD+DA": [init_from, fd, DA],
    }


def extra_variants(pretrain_steps: int, steps: int) -> dict[str, list[str]]:
    """``--extra``: scratch for as long as pretraining and fine-tuning together (equal total time)."""
    return {f"scratch {pretrain_steps + steps} steps": [f"train.steps={pretrain_steps + steps}"]}


def train(work: Path, name: str, overrides: list[str]) -> dict:
    """Train one run (or reuse a finished one) and return its summary."""
    from ganforge.config import load_config
    from ganforge.train.trainer import Trainer

    run_dir = work / name.replace(" ", "_").replace("+", "_")
    summary_path = run_dir / "summary.json"
    if summary_path.is_file():
        summary = json.loads(summary_path.read_text())
        if not summary["stopped_early"]:
            return summary
    if run_dir.exists():
        shutil.rmtree(run_dir)
    cfg = load_config(PRESET, [f"name={run_dir.name}", f"out_dir={work}", *overrides])
    cfg.train.sample_every = cfg.train.ckpt_every = cfg.train.steps
    cfg.train.log_every = max(50, cfg.train.steps // 10)
    t0 = time.perf_counter()
    summary = Trainer(cfg, run_dir).train()
    summary.update(wall_seconds=round(time.perf_counter() - t0, 1), steps=cfg.train.steps,
                   train_seconds=round(summary["seconds"], 1), overrides=overrides)
    summary_path.write_text(json.dumps(summary, indent=1))
    if summary["stopped_early"]:  # Ctrl-C / SIGTERM: the trainer saved its checkpoint; stop here too
        raise SystemExit(f"{name}: stopped at step {summary['step']}; re-run to continue with a fresh run")
    return summary


def write_class_test_set(path: Path, cls: int) -> int:
    """The held-out class's test images as an .npz (``images``, ``labels``); returns their count."""
    from ganforge.data import load_dataset
    from ganforge.data.subset import select

    ds = select(load_dataset("fashion-mnist", split="test"), classes=[cls])
    path.parent.mkdir(parents=True, exist_ok=True)
    np.savez(path, images=ds.images.numpy(), labels=ds.labels.numpy())
    return len(ds)


def samples(run_dir: Path, n: int) -> torch.Tensor:
    """``n`` images of the run's generator (EMA when present), uint8 ``(n, 1, 28, 28)``, seed 0."""
    from ganforge.artifacts import load_generator
    from ganforge.metrics.inception import as_uint8_batch
    from ganforge.sampling import generate

    G, cfg, _ = load_generator(run_dir)
    return torch.cat([as_uint8_batch(b) for b in generate(G, cfg, n, seed=0)])


def classifier_metrics(fake: torch.Tensor, real: torch.Tensor, cls: int, classifier) -> dict:
    """The domain classifier's view: share labelled ``cls``, Frechet distance of its features, IS-formula score."""
    from ganforge.metrics.classifier import classifier_score
    from ganforge.metrics.fid import fid_from_features

    f_fake, logits = classifier.predict(fake)
    f_real, _ = classifier.predict(real)
    return {"cls_share": float((logits.argmax(1) == cls).float().mean()),
            "cls_fid": float(fid_from_features(f_real.numpy(), f_fake.numpy())),
            "cls_score": classifier_score(logits, splits=10)}


def inception_fid(fake: torch.Tensor, real_npz: Path, n: int) -> dict:
    """FID of ``fake`` against the images of ``real_npz`` (TF-Inception pool3, fp32, the ``ganforge eval`` protocol)."""
    from ganforge.metrics.compute import compute_metrics

    result = compute_metrics(list(fake.split(64)), str(real_npz), "test", ("fid",), n, image_size=28, channels=1)
    key = next(k for k in result if k.startswith("fid"))
    return {"fid": result[key], "fid_key": key, "n_real": result["n_real"], "protocol": result["protocol"]}


def parse(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--work", default="runs/transfer-demo", help="directory for the runs (reused when re-run)")
    p.add_argument("--json", default="benchmarks/results/transfer_demo.json")
    p.add_argument("--held-out", type=int, default=9, help="class left out of pretraining (9: ankle boot)")
    p.add_argument("--limit", type=int, default=500, help="train images of the held-out class")
    p.add_argument("--pretrain-steps", type=int, default=1000)
    p.add_argument("--steps", type=int, default=300, help="steps of each fine-tuning / scratch variant")
    p.add_argument("--freeze-d", type=int, default=1)
    p.add_argument("--width", type=int, default=32, help="model.g_width and model.d_width (the DCGAN preset: 64)")
    p.add_argument("--batch-size", type=int, default=64)
    p.add_argument("--n", type=int, default=1000, help="generated images per evaluation")
    p.add_argument("--only", default="", help="comma list of variant names to run (default: all)")
    p.add_argument("--extra", action="store_true",
                   help="also evaluate the pretrained model itself and train scratch for pretrain + fine-tune steps")
    p.add_argument("--train-only", action="store_true", help="train the runs, evaluate nothing")
    p.add_argument("--threads", type=int, default=1,
                   help="torch threads (1: on a shared machine, spinning OpenMP threads waste the cores)")
    p.add_argument("--fid", default="", help="comma list of variants that get an Inception FID (default: all)")
    return p.parse_args(argv)


def run(args: argparse.Namespace) -> int:
    from ganforge.metrics.classifier import get_domain_classifier

    torch.set_num_threads(args.threads)

    work, out = Path(args.work), Path(args.json)
    others = [c for c in range(10) if c != args.held_out]
    model = [f"model.g_width={args.width}", f"model.d_width={args.width}", f"train.batch_size={args.batch_size}"]
    pre = train(work, "pretrain", [*model, f"data.classes={others}", f"train.steps={args.pretrain_steps}"])
    subset = [*model, f"data.classes=[{args.held_out}]", f"data.limit={args.limit}", f"train.steps={args.steps}"]
    runs = {"pretrained on 0-8, no fine-tuning": pre} if args.extra else {}
    todo = variants(pre["run_dir"], args.steps, args.pretrain_steps, args.freeze_d)
    if args.extra:
        todo.update(extra_variants(args.pretrain_steps, args.steps))
    wanted = [v for v in args.only.split(",") if v] or list(todo)
    for name in wanted:
        overrides = subset + todo[name]
        runs[name] = train(work, name, overrides)
    if args.train_only:
        return 0

    real_npz = work / f"fashion-mnist-test-class{args.held_out}.npz"
    n_real = write_class_test_set(real_npz, args.held_out)
    real = torch.from_numpy(np.load(real_npz)["images"])
    classifier, cls_meta = get_domain_classifier("fashion-mnist")
    grids = out.with_suffix("")
    grids.mkdir(parents=True, exist_ok=True)
    record = {"what": "fine-tune vs scratch on a held-out Fashion-MNIST class", "preset": PRESET.name,
              "model": model, "held_out": args.held_out, "limit": args.limit,
              "pretrain_steps": args.pretrain_steps, "steps": args.steps, "freeze_d": args.freeze_d,
              "n_fake": args.n, "n_real": n_real, "classifier_test_accuracy": cls_meta.get("test_accuracy"),
              "device": "cpu", "cpu": device_name(torch.device("cpu")), "threads": torch.get_num_threads(),
              "torch": torch.__version__, "rows": []}
    fakes = {}
    for name, summary in runs.items():  # the cheap metrics first, for every variant
        fakes[name] = samples(Path(summary["run_dir"]), args.n)
        if summary.get("samples"):
            shutil.copyfile(summary["samples"], grids / (Path(summary["run_dir"]).name + ".png"))
        record["rows"].append({"variant": name, "run": Path(summary["run_dir"]).name,
                               **{k: summary.get(k) for k in ("steps", "train_seconds", "images_per_s")},
                               "overrides": [o.replace(str(work) + "/", "") for o in summary.get("overrides", [])],
                               **classifier_metrics(fakes[name], real, args.held_out, classifier)})
    _write(out, record)
    fid_for = [v for v in args.fid.split(",") if v] or list(runs)
    for row in sorted(record["rows"], key=lambda r: fid_for.index(r["variant"]) if r["variant"] in fid_for else 99):
        if row["variant"] in fid_for:  # Inception is the slow part: one variant at a time, saved as it goes
            t0 = time.perf_counter()
            row.update(inception_fid(fakes[row["variant"]], real_npz, args.n),
                       fid_seconds=round(time.perf_counter() - t0, 1))
            print(f"{row['variant']}: FID {row['fid']:.1f}", file=sys.stderr)
            _write(out, record)
    print(table(record))
    return 0


def _write(out: Path, record: dict) -> None:
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(record, indent=1, default=list))


def table(record: dict) -> str:
    """The Markdown table of a result file."""
    from ganforge.metrics.compute import count_tag

    n, c = record["n_fake"], record["held_out"]
    lines = [f"| variant | steps | train s | FID-{count_tag(n)} vs class-{c} test ({record['n_real']}) "
             f"| classified as class {c} | classifier FD |", "|---|---:|---:|---:|---:|---:|"]
    for r in record["rows"]:
        fid = f"{r['fid']:.1f}" if "fid" in r else "not run"
        lines.append(f"| {r['variant']} | {r['steps']} | {r['train_seconds']} | {fid} | {r['cls_share']:.3f} "
                     f"| {r['cls_fid']:.2f} |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    return run(parse(argv))


if __name__ == "__main__":
    sys.exit(main())

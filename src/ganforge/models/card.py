"""The model card (``README.md``) of a saved generator: what it is, what it saw, what it scores.

:func:`model_card` writes a short Markdown page from the config, the training
step and the evaluation records that apply to the saved weights;
:func:`run_evaluations` reads those records from a run's ``metrics.jsonl``
(``{"event": "eval", ...}`` from periodic evaluation during training and from
``ganforge eval``; ``{"eval": "inpaint", ...}`` from ``ganforge eval-inpaint``).

Only measurements of the saved weights are listed as such: records at the saved
step whose generator matches (an EMA export is measured by periodic evaluation,
which uses the EMA generator when there is one, and by ``ganforge eval`` without
``--no-ema``). When none exists the card says so and names the latest earlier
measurement with its step, never as a score of these weights.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Iterable

# Keys of evaluation records that describe the measurement rather than score the generator
# (besides ganforge.report.history.EVAL_META_KEYS).
_NOT_METRICS = frozenset({"eval_seconds", "eval_setup_seconds", "classes", "truncation"})
# Protocol of periodic evaluation during training (its records carry no "protocol" entry).
TRAINING_EVAL_PROTOCOL = ("periodic evaluation during training (train.eval_every): generated images from the "
                          "EMA generator when the run has one, against the real split named in the key; "
                          "TF-Inception pool3 features, images quantised to uint8, FID in float64")


def metric_items(record: dict) -> list[tuple[str, Any]]:
    """``(name, value)`` of the scores in an evaluation record (numbers and ``[mean, std]`` pairs)."""
    # Imported here: the report package costs ~50 ms, and importing ganforge.models must stay cheap.
    from ganforge.report.history import EVAL_META_KEYS, metric_value

    return [(k, v) for k, v in record.items()
            if k not in _NOT_METRICS and k not in EVAL_META_KEYS and metric_value(v) is not None]


def _applies(record: dict, ema_weights: bool, run_has_ema: bool) -> bool:
    """Whether ``record`` measured the generator whose weights are saved (the EMA one or the raw one)."""
    if not run_has_ema:
        return True  # there was only one generator to measure
    # ganforge eval: "raw" or "ema-if-present"; periodic evaluation: absent (it uses the EMA generator)
    return (record.get("generator") == "raw") != ema_weights


def run_evaluations(run_dir: str | Path, step: int, ema_weights: bool,
                    run_has_ema: bool) -> tuple[list[dict], dict | None]:
    """Evaluation records of a run for the card: ``(of these weights, latest earlier one or None)``.

    Args:
        run_dir: the run directory (its ``metrics.jsonl`` is read; a missing file means no records).
        step: the step of the saved weights.
        ema_weights: the saved weights are the run's EMA generator.
        run_has_ema: the run keeps an EMA generator (otherwise every record measured the raw one).
    """
    from ganforge.report.history import read_history

    evals = [r for r in read_history(Path(run_dir) / "metrics.jsonl").evals if metric_items(r)]
    mine = [r for r in evals if r["step"] == step and _applies(r, ema_weights, run_has_ema)]
    earlier = [r for r in evals if r["step"] < step and _applies(r, ema_weights, run_has_ema)]
    return mine, (earlier[-1] if earlier and not mine else None)


def _value(v: Any) -> str:
    if isinstance(v, (list, tuple)):
        return f"{float(v[0]):.4g} ± {float(v[1]):.2g}"
    return f"{float(v):.4g}"


def _protocol(record: dict) -> str:
    text = record.get("protocol") or TRAINING_EVAL_PROTOCOL
    if record.get("eval") == "inpaint":
        text = f"inpainting, {record.get('masks', '?')} masks, {record.get('n', '?')} images"
    extra = [f"classes {record['classes']}"] if record.get("classes") is not None else []
    return "; ".join([" ".join(str(text).split()).replace("|", "/"), *extra])


def _metrics_table(records: Iterable[dict]) -> list[str]:
    lines = ["| metric | value | step | protocol |", "|---|---|---|---|"]
    for r in records:
        for name, value in metric_items(r):
            lines.append(f"| `{name}` | {_value(value)} | {r['step']} | {_protocol(r)} |")
    return lines


def _data_line(cfg) -> str:
    d = cfg.data
    parts = [f"`{d.dataset}`", f"split `{d.split}`", f"{d.image_size}x{d.image_size} px",
             f"{d.channels} channel{'s' if d.channels > 1 else ''}"]
    if d.classes is not None:
        parts.append(f"classes {d.classes}")
    if d.limit:
        parts.append(f"first {d.limit} images (subset seed {d.subset_seed})")
    return ", ".join(parts)


def _signature(cfg, inputs: str) -> str:
    c, s = cfg.data.channels, cfg.data.image_size
    if inputs == "image+mask":
        return f"`G(image (N, {c}, H, W) in [-1, 1], mask (N, 1, H, W))` -> completed image `(N, {c}, H, W)`"
    label = f", y (N,) class ids < {cfg.model.num_classes}" if cfg.model.num_classes else ""
    return f"`G(z (N, {cfg.model.z_dim}){label})` -> images `(N, {c}, {s}, {s})` in [-1, 1]"


def model_card(cfg, step: int | None, inputs: str = "noise", description: str = "", ema_weights: bool = False,
               evaluations: Iterable[dict] = (), earlier: dict | None = None) -> str:
    """The Markdown model card of a generator built from ``cfg`` (a RunConfig) and trained ``step`` steps.

    Args:
        inputs, description: what the family declares (:class:`~ganforge.models.families.ModelFamily`).
        ema_weights: the weights are the EMA of the generator (decay ``train.ema_decay``).
        evaluations: records measuring these weights (see :func:`run_evaluations`).
        earlier: the latest earlier measurement, shown as such when ``evaluations`` is empty.
    """
    m, t = cfg.model, cfg.train
    weights = (f"EMA of the generator (decay {t.ema_decay:g})" if ema_weights else "the generator (no EMA)")
    steps = "not recorded" if step is None or step < 0 else f"{step} generator steps (of {t.steps} planned)"
    lines = [f"# {cfg.name}: a ganforge `{m.arch}` generator", ""]
    if description:
        lines += [description.rstrip(".") + ".", ""]
    lines += [
        f"- **Data set**: {_data_line(cfg)}",
        f"- **Training**: {steps}, batch {t.batch_size}, loss `{cfg.loss.name}`, "
        f"{cfg.optim.n_dis} D step(s) per G step, seed {t.seed}",
        f"- **Weights**: {weights}",
        f"- **Signature**: {_signature(cfg, inputs)}",
        "",
        "## Metrics",
        "",
    ]
    evaluations = list(evaluations)
    if evaluations:
        lines += ["Measured on these weights:", "", *_metrics_table(evaluations)]
    else:
        lines.append("No evaluation of these weights is recorded (`ganforge eval RUN_DIR` measures FID, KID "
                     "and precision/recall and records them in the run's `metrics.jsonl`).")
        if earlier is not None:
            lines += ["", f"The latest earlier measurement, at step {earlier['step']} (other weights):", "",
                      *_metrics_table([earlier])]
    lines += ["", "## Use", "", "```python",
              "from ganforge.models import from_pretrained", "",
              "G, cfg, step = from_pretrained(\"THIS_FOLDER\")", "```", "",
              "or `ganforge sample THIS_FOLDER --out grid.png`. `config.yaml` is the full training "
              "configuration; `generator.safetensors` holds the weights.", ""]
    return "\n".join(lines)

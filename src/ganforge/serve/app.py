"""The Gradio page of ``ganforge serve``: a *Generate* tab and an *Inpaint* tab.

The widgets call :mod:`ganforge.serve.handlers`; every callback goes through
:func:`_safe`, which turns any error into a message in the page's status line
(never a traceback), so one bad request leaves the server serving. Gradio is
imported here only, and analytics are switched off before it is imported.
"""

from __future__ import annotations

import functools
import logging
import os
import tempfile
import uuid
from pathlib import Path

import numpy as np

from ganforge.errors import ConfigError, GanforgeError
from ganforge.serve import handlers as H

log = logging.getLogger(__name__)
RANDOM, PER_CLASS = "random", "one row per class"
INSTALL_HINT = "pip install 'ganforge[serve]' (gradio)"


def import_gradio():
    """Gradio with analytics and version checks off; one-line ConfigError naming the extra if missing."""
    os.environ["GRADIO_ANALYTICS_ENABLED"] = "False"  # never phone home
    try:
        import gradio as gr
    except ImportError:
        raise ConfigError("serve", f"needs gradio: {INSTALL_HINT}") from None
    return gr


def _status(ok: str | None = None, error: str | None = None) -> str:
    return f"**Error:** {error}" if error else (ok or "")


def _safe(fn, n_out: int):
    """Wrap a callback: errors become ``(None, ..., message)`` with the message last."""
    @functools.wraps(fn)  # the API keeps the handler's name (on_generate, on_inpaint...)
    def wrapped(*args):
        try:
            return fn(*args)
        except GanforgeError as exc:
            return (*([None] * (n_out - 1)), _status(error=str(exc)))
        except Exception as exc:  # an unforeseen failure must not show a traceback or stop the server
            log.error("request failed: %s: %s", type(exc).__name__, " ".join(str(exc).split())[:300])
            log.debug("request failed", exc_info=True)
            return (*([None] * (n_out - 1)), _status(error=f"the request failed ({type(exc).__name__}: {exc})"))
    return wrapped


def _class_choices(run: H.GeneratorRun | None) -> list[str]:
    if run is None or not run.num_classes:
        return [RANDOM]
    # The classes the run was trained on (all, or those of data.classes).
    return [RANDOM, PER_CLASS] + [f"class {k}" for k in run.cfg.label_classes]


def _parse_class(choice: str | None) -> tuple[int | None, bool]:
    if not choice or choice == RANDOM:
        return None, False
    if choice == PER_CLASS:
        return None, True
    return int(choice.split()[-1]), False


def _truncation(t: float | None) -> float | None:
    return None if not t else float(t)


def _generate_tab(gr, generators: dict[str, H.GeneratorRun]):
    names = list(generators)
    if not names:
        gr.Markdown("No image-generation run was given to `ganforge serve`.")
        return
    first = generators[names[0]]
    with gr.Row():
        run = gr.Dropdown(names, value=names[0], label="Run", elem_id="gen-run")
        cls = gr.Dropdown(_class_choices(first), value=RANDOM, label="Class (conditional runs)",
                          elem_id="gen-class", interactive=bool(first.num_classes))
        trunc = gr.Slider(0.0, 3.0, value=0.0, step=0.1, label="Truncation (0 = off)", elem_id="gen-trunc")
    with gr.Row():
        seed = gr.Number(0, precision=0, label="Seed", elem_id="gen-seed")
        n = gr.Slider(1, H.MAX_IMAGES, value=16, step=1, label="Number of images (per class for rows)",
                      elem_id="gen-n")
        go = gr.Button("Generate", variant="primary", elem_id="gen-button")
    grid = gr.Image(label="Samples", type="pil", interactive=False, elem_id="gen-output", format="png")
    gen_status = gr.Markdown(elem_id="gen-status")
    gr.Markdown("### Latent interpolation")
    with gr.Row():
        seed_a = gr.Number(0, precision=0, label="Seed A", elem_id="interp-a", min_width=100)
        seed_b = gr.Number(1, precision=0, label="Seed B", elem_id="interp-b", min_width=100)
        steps = gr.Slider(2, 16, value=8, step=1, label="Steps", elem_id="interp-steps", min_width=280)
        go_i = gr.Button("Interpolate", elem_id="interp-button")
    strip = gr.Image(label="Interpolation (slerp)", type="pil", interactive=False, elem_id="interp-output",
                     format="png")
    interp_status = gr.Markdown(elem_id="interp-status")

    def on_run(name):
        # The images on show belong to the previous run: clear them with its class list.
        r = generators[name]
        return (gr.update(choices=_class_choices(r), value=RANDOM, interactive=bool(r.num_classes)),
                None, "", None, "")

    def on_generate(name, seed, n, choice, t):
        r = generators[name]
        seed = H.check_seed(seed)
        label, per_class = _parse_class(choice)
        img = H.generate_grid(r, seed, int(n), label, per_class, _truncation(t))
        what = f"{r.cfg.model.arch} run '{name}', step {r.step}"
        return img, f"{int(n)} image(s){' per class' if per_class else ''}, seed {seed} ({what})"

    def on_interpolate(name, a, b, steps, choice, t):
        r = generators[name]
        a, b = H.check_seed(a, "seed A"), H.check_seed(b, "seed B")
        label, _ = _parse_class(choice)
        img = H.interpolation_strip(r, a, b, int(steps), label, _truncation(t))
        return img, f"seed {a} -> seed {b} in {int(steps)} steps"

    run.change(on_run, run, [cls, grid, gen_status, strip, interp_status], api_name="on_run")
    go.click(_safe(on_generate, 2), [run, seed, n, cls, trunc], [grid, gen_status])
    go_i.click(_safe(on_interpolate, 2), [run, seed_a, seed_b, steps, cls, trunc], [strip, interp_status])


def _inpaint_tab(gr, inpainters: dict, max_pixels: int, max_mb: float, out_dir: Path):
    names = list(inpainters)
    if not names:
        gr.Markdown("No inpainting run (`task: inpaint`) was given to `ganforge serve`.")
        return
    gr.Markdown("Upload an image, then paint the holes with the brush **or** upload a mask "
                "(white = missing, same size as the image).")
    with gr.Row():
        run = gr.Dropdown(names, value=names[0], label="Run", elem_id="inp-run")
        image_file = gr.File(label="Image", file_types=None, elem_id="inp-image-file")
        mask_file = gr.File(label="Mask (optional)", file_types=None, elem_id="inp-mask-file")
    editor = gr.ImageEditor(label="Paint the holes", type="numpy", image_mode="RGBA", format="png",
                            sources=("upload", "clipboard"), transforms=(), layers=False,
                            brush=gr.Brush(colors=["#ff00ff"], color_mode="fixed", default_size=6),
                            elem_id="inp-editor")
    go = gr.Button("Inpaint", variant="primary", elem_id="inp-button")
    status = gr.Markdown(elem_id="inp-status")
    with gr.Row():
        shown = gr.Image(label="Input (holes in magenta)", interactive=False, elem_id="inp-input", format="png")
        ours = gr.Image(label="ganforge", interactive=False, elem_id="inp-ganforge", format="png")
        base = gr.Image(label="OpenCV Telea", interactive=False, elem_id="inp-telea", format="png")
    download = gr.File(label="Download the ganforge result (PNG)", interactive=False, elem_id="inp-download")

    def on_image(path):
        img = H.read_upload(path, "image", max_pixels, max_mb)
        arr = np.asarray(img.convert("RGBA"))
        return {"background": arr, "layers": [], "composite": arr}, \
            f"loaded a {img.width}x{img.height} image; paint the holes or upload a mask"

    def on_inpaint(name, value, mask_path):
        if value is None or value.get("background") is None:
            raise H.UploadError("image", "upload an image first")
        bg = np.asarray(value["background"])
        H.check_image_array(bg, max_pixels)
        image = H.as_model_input(bg)
        hw = image.shape[:2]
        if mask_path:
            mask = H.mask_from_upload(H.read_upload(mask_path, "mask", max_pixels, max_mb), hw)
        else:
            mask = H.mask_from_layers(value.get("layers"), hw)
            if mask is None:
                raise H.UploadError("mask", "paint over the holes with the brush, or upload a mask")
        result = H.inpaint(inpainters[name], image, mask)
        classical = H.telea(image, mask)
        path = out_dir / f"inpainted-{uuid.uuid4().hex[:8]}.png"
        H.Image.fromarray(result).save(path)
        note = "" if classical is not None else " (OpenCV is not installed: pip install 'ganforge[baselines]')"
        side = max(H.DISPLAY_SIDE // 2, 256)
        return (H.enlarge(H.show_holes(image, mask), side), H.enlarge(result, side),
                None if classical is None else H.enlarge(classical, side), str(path),
                f"inpainted {int(mask.sum())} of {mask.size} pixels with run '{name}'{note}")

    image_file.upload(_safe(on_image, 2), image_file, [editor, status])
    go.click(_safe(on_inpaint, 5), [run, editor, mask_file], [shown, ours, base, download, status])


def build_app(generators: dict, inpainters: dict, max_pixels: int = H.MAX_PIXELS,
              max_mb: float = H.MAX_UPLOAD_MB, out_dir: str | Path | None = None):
    """The ``gr.Blocks`` page for loaded runs (see :func:`ganforge.serve.handlers.load_runs`).

    A tab appears only when a run was given for it. Inpainted results are written
    into ``out_dir`` (default: a new temporary folder, which the caller removes).
    """
    gr = import_gradio()
    out_dir = Path(out_dir) if out_dir is not None else Path(tempfile.mkdtemp(prefix="ganforge-serve-"))
    out_dir.mkdir(parents=True, exist_ok=True)
    with gr.Blocks(title="ganforge", analytics_enabled=False) as app:
        gr.Markdown("# ganforge")
        if generators or not inpainters:
            with gr.Tab("Generate", elem_id="tab-generate"):
                _generate_tab(gr, generators)
        if inpainters:
            with gr.Tab("Inpaint", elem_id="tab-inpaint"):
                _inpaint_tab(gr, inpainters, max_pixels, max_mb, out_dir)
    return app


def theme(gr):
    """The default theme with system fonts: the page then loads no web fonts from outside."""
    return gr.themes.Default(font=["ui-sans-serif", "system-ui", "sans-serif"],
                             font_mono=["ui-monospace", "monospace"])

"""Inpainting generator, discriminator, task and pipeline: shapes, exact known pixels, learning."""

import numpy as np
import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from PIL import Image

from conftest import assert_same_weights, full_and_interrupted, tiny_config
from ganforge.data import ImageDataset
from ganforge.errors import ConfigError
from ganforge.models import build_models
from ganforge.models.encoder_decoder import InpaintGenerator, PatchDiscriminator
from ganforge.models.fourier import FourierUnit, GlobalBranch, irfft2_by_matmul, rfft2_by_matmul
from ganforge.inpaint.masks import make_masks
from ganforge.inpaint.pipeline import InpaintingPipeline
from ganforge.tasks.inpainting import InpaintingTask, masked_gradient_l1, masked_l1
from ganforge.tasks.draws import Draws
from ganforge.train.trainer import Trainer

INPAINT = ["model.arch=inpaint", "loss.name=hinge", "model.res_blocks=2", "optim.lr_g=1e-3"]


def smooth_dataset(n=64, size=28, channels=1, seed=0):
    """Images whose holes are predictable from their surroundings: a random level plus a gentle ramp."""
    rng = np.random.default_rng(seed)
    ramp = np.linspace(-40, 40, size)[None, :]
    level = rng.uniform(60, 200, (n, channels, 1, 1))
    slope = rng.choice([-1.0, 1.0], (n, 1, 1, 1))
    images = np.clip(level + slope * ramp, 0, 255).round().astype(np.uint8)
    return ImageDataset(torch.from_numpy(np.broadcast_to(images, (n, channels, size, size)).copy()),
                        None, 0, "smooth")


# ------------------------------------------------------------------- models

@pytest.mark.parametrize("h, w", [(28, 28), (32, 20), (27, 30), (9, 13)])
@pytest.mark.parametrize("upsample", ["transposed", "resize"])
def test_generator_shapes_range_and_composite(h, w, upsample):
    G = InpaintGenerator(3, width=4, res_blocks=2, upsample=upsample)
    x = torch.rand(2, 3, h, w) * 2 - 1
    m = make_masks("boxes", 2, (h, w), 0.3, torch.Generator().manual_seed(0))
    out, raw = G(x, m, return_raw=True)
    assert out.shape == raw.shape == (2, 3, h, w)
    assert raw.abs().max() <= 1.0
    assert torch.equal(out[m.expand_as(out) == 0], x[m.expand_as(x) == 0])
    assert torch.equal(out[m.expand_as(out) == 1], raw[m.expand_as(raw) == 1])


def test_resize_upsampling_has_no_checkerboard_on_a_flat_input():
    """A constant feature map stays constant (away from the border) through resize + 3x3 conv,
    while a 4x4 stride-2 transposed convolution stamps a 2-pixel period on it."""
    torch.manual_seed(0)
    flat = torch.ones(1, 16, 8, 8)
    for upsample, periodic in (("transposed", True), ("resize", False)):
        G = InpaintGenerator(3, width=4, upsample=upsample)
        for m in G.decoder.modules():
            if isinstance(m, (torch.nn.Conv2d, torch.nn.ConvTranspose2d)):
                torch.nn.init.normal_(m.weight)
        first_up = G.decoder[:1] if upsample == "transposed" else G.decoder[:2]
        inner = first_up(flat)[0, :, 2:-2, 2:-2]
        spread = (inner - inner.mean((1, 2), keepdim=True)).abs().max().item()
        assert (spread > 1e-2) if periodic else (spread < 1e-5), (upsample, spread)
    with pytest.raises(ConfigError, match="inpaint.upsample"):
        InpaintGenerator(3, upsample="bilinear")


@pytest.mark.parametrize("h, w", [(28, 28), (9, 13)])
def test_fourier_blocks_keep_shapes_composite_and_run_under_bf16(h, w):
    G = InpaintGenerator(3, width=4, res_blocks=2, blocks="fourier", prefill="smooth")
    assert all(isinstance(b.global_branch, GlobalBranch) for b in G.blocks)
    x = torch.rand(2, 3, h, w) * 2 - 1
    m = make_masks("boxes", 2, (h, w), 0.3, torch.Generator().manual_seed(0))
    with torch.autocast("cpu", dtype=torch.bfloat16):  # the FFT itself runs in float32
        out, raw = G(x, m, return_raw=True)
    assert out.shape == (2, 3, h, w) and torch.isfinite(raw).all()
    assert torch.equal(out[m.expand_as(out) == 0], x[m.expand_as(x) == 0])
    with pytest.raises(ConfigError, match="inpaint.blocks"):
        InpaintGenerator(3, blocks="ffc")


def test_fourier_unit_reaches_across_the_whole_map_at_any_size():
    """Its output at one corner depends on the input at the opposite corner; a 3x3 convolution's cannot."""
    torch.manual_seed(0)
    unit, conv = FourierUnit(4), torch.nn.Conv2d(4, 4, 3, padding=1)
    for size in (16, 24):  # one set of weights for every resolution
        for layer, reaches in ((unit, True), (conv, False)):
            x = torch.randn(1, 4, size, size, requires_grad=True)
            layer(x)[0, :, 0, 0].sum().backward()
            far = x.grad[0, :, size // 2:, size // 2:].abs().sum().item()
            assert (far > 1e-4) if reaches else (far == 0.0), (type(layer).__name__, size, far)


@pytest.mark.parametrize("h, w", [(8, 6), (7, 9), (16, 16), (5, 2), (1, 1)])
def test_dft_matrix_forms_equal_torch_fft(h, w):
    """The ONNX export's transforms (products with DFT matrices) against torch.fft, odd and even sizes."""
    g = torch.Generator().manual_seed(h * 100 + w)
    x = torch.randn(2, 3, h, w, generator=g)
    spectrum = torch.fft.rfft2(x, norm="ortho")
    real, imag = rfft2_by_matmul(x)
    assert torch.allclose(real, spectrum.real, atol=1e-5) and torch.allclose(imag, spectrum.imag, atol=1e-5)
    real, imag = torch.randn(real.shape, generator=g), torch.randn(imag.shape, generator=g)
    expected = torch.fft.irfft2(torch.complex(real, imag), s=(h, w), norm="ortho")
    assert torch.allclose(irfft2_by_matmul(real, imag, (h, w)), expected, atol=1e-5)


def test_fourier_unit_with_identity_mixing_returns_its_input():
    """With the 1x1 mixing set to the identity the unit is ReLU of the spectrum transformed back: a
    constant map (one positive, real DC term) comes back unchanged, at the same scale (orthonormal)."""
    unit = FourierUnit(2)
    with torch.no_grad():
        unit.mix.weight.copy_(torch.eye(4).view(4, 4, 1, 1))
        unit.mix.bias.zero_()
    x = torch.ones(1, 2, 8, 6) * 0.5  # only the DC term, positive and real
    assert torch.allclose(unit(x), x, atol=1e-6)


def test_global_branch_starts_as_strong_as_the_blocks_3x3():
    """He initialisation: at the start each block's global branch is not drowned by the dilated
    3x3 it is added to (with the generator's N(0, 0.02) it started 40-60 times weaker at this width)."""
    torch.manual_seed(0)
    fourier = InpaintGenerator(3, width=8, res_blocks=4, blocks="fourier", prefill="smooth")
    x = torch.rand(2, 3, 32, 32) * 2 - 1
    m = make_masks("boxes", 2, (32, 32), 0.3, torch.Generator().manual_seed(0))
    with torch.no_grad():
        h = fourier.encoder(torch.cat([x * (1 - m), m], 1))
        for block in fourier.blocks:
            ratio = block.global_branch(h).std() / block.body[0](h).std()
            assert 0.5 < ratio < 8, ratio.item()
            h = block(h)


def test_discriminator_gives_patch_logits_and_features():
    D = PatchDiscriminator(1, width=8, n_down=2)
    logits, feats = D(torch.randn(3, 1, 28, 28), torch.ones(3, 1, 28, 28), return_features=True)
    assert logits.shape == (3, 49) and len(feats) == 3
    assert any("parametrizations" in name for name, _ in D.named_modules())  # spectral norm


def test_build_models_registers_inpaint(tmp_path):
    G, D = build_models(tiny_config(tmp_path, *INPAINT))
    assert isinstance(G, InpaintGenerator) and isinstance(D, PatchDiscriminator)


# ------------------------------------------------------------------ pipeline

_G1 = InpaintGenerator(1, width=4, res_blocks=1)
_G3 = InpaintGenerator(3, width=4, res_blocks=1, blocks="fourier")  # both block kinds through the pipeline


@settings(max_examples=30, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(h=st.integers(6, 36), w=st.integers(6, 36), in_ch=st.sampled_from([1, 3]), model_ch=st.sampled_from([1, 3]),
       kind=st.sampled_from(["numpy", "pil", "uint8", "float"]), seed=st.integers(0, 2**31 - 1))
def test_pipeline_keeps_known_pixels_exactly(h, w, in_ch, model_ch, kind, seed):
    rng = np.random.default_rng(seed)
    pipe = InpaintingPipeline(_G1 if model_ch == 1 else _G3, model_ch)
    arr = rng.integers(0, 256, (h, w, in_ch), dtype=np.uint8)
    mask = rng.random((h, w)) < rng.uniform(0.05, 0.9)
    mask[rng.integers(h), rng.integers(w)] = True
    if kind == "numpy":
        image = arr if in_ch == 3 else arr[:, :, 0]
        out = pipe(image, mask)
        assert out.shape == image.shape and out.dtype == np.uint8
        assert np.array_equal(out[~mask], image[~mask])
    elif kind == "pil":
        image = Image.fromarray(arr if in_ch == 3 else arr[:, :, 0])
        out = pipe(image, Image.fromarray(mask.astype(np.uint8) * 255))
        assert out.mode == image.mode and out.size == image.size
        assert np.array_equal(np.asarray(out)[~mask], np.asarray(image)[~mask])
    else:
        t = torch.from_numpy(arr).permute(2, 0, 1)
        t = t if kind == "uint8" else t.float() / 127.5 - 1
        m = torch.from_numpy(mask)
        out = pipe(t, m)
        assert out.shape == t.shape and out.dtype == t.dtype
        keep = ~m.expand_as(t)
        assert torch.equal(out[keep], t[keep])
        if kind == "float":
            assert out.min() >= -1 and out.max() <= 1


def test_pipeline_batches_and_keeps_alpha():
    pipe = InpaintingPipeline(_G3, 3)
    rgba = np.random.default_rng(0).integers(0, 256, (10, 14, 4), dtype=np.uint8)
    mask = np.zeros((10, 14), bool)
    mask[2:6, 3:9] = True
    out = np.asarray(pipe(Image.fromarray(rgba), mask))
    assert out.shape == rgba.shape and np.array_equal(out[..., 3], rgba[..., 3])
    batch = torch.rand(5, 3, 12, 12) * 2 - 1
    masks = make_masks("strokes", 5, 12, 0.3, torch.Generator().manual_seed(1))
    assert pipe(batch, masks).shape == batch.shape


def test_pipeline_rejects_a_mask_of_another_size():
    from ganforge.errors import DataError

    pipe = InpaintingPipeline(_G1, 1)
    with pytest.raises(DataError, match="mask is 5x4"):
        pipe(np.zeros((6, 6), np.uint8), np.ones((4, 5), bool))


# ---------------------------------------------------------------------- task

def test_task_reuses_the_d_batch_in_g_step_and_crops(tmp_path):
    cfg = tiny_config(tmp_path, *INPAINT, "inpaint.random_crop=true", "inpaint.load_size=36")
    G, D = build_models(cfg)
    task = InpaintingTask(cfg, G, D, Draws(torch.Generator().manual_seed(0)))
    real = torch.rand(4, 1, 36, 36) * 2 - 1
    batch = task.d_batch(real, None)
    assert batch.real.shape == (4, 1, 28, 28) and batch.cond.shape == (4, 1, 28, 28)
    assert set(batch.cond.unique().tolist()) <= {0.0, 1.0} and batch.cond.sum() > 0
    assert task.g_batch(batch) is batch  # G learns on the D phase's images and masks
    fake = task.generate(batch)
    known = batch.cond == 0
    assert torch.equal(fake.images[known.expand_as(fake.images)], batch.real[known.expand_as(batch.real)])
    g, g_logs = task.g_loss(batch, fake)
    assert torch.isfinite(g) and {"l1_hole", "l1_valid", "g_adv"} <= set(g_logs)
    crops = [task.crop(real) for _ in range(3)]
    assert not all(torch.equal(crops[0], c) for c in crops[1:])  # random positions


def test_masked_l1_is_normalised_per_region():
    pred, target = torch.zeros(1, 2, 4, 4), torch.zeros(1, 2, 4, 4)
    pred[:, :, 0, 0] = 1.0
    region = torch.zeros(1, 1, 4, 4)
    region[:, :, 0, :2] = 1
    assert masked_l1(pred, target, region).item() == pytest.approx(0.5)
    assert masked_l1(pred, target, torch.zeros_like(region)).item() == 0.0


def test_gradient_difference_counts_pairs_touching_the_region():
    target = torch.zeros(1, 1, 3, 3)
    pred = target.clone()
    pred[0, 0, 1, 1] = 1.0  # one speckle in the middle of a flat patch
    region = torch.zeros(1, 1, 3, 3)
    region[0, 0, 1, 1] = 1
    # The four pairs around the centre touch it, each off by 1; the other eight pairs are not counted.
    assert masked_gradient_l1(pred, target, region).item() == pytest.approx(1.0)
    everywhere = torch.ones_like(region)
    assert masked_gradient_l1(pred, target, everywhere).item() == pytest.approx(4 / 12)
    assert masked_gradient_l1(pred, target, torch.zeros_like(region)).item() == 0.0
    # A constant offset has the target's gradients: pixel L1 sees it, the gradient term does not.
    assert masked_gradient_l1(target + 0.5, target, everywhere).item() == 0.0
    # Hand computation on a ramp: d/dx of pred is 1 per pixel, of target 0; d/dy 0 for both.
    ramp = torch.arange(4.0).repeat(2, 4, 1).unsqueeze(0)  # (1, 2, 4, 4), x-ramp in both channels
    assert masked_gradient_l1(ramp, torch.zeros_like(ramp), torch.ones(1, 1, 4, 4)).item() == pytest.approx(12 / 24)


def test_gradient_term_enters_the_generator_loss(tmp_path):
    losses = {}
    real = torch.rand(4, 1, 28, 28) * 2 - 1
    for weight in (0.0, 5.0):
        cfg = tiny_config(tmp_path, *INPAINT, f"inpaint.gradient={weight}", "inpaint.masks=center")
        torch.manual_seed(0)
        G, D = build_models(cfg)
        task = InpaintingTask(cfg, G, D, Draws(torch.Generator().manual_seed(0)))
        batch = task.d_batch(real, None)
        loss, logs = task.g_loss(batch, task.generate(batch))
        losses[weight] = (loss.item(), logs)
    assert "gradient" not in losses[0.0][1]
    grad = losses[5.0][1]["gradient"].item()
    assert grad > 0 and losses[5.0][0] == pytest.approx(losses[0.0][0] + 5.0 * grad, rel=1e-5)


# ------------------------------------------------------------- with the trainer

@pytest.fixture(scope="module")
def trained_run(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("inpaint")
    ds = smooth_dataset()
    cfg = tiny_config(tmp, *INPAINT, "train.steps=30", "train.sample_every=30", "train.ckpt_every=30",
                      "train.log_every=10", "train.ema_decay=0.5", "inpaint.masks=center")
    gen = torch.Generator().manual_seed(0)
    fixed = ds.images[:16].float() / 127.5 - 1
    mask = make_masks("center", 16, 28, 0.25, gen)
    t = Trainer(cfg, tmp / "run", dataset=ds)

    def hole_l1():
        with torch.no_grad():
            return masked_l1(t.G(fixed, mask), fixed, mask).item()

    before = hole_l1()
    summary = t.train()
    return {"dir": tmp / "run", "before": before, "after": hole_l1(), "summary": summary, "trainer": t}


def test_training_lowers_hole_l1(trained_run):
    assert trained_run["summary"]["step"] == 30
    assert trained_run["after"] < 0.7 * trained_run["before"]


def test_preview_grid_is_written(trained_run):
    png = trained_run["dir"] / "samples" / "step_00000030.png"
    grid = np.asarray(Image.open(png))
    assert grid.shape == (3 * 30 + 2, 5 * 30 + 2)  # 3 rows (masked, output, original) of sample_grid // 3


def test_pipeline_from_run(trained_run):
    pipe = InpaintingPipeline.from_run(trained_run["dir"])
    assert pipe.step == 30 and pipe.channels == 1
    image = np.full((28, 28), 120, np.uint8)
    mask = np.zeros((28, 28), bool)
    mask[7:21, 7:21] = True
    out = pipe(image, mask)
    assert np.array_equal(out[~mask], image[~mask])
    assert np.abs(out[mask].astype(int) - 120).mean() < 40  # learned to continue flat surroundings


@pytest.mark.parametrize("blocks", ["dilated", "fourier"])
def test_resumed_inpainting_run_equals_uninterrupted(tmp_path, blocks):
    cfg = tiny_config(tmp_path, *INPAINT, "train.steps=4", "train.ckpt_every=100", "train.sample_every=100",
                      "inpaint.masks=mixed", "inpaint.feature_matching=1.0", f"inpaint.blocks={blocks}")
    ds = smooth_dataset(n=40)
    full = full_and_interrupted(cfg, tmp_path, ds, stop_after=2)
    resumed = Trainer.resume(tmp_path / "part", dataset=ds)
    resumed.train()
    assert_same_weights(full, resumed)


def test_periodic_evaluation_of_an_inpainting_run_records_restoration_metrics(tmp_path):
    from conftest import write_gray_npz

    data = write_gray_npz(tmp_path / "held.npz", n=40)
    cfg = tiny_config(tmp_path, *INPAINT, f"data.dataset={data}", "train.steps=4", "train.eval_every=2",
                      "train.eval_n=8", "train.ckpt_every=2", "train.sample_every=100")
    assert cfg.task == "inpaint"  # migrated from model.arch
    Trainer(cfg, tmp_path / "run", dataset=smooth_dataset(n=40)).train()
    import json

    records = [json.loads(x) for x in (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()]
    evals = [r for r in records if r.get("event") == "eval"]
    assert [r["step"] for r in evals] == [2, 4]
    for r in evals:
        assert 0 < r["l1_hole8_train"] < 1 and r["psnr_hole8_train"] > 0 and -1 <= r["ssim_hole8_train"] <= 1
    best = json.loads((tmp_path / "run" / "checkpoints" / "best" / "best.json").read_text())
    assert best["metric"] == "l1_hole8_train"
    assert best["step"] == min(evals, key=lambda r: r["l1_hole8_train"])["step"]


def test_evaluation_masks_stay_fixed_when_the_training_masks_change(tmp_path):
    from conftest import write_gray_npz
    from ganforge.config import validate

    data = write_gray_npz(tmp_path / "held.npz", n=12)

    def held_out_masks(*overrides):
        cfg = tiny_config(tmp_path, *INPAINT, f"data.dataset={data}", "train.eval_n=12", *overrides)
        G, D = build_models(cfg)
        task = InpaintingTask(cfg, G, D, Draws(torch.Generator().manual_seed(0)))
        return task._held_out()[1], task.preview_batch(smooth_dataset(n=12))[1]

    thick_eval, thick_preview = held_out_masks("inpaint.masks=thick")
    thin_eval, thin_preview = held_out_masks("inpaint.masks=thin")
    assert not torch.equal(thick_eval, thin_eval)  # by default the training masks are evaluated
    fixed = [held_out_masks(f"inpaint.masks={kind}", "inpaint.eval_masks=thick") for kind in ("thin", "comod")]
    for eval_masks, preview_masks in fixed:
        assert torch.equal(eval_masks, thick_eval) and torch.equal(preview_masks, thick_preview)
    cfg = tiny_config(tmp_path, *INPAINT)
    cfg.inpaint.eval_masks = "thickest"
    with pytest.raises(ConfigError, match="inpaint.eval_masks"):
        validate(cfg)


def test_sampling_an_inpainting_run_is_a_one_line_error(trained_run, tmp_path):
    import subprocess
    import sys

    out = subprocess.run([sys.executable, "-m", "ganforge", "sample", str(trained_run["dir"]), "--out",
                          str(tmp_path / "x.png")], capture_output=True, text=True, timeout=120)
    assert out.returncode == 2 and "Traceback" not in out.stderr
    assert "does not draw images from noise" in out.stderr and len(out.stderr.strip().splitlines()) == 1
    assert not (tmp_path / "x.png").exists()

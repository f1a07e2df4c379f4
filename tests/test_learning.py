"""Learning really happens on the shared real faces, with small networks."""
import json
import pathlib

import jax
import numpy as np
import pytest
from PIL import Image

from configs import smoke
from fsr_jax import checkpointing, metrics, models, train
from helpers import STAGE1, STAGE2

#: Trains, evaluates or starts processes: the slow tier (`pytest -m slow`).
pytestmark = pytest.mark.slow


def logged(workdir, stage, name):
    lines = (pathlib.Path(workdir) / stage / "metrics.jsonl").read_text().splitlines()
    return np.array([json.loads(line)[name] for line in lines])


def small_config(faces_cfg):
    config = smoke.get_config()
    config.data = faces_cfg
    config.model.sr.features = 16
    config.optimizer.learning_rate = 2e-3   # a short run: 20x the paper's rate
    config.train.update(log_every=10, images_every=100000, checkpoint_every=100000)
    return config


def test_stage1_content_loss_falls(tmp_path, faces_cfg):
    """DeNet learns the bicubic content (measured 0.44 -> 0.11 in 60 steps). Its adversarial term
    is off here: at this tiny size, with the paper's weight 0.05, the L1 stalls near 0.38 after
    20 steps (the discriminator's pull outweighs the content), a balance the full-size run has
    to show."""
    config = small_config(faces_cfg)
    config.stages = (STAGE1,)
    config.degradation.update(batch_size=16, max_steps=60, adversarial_weight=0.0)
    train.train_and_evaluate(config, str(tmp_path))
    content = logged(tmp_path, STAGE1, "denet/content")
    print("stage 1 L1 per 10 steps:", np.round(content, 4))
    assert content[-1] < 0.5 * content[0] and content[-1] < 0.2


def test_teacher_on_bicubic_pairs_beats_bicubic_and_the_student_losses_fall(tmp_path, faces_cfg):
    config = small_config(faces_cfg)
    config.stages = (STAGE2,)
    # The teacher learns on bicubic pairs (Table 3's "-bicubic" rows); its GAN term is off so
    # that 100 steps of a tiny net show reconstruction learning alone.
    config.teacher_student.update(teacher="bicubic", batch_size=16, max_steps=100, teacher_adv_weight=0.0)
    train.train_and_evaluate(config, str(tmp_path))

    # SNet follows its moving target: with both SR nets starting near the bilinear upsampling,
    # its loss to TNet's pseudo-HR stays near 1e-3 (about 30 dB) while TNet learns; the cycle
    # loss falls from the start.
    snet_rec, cycle = logged(tmp_path, STAGE2, "snet/rec"), logged(tmp_path, STAGE2, "cycle/lr")
    print("per 10 steps: SNet rec", np.round(snet_rec, 4), "cycle", np.round(cycle, 4))
    assert snet_rec.max() < 0.01 and snet_rec[-3:].mean() < 0.005
    assert cycle[-3:].mean() < 0.25 * cycle[0]

    apply = jax.jit(models.build_sr(config.model).apply)
    params, _ = checkpointing.restore_params(tmp_path / STAGE2 / "checkpoints", ("tnet",))
    celeba = pathlib.Path(faces_cfg.test_sets.celeba)
    names = sorted(p.name for p in (celeba / "HR").glob("*.png"))
    hr = np.stack([np.asarray(Image.open(celeba / "HR" / n).convert("RGB")) for n in names]) / 255.0
    lr_images = [Image.open(celeba / "LR" / n).convert("RGB") for n in names]
    lr = np.stack([np.asarray(im) for im in lr_images]) / 255.0
    bicubic = np.stack([np.asarray(im.resize((64, 64), Image.BICUBIC)) for im in lr_images]) / 255.0
    sr = apply({"params": params["tnet"]}, lr)[-1]
    sr = np.round(np.clip(np.asarray(sr), 0, 1) * 255) / 255
    psnr_bicubic = float(np.mean(metrics.psnr(bicubic, hr)))
    psnr_tnet = float(np.mean(metrics.psnr(sr, hr)))
    print(f"test/celeba PSNR: PIL bicubic {psnr_bicubic:.2f} dB, TNet {psnr_tnet:.2f} dB")
    assert abs(psnr_bicubic - 23.00) < 0.01
    assert psnr_tnet > psnr_bicubic + 0.3

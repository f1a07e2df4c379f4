"""The paper's system: stage 1 (DeNet + D_LR) then stage 2 (TNet, SNet, DSNet + discriminators).

python -m fsr_jax.main --config configs/teacher_student.py --workdir runs/demo
"""
import os

import ml_collections

from fsr_jax import data, models


def get_config() -> ml_collections.ConfigDict:
    config = ml_collections.ConfigDict()
    # 'train' runs the stages (resuming from the newest checkpoints); 'eval' writes the tables.
    config.mode = "train"
    # Seed of network initialisation and of the data order (per-epoch permutations, flips).
    config.seed = 0
    # The stages this config trains, in order: 'degradation' (stage 1), 'teacher_student' (2).
    config.stages = ("degradation", "teacher_student")
    config.model = models.default_config()
    config.data = data.default_config()

    # Adam for every network. Decision: betas (0.9, 0.999) (the paper names Adam, no betas).
    config.optimizer = ml_collections.ConfigDict(dict(
        learning_rate=1e-4,        # paper: initial lr 1e-4 for all networks
        halve_every_epochs=10,     # paper: halved every 10 epochs (staircase)
        b1=0.9,
        b2=0.999,
    ))

    # Stage 1, `degradation`: L_DeNet = 1.0 * L_con + 0.05 * L_adv (paper, eq. 2-4), batch 16.
    config.degradation = ml_collections.ConfigDict(dict(
        batch_size=16,             # paper: 16
        epochs=30,                 # Decision: the paper gives none; an epoch = one pass over HR
        max_steps=0,               # > 0 stops the stage after this many steps (smoke runs, tests)
        content_weight=1.0,        # alpha_1
        adversarial_weight=0.05,   # beta_1
        gan_loss="logistic",       # the paper's log-loss ('hinge': LRGAN / SCGAN)
        # Remedies for a DeNet whose LR is speckled or out of range (off: the paper's training):
        clip_for_discriminator=False,  # D_LR sees DeNet's output clipped to [0, 1], as real LR is
        discriminator_lr_scale=1.0,    # D_LR's learning rate relative to DeNet's (< 1: a slower D)
    ))

    # Stage 2, `teacher_student`: TNet, SNet, DSNet, DeNet frozen from stage 1, batch 4.
    config.teacher_student = ml_collections.ConfigDict(dict(
        batch_size=4,              # paper: 4
        epochs=40,                 # Decision: the paper gives none
        max_steps=0,               # > 0 stops the stage after this many steps
        # A finished run (its workdir, W/degradation or its checkpoints/) to take DeNet from; empty:
        # this run's own W/degradation.
        denet_checkpoint="",
        # Pairs of the teacher: 'denet' (DeNet(HR), HR) as the paper; 'bicubic' (Table 3's
        # "-bicubic" rows); 'cycle' (CycleGAN training on unpaired real LR and HR, "Ours-cycle").
        teacher="denet",
        student=True,              # train SNet on real LR with TNet's pseudo-HR
        cycle=True,                # DSNet and the LR cycle loss of eq. 7 ("w/o-cycle": False)
        teacher_rec_weight=1.0,    # alpha_2
        teacher_adv_weight=0.001,  # beta_2
        student_rec_weight=1.0,    # alpha_3
        student_adv_weight=0.001,  # beta_3
        cycle_weight=1.0,          # gamma
        dsnet_adv_weight=0.05,     # Decision: DSNet's own adversarial term, as DeNet's beta_1
        gan_loss="logistic",
    ))

    # Loop, checkpoints and summaries.
    config.train = ml_collections.ConfigDict(dict(
        log_every=50,              # progress line and scalar summaries, in steps
        # Training steps per jitted call (lax.scan over K batches staged on the device): fewer
        # dispatches at small batches. Logs, image grids, checkpoints and signals are handled
        # at call boundaries; K > 1 needs model.sr.canny_impl='jax'.
        steps_per_call=1,
        images_every=1000,         # image grids (LR, the T iterations, edges, pseudo-HR, HR)
        checkpoint_every=1000,     # orbax checkpoint, in steps (and always at the end)
        keep_checkpoints=3,        # newest checkpoints kept
        summary_images=4,          # faces in each image grid
        # JAX's persistent compilation cache: a rerun of the same config loads its compiled
        # steps instead of compiling them again ('' turns it off).
        compilation_cache=os.path.join(os.environ.get("FSR_JAX_CACHE", "~/.cache/fsr_jax"), "jax_compilation"),
    ))

    # Evaluation (--config.mode=eval): W/eval/<step>/ gets metrics.json, table.md (Tables 1-2),
    # the SR faces and side-by-side grids. The networks are built from the run's config.json.
    config.eval = ml_collections.ConfigDict(dict(
        step=0,                    # checkpoint of W/teacher_student to evaluate (0: the newest)
        # Exported weights files (python -m fsr_jax.export), comma-separated, evaluated instead
        # of a checkpoint: each gives one net (tnet or snet) and must match config.model.sr and
        # the data's lr/hr sizes; results go to W/eval/weights-<step>/. 'default': the shipped
        # TNet and SNet (fsr_jax/pretrained).
        weights="",
        # SR nets run beside the bicubic baseline, and 'denet': the report on DeNet as a model of
        # real LR (held-out HR faces through DeNet against bicubic and real LR; needs a test set
        # with HR and one of real LR). Nets the run lacks are skipped.
        nets=("tnet", "snet", "denet"),
        test_sets=(),              # names among the data's test sets to evaluate (empty: all)
        max_images=0,              # faces per test set, first in file-name order (0: all)
        fid_reference_images=0,    # HR training faces real-LR sets' FID is scored against (0: all)
        batch_size=64,             # faces per SR / metric batch (the last batch is padded)
        save_images=True,          # write every SR face as PNG under its test-set file name
        grid_faces=8,              # faces per side-by-side grid PNG (LR | bicubic | TNet | SNet | HR)
    ))
    return config

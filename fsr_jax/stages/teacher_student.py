"""Stage 2: the teacher TNet, the student SNet and the down-sampling net DSNet, each against its
discriminator (the paper's eq. 5-7).

- Teacher pairs (`teacher='denet'`, the paper; `'bicubic'`, Table 3's "-bicubic" rows): TNet on
  (LR_syn, HR): rec * mean_t |HR - SR_T(t)|^2 + adv * L_adv(D_T).
- Cycle teacher (`teacher='cycle'`, Table 3's "Ours-cycle"): TNet and DSNet trained by the
  CycleGAN scheme on unpaired real LR and HR.
- Student (`student=True`) on real LR, P = stop_gradient(TNet_pre(LR)[T]):
  rec * mean_t |P - SR_S(t)|^2 + adv * L_adv(D_S) + cycle * |LR - DSNet(SR_S(T))|^2, the cycle
  term training SNet and DSNet; DSNet's own adversarial term (D_DS) reaches DSNet only.
"""
from __future__ import annotations

import dataclasses
import json
import pathlib
from typing import Any

import jax
import jax.numpy as jnp
import ml_collections
from absl import logging

from fsr_jax import checkpointing, edges, grids, models
from fsr_jax import losses as loss_fns
from fsr_jax.models import layers
from fsr_jax.stages import Preview, Stage, Step, StepSpec
from fsr_jax.stages.degradation import STAGE as DEGRADATION
from fsr_jax.steps import Metrics, NetState, discriminator_update, generator_update, joint_update

#: Where the teacher's training pairs come from (see the module docstring).
TEACHERS = ("denet", "bicubic", "cycle")


@dataclasses.dataclass(frozen=True)
class Settings:
    """The `teacher_student` section's loss settings: which pairs train the teacher, whether the student
    and its LR cycle run, the weights (alpha_2, beta_2, alpha_3, beta_3, gamma, DSNet's own
    adversarial weight) and the GAN loss."""

    teacher: str
    student: bool
    cycle: bool
    teacher_rec_weight: float
    teacher_adv_weight: float
    student_rec_weight: float
    student_adv_weight: float
    cycle_weight: float
    dsnet_adv_weight: float
    gan_loss: str


def _apply(module, params, x):
    return module.apply({"params": params}, x)


def _g_adv(spec: StepSpec, pair: str, d_params, fake: jax.Array) -> jax.Array:
    return loss_fns.generator_adversarial(_apply(spec.modules.disc(pair), d_params, fake), spec.settings.gan_loss)


def denet_checkpoints(config: ml_collections.ConfigDict, workdir: str | pathlib.Path) -> pathlib.Path:
    """The checkpoints folder stage 2 takes DeNet from: `teacher_student.denet_checkpoint` (a run's
    workdir, its stage-1 folder, or that folder's checkpoints/), else this run's
    W/degradation/checkpoints."""
    given = config.teacher_student.denet_checkpoint
    if not given:
        return pathlib.Path(workdir) / DEGRADATION.name / "checkpoints"
    folder = pathlib.Path(given).expanduser()
    if folder.name == "checkpoints":
        return folder
    if (folder / DEGRADATION.name / "checkpoints").is_dir():
        return folder / DEGRADATION.name / "checkpoints"
    return folder / "checkpoints"


def denet_config_problems(config: ml_collections.ConfigDict, stage1_config: pathlib.Path) -> list[str]:
    """DeNet is taken by its parameters alone: one line per `model.downsampler` field that
    differs between `config` and the stage-1 run's config.json (when there is one), since DeNet
    would then compute another function (e.g. `bicubic_skip`) or not load."""
    try:
        saved = models.upgrade_config(json.loads(stage1_config.read_text())["model"]).downsampler
    except (OSError, ValueError, KeyError, TypeError):
        return []
    now = config.model.downsampler
    return [f"model.downsampler.{key} is {now.get(key)!r}, but the stage-1 run that trained DeNet "
            f"({stage1_config}) has {saved.get(key)!r}: set --config.model.downsampler.{key}={saved.get(key)!r}"
            for key in sorted(set(saved) | set(now)) if saved.get(key) != now.get(key)]


def synthetic_lr(spec: StepSpec, frozen: dict[str, Any], hr: jax.Array) -> jax.Array:
    """The LR half of the teacher's pairs (B, s, s, 3): DeNet(HR), or bicubic(HR) for
    `teacher='bicubic'`.

    Decision: DeNet's output is clipped to [0, 1], the range of the real LR images TNet's
    pseudo-HR is later made from (an undertrained DeNet strays far outside it).
    """
    if spec.settings.teacher == "bicubic":
        return layers.bicubic_downsample(hr, spec.scale)
    lr = _apply(spec.modules.down, frozen["denet"], hr)
    return jnp.clip(jax.lax.stop_gradient(lr), 0.0, 1.0)


def teacher_pair_update(spec: StepSpec, nets: dict[str, NetState], frozen: dict[str, Any],
                        hr: jax.Array, tx) -> tuple[dict[str, NetState], Metrics]:
    """TNet on (synthetic LR, HR) and D_T on HR vs TNet's output. Returns ({'tnet', 'd_t'},
    {'tnet/rec', 'tnet/adv', 'd_t/loss'})."""
    w, sr = spec.settings, spec.modules.sr
    lr_syn = synthetic_lr(spec, frozen, hr)
    d_t = nets["d_t"].params

    def tnet_loss(params):
        outputs = _apply(sr, params, lr_syn)
        rec = loss_fns.reconstruction(hr, outputs)
        adv = _g_adv(spec, "d_t", d_t, outputs[-1])
        total = w.teacher_rec_weight * rec + w.teacher_adv_weight * adv
        return total, (outputs[-1], {"tnet/rec": rec, "tnet/adv": adv})

    tnet, (fake, metrics) = generator_update(nets["tnet"], tnet_loss, tx)
    d_state, metrics["d_t/loss"] = discriminator_update(nets["d_t"], spec.modules.disc("d_t"), hr, fake, w.gan_loss, tx)
    return {"tnet": tnet, "d_t": d_state}, metrics


def cycle_teacher_update(spec: StepSpec, nets: dict[str, NetState], hr: jax.Array, lr_real: jax.Array,
                         tx) -> tuple[dict[str, NetState], Metrics]:
    """TNet and DSNet by the CycleGAN scheme on unpaired real LR and HR (adversarial terms in
    both domains, cycles LR->HR->LR and HR->LR->HR), then D_T and D_DS. Returns ({'tnet',
    'dsnet', 'd_t', 'd_ds'}, {'tnet/adv', 'dsnet/adv', 'cycle/lr', 'cycle/hr', 'd_t/loss',
    'd_ds/loss'})."""
    w, sr, down, disc = spec.settings, spec.modules.sr, spec.modules.down, spec.modules.disc
    d_t, d_ds = nets["d_t"].params, nets["d_ds"].params

    def cycle_loss(params):
        sr_real = _apply(sr, params["tnet"], lr_real)
        lr_fake = _apply(down, params["dsnet"], hr)
        terms = {
            "tnet/adv": _g_adv(spec, "d_t", d_t, sr_real[-1]),
            "dsnet/adv": _g_adv(spec, "d_ds", d_ds, lr_fake),
            "cycle/lr": loss_fns.mse(lr_real, _apply(down, params["dsnet"], sr_real[-1])),
            "cycle/hr": loss_fns.reconstruction(hr, _apply(sr, params["tnet"], lr_fake)),
        }
        total = (w.teacher_adv_weight * terms["tnet/adv"] + w.dsnet_adv_weight * terms["dsnet/adv"]
                 + w.cycle_weight * (terms["cycle/lr"] + terms["cycle/hr"]))
        return total, ((sr_real[-1], lr_fake), terms)

    updated, ((sr_fake, lr_fake), metrics) = joint_update(nets, ("tnet", "dsnet"), cycle_loss, tx)
    updated["d_t"], metrics["d_t/loss"] = discriminator_update(nets["d_t"], disc("d_t"), hr, sr_fake, w.gan_loss, tx)
    updated["d_ds"], metrics["d_ds/loss"] = discriminator_update(
        nets["d_ds"], disc("d_ds"), lr_real, lr_fake, w.gan_loss, tx)
    return updated, metrics


def student_update(spec: StepSpec, nets: dict[str, NetState], hr: jax.Array, lr_real: jax.Array,
                   tx) -> tuple[dict[str, NetState], Metrics]:
    """SNet on real LR against TNet's pseudo-HR (pre-step TNet), with DSNet and the LR cycle when
    `cycle`, then D_S (HR vs SNet's output) and D_DS (real LR vs DSNet's). Returns ({'snet',
    'd_s'} + {'dsnet', 'd_ds'} with the cycle, their metrics)."""
    w, sr, down, disc = spec.settings, spec.modules.sr, spec.modules.down, spec.modules.disc
    pseudo = jax.lax.stop_gradient(_apply(sr, nets["tnet"].params, lr_real)[-1])
    d_s = nets["d_s"].params
    names = ("snet", "dsnet") if w.cycle else ("snet",)

    def snet_loss(params):
        outputs = _apply(sr, params["snet"], lr_real)
        terms = {"snet/rec": loss_fns.reconstruction(pseudo, outputs),
                 "snet/adv": _g_adv(spec, "d_s", d_s, outputs[-1])}
        total = w.student_rec_weight * terms["snet/rec"] + w.student_adv_weight * terms["snet/adv"]
        lr_cycle = None
        if w.cycle:
            lr_cycle = _apply(down, params["dsnet"], outputs[-1])
            terms["cycle/lr"] = loss_fns.mse(lr_real, lr_cycle)
            # DSNet's adversarial term must not reach SNet: DSNet sees a stopped copy.
            lr_fake = _apply(down, params["dsnet"], jax.lax.stop_gradient(outputs[-1]))
            terms["dsnet/adv"] = _g_adv(spec, "d_ds", nets["d_ds"].params, lr_fake)
            total += w.cycle_weight * terms["cycle/lr"] + w.dsnet_adv_weight * terms["dsnet/adv"]
        return total, ((outputs[-1], lr_cycle), terms)

    updated, ((sr_fake, lr_fake), metrics) = joint_update(nets, names, snet_loss, tx)
    updated["d_s"], metrics["d_s/loss"] = discriminator_update(nets["d_s"], disc("d_s"), hr, sr_fake, w.gan_loss, tx)
    if w.cycle:
        updated["d_ds"], metrics["d_ds/loss"] = discriminator_update(
            nets["d_ds"], disc("d_ds"), lr_real, lr_fake, w.gan_loss, tx)
    return updated, metrics


class TeacherStudent(Stage):
    name = "teacher_student"
    after = (DEGRADATION.name,)
    term_meanings = {
        **Stage.term_meanings,
        "rec": "MSE to the target (HR, or TNet's pseudo-HR for SNet), mean over the 3 iterations",
        "lr": "MSE between the real LR and DSNet(SR(real LR))",
        "hr": "MSE of the cycle HR -> DSNet -> TNet against HR, mean over the iterations",
    }

    def settings(self, section: ml_collections.ConfigDict) -> Settings:
        return Settings(
            teacher=section.teacher, student=bool(section.student), cycle=bool(section.cycle),
            **{k: float(section[k]) for k in ("teacher_rec_weight", "teacher_adv_weight",
                                              "student_rec_weight", "student_adv_weight",
                                              "cycle_weight", "dsnet_adv_weight")},
            gan_loss=section.gan_loss)

    def problems(self, config: ml_collections.ConfigDict, workdir) -> list[str]:
        s2, out = config[self.name], []
        if s2.teacher not in TEACHERS:
            out.append(f"teacher_student.teacher must be one of {TEACHERS}, got {s2.teacher!r}")
        if s2.teacher == "cycle" and s2.student and s2.cycle:
            out.append("teacher_student.teacher='cycle' with teacher_student.student=True and teacher_student.cycle=True would "
                       "train DSNet in two cycles at once (the teacher's and the student's), which "
                       "this step does not do: set teacher_student.student=False (Table 3's cycle teacher) "
                       "or teacher_student.cycle=False (a student without the LR cycle)")
        own = pathlib.Path(workdir) / self.name / "checkpoints"  # a stage-2 checkpoint holds DeNet
        if s2.teacher == "denet" and checkpointing.latest_step(own) is None:
            folder = denet_checkpoints(config, workdir)
            if DEGRADATION.name not in config.stages and checkpointing.latest_step(folder) is None:
                out.append(f"stage 2 needs a trained DeNet, and there is no stage-1 checkpoint in "
                           f"{folder}: set teacher_student.denet_checkpoint to a stage-1 workdir, or train "
                           f"stage 1 first")
            out += denet_config_problems(config, folder.parent / "config.json")
        return out

    def networks(self, spec: StepSpec):
        nets, w = spec.modules, spec.settings
        out = {"tnet": (nets.sr, "lr"), "d_t": (nets.disc("d_t"), "hr")}
        if w.teacher == "cycle" or (w.student and w.cycle):
            out.update(dsnet=(nets.down, "hr"), d_ds=(nets.disc("d_ds"), "lr"))
        if w.student:
            out.update(snet=(nets.sr, "lr"), d_s=(nets.disc("d_s"), "hr"))
        return out

    def init_frozen(self, spec: StepSpec, key: jax.Array) -> dict[str, Any]:
        if spec.settings.teacher != "denet":
            return {}
        hr = jnp.zeros((1, spec.hr_size, spec.hr_size, 3))
        return {"denet": spec.modules.down.init(key, hr)["params"]}

    def load_frozen(self, config: ml_collections.ConfigDict, workdir: str) -> dict[str, Any]:
        if config[self.name].teacher != "denet":
            return {}
        folder = denet_checkpoints(config, workdir)
        params, step = checkpointing.restore_params(folder, ("denet",))
        logging.info("stage 2 takes DeNet from %s (step %d)", folder, step)
        return params

    def step(self, spec: StepSpec, tx) -> Step:
        def step(state, batch):
            hr, lr_real = batch["hr"], batch["lr"]
            if spec.settings.teacher == "cycle":
                updated, metrics = cycle_teacher_update(spec, state.nets, hr, lr_real, tx)
            else:
                updated, metrics = teacher_pair_update(spec, state.nets, state.frozen, hr, tx)
            if spec.settings.student:
                student, student_metrics = student_update(spec, state.nets, hr, lr_real, tx)
                both = sorted(set(updated) & set(student))
                if both:  # refused by `problems`; kept here so that no update is ever lost
                    raise ValueError(f"the teacher's and the student's updates both train {both}")
                updated, metrics = {**updated, **student}, {**metrics, **student_metrics}
            return state.replace(step=state.step + 1, nets=updated), metrics

        return step

    def preview(self, spec: StepSpec) -> Preview:
        """One grid per SR net: its LR input | the T iterations | each edge prior | its target
        (HR for TNet, pseudo-HR for SNet)."""
        sr, count = spec.modules.sr, spec.summary_images

        def panel(images, kind="rgb"):
            return grids.to_panel(images, spec.hr_size, kind)

        def sr_grid(params, lr, target):
            outputs, edge_maps = sr.apply({"params": params}, lr, return_edges=True)
            columns = [panel(lr)] + [panel(o) for o in outputs]
            columns += [panel(edge_map, edges.PRIORS[name].panel) for name, edge_map in edge_maps.items()]
            return columns + [panel(target)]

        def preview(state, batch):
            hr, lr = batch["hr"][:count], batch["lr"][:count]
            tnet = state.nets["tnet"].params
            teacher_lr = lr if spec.settings.teacher == "cycle" else synthetic_lr(spec, state.frozen, hr)
            grids = {"tnet": sr_grid(tnet, teacher_lr, hr)}
            if spec.settings.student:
                pseudo = sr.apply({"params": tnet}, lr)[-1]
                grids["snet"] = sr_grid(state.nets["snet"].params, lr, pseudo)
            return grids

        return preview

    def grid_titles(self, spec: StepSpec) -> dict[str, list[str]]:
        sr = spec.modules.sr
        middle = [f"SR {t + 1}" for t in range(sr.iterations)] + [edges.PRIORS[name].title or name for name in sr.edges]
        teacher_lr = {"denet": "DeNet LR", "bicubic": "bicubic LR", "cycle": "real LR"}[spec.settings.teacher]
        titles = {"tnet": [teacher_lr, *middle, "HR"]}
        if spec.settings.student:
            titles["snet"] = ["real LR", *middle, "pseudo-HR"]
        return titles


STAGE = TeacherStudent()

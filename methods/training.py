"""Training infrastructure shared by every method: seeds, devices, precision, batches, checkpoints, logs.

Determinism: every epoch reseeds from sha256(run seed, stage, phase, epoch), so a run resumed at an epoch
boundary replays exactly what an uninterrupted run does. Speed: the training set lives on the device as
uint8 and batches are index_select'ed there (no DataLoader workers on the hot path); an epoch's batch
indices go to the device in one copy; losses reach the host only every ``log_every`` steps; a NaN/inf is
caught on the device and reported at the next log point. Nothing in a step waits for the GPU.
"""

import contextlib
import dataclasses
import functools
import json
import time
from abc import abstractmethod
from collections.abc import Iterator
from pathlib import Path

import torch
from torch import nn

from benchmark.core.checkpoints import load_checkpoint, save_checkpoint
from benchmark.core.distributed import init_distributed, unwrap, world
from benchmark.core.seeds import derive_seed, seed_everything
from methods.base import Method, MethodConfig, PairedData, TokenBatch, Views


class TrainingDiverged(RuntimeError):
    """A loss became NaN or inf; the message names the step and the loss."""


def autocast(device: torch.device, precision: MethodConfig | None):
    """bf16 autocast (no loss scaling needed) where ``precision`` (a method's config: ``MethodConfig.autocasts``)
    turns it on for ``device``; full fp32 otherwise, and for ``None``."""
    if precision is not None and precision.autocasts(device):
        return torch.autocast(device.type, dtype=torch.bfloat16)
    return contextlib.nullcontext()


def prepare_device(device: torch.device) -> None:
    """Let cuDNN time its convolution algorithms for each new shape (a training run repeats a few shapes
    thousands of times). The choice may differ between runs, which GPU training's atomics already make
    non-bitwise-reproducible; the CPU path, where records are checked, is untouched."""
    if device.type == "cuda":
        torch.backends.cudnn.benchmark = True


def compile_in_place(module: nn.Module) -> None:
    """``torch.compile`` a module in place (its state dict keeps its keys, so checkpoints load either way), in
    NCHW: inductor lays out a compiled graph itself (its layout optimisation turns conv-heavy graphs
    channels_last). By hand, a convolution on a 1x1 map (the Res-Upsample generators' first) has strides that
    fit both layouts, and the compiled backward's predicted weight-gradient layout can differ from the one
    cuDNN returns (issue 29)."""
    module.to(memory_format=torch.contiguous_format)
    module.compile()


def epoch_batches(
    n: int, batch_size: int, seed: int, *, drop_last: bool = False, device: torch.device | str = "cpu"
) -> Iterator[torch.Tensor]:
    """Shuffled index batches for one epoch; with several processes each takes its share of every batch.

    The order is drawn on the CPU (the same on every device) and copied to ``device`` once per epoch: a
    blocking host-to-device copy per step would wait for the GPU to drain at every step.
    """
    w = world()
    order = torch.randperm(n, generator=torch.Generator().manual_seed(seed)).to(device)
    for start in range(0, n, batch_size):
        batch = order[start : start + batch_size]
        if drop_last and len(batch) < batch_size:
            return
        if w.size > 1:  # equal shares, so every rank runs the same number of steps
            share = len(batch) // w.size
            if share == 0:
                return
            batch = batch[w.rank * share : (w.rank + 1) * share]
        yield batch


class DivergenceGuard:
    """Remembers on the device the first step at which each loss was not finite; no host sync per step."""

    def __init__(self, device: torch.device):
        self.device = device
        self.first_bad: dict[str, torch.Tensor] = {}  # loss name -> step (-1 while finite)
        self.value: dict[str, torch.Tensor] = {}

    def watch(self, step: int, losses: dict[str, torch.Tensor]) -> None:
        for name, loss in losses.items():
            loss = loss.detach().float()
            first = self.first_bad.get(name, torch.full((), -1, dtype=torch.long, device=self.device))
            bad = (first < 0) & ~torch.isfinite(loss)
            self.first_bad[name] = torch.where(bad, torch.full_like(first, step), first)
            self.value[name] = torch.where(bad, loss, self.value.get(name, torch.zeros_like(loss)))

    def check(self) -> None:
        """Raise TrainingDiverged naming the first bad step and loss (one host sync)."""
        bad = {name: int(step) for name, step in self.first_bad.items() if int(step) >= 0}
        if bad:
            name = min(bad, key=bad.get)
            raise TrainingDiverged(
                f"training diverged at step {bad[name]}: loss {name} = "
                f"{float(self.value[name])}; lower the learning rate or check the data"
            )


class JsonlLog:
    """Append-only JSON lines (one object per logged step), written by the main process only."""

    def __init__(self, path: Path):
        self.path = path
        path.parent.mkdir(parents=True, exist_ok=True)

    def write(self, **record) -> None:
        if world().is_main:
            with self.path.open("a") as f:
                f.write(json.dumps({"time": round(time.time(), 3), **record}) + "\n")


@dataclasses.dataclass(frozen=True)
class Phase:
    """A run of epochs with one step function and batch size, e.g. XRayGAN's (0, "warmup", 20, 96)."""

    stage: int | str  # stages share networks set up by ``begin_stage`` (critics, optimisers)
    name: str
    epochs: int
    batch_size: int


@dataclasses.dataclass
class StageState:
    """What one stage trains with, set up once by ``StagedMethod.begin_stage``: the generators (as the step
    calls them: DDP-wrapped with several processes) and their optimiser, and, for a GAN, the stage's own
    discriminators (the plain module, which the checkpoint saves and the generator step freezes, and its DDP
    view) with theirs. A method extends it with what its step reads besides (its training data on the device,
    XRayGAN's frozen VCN, a diffusion model's EMA)."""

    stage: int | str
    generators: nn.Module
    opt_g: torch.optim.Optimizer
    _: dataclasses.KW_ONLY
    discriminators: nn.Module | None = None  # None: a method without critics (a diffusion model)
    discriminators_ddp: nn.Module | None = None
    opt_d: torch.optim.Optimizer | None = None

    def __post_init__(self):
        if (self.discriminators is None) != (self.opt_d is None):
            raise ValueError("StageState: discriminators and their optimiser come together or not at all")
        if self.discriminators_ddp is None:
            self.discriminators_ddp = self.discriminators

    def checkpointed(self) -> tuple[dict[str, nn.Module], dict[str, torch.optim.Optimizer]]:
        """The stage-local modules and the optimisers a checkpoint holds (the generators are the method's)."""
        if self.discriminators is None:
            return {}, {"generators": self.opt_g}
        return {"discriminators": self.discriminators}, {"generators": self.opt_g, "discriminators": self.opt_d}

    def set_lr(self, lr_g: float, lr_d: float | None = None) -> None:
        pairs = [(self.opt_g, lr_g)] + ([(self.opt_d, lr_g if lr_d is None else lr_d)] if self.opt_d else [])
        for opt, lr in pairs:
            for group in opt.param_groups:
                group["lr"] = lr


@dataclasses.dataclass
class PairedStage(StageState):
    """A stage that trains on the train split's tokens and its images at one size."""

    tokens: TokenBatch
    real: torch.Tensor  # uint8 [N, 2, size, size] on the device


class StagedMethod(Method):
    """A method trained by ``fit_staged``, the loop every GAN here shares. Read top to bottom:

        for phase in phases():                       # (stage, name, epochs, batch size), in order
            if phase.stage is new: state = begin_stage(phase.stage, train, run_dir)
            for epoch in range(phase.epochs):        # reseeded from (seed, stage, phase, epoch): resumable
                set_epoch(state, phase, epoch)       # learning-rate schedules
                for index in shuffled batches: losses = train_step(state, phase, index)
            checkpoint at epoch ends

    ``networks`` is the module that lives across stages (what ``generate`` uses and the checkpoint keeps).
    """

    val: PairedData | None = None  # held-out pairs, set by ``fit``: XRayGAN gates each stage's VCN on them

    @property
    @abstractmethod
    def networks(self) -> nn.Module: ...

    @abstractmethod
    def phases(self) -> list[Phase]:
        """The schedule: each phase's stage, name ("warmup", "gan", ...), epochs and batch size."""

    @abstractmethod
    def begin_stage(self, stage: int | str, train: PairedData, run_dir: Path) -> StageState:
        """Build the stage's discriminators and optimisers, put its data on the device, pretrain what it needs."""

    @abstractmethod
    def train_step(self, state: StageState, phase: Phase, index: torch.Tensor) -> dict[str, torch.Tensor]:
        """One combined discriminator + generator update on the cases ``index``; the losses, detached."""

    def set_epoch(self, state: StageState, phase: Phase, epoch: int) -> None:
        """Called before each epoch: the learning-rate schedule (none by default)."""

    def critic_report_scores(self, state: StageState, pairs: PairedData) -> dict[str, tuple[torch.Tensor, ...]]:
        """The last stage's trained conditional critics on the real images of ``pairs``, per critic label:
        (scores under each case's own report [N], scores under the next case's report, ``roll(1)`` [N]). Empty
        for a method (or a variant) whose critics do not read the report; ``critic_report_auroc`` reads it."""
        return {}

    def budget(self, n_train: int) -> dict:
        """The generator's training budget on ``n_train`` cases, from ``phases()``: epochs, pairs seen (epochs x
        cases, every pass over the train split counted) and generator updates (one per batch), in total and per
        phase. A method with pretrained helpers adds ``budget["pretraining"] = {name: {"pairs_seen", "epochs"}}``
        (XRayGAN's VCN, AttnGAN's DAMSM, the faithful GAN-INT-CLS and StackGAN's report embedding)."""
        rows = [
            {
                "stage": str(p.stage),
                "phase": p.name,
                "epochs": p.epochs,
                "batch_size": p.batch_size,
                "pairs_seen": p.epochs * n_train,
                "generator_updates": p.epochs * -(-n_train // p.batch_size),
            }
            for p in self.phases()
        ]
        total = {k: sum(r[k] for r in rows) for k in ("epochs", "pairs_seen", "generator_updates")}
        return {**total, "n_train": n_train, "phases": rows}

    def training_steps(self, batch_data, run_dir: Path):
        """Each phase with a callable that runs one ``train_step`` on the first batch of its stage's data."""
        for phase in self.phases():
            if phase.epochs == 0:
                continue
            state = self.begin_stage(phase.stage, batch_data(phase.batch_size), run_dir)
            index = torch.arange(phase.batch_size, device=self.device)
            yield phase, functools.partial(self.train_step, state, phase, index)

    def fit(self, train: PairedData, val: PairedData | None, run_dir: Path, *, resume: bool = False) -> None:
        self.val = val
        last = fit_staged(self, train, run_dir, resume=resume)
        if last is not None:
            held_out = val if val is not None and len(val) > 1 else train
            found = critic_report_auroc(self, last, held_out)
            if found:
                self.fit_summary["critic_report_auroc"] = found | {"split": "val" if held_out is val else "train"}


@torch.no_grad()
def critic_report_auroc(method: StagedMethod, state: StageState, pairs: PairedData) -> dict:
    """Does a trained conditional critic use the report? Per critic: the paired AUROC P(score(x, own report) >
    score(x, another case's report)) over real images (ties count 1/2), each image against itself so that the
    image-to-image spread cancels; 0.5 = the critic ignores the report. Cases whose neighbour's report is the
    same, token for token (normal studies often are), are left out; ``pairs``: how many were compared."""
    scores = method.critic_report_scores(state, pairs)
    if not scores:
        return {}
    flat = torch.as_tensor(pairs.tokens.flat)
    differs = (flat != flat.roll(1, dims=0)).any(dim=1)
    out = {}
    for label, (own, other) in scores.items():
        own, other = own.double().cpu()[differs], other.double().cpu()[differs]
        out[label] = float(((own > other).double() + 0.5 * (own == other).double()).mean())
    return out | {"pairs": int(differs.sum())}


def fit_staged(method: StagedMethod, train: PairedData, run_dir: Path, *, resume: bool) -> StageState | None:
    """The training loop of every ``StagedMethod``: phases in order, epochs reseeded, resumable at epoch ends.
    Returns the last stage's state (its trained discriminators), or None when a resumed run had nothing left.

    Reads ``log_every``, ``checkpoint_every`` and ``progress`` of the method's config (``MethodConfig``).
    Checkpoints hold tensors and plain values only.
    """
    device, cfg = method.device, method.cfg
    prepare_device(device)
    init_distributed(device)
    ckpt_path = run_dir / "ckpt" / "last.pt"
    state = load_checkpoint(ckpt_path, device) if resume and ckpt_path.is_file() else None
    resume_at, step = (0, 0), 0
    if state is not None:
        method.networks.load_state_dict(state["networks"])
        resume_at, step = (state["phase_index"], state["epoch"] + 1), state["step"]
    log, guard = JsonlLog(run_dir / "log.jsonl"), DivergenceGuard(device)
    method.pairs_seen = 0
    stage, current = None, None
    for index, phase in enumerate(method.phases()):
        if index < resume_at[0]:
            continue
        if phase.stage != current:
            stage, current = method.begin_stage(phase.stage, train, run_dir), phase.stage
            modules, optimizers = stage.checkpointed()
            if state is not None and state["stage"] == phase.stage:
                for name, module in modules.items():
                    module.load_state_dict(state["modules"][name])
                for name, opt in optimizers.items():
                    opt.load_state_dict(state["optimizers"][name])
        first = resume_at[1] if index == resume_at[0] else 0
        for epoch in range(first, phase.epochs):
            method.set_epoch(stage, phase, epoch)
            seed = derive_seed(method.seed, phase.stage, phase.name, epoch)
            seed_everything(seed)
            batches = list(epoch_batches(len(train), phase.batch_size, seed, device=device))
            progress, task = stage_progress(
                f"stage {phase.stage} {phase.name} {epoch + 1}/{phase.epochs}", len(batches), cfg.progress
            )
            with progress:
                for i, batch in enumerate(batches):
                    step += 1
                    method.pairs_seen += len(batch)
                    losses = method.train_step(stage, phase, batch)
                    guard.watch(step, losses)
                    if step % cfg.log_every == 0 or i == len(batches) - 1:
                        guard.check()  # the only host sync of the loop
                        values = {k: round(float(v), 6) for k, v in losses.items()}
                        log.write(stage=phase.stage, phase=phase.name, epoch=epoch, step=step, **values)
                        progress.update(task, status=" ".join(f"{k}={v:.3g}" for k, v in values.items()))
                    progress.advance(task)
            if epoch == phase.epochs - 1 or (epoch + 1) % cfg.checkpoint_every == 0:
                save_checkpoint(
                    {
                        "phase_index": index,
                        "stage": phase.stage,
                        "epoch": epoch,
                        "step": step,
                        "networks": unwrap(method.networks).state_dict(),
                        "modules": {name: unwrap(m).state_dict() for name, m in modules.items()},
                        "optimizers": {name: opt.state_dict() for name, opt in optimizers.items()},
                    },
                    ckpt_path,
                )
    return stage


@torch.no_grad()
def generate_in_batches(method, tokens, seeds, batch_size: int, views_of) -> Views:
    """Shared sampling loop: ``views_of(TokenBatch, seeds of the batch) -> (frontal, lateral)`` per batch,
    in eval mode and the method's precision, clamped to [-1, 1], gathered on the CPU."""
    if len(seeds) != len(tokens):
        raise ValueError(f"generate: {len(tokens)} reports but {len(seeds)} seeds")
    method.networks.eval()
    frontal, lateral = [], []
    for start in range(0, len(tokens), batch_size):
        batch = TokenBatch.of(tokens[start : start + batch_size], method.device)
        with autocast(method.device, method.cfg):
            f, l = views_of(batch, list(seeds[start : start + batch_size]))
        frontal.append(f.float().clamp(-1, 1).cpu())
        lateral.append(l.float().clamp(-1, 1).cpu())
    method.networks.train()
    return Views(torch.cat(frontal).contiguous(), torch.cat(lateral).contiguous())


def stage_progress(description: str, total: int, enabled: bool):
    """A rich progress bar per stage, on the main process only."""
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

    progress = Progress(
        TextColumn("{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeRemainingColumn(),
        TextColumn("{task.fields[status]}"),
        disable=not (enabled and world().is_main),
        transient=False,
    )
    return progress, progress.add_task(description, total=total, status="")

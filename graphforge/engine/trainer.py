"""The gradient training loop shared by every task.

AdamW, an epoch-wise LR schedule, early stopping on validation accuracy (ties
broken by validation loss), the best weights kept in ``checkpoint.pt`` and the
full training state in ``last.pt`` after every epoch, so a stopped run resumes
exactly where it was.
"""

from __future__ import annotations

import copy
import logging
import math
import time
from dataclasses import dataclass, field
from typing import Any

import torch
import torch.nn.functional as F

from graphforge.engine.checkpoint import load_weights, make_checkpoint
from graphforge.engine.distributed import all_reduce_sums, merge_epoch_metrics, sync_buffers
from graphforge.engine.rundir import BEST_CHECKPOINT, LAST_CHECKPOINT, RunDirectory
from graphforge.engine.runtime import rng_state, set_rng_state
from graphforge.engine.tasks import Task, epoch_metrics
from graphforge.errors import DataError

log = logging.getLogger("graphforge")


@dataclass
class TrainState:
    """Progress of a training run (what ``last.pt`` stores besides the weights)."""

    epoch: int = 0
    history: list[dict[str, Any]] = field(default_factory=list)
    best_epoch: int = 0
    best_val_accuracy: float = -1.0
    best_val_loss: float = float("inf")
    bad_epochs: int = 0
    stopped_early: bool = False

    def improved(self, val_accuracy: float, val_loss: float) -> bool:
        """Whether these validation scores beat the best so far."""
        if val_accuracy > self.best_val_accuracy + 1e-12:
            return True
        return abs(val_accuracy - self.best_val_accuracy) <= 1e-12 and val_loss < self.best_val_loss


def make_optimizer(net: torch.nn.Module, lr: float, weight_decay: float) -> torch.optim.Optimizer:
    """AdamW over the trainable parameters."""
    params = [p for p in net.parameters() if p.requires_grad]
    return torch.optim.AdamW(params, lr=lr, weight_decay=weight_decay)


class LRFactor:
    """The LR multiplier at each optimiser step: a linear warm-up, then ``cosine``, ``step`` or ``none``.

    Args:
        kind: ``cosine`` (half a cosine from 1 to 0 over the steps after the warm-up), ``step``
            (x0.1 at 50 % and 75 % of training) or ``none`` (constant).
        total_steps: Optimiser steps of the whole run.
        warmup_steps: Steps of the linear warm-up from ``1 / warmup_steps`` to 1 (0: none).
    """

    def __init__(self, kind: str, total_steps: int, warmup_steps: int = 0) -> None:
        self.kind = kind
        self.total_steps = max(int(total_steps), 1)
        self.warmup_steps = max(int(warmup_steps), 0)

    def __call__(self, step: int) -> float:
        if step < self.warmup_steps:
            return (step + 1) / self.warmup_steps
        if self.kind == "cosine":
            span = max(self.total_steps - self.warmup_steps, 1)
            t = min((step - self.warmup_steps) / span, 1.0)
            return 0.5 * (1.0 + math.cos(math.pi * t))
        if self.kind == "step":
            return 0.1 ** sum(step >= m for m in _milestones(self.total_steps))
        return 1.0


def _milestones(total_steps: int) -> list[int]:
    return sorted({max(1, int(total_steps * 0.5)), max(1, int(total_steps * 0.75))})


def make_scheduler(optimizer: torch.optim.Optimizer, kind: str, epochs: int, steps_per_epoch: int = 1,
                   warmup_epochs: float = 0.0) -> torch.optim.lr_scheduler.LambdaLR:
    """Build the LR schedule ``cosine``, ``step`` or ``none`` (after ``warmup_epochs`` of linear
    warm-up); it advances once per optimiser step (the trainer steps it after every ``optimizer.step()``)."""
    steps_per_epoch = max(int(steps_per_epoch), 1)
    factor = LRFactor(kind, max(epochs, 1) * steps_per_epoch, round(warmup_epochs * steps_per_epoch))
    return torch.optim.lr_scheduler.LambdaLR(optimizer, factor)


def _retarget_scheduler(scheduler: Any, epochs: int, steps_per_epoch: int) -> None:
    # A resumed run may ask for more epochs: stretch the schedule to the new end.
    for fn in scheduler.lr_lambdas:
        if isinstance(fn, LRFactor):
            fn.total_steps = max(epochs, 1) * max(int(steps_per_epoch), 1)


@torch.no_grad()
def evaluate_split(task: Task, split: str) -> dict[str, Any]:
    """Return loss, accuracy, predictions and labels of a split."""
    logits, y = task.predict(split)
    if len(y) == 0:
        return {"loss": float("nan"), "accuracy": 0.0, "pred": y, "y": y}
    return {
        "loss": float(F.cross_entropy(logits, y)),
        "accuracy": float((logits.argmax(1) == y).float().mean()),
        "pred": logits.argmax(1),
        "y": y,
    }


class Trainer:
    """Runs epochs of a :class:`~graphforge.engine.tasks.Task`.

    Args:
        task: What to train.
        rundir: Where checkpoints and history go.
        epochs: Total number of epochs.
        lr, weight_decay: AdamW settings.
        lr_schedule: ``cosine``, ``step`` or ``none``, advanced after every optimiser step.
        warmup_epochs: Linear LR warm-up at the start (may be fractional; 0: none).
        patience: Early-stopping patience in epochs (0: never stop early).
        meta: Extra entries stored in ``checkpoint.pt`` (what is needed to rebuild the net).
        generator: The task's shuffling generator, saved for exact resume.
        dist: The distributed job: training metrics are summed over the ranks, buffers come
            from rank 0 before every evaluation, and only rank 0 writes files.
    """

    def __init__(
        self,
        task: Task,
        rundir: RunDirectory,
        *,
        epochs: int,
        lr: float,
        weight_decay: float,
        lr_schedule: str,
        patience: int,
        meta: dict[str, Any],
        generator: torch.Generator | None = None,
        dist: Any = None,
        warmup_epochs: float = 0.0,
        threads: Any = None,
    ) -> None:
        self.task = task
        self.threads = threads
        self.rundir = rundir
        self.epochs = epochs
        self.lr_schedule = lr_schedule
        self.patience = patience
        self.meta = meta
        self.generator = generator
        from graphforge.engine.distributed import SINGLE

        self.dist = dist if dist is not None else SINGLE
        self.optimizer = make_optimizer(task.net, lr, weight_decay)
        self.steps_per_epoch = int(getattr(task, "steps_per_epoch", 1) or 1)
        self.scheduler = make_scheduler(self.optimizer, lr_schedule, epochs, self.steps_per_epoch, warmup_epochs)
        self.optimizer.register_step_post_hook(lambda *_: self.scheduler.step())
        self.state = TrainState()
        self.best_weights: dict[str, torch.Tensor] | None = None

    # --- checkpoints -------------------------------------------------------------
    def _save_last(self) -> None:
        if not self.dist.main:
            return
        training = {
            "optimizer": self.optimizer.state_dict(),
            "scheduler": self.scheduler.state_dict(),
            "state": self.state.__dict__,
            "rng": rng_state(),
            "generator": self.generator.get_state() if self.generator is not None else None,
        }
        self.rundir.save(LAST_CHECKPOINT, make_checkpoint("gradient", self.meta, {"net": self.task.net.state_dict()},
                                                          epoch=self.state.epoch, training=training))

    def _save_best(self) -> None:
        self.best_weights = copy.deepcopy(self.task.net.state_dict())
        if not self.dist.main:
            return
        self.rundir.save(BEST_CHECKPOINT, make_checkpoint("gradient", self.meta, {"net": self.best_weights},
                                                          epoch=self.state.epoch))

    def resume(self, last: dict[str, Any] | None = None) -> None:
        """Continue from ``last.pt`` (and load ``checkpoint.pt``) of the run directory.

        A run stopped before its first epoch ended has no ``last.pt``: it starts again
        from epoch 1.

        Args:
            last: ``last.pt`` as already read (the runner reads it to plan the run); read
                from the run directory when ``None``.
        """
        if last is None:
            if not self.rundir.file(LAST_CHECKPOINT).is_file():
                log.info("%s has no %s (the run stopped before its first epoch ended): starting from epoch 1",
                         self.rundir.path, LAST_CHECKPOINT)
                return
            last = self.rundir.load_checkpoint(LAST_CHECKPOINT)
        training = last.get("training")
        if last["family"] != "gradient" or not isinstance(training, dict):
            raise DataError(f"{self.rundir.file(LAST_CHECKPOINT)} holds no training state to resume from")
        load_weights(self.task.net, last["state"]["net"], self.rundir.file(LAST_CHECKPOINT), "network weights")
        load_weights(self.optimizer, training["optimizer"], self.rundir.file(LAST_CHECKPOINT), "optimiser state")
        load_weights(self.scheduler, training["scheduler"], self.rundir.file(LAST_CHECKPOINT), "LR schedule")
        _retarget_scheduler(self.scheduler, self.epochs, self.steps_per_epoch)
        self.state = TrainState(**training["state"])
        self.state.stopped_early = False
        set_rng_state(training["rng"])
        if self.generator is not None and training.get("generator") is not None:
            self.generator.set_state(training["generator"])
        if self.rundir.file(BEST_CHECKPOINT).is_file():
            self.best_weights = self.rundir.load_checkpoint(BEST_CHECKPOINT)["state"]["net"]

    # --- loop --------------------------------------------------------------------
    def fit(self) -> TrainState:
        """Train until ``epochs`` or early stopping; leave the best weights loaded."""
        st = self.state
        while st.epoch < self.epochs:
            st.epoch += 1
            if self.threads is not None:  # follow the machine's load (a no-op with --threads)
                self.threads.apply()
            start = time.perf_counter()
            lr = self.optimizer.param_groups[0]["lr"]
            row: dict[str, Any] = {"epoch": st.epoch}
            train = self.task.train_epoch(self.optimizer, st.epoch)
            if self.dist.active:  # every rank saw as many samples: the mean of the ranks' means
                sums = all_reduce_sums([train["train_loss"], train["train_accuracy"]], self.dist)
                train = {"train_loss": sums[0] / self.dist.world_size, "train_accuracy": sums[1] / self.dist.world_size}
            row.update(train)
            sync_buffers(self.task.net, self.dist)
            val = evaluate_split(self.task, "val")
            row.update(val_loss=val["loss"], val_accuracy=val["accuracy"], lr=lr)
            row.update(merge_epoch_metrics(epoch_metrics(self.task.net), self.dist))
            row["seconds"] = time.perf_counter() - start
            st.history.append(row)
            # Without a validation split there is nothing to choose by: the latest epoch is
            # the best one, and early stopping never triggers.
            no_val = val["y"].numel() == 0
            if no_val or st.improved(val["accuracy"], val["loss"]):
                st.best_epoch, st.best_val_accuracy, st.best_val_loss = st.epoch, val["accuracy"], val["loss"]
                st.bad_epochs = 0
                self._save_best()
            else:
                st.bad_epochs += 1
            log.info(
                "epoch %3d/%d  loss %.4f  train acc %.4f  val loss %.4f  val acc %.4f  (%.1fs)%s",
                st.epoch, self.epochs, row["train_loss"], row["train_accuracy"], row["val_loss"],
                row["val_accuracy"], row["seconds"], "  *" if st.best_epoch == st.epoch else "",
            )
            if self.patience and not no_val and st.bad_epochs >= self.patience and st.epoch < self.epochs:
                st.stopped_early = True
                log.info("early stopping: no better validation accuracy for %d epochs", self.patience)
            if self.dist.main:
                self.rundir.write_history(st.history)
            self._save_last()
            if st.stopped_early:
                break
        if self.best_weights is not None:
            self.task.net.load_state_dict(self.best_weights)
        return st

"""One model-agnostic training loop for the voice, face and fusion models (after minGPT's trainer).

Batches are dicts of tensors with a ``label`` entry; the other entries are the model's keyword
arguments. The loop: AdamW (lower learning rate for pretrained encoders), linear warmup + cosine
decay, gradient clipping and accumulation, mixed precision and cudnn benchmark on CUDA, early
stopping and best-checkpoint selection on validation UAR, optional OGM-GE gradient balancing of the fusion
model's modalities (``emolib.train.balance``), and resume after an interruption
(``emolib.train.resume``: only into the same run). A non-finite loss stops training with
TrainingError before anything of that epoch is saved.
"""
from __future__ import annotations

import json
import math
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Callable

import numpy as np
import torch
from torch.utils.data import DataLoader

from ..devices import pick_device
from ..errors import EmolibError
from ..eval.metrics import summary_metrics
from ..files import atomic_write
from .balance import GradientBalancer
from .presets import BALANCE_CHOICES
from .distributed import make_accelerator
from .resume import RESUME_FILE, load_resume_state, save_resume_state

HISTORY_FILE = "history.json"
RUN_FIELDS_IGNORED = ("device", "num_workers")  # how a run executes, not what it is: a resume may change them
ENCODER_PREFIXES = ("encoder.",)


class ConfigError(EmolibError, ValueError):
    """A training setting is out of range."""


class TrainingError(EmolibError, RuntimeError):
    """Training cannot go on (e.g. the loss became NaN or infinite)."""


@dataclass
class TrainConfig:
    """Optimisation settings shared by all three models."""

    epochs: int = 10
    batch_size: int = 16
    lr: float = 1e-3
    encoder_lr: float = 3e-5
    weight_decay: float = 0.01
    warmup_fraction: float = 0.1
    grad_clip: float = 1.0
    accumulation: int = 1
    patience: int = 4
    seed: int = 0
    num_workers: int = 0
    device: str = "auto"
    amp: bool = True
    balance: str = "none"

    def __post_init__(self):
        for name in ("epochs", "batch_size", "accumulation", "patience"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ConfigError(f"{name.replace('_', '-')}: must be a positive whole number, got {value!r}")
        for name in ("lr", "encoder_lr", "grad_clip"):
            value = getattr(self, name)
            if not (isinstance(value, (int, float)) and math.isfinite(value) and value > 0):
                raise ConfigError(f"{name.replace('_', '-')}: must be a positive finite number, got {value!r}")
        if self.balance not in BALANCE_CHOICES:
            raise ConfigError(f"balance: expected one of {', '.join(BALANCE_CHOICES)}, got {self.balance!r}")
        if not (math.isfinite(self.weight_decay) and self.weight_decay >= 0 and 0 <= self.warmup_fraction < 1):
            raise ConfigError(f"weight-decay must be >= 0 and warmup-fraction in [0, 1), got {self.weight_decay!r} and {self.warmup_fraction!r}")

    def identity(self) -> dict:
        """The settings that define the run (a resume must match them); not how it executes (device, workers)."""
        identity = {name: value for name, value in asdict(self).items() if name not in RUN_FIELDS_IGNORED}
        if identity["balance"] == "none":  # runs of versions without balancing keep their identity
            del identity["balance"]
        return identity


def predict_logits(model, loader, accelerator, progress: bool = False, desc: str = "predict") -> tuple[np.ndarray, np.ndarray]:
    """Logits and labels of every batch of ``loader`` (a prepared loader: each process has its shard),
    gathered from all processes, each sample once, in order."""
    from tqdm.auto import tqdm

    model.eval()
    logits, labels = [], []
    with torch.inference_mode():
        for batch in tqdm(loader, desc=desc, leave=False, disable=not progress):
            label = batch.pop("label")
            output = model(**batch).float()
            output, label = accelerator.gather_for_metrics((output, label))
            labels.append(label.cpu())
            logits.append(output.cpu())
    return torch.cat(logits).numpy(), torch.cat(labels).numpy()


class Trainer:
    """Train ``model`` on ``train_set``, select on ``val_set``, write into ``out_dir``.

    ``save_best(model, metrics)`` writes the deployable checkpoint whenever validation UAR improves.
    ``fingerprint`` identifies the run (data, model, preprocessing; the TrainConfig's ``identity``
    is added): a saved resume state is used only when it was saved by the same run. Under a
    launcher the processes share each batch (``emolib.train.distributed``); validation metrics are
    gathered over the whole validation split, and only the main process writes files.
    """

    def __init__(self, model, train_set, val_set, config: TrainConfig, out_dir, save_best: Callable, progress: bool = True,
                 fingerprint: dict | None = None):
        self.model, self.config, self.out_dir = model, config, Path(out_dir)
        self.fingerprint = {**(fingerprint or {}), "training": config.identity()}
        self.train_set, self.val_set, self.save_best, self.progress = train_set, val_set, save_best, progress
        device = pick_device(config.device)
        self.use_amp = config.amp and device.type == "cuda"
        if device.type == "cuda":
            torch.backends.cudnn.benchmark = True
        self.accelerator = make_accelerator(device, self.use_amp, config.batch_size)
        self.device = self.accelerator.device
        self.main = self.accelerator.is_main_process
        self.progress = progress and self.main
        self.model.to(self.device)
        optimizer = torch.optim.AdamW(self._parameter_groups(), weight_decay=config.weight_decay)
        self.parallel_model, self.optimizer = self.accelerator.prepare(self.model, optimizer)
        self.steps_per_epoch = math.ceil(len(train_set) / config.batch_size / config.accumulation)
        self.total_steps = max(1, self.steps_per_epoch * config.epochs)
        self.state = {"epoch": 0, "step": 0, "best_uar": -1.0, "best_epoch": -1, "bad_epochs": 0, "history": []}
        self.balancer = None
        if config.balance == "ogm-ge":
            if not (hasattr(self.model, "modality_parameters") and hasattr(self.model, "modality_scores")):
                raise ConfigError("balance ogm-ge: only the fusion model has two modalities to balance")
            self.balancer = GradientBalancer(self.model, reduce=lambda tensor: self.accelerator.reduce(tensor, "sum"), seed=config.seed)

    def _parameter_groups(self) -> list[dict]:
        if hasattr(self.model, "parameter_groups"):  # a model with learning rates of its own (the joint fusion model)
            return self.model.parameter_groups(self.config.lr)
        encoder, head = [], []
        for name, parameter in self.model.named_parameters():
            if parameter.requires_grad:
                (encoder if name.startswith(ENCODER_PREFIXES) else head).append(parameter)
        groups = [{"params": head, "lr": self.config.lr, "base_lr": self.config.lr}]
        if encoder:
            groups.append({"params": encoder, "lr": self.config.encoder_lr, "base_lr": self.config.encoder_lr})
        return groups

    def _learning_rate_factor(self, step: int) -> float:
        warmup = max(1, int(self.config.warmup_fraction * self.total_steps))
        if step < warmup:
            return (step + 1) / warmup
        progress = (step - warmup) / max(1, self.total_steps - warmup)
        return 0.5 * (1 + math.cos(math.pi * min(1.0, progress)))

    def _loader(self, dataset, shuffle: bool, epoch: int = 0):
        """A DataLoader of the global batch size, prepared so that each process gets its part of every batch."""
        generator = torch.Generator().manual_seed(self.config.seed + epoch)
        loader = DataLoader(
            dataset,
            batch_size=self.config.batch_size,
            shuffle=shuffle,
            generator=generator,
            num_workers=self.config.num_workers,
            pin_memory=self.device.type == "cuda",
        )
        return self.accelerator.prepare_data_loader(loader)

    def fit(self) -> list[dict]:
        """Train until the epoch budget or early stopping; return the per-epoch history."""
        self._resume()
        while self.state["epoch"] < self.config.epochs and self.state["bad_epochs"] < self.config.patience:
            epoch = self.state["epoch"]
            train_loss = self._train_epoch(epoch)
            metrics = self.evaluate(self.val_set)
            self._record(epoch, train_loss, metrics)
            self._save_resume_state()
        return self.state["history"]

    def _train_epoch(self, epoch: int) -> float:
        from tqdm.auto import tqdm

        torch.manual_seed(self.config.seed + epoch + 1000 * self.accelerator.process_index)
        self.parallel_model.train()
        losses = []
        loader = self._loader(self.train_set, shuffle=True, epoch=epoch)
        bar = tqdm(loader, desc=f"epoch {epoch + 1}/{self.config.epochs}", leave=False, disable=not self.progress)
        self.optimizer.zero_grad(set_to_none=True)
        started = waited = time.perf_counter()
        waiting = 0.0
        for index, batch in enumerate(bar):
            waiting += time.perf_counter() - waited  # the loop blocked on the data loader (each step ends in loss.item(): a sync)
            labels = batch.pop("label")
            with self.accelerator.autocast():
                loss = torch.nn.functional.cross_entropy(self.parallel_model(**batch).float(), labels)
                if hasattr(self.model, "extra_loss"):  # e.g. the joint model's voice and face heads
                    loss = loss + self.model.extra_loss(labels)
            if not torch.isfinite(loss):
                raise TrainingError(f"{self.out_dir}: the training loss became {loss.item()} at epoch {epoch + 1}, batch {index + 1}; "
                                    f"stopped without saving this epoch (best so far: epoch {self.state['best_epoch']}); "
                                    f"try a lower --lr (now {self.config.lr:g}) and check the data")
            self.accelerator.backward(loss / self.config.accumulation)
            if self.balancer is not None:
                self.balancer.step(batch, labels)
            if (index + 1) % self.config.accumulation == 0 or index + 1 == len(loader):
                self._optimizer_step()
            losses.append(loss.item())
            bar.set_postfix(loss=f"{np.mean(losses[-20:]):.3f}")
            waited = time.perf_counter()
        self.epoch_timing = {"train_s": time.perf_counter() - started, "data_wait_s": waiting}
        local = torch.tensor(float(np.mean(losses)) if losses else float("nan"), device=self.device)
        return float(self.accelerator.reduce(local, "mean"))  # the mean over all processes' batches

    def _optimizer_step(self) -> None:
        factor = self._learning_rate_factor(self.state["step"])
        for group in self.optimizer.param_groups:
            group["lr"] = group["base_lr"] * factor
        self.accelerator.clip_grad_norm_(self.parallel_model.parameters(), self.config.grad_clip)
        self.optimizer.step()
        self.optimizer.zero_grad(set_to_none=True)
        self.state["step"] += 1

    def evaluate(self, dataset) -> dict:
        """Loss, accuracy, UAR and macro-F1 of the current model on ``dataset``."""
        logits, labels = predict_logits(self.parallel_model, self._loader(dataset, shuffle=False), self.accelerator)
        loss = torch.nn.functional.cross_entropy(torch.from_numpy(logits), torch.from_numpy(labels).long()).item()
        if not np.isfinite(logits).all():
            raise TrainingError(f"{self.out_dir}: the model gives non-finite outputs on the validation split; "
                                f"stopped without saving (try a lower --lr, now {self.config.lr:g})")
        metrics = summary_metrics(labels, logits.argmax(axis=1))
        return {"loss": loss, "accuracy": metrics["accuracy"], "uar": metrics["uar"], "macro_f1": metrics["macro_f1"]}

    def _record(self, epoch: int, train_loss: float, metrics: dict) -> None:
        row = {"epoch": epoch + 1, "train_loss": train_loss, **{f"val_{name}": value for name, value in metrics.items()},
               "train_seconds": round(self.epoch_timing["train_s"], 3), "data_wait_seconds": round(self.epoch_timing["data_wait_s"], 3),
               **(self.balancer.epoch_summary() if self.balancer is not None else {})}
        improved = metrics["uar"] > self.state["best_uar"]
        if improved:
            self.state.update(best_uar=metrics["uar"], best_epoch=epoch + 1, bad_epochs=0)
            if self.main:
                self.save_best(self.model, {"split": "val", "epoch": epoch + 1, **metrics})
        else:
            self.state["bad_epochs"] += 1
        row["best"] = improved
        self.state["history"].append(row)
        self.state["epoch"] = epoch + 1
        if self.main:
            atomic_write(self.out_dir / HISTORY_FILE, json.dumps(self.state["history"], indent=2))
        if self.progress:
            print(f"epoch {epoch + 1}: train loss {train_loss:.3f}, val loss {metrics['loss']:.3f}, "
                  f"val acc {metrics['accuracy']:.3f}, val UAR {metrics['uar']:.3f}{' *' if improved else ''}")

    def _save_resume_state(self) -> None:
        if self.main:
            state = {**self.state, "config": asdict(self.config)}
            save_resume_state(self.out_dir / RESUME_FILE, self.model, self.optimizer.optimizer, state, self.fingerprint)
        self.accelerator.wait_for_everyone()

    def _resume(self) -> None:
        state = load_resume_state(self.out_dir / RESUME_FILE, self.model, self.optimizer.optimizer, self.fingerprint, self.device)
        if state is None:
            return
        for group in self.optimizer.param_groups:
            group.setdefault("base_lr", group["lr"])
        state.pop("config", None)
        self.state.update(state)
        if self.progress and self.state["epoch"] < self.config.epochs:
            print(f"resuming from epoch {self.state['epoch']} (best val UAR {self.state['best_uar']:.3f})")

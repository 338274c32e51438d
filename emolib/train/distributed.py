"""Several processes (GPUs, or CPU processes with gloo) through Hugging Face Accelerate.

The one Trainer runs unchanged in a plain process, under ``accelerate launch`` / ``torchrun`` (DDP),
and under ``accelerate.notebook_launcher`` (Kaggle's two T4s from a notebook). ``--batch-size`` stays
the global batch: each step's batch is split between the processes (``split_batches``), so one or
two GPUs train on the same batches with the same schedule. Only the main process writes files.
"""
from __future__ import annotations

import os

import torch

from ..errors import EmolibError

RANK_VARIABLES = ("RANK", "LOCAL_RANK")


def launched_rank() -> int:
    """This process's rank as set by a launcher (torchrun, accelerate launch), 0 in a plain process."""
    for name in RANK_VARIABLES:
        if os.environ.get(name, "").isdigit():
            return int(os.environ[name])
    return 0


def is_main_process() -> bool:
    """True in a plain process and in rank 0 of a launched run: the process that writes files."""
    return launched_rank() == 0


def make_accelerator(device: torch.device, mixed_precision: bool, batch_size: int):
    """An Accelerator for ``device`` ("cpu" gives gloo between CPU processes), fp16 autocast when ``mixed_precision``."""
    from accelerate import Accelerator, DistributedDataParallelKwargs
    from accelerate.state import AcceleratorState

    if int(os.environ.get("WORLD_SIZE", "1")) <= 1:
        AcceleratorState._reset_state(True)  # a plain process may train on the CPU, then on a GPU
    # wav2vec2 has parameters a forward pass may not use (masked_spec_embed): DDP must not wait for their gradients
    unused = DistributedDataParallelKwargs(find_unused_parameters=True)
    accelerator = Accelerator(cpu=device.type == "cpu", mixed_precision="fp16" if mixed_precision else "no", split_batches=True,
                              kwargs_handlers=[unused])
    if batch_size % accelerator.num_processes:
        raise EmolibError(f"--batch-size {batch_size} cannot be split between {accelerator.num_processes} processes; "
                          f"use a multiple of {accelerator.num_processes}")
    return accelerator

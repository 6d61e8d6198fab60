"""Data-parallel position under `accelerate launch` / torchrun; one process is rank 0 of 1."""

from __future__ import annotations

import os
from dataclasses import dataclass


@dataclass
class Dist:
    """Data-parallel position. One process: rank 0 of 1."""

    rank: int = 0
    world: int = 1
    local_rank: int = 0

    @property
    def main(self) -> bool:
        return self.rank == 0


def init_distributed() -> Dist:
    """Under `accelerate launch` / torchrun the env names our rank; accelerate starts the group."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world <= 1:
        return Dist()
    import torch
    from accelerate import PartialState

    # Without CUDA (CPU-only CI, `accelerate launch --multi_gpu` on a machine with no GPU) accelerate
    # would see no backend and leave every process alone as rank 0 of 1: ask for gloo on the CPU.
    state = PartialState(cpu=not torch.cuda.is_available())
    return Dist(state.process_index, state.num_processes, state.local_process_index)


def all_reduce_grads(params: list, dist: Dist) -> None:
    """Average LoRA gradients over processes: one flat all-reduce per step. (DDP would sync at
    every micro-batch's backward; our micro-batch count varies per process and per step.)"""
    if dist.world == 1:
        return
    import torch
    import torch.distributed as tdist

    grads = [p.grad if p.grad is not None else torch.zeros_like(p) for p in params]
    flat = torch.cat([g.reshape(-1) for g in grads])
    tdist.all_reduce(flat)
    offset = 0
    for p, g in zip(params, grads):
        n = g.numel()
        p.grad = flat[offset:offset + n].view_as(p)
        offset += n


def sum_across(values: list[float], dist: Dist, device) -> list[float]:
    if dist.world == 1:
        return values
    import torch
    import torch.distributed as tdist

    t = torch.tensor(values, dtype=torch.float64, device=device)
    tdist.all_reduce(t)
    return t.tolist()


def barrier(dist: Dist) -> None:
    if dist.world > 1:
        import torch.distributed as tdist

        tdist.barrier()


def agreed_flags(stop: bool, pause: bool, dist: Dist, device) -> tuple[bool, bool]:
    """Stop/pause as seen by every process (Ctrl+C reaches only some of them)."""
    if dist.world == 1:
        return stop, pause
    s, p = sum_across([float(stop), float(pause)], dist, device)
    return s > 0, p > 0

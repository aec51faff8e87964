"""Seeded, stateless batching shared by the search and training.

A batch is a pure function of (seed, salt, epoch, step): the indices are read cyclically from a
permutation seeded by (seed, salt, epoch), and each image's random transform is seeded by (seed, epoch,
index) in the dataset. Nothing depends on iterator state, so a resumed run draws exactly the batches an
uninterrupted one would, with or without worker processes, on one process or several (each rank takes
its contiguous share of the global batch, like the micro-batches of gradient accumulation).
"""
from __future__ import annotations

from typing import Iterator

import numpy as np
import torch


def split_train(n: int, portion: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Seeded split of `n` training indices: (weight half, architecture half), sorted."""
    perm = np.random.default_rng([seed, 7]).permutation(n)
    k = int(round(n * portion))
    return np.sort(perm[:k]), np.sort(perm[k:])


def batch_picks(indices: np.ndarray, batch_size: int, epoch: int, step: int, seed: int, salt: int) -> list[int]:
    """Dataset indices of the global batch of (epoch, step)."""
    perm = np.random.default_rng([seed, salt, epoch]).permutation(indices)
    return [int(perm[(step * batch_size + j) % len(perm)]) for j in range(batch_size)]


def chunk(picks: list[int], part: int, parts: int) -> list[int]:
    """The `part`-th of `parts` contiguous equal shares of a batch (a rank's share, or a micro-batch)."""
    n = len(picks) // parts
    return picks[part * n:(part + 1) * n]


def load_batch(ds, picks: list[int], epoch: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Images (N, 3, H, W) float32 and labels (N, H, W) int64 of dataset indices `picks` at `epoch`."""
    ds.epoch = epoch
    xs, ys = zip(*(ds[i] for i in picks))
    return torch.stack(xs), torch.stack(ys)


def batch_at(ds, indices: np.ndarray, batch_size: int, epoch: int, step: int, seed: int, salt: int,
             rank: int = 0, world: int = 1) -> tuple[torch.Tensor, torch.Tensor]:
    """The batch of (epoch, step) (this rank's share of it when `world` > 1)."""
    picks = batch_picks(indices, batch_size, epoch, step, seed, salt)
    return load_batch(ds, chunk(picks, rank, world), epoch)


class StepBatches(torch.utils.data.Dataset):
    """Item k is the batch of step `first + k` of one epoch: lets a `DataLoader` with worker processes
    prepare the batches ahead while they stay a pure function of (seed, salt, epoch, step)."""

    def __init__(self, ds, indices: np.ndarray, batch_size: int, epoch: int, first: int, last: int, seed: int,
                 salt: int, rank: int = 0, world: int = 1):
        self.ds, self.indices, self.batch_size, self.epoch = ds, indices, batch_size, epoch
        self.first, self.last, self.seed, self.salt, self.rank, self.world = first, last, seed, salt, rank, world

    def __len__(self) -> int:
        return max(0, self.last - self.first)

    def __getitem__(self, k: int):
        return batch_at(self.ds, self.indices, self.batch_size, self.epoch, self.first + k, self.seed, self.salt,
                        self.rank, self.world)


def epoch_batches(ds, indices: np.ndarray, batch_size: int, epoch: int, first: int, last: int, seed: int, salt: int,
                  workers: int = 0, pin_memory: bool = False, rank: int = 0, world: int = 1) -> Iterator:
    """The batches of steps first..last-1 of `epoch`, loaded in `workers` processes (0: in this one)."""
    batches = StepBatches(ds, indices, batch_size, epoch, first, last, seed, salt, rank, world)
    if workers == 0:
        return (batches[k] for k in range(len(batches)))
    return iter(torch.utils.data.DataLoader(batches, batch_size=None, shuffle=False, num_workers=workers,
                                            pin_memory=pin_memory, persistent_workers=False,
                                            prefetch_factor=2))

"""The training data of a run: which datasets, and which items each iteration draws.

Iteration ``s`` draws the keys ``(index, draw)`` with ``draw = s * batch_size + b``; both the index
(uniform or rare class sampling) and the item's augmentation are pure functions of ``(seed, draw)``,
so a run resumed at iteration ``s`` sees exactly the batches an uninterrupted run would have seen.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass

import torch
from torch.utils.data import DataLoader, Sampler

from duda_engine.config import ExperimentConfig
from duda_engine.data.classes import ClassSpec
from duda_engine.data.datasets import InfiniteRandomSampler, SegmentationDataset, build_dataset
from duda_engine.data.rare_class_sampling import build_rare_class_sampler


class StepKeys(Sampler):
    """Endless batches of dataset keys, one batch per iteration from ``start_step`` on.

    With several data-parallel ranks, iteration ``s`` of rank ``r`` draws
    ``((s * world_size + r) * batch_size + b)``: the ranks share one stream without overlap.
    """

    def __init__(self, index_at: Callable[[int], int], batch_size: int, start_step: int, rank: int = 0, world_size: int = 1):
        self.index_at, self.batch_size, self.start_step = index_at, batch_size, start_step
        self.rank, self.world_size = rank, world_size

    def __iter__(self) -> Iterator[list[tuple[int, int]]]:
        step = self.start_step
        while True:
            first = (step * self.world_size + self.rank) * self.batch_size
            yield [(self.index_at(draw), draw) for draw in range(first, first + self.batch_size)]
            step += 1


def step_loader(dataset: SegmentationDataset, keys: StepKeys, num_workers: int) -> DataLoader:
    """Batches in the order ``keys`` gives. Items depend only on their keys; the loader's own generator
    keeps it from drawing on the global RNG, whose state a resumed run restores from the checkpoint."""
    return DataLoader(
        dataset,
        batch_sampler=keys,
        num_workers=num_workers,
        pin_memory=torch.cuda.is_available(),
        generator=torch.Generator(),
    )


@dataclass
class TrainingData:
    source: SegmentationDataset  # labelled training images (the target's own for the oracle)
    target: SegmentationDataset | None  # unlabelled target training images (None for the oracle)
    val: SegmentationDataset  # labelled target images for evaluation
    source_index_at: Callable[[int], int]
    target_index_at: Callable[[int], int] | None
    batch_size: int

    def source_keys(self, start_step: int, rank: int = 0, world_size: int = 1) -> StepKeys:
        return StepKeys(self.source_index_at, self.batch_size, start_step, rank, world_size)

    def target_keys(self, start_step: int, rank: int = 0, world_size: int = 1) -> StepKeys:
        assert self.target_index_at is not None
        return StepKeys(self.target_index_at, self.batch_size, start_step, rank, world_size)


def build_training_data(config: ExperimentConfig, classes: ClassSpec) -> TrainingData:
    t, st = config.train, config.self_training
    crop = tuple(t.crop_size)
    scales = tuple(t.scale_range)
    oracle = config.method == "oracle"
    source_cfg = config.target if oracle else config.source
    source = build_dataset(
        source_cfg, classes, source_cfg.train_split, train=True, crop_size=crop, scale_range=scales, seed=config.seed
    )
    if st.rare_class_sampling and config.method in ("self_training", "duda"):
        rcs = build_rare_class_sampler(
            source, temperature=st.rcs_temperature, min_pixels=st.rcs_min_pixels, seed=config.seed
        )
        source_index_at = rcs.sample_at
    else:
        source_index_at = InfiniteRandomSampler(len(source), seed=config.seed).index_at

    target, target_index_at = None, None
    if config.method not in ("oracle", "source_only"):
        target = build_dataset(
            config.target,
            classes,
            config.target.train_split,
            train=True,
            crop_size=crop,
            scale_range=scales,
            labelled=False,
            seed=config.seed + 1,
        )
        target_index_at = InfiniteRandomSampler(len(target), seed=config.seed + 1).index_at

    val = build_dataset(config.target, classes, config.target.val_split, train=False)
    return TrainingData(source, target, val, source_index_at, target_index_at, t.batch_size)

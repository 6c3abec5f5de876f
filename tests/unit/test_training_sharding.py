"""Data sharding across ranks: the stage's lhotse samplers, started inside a real two-process gloo group, hand
every training cut to exactly one rank once per epoch, in the same number of batches on each rank.

When the epoch's last round holds fewer cuts than ranks, lhotse pads it with a copy of a cut (its id marked
``_dup<k>``) so that no rank waits for the others without a batch: at most ``world_size - 1`` copies an epoch."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch.distributed as dist
import torch.multiprocessing as mp
from lhotse import CutSet
from lhotse.testing.dummies import dummy_cut

from omnikit.config.sections import BatchConfig
from omnikit.training.data import StageData

N_CUTS = 37  # odd, and not a multiple of any batch size: the epoch's last round is uneven


def _cuts() -> CutSet:
    # durations 0.5 .. 2.3 s, so the dynamic batches hold different numbers of cuts
    return CutSet.from_cuts(dummy_cut(i, duration=0.5 + (i % 7) * 0.3, recording_duration=0.5 + (i % 7) * 0.3)
                            for i in range(N_CUTS))


def _rank_main(rank: int, world: int, init_file: str, out_dir: str) -> None:
    dist.init_process_group("gloo", init_method=f"file://{init_file}", rank=rank, world_size=world)
    try:
        cuts = _cuts()
        batch = BatchConfig.from_mapping({"max_duration": 4.0, "num_buckets": 2})
        data = StageData(cuts, cuts.subset(first=9), {"feats"}, 16_000, batch, seed=3)
        sampler = data.train_dataloader().sampler
        report = {"world_size": sampler.world_size, "rank": sampler.rank, "epochs": []}
        for epoch in range(2):
            sampler.set_epoch(epoch)
            report["epochs"].append([[c.id for c in b] for b in sampler])
        report["val"] = [[c.id for c in b] for b in data.val_dataloader().sampler]
        Path(out_dir, f"rank{rank}.json").write_text(json.dumps(report))
    finally:
        dist.destroy_process_group()


@pytest.fixture(scope="module")
def shards(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("shards")
    # fork: the ranks start with omnikit already imported (seconds, not a minute, on a busy 2-core machine);
    # they run no torch kernels, only the samplers
    mp.start_processes(_rank_main, args=(2, str(tmp / "init"), str(tmp)), nprocs=2, join=True, start_method="fork")
    return [json.loads((tmp / f"rank{r}.json").read_text()) for r in range(2)]


def test_samplers_see_the_process_group(shards):
    assert [(s["rank"], s["world_size"]) for s in shards] == [(0, 2), (1, 2)]


def test_each_training_cut_goes_to_one_rank_once_per_epoch(shards):
    everything = {c.id for c in _cuts()}
    for epoch in range(2):
        seen = [[cid for b in s["epochs"][epoch] for cid in b] for s in shards]
        copies = [cid for ids in seen for cid in ids if "_dup" in cid]
        assert len(copies) <= 1 and all(cid.split("_dup")[0] in everything for cid in copies)
        per_rank = [[cid for cid in ids if "_dup" not in cid] for ids in seen]
        assert all(len(ids) == len(set(ids)) for ids in per_rank), "a rank saw a cut twice in one epoch"
        assert not set(per_rank[0]) & set(per_rank[1]), "two ranks saw the same cut"
        assert set(per_rank[0]) | set(per_rank[1]) == everything, "a cut was never seen"
        # ranks step together: the same number of batches, none empty
        assert len(shards[0]["epochs"][epoch]) == len(shards[1]["epochs"][epoch])
        assert all(b for s in shards for b in s["epochs"][epoch])
    # a new epoch is a new order (shuffle follows the epoch), not a replay
    assert shards[0]["epochs"][0] != shards[0]["epochs"][1]


def test_validation_cuts_are_sharded_too(shards):
    ids = [cid for s in shards for b in s["val"] for cid in b]
    assert sorted(ids) == sorted(c.id for c in _cuts().subset(first=9))

"""Where a cell's process runs and on which GPUs, checked without GPUs: the local backend hands each
cell its own CUDA_VISIBLE_DEVICES, and a multi-rank cell's DeepSpeed launcher keeps the GPUs it was
given (its --num_gpus would take GPUs 0..N-1 instead)."""
from __future__ import annotations

import pytest

from adapter_stilts.config import ConfigError
from adapter_stilts.scaling.parallel import CellJob, LocalBackend, cell_command


def _job(ranks: int, env: tuple = ()) -> CellJob:
    return CellJob("cell-a", "abc", "/s/study.yaml", ("training.lr=0.01",), "/s", env, ranks, "/s/log")


def test_the_local_backend_gives_each_cell_its_own_gpus(monkeypatch):
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "4,5,6,7,9")
    backend = LocalBackend(jobs=3, retries=0, gpus_per_cell=2)  # 5 GPUs hold two cells of 2
    try:
        assert backend.jobs == 2 and backend.slots() == 2
        groups = sorted(backend.gpu_groups.get_nowait() for _ in range(2))
        assert groups == ["4,5", "6,7"] and backend.gpu_groups.empty()
    finally:
        backend.close()
    with pytest.raises(ConfigError, match="study.resources.gpus: 8 per cell, but this machine shows 5 GPUs"):
        LocalBackend(jobs=1, retries=0, gpus_per_cell=8)


def test_a_multi_rank_cell_keeps_the_gpus_it_was_given(monkeypatch):
    monkeypatch.delenv("CUDA_VISIBLE_DEVICES", raising=False)
    given = cell_command(_job(2, (("CUDA_VISIBLE_DEVICES", "6,7"),)))
    assert given[given.index("--include") + 1] == "localhost:6,7" and "--num_gpus" not in given
    assert given[given.index("--module") + 1:][:3] == ["adapter_stilts", "cell", "--exp"]
    assert given[-2:] == ["--set", "training.lr=0.01"]
    plain = cell_command(_job(2))  # no GPUs assigned (CPU ranks): the launcher's own count
    assert plain[plain.index("--num_gpus") + 1] == "2"
    one = cell_command(_job(1))
    assert one[1:4] == ["-m", "adapter_stilts", "cell"] and "--key" in one

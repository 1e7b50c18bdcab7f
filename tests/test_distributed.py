"""Process-group set-up helpers."""
import os

from adapter_stilts.distributed import STALE_BUILD_LOCK_S, remove_stale_build_locks


def test_stale_build_locks_are_removed_and_live_ones_kept(tmp_path, monkeypatch):
    monkeypatch.setenv("TORCH_EXTENSIONS_DIR", str(tmp_path))
    stale, live = tmp_path / "deepspeed_shm_comm" / "lock", tmp_path / "other_op" / "lock"
    for lock in (stale, live):
        lock.parent.mkdir()
        lock.touch()
    old = os.path.getmtime(stale) - STALE_BUILD_LOCK_S - 60  # a killed build's lock
    os.utime(stale, (old, old))
    assert remove_stale_build_locks() == [stale]
    assert not stale.exists() and live.exists()  # a build in progress keeps its lock

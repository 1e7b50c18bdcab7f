"""Disk-space warning for full-mode phases, on the real disk of tmp_path."""
import logging
import shutil

from adapter_stilts.training.checkpoints import full_phase_disk_need, warn_if_low_disk


def test_full_phase_need_counts_checkpoints_and_result_copies():
    # keep 2: 3 checkpoints x (weights + 2 Adam moments) + 3 copies of the result
    assert full_phase_disk_need(100, keep=2) == 100 * (3 * 3 + 3)
    assert full_phase_disk_need(100, keep=0) == full_phase_disk_need(100, keep=1)  # at least one is kept


def test_low_disk_warns_naming_the_folder_and_the_need(tmp_path, caplog):
    free = shutil.disk_usage(tmp_path).free
    with caplog.at_level(logging.WARNING, logger="adapter_stilts"):
        assert not warn_if_low_disk(tmp_path, need=1)
        assert not caplog.records
        assert warn_if_low_disk(tmp_path, need=free + 10**12)
    message = caplog.records[-1].getMessage()
    assert str(tmp_path) in message and f"{(free + 10**12) / 1e9:.1f} GB" in message
    assert "training.keep_checkpoints" in message

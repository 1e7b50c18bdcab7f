"""One cache folder shared by several processes: claims serialise the work on a key (the second
process waits, then reuses the entry), stale claims of dead processes are taken over, and
concurrent stores never leave a half-written or mixed entry. Real processes, real files."""
from __future__ import annotations

import json
import logging
import os
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from adapter_stilts import cache as cache_module
from adapter_stilts.cache import ClaimTimeout, PhaseCache

SRC = Path(__file__).resolve().parents[1] / "src"
MANIFEST = "manifest.json"

# A worker process: `python worker.py MODE CACHE_ROOT WORK_DIR NAME`
WORKER = r'''
import json, logging, os, sys, time
from pathlib import Path

sys.path.insert(0, os.environ["CACHE_SRC"])
logging.basicConfig(level=logging.INFO, stream=sys.stderr, format="%(levelname)s %(name)s %(message)s")
from adapter_stilts.cache import PhaseCache
from adapter_stilts.integrity import write_manifest

mode, root, work, name = sys.argv[1:5]
root, work = Path(root), Path(work)
cache = PhaseCache(root)


def result(files, size):
    """A trained result: every byte says which worker wrote it."""
    folder = work / f"result-{name}"
    folder.mkdir()
    for i in range(files):
        (folder / f"w{i}.bin").write_bytes(name.encode() * size)
    write_manifest(folder, "manifest.json")
    return folder


def start_together():
    """Every worker is past its (slow) imports before any goes on: the race is real."""
    (work / f"ready-{name}").touch()
    while len(list(work.glob("ready-*"))) < int(os.environ["WORKERS"]):
        time.sleep(0.01)


if mode == "race":  # the pipeline's pattern: claim, look up, train and store only if missing
    start_together()
    with cache.claim("target", "k", poll=0.2):
        entry = cache.lookup("target", "k", "manifest.json")
        trained = entry is None
        if trained:
            time.sleep(1)  # "training"
            with open(work / "trained.log", "a") as f:
                f.write(name + "\n")
            cache.store("target", "k", result(1, 64), {"writer": name})
            entry = cache.lookup("target", "k", "manifest.json")
    print(json.dumps({"trained": trained, "path": str(entry.path), "meta": entry.meta}))
elif mode == "hold":  # hold the claim until told to let go
    with cache.claim("target", "k"):
        (work / "held").touch()
        while not (work / "release").exists():
            time.sleep(0.05)
elif mode == "store":
    folder = result(20, 50_000)  # big enough that copying and deleting take a while
    start_together()
    cache.store("target", "k", folder, {"writer": name})
'''


def _workers(tmp_path: Path, mode: str, names: list[str]) -> list[subprocess.Popen]:
    work = tmp_path / "work"
    work.mkdir(exist_ok=True)
    script = work / "worker.py"
    script.write_text(WORKER)
    env = {**os.environ, "CACHE_SRC": str(SRC), "WORKERS": str(len(names))}
    return [subprocess.Popen([sys.executable, str(script), mode, str(tmp_path / "cache"), str(work), name],
                             env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
            for name in names]


def _finish(procs: list[subprocess.Popen], timeout: float = 60) -> list[tuple[str, str]]:
    outs = [p.communicate(timeout=timeout) for p in procs]
    for p, (_, err) in zip(procs, outs, strict=True):
        assert p.returncode == 0, f"worker {p.args[-1]} failed:\n{err}"
    return outs


def _claim_file(tmp_path: Path) -> Path:
    return tmp_path / "cache" / "target" / "k.claim"


def _write_claim(path: Path, host: str, pid: int, age: float = 0) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    started = time.time() - age
    path.write_text(json.dumps({"host": host, "pid": pid, "started": started, "started_at": "then", "token": "x"}))
    os.utime(path, (started, started))


def _dead_pid() -> int:
    p = subprocess.Popen([sys.executable, "-c", "pass"])
    p.wait()
    return p.pid


def test_two_processes_race_for_a_key_one_trains_the_other_reuses(tmp_path):
    outs = _finish(_workers(tmp_path, "race", ["a", "b"]))
    results = [json.loads(out) for out, _ in outs]
    trained_log = (tmp_path / "work" / "trained.log").read_text().split()
    assert len(trained_log) == 1, f"trained {len(trained_log)} times: the claim did not serialise the work"
    assert sorted(r["trained"] for r in results) == [False, True]
    assert results[0]["path"] == results[1]["path"] and results[0]["meta"] == results[1]["meta"]
    assert results[0]["meta"]["writer"] == trained_log[0]
    # no claim, temp or displaced folder left behind
    assert sorted(p.name for p in (tmp_path / "cache" / "target").iterdir()) == ["k"]


def test_waiters_take_over_a_stale_claim_one_at_a_time(tmp_path):
    """Three processes find a claim left by a dead process: one takes it over, the others wait for it."""
    _write_claim(_claim_file(tmp_path), socket.gethostname(), _dead_pid())
    outs = _finish(_workers(tmp_path, "race", ["a", "b", "c"]))
    assert len((tmp_path / "work" / "trained.log").read_text().split()) == 1
    assert sum(json.loads(out)["trained"] for out, _ in outs) == 1
    assert sum(err.count("Taking over the stale claim") for _, err in outs) == 1
    assert sorted(p.name for p in (tmp_path / "cache" / "target").iterdir()) == ["k"]


def test_stale_claim_of_a_dead_process_on_this_host_is_taken_over_at_once(tmp_path, caplog):
    caplog.set_level(logging.INFO, logger="adapter_stilts.cache")
    claim, dead = _claim_file(tmp_path), _dead_pid()
    _write_claim(claim, socket.gethostname(), dead)
    cache = PhaseCache(tmp_path / "cache")
    start = time.monotonic()
    with cache.claim("target", "k", timeout=10):
        assert time.monotonic() - start < 1  # no waiting round
        assert json.loads(claim.read_text())["pid"] == os.getpid()
    assert not claim.exists() and not list(claim.parent.iterdir())  # the stale one is gone too
    assert "Taking over the stale claim" in caplog.text and f"pid {dead}" in caplog.text


def test_a_late_takeover_leaves_the_claim_taken_meanwhile(tmp_path):
    """Two waiters judge one claim stale; the first takes it over and holds it: the second's
    takeover, coming late, must not remove the first's live claim (or both would work on the key)."""
    claim = _claim_file(tmp_path)
    _write_claim(claim, socket.gethostname(), _dead_pid())
    judged = cache_module._read_claim(claim)  # waiter 2 looks: stale...
    with PhaseCache(tmp_path / "cache").claim("target", "k", timeout=5):  # ...waiter 1 takes it over
        mine = claim.read_text()
        cache_module._take_over(claim, judged, "judged stale earlier")  # waiter 2 acts on its old look
        assert claim.read_text() == mine
    assert not list(claim.parent.iterdir())  # released normally, nothing left aside


def test_claim_of_another_host_is_stale_only_by_age(tmp_path):
    """A pid means nothing on another host: such a claim is waited for until it is `stale_after` old."""
    claim, cache = _claim_file(tmp_path), PhaseCache(tmp_path / "cache")
    _write_claim(claim, "some-other-host", _dead_pid())
    with pytest.raises(ClaimTimeout, match="some-other-host"):
        with cache.claim("target", "k", timeout=0.5, stale_after=3600, poll=0.1):
            pass
    _write_claim(claim, "some-other-host", 1, age=2 * 3600)
    with cache.claim("target", "k", timeout=5, stale_after=3600):
        assert json.loads(claim.read_text())["pid"] == os.getpid()
    assert not claim.exists()


def test_claim_held_by_a_live_process_is_waited_for(tmp_path, caplog):
    caplog.set_level(logging.INFO, logger="adapter_stilts.cache")
    claim, cache = _claim_file(tmp_path), PhaseCache(tmp_path / "cache")
    work = tmp_path / "work"
    [holder] = _workers(tmp_path, "hold", ["h"])
    try:
        deadline = time.monotonic() + 40
        while not (work / "held").exists():
            assert holder.poll() is None, holder.communicate()[1]
            assert time.monotonic() < deadline, "the holder never took its claim"
            time.sleep(0.05)
        # bounded wait: a clear error naming the claim file and its holder
        start = time.monotonic()
        with pytest.raises(ClaimTimeout) as error:
            with cache.claim("target", "k", timeout=1.5, poll=0.2):
                pytest.fail("entered a claim a live process holds")
        assert 1.5 <= time.monotonic() - start < 6
        assert str(claim) in str(error.value) and f"host {socket.gethostname()} pid {holder.pid}" in str(error.value)
        assert f"pid {holder.pid}" in caplog.text  # said once who it waits for
        assert json.loads(claim.read_text())["pid"] == holder.pid  # not taken over

        # released after a while: the waiter gets it then, not before
        threading.Timer(1.0, (work / "release").touch).start()
        start = time.monotonic()
        with cache.claim("target", "k", timeout=30, poll=0.2):
            waited = time.monotonic() - start
            assert json.loads(claim.read_text())["pid"] == os.getpid()
        assert 0.9 <= waited < 15
        assert holder.wait(timeout=10) == 0
        assert not claim.exists()
    finally:
        (work / "release").touch()
        if holder.poll() is None:
            holder.kill()
        holder.communicate()


def test_concurrent_stores_of_one_key_leave_one_intact_entry(tmp_path, caplog):
    """Two writers finish the same key at once while a reader looks it up: the reader never sees a
    damaged entry, the first writer's entry is kept whole, nothing is left behind."""
    caplog.set_level(logging.INFO, logger="adapter_stilts.cache")
    cache = PhaseCache(tmp_path / "cache")
    procs = _workers(tmp_path, "store", ["a", "b"])
    seen = set()
    while any(p.poll() is None for p in procs):
        if (entry := cache.lookup("target", "k", MANIFEST)) is not None:
            seen.add(entry.meta["writer"])
    outs = _finish(procs)
    assert "damaged" not in caplog.text, "a reader saw a half-written or half-deleted entry"
    entry = cache.lookup("target", "k", MANIFEST)
    assert entry is not None
    writer = entry.meta["writer"]
    assert seen <= {writer}, "the first writer's entry was replaced by the second's"
    # result and meta from the same writer, every byte
    assert {(entry.path / f"w{i}.bin").read_bytes() for i in range(20)} == {writer.encode() * 50_000}
    logs = [err for _, err in outs]
    assert sum("cached target result k" in err for err in logs) == 1
    assert sum("keeping the intact entry" in err for err in logs) == 1
    assert sorted(p.name for p in (tmp_path / "cache" / "target").iterdir()) == ["k"]

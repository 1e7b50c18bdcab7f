"""Content-addressed cache of trained phase results, shared by every experiment that writes to the
same output folder: an intermediate adapter (or encoder) is keyed by everything that determines
it (model, mode, tasks and their sizes, strategy and sampler, hyper-parameters, seed, and a
fingerprint of the very token ids it was trained on), so a second experiment that needs the
same one reuses it instead of training it again. Target results are keyed the same way, plus
the intermediate key they were trained on.

Several processes (possibly on several hosts over a shared file system) may use one cache
folder at once: `claim` serialises the work on one key (the second claimer waits, then finds
the entry), and `store` swaps a complete entry into place with one rename, so a reader never
sees half an entry and two writers never mix their files."""
from __future__ import annotations

import errno
import json
import logging
import os
import secrets
import shutil
import socket
import threading
import time
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path

from . import distributed as dist
from .integrity import read_manifest, verify_manifest

log = logging.getLogger(__name__)
META = "cache.json"
CLAIM_TIMEOUT_S = 6 * 3600  # longer than any one phase trains: a longer wait means something is stuck
# a claim not refreshed for this long was left by a dead process on another host (a lost cluster
# node; a pid is checked only on its own host): held claims are refreshed every minute, and a
# retried cell waits at most this long for a dead node's claim
STALE_CLAIM_S = 15 * 60
CLAIM_POLL_S = 1.5
UNWRITTEN_CLAIM_S = 60  # a claim's JSON is written right after the file is created; empty for longer: its writer died
_held: dict[str, int] = {}  # token -> thread of the claims this process holds (a nested claim is no dead holder)


class ClaimTimeout(TimeoutError):
    """Waited longer than `timeout` for a claim another live process holds."""


@dataclass(frozen=True)
class CacheEntry:
    path: Path  # the cached result folder (with its manifest)
    meta: dict

    def extra(self, name: str) -> Path | None:
        """A file stored beside the result (`store(..., extra=...)`), if this entry has it."""
        path = self.path.parent / name
        return path if path.is_file() else None


def _unique() -> str:
    """A name part no other writer (process or host) can pick."""
    return f"{socket.gethostname()}-{os.getpid()}-{secrets.token_hex(4)}"


def _manifest_name(folder: Path) -> str | None:
    """The manifest among `folder`'s top-level files: the JSON that lists every other file."""
    files = {p.relative_to(folder).as_posix() for p in folder.rglob("*") if p.is_file()}
    for path in sorted(folder.glob("*.json")):
        manifest = read_manifest(folder, path.name)
        listed = manifest.get("files") if isinstance(manifest, dict) else None
        if isinstance(listed, dict) and set(listed) == files - {path.name, path.name + ".tmp"}:
            return path.name
    return None


# ---- claims: one lock file per key, taken with O_CREAT|O_EXCL (atomic, also on NFS v3+) ----

@dataclass(frozen=True)
class _Holder:
    info: dict  # the claim file's JSON ({} while not yet written, or unreadable)
    ident: tuple  # (st_dev, st_ino, content): which file was judged (an inode number alone is reused)
    age: float  # seconds since it was created or last refreshed by its holder

    def describe(self) -> str:
        i = self.info
        return (f"host {i.get('host', '?')} pid {i.get('pid', '?')} since {i.get('started_at', '?')}"
                if i else "a process that has not written its details yet")


def _pid_namespace() -> str | None:
    try:
        return os.readlink("/proc/self/ns/pid")
    except OSError:
        return None


def _process_start(pid: int) -> float | None:
    """When process `pid` started (epoch seconds; Linux only, else None)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
        ticks = int(stat[stat.rindex(")") + 2:].split()[19])  # field 22, counted after "(comm)"
        boot = next(float(line.split()[1]) for line in Path("/proc/stat").read_text().splitlines()
                    if line.startswith("btime "))
        return boot + ticks / os.sysconf("SC_CLK_TCK")
    except (OSError, ValueError, IndexError, StopIteration):
        return None


def _read_claim(path: Path) -> _Holder | None:
    try:
        fd = os.open(path, os.O_RDONLY)
    except FileNotFoundError:
        return None
    try:
        st, raw = os.fstat(fd), os.read(fd, 1 << 16)  # one open file: content and identity agree
    finally:
        os.close(fd)
    try:
        info = json.loads(raw)
    except ValueError:
        info = {}
    return _Holder(info if isinstance(info, dict) else {}, (st.st_dev, st.st_ino, raw), time.time() - st.st_mtime)


def _stale_reason(holder: _Holder, stale_after: float) -> str | None:
    """Why the claim's holder is certainly gone, or None while it may be alive."""
    if holder.age > stale_after:
        return f"not refreshed for {holder.age / 3600:.2f} h (stale_after {stale_after / 3600:.2f} h)"
    info = holder.info
    if not info:
        return "its writer died before writing it" if holder.age > min(UNWRITTEN_CLAIM_S, stale_after) else None
    if _held.get(info.get("token")) == threading.get_ident():  # would wait for itself until the timeout
        raise RuntimeError(f"this process already holds the claim {info}: nested claims on one key deadlock")
    pid = info.get("pid")
    ns, my_ns = info.get("pid_ns"), _pid_namespace()
    # a pid means something only on its own host, in its own pid namespace (containers share hostnames)
    if info.get("host") != socket.gethostname() or (ns and my_ns and ns != my_ns) or not isinstance(pid, int) \
            or pid <= 0:
        return None
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return f"its process {pid} on this host is gone"
    except PermissionError:  # alive, another user's
        pass
    started, claimed = _process_start(pid), info.get("started")
    if started is not None and isinstance(claimed, (int, float)) and started > claimed + 1:
        return f"its process {pid} is gone (the pid now belongs to a process started later)"
    return None


def _create_claim(path: Path, token: str) -> tuple | None:
    """Create the claim file if nobody holds it: its identity, or None."""
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666)
    except FileExistsError:
        return None
    now = time.time()
    info = {"host": socket.gethostname(), "pid": os.getpid(), "pid_ns": _pid_namespace(), "started": now,
            "started_at": datetime.fromtimestamp(now, timezone.utc).isoformat(timespec="seconds"), "token": token}
    data = json.dumps(info).encode()
    try:
        os.write(fd, data)
        os.fsync(fd)
        st = os.fstat(fd)
    except BaseException:
        os.close(fd)
        path.unlink(missing_ok=True)
        raise
    os.close(fd)
    return st.st_dev, st.st_ino, data


def _take_over(path: Path, holder: _Holder, reason: str) -> None:
    """Remove a stale claim so the next O_EXCL creation can succeed. Renamed aside first and
    checked: if another waiter replaced it with its own (live) claim after we judged it, that one
    is put back, so two waiters never both take it."""
    aside = path.with_name(f"{path.name}.stale-{_unique()}")
    try:
        os.rename(path, aside)
    except FileNotFoundError:  # released, or another waiter took it over first
        return
    if (moved := _read_claim(aside)) is None:
        return
    if moved.ident == holder.ident:
        log.warning("Taking over the stale claim %s held by %s: %s", path, holder.describe(), reason)
        aside.unlink(missing_ok=True)
        return
    try:
        os.link(aside, path)  # unlike rename, never replaces a claim created meanwhile
    except FileExistsError:
        log.warning("Lost a claim while taking over %s (three-way race); that key may be trained twice", path)
    except OSError:  # no hard links on this file system
        if not path.exists():
            os.rename(aside, path)
            return
    aside.unlink(missing_ok=True)


def _acquire_once(path: Path, token: str, stale_after: float) -> tuple[tuple | None, _Holder | None]:
    """One attempt: (identity of our new claim, None), or (None, the live holder)."""
    holder = None
    for _ in range(5):  # a few rounds: the file may vanish or turn out stale between steps
        if (ident := _create_claim(path, token)) is not None:
            return ident, None
        if (holder := _read_claim(path)) is None:
            continue  # released just now
        if (reason := _stale_reason(holder, stale_after)) is None:
            return None, holder
        _take_over(path, holder, reason)
    return None, holder


def _heartbeat(path: Path, ident: tuple, every: float, stop: threading.Event) -> None:
    """Refresh the claim's mtime while held: a long phase is not mistaken for a dead one."""
    while not stop.wait(every):
        try:
            if (holder := _read_claim(path)) is None or holder.ident != ident:
                raise FileNotFoundError
            os.utime(path)
        except FileNotFoundError:
            log.warning("The claim %s was taken over while held (thought stale): its key may be trained twice", path)
            return
        except OSError as e:  # a file-system hiccup: try again next beat
            log.debug("could not refresh the claim %s: %s", path, e)


class PhaseCache:
    def __init__(self, root: Path):
        self.root = root

    def _folder(self, kind: str, key: str) -> Path:
        return self.root / kind / key

    @staticmethod
    def _intact(folder: Path, manifest: str) -> CacheEntry | None:
        try:
            if not (folder / META).is_file() or not verify_manifest(folder / "result", manifest):
                return None
            return CacheEntry(folder / "result", json.loads((folder / META).read_text()))
        except (OSError, ValueError):  # vanished while read: a damaged entry being replaced
            return None

    def lookup(self, kind: str, key: str, manifest: str) -> CacheEntry | None:
        """An intact cached result, or None (a damaged one is ignored: it will be replaced)."""
        folder = self._folder(kind, key)
        if not (folder / META).is_file():
            return None
        if (entry := self._intact(folder, manifest)) is None:
            log.warning("cache entry %s is damaged; it will be trained again", folder)
        return entry

    def holder(self, kind: str, key: str, stale_after: float = STALE_CLAIM_S) -> str | None:
        """Who holds the claim on a key while its holder may be alive (a scheduler starts other
        work first), else None."""
        holder = _read_claim(self._folder(kind, key).with_name(f"{key}.claim"))
        if holder is None:
            return None
        try:
            return None if _stale_reason(holder, stale_after) else holder.describe()
        except RuntimeError:  # this very thread holds it
            return holder.describe()

    @contextmanager
    def claim(self, kind: str, key: str, timeout: float = CLAIM_TIMEOUT_S, stale_after: float = STALE_CLAIM_S,
              poll: float = CLAIM_POLL_S) -> Iterator[None]:
        """Hold `<root>/<kind>/<key>.claim` while the body runs, so one process at a time works on
        a key: `with cache.claim(kind, key): lookup, and if missing train and store`; a second
        claimer waits, then finds the entry. A claim whose holder is certainly gone (a dead pid
        on this host, or not refreshed for `stale_after` s on any host) is taken over; waiting
        longer than `timeout` s raises ClaimTimeout naming the holder.

        Rank 0 takes the file; every rank learns each poll's outcome through a short collective
        (broadcast), so all ranks enter together, and no rank sits in one collective for hours
        while another host trains (gloo's collective timeout is 30 min)."""
        path = self._folder(kind, key).with_name(f"{key}.claim")
        token, ident, reported = secrets.token_hex(8), None, None
        deadline = time.monotonic() + timeout
        while True:
            state, message, failure = "wait", "", None
            if dist.is_main():
                try:
                    path.parent.mkdir(parents=True, exist_ok=True)
                    ident, holder = _acquire_once(path, token, stale_after)
                except Exception as e:  # told to every rank: none is left waiting in the next collective
                    state, message, failure = "failed", f"{type(e).__name__}: {e}", e
                else:
                    if ident is not None:
                        state = "taken"
                    elif time.monotonic() >= deadline:
                        state, message = "timeout", (
                            f"gave up after {timeout:.0f} s waiting for the claim {path}, held by "
                            f"{holder.describe() if holder else '?'}; if that process is gone, delete the file")
                    elif holder is not None and holder.ident != reported:
                        log.info("%s %s is being worked on by %s; waiting for it (claim %s)", kind, key,
                                 holder.describe(), path)
                        reported = holder.ident
            state, message = dist.broadcast_object((state, message))
            if failure is not None:
                raise failure
            if state == "failed":
                raise RuntimeError(f"rank 0 could not take the claim {path}: {message}")
            if state == "timeout":
                raise ClaimTimeout(message)
            if state == "taken":
                break
            time.sleep(poll)
        stop, beat = threading.Event(), None
        if ident is not None:  # rank 0
            _held[token] = threading.get_ident()
            beat = threading.Thread(target=_heartbeat, args=(path, ident, max(0.5, min(60.0, stale_after / 4)), stop),
                                    name=f"claim-{key}", daemon=True)
            beat.start()
        try:
            yield
        finally:
            if beat is not None:
                stop.set()
                beat.join()
                _held.pop(token, None)
                holder = _read_claim(path)
                if holder is not None and holder.ident == ident:
                    path.unlink(missing_ok=True)
                else:
                    log.warning("The claim %s was taken over while held; left it to its new holder", path)

    def store(self, kind: str, key: str, result: Path, meta: dict, extra: Iterable[Path] = (),
              manifest: str | None = None) -> None:
        """Copy a finished result (and `extra` files beside it, e.g. per-item outcomes) into the
        cache (rank 0): written in a temp folder of its own, then renamed into place, so never
        half-written. If another writer stored an intact entry first, that one is kept (first
        writer wins); a damaged one is replaced. `manifest`: the name `lookup` checks the entry
        with (default: the manifest found in `result`; with none, the entry is always replaced)."""
        if dist.is_main():
            folder = self._folder(kind, key)
            folder.parent.mkdir(parents=True, exist_ok=True)
            tmp = folder.with_name(f"{key}.tmp-{_unique()}")  # concurrent writers never share it
            tmp.mkdir()
            try:
                shutil.copytree(result, tmp / "result", ignore=shutil.ignore_patterns("predictions"))
                for path in extra:
                    shutil.copy2(path, tmp / Path(path).name)
                (tmp / META).write_text(json.dumps({**meta, "key": key}, indent=2, default=str))
                self._swap_in(kind, key, tmp, manifest or _manifest_name(tmp / "result"))
            finally:
                shutil.rmtree(tmp, ignore_errors=True)  # gone already when it was swapped in
        dist.barrier()

    def _swap_in(self, kind: str, key: str, tmp: Path, manifest: str | None) -> None:
        folder = self._folder(kind, key)
        for _ in range(10):
            aside = None
            if folder.exists():
                if manifest and self._intact(folder, manifest) is not None:
                    log.info("%s result %s: keeping the intact entry another writer stored first in %s",
                             kind, key, folder)
                    return
                aside = folder.with_name(f"{key}.old-{_unique()}")
                try:
                    os.rename(folder, aside)  # moved away whole: a reader never sees it half-deleted
                except FileNotFoundError:
                    continue  # another writer moved it first
            try:
                os.rename(tmp, folder)  # fails if another writer's entry arrived meanwhile
            except OSError as e:
                if e.errno not in (errno.EEXIST, errno.ENOTEMPTY):
                    raise
                continue  # judge theirs next round
            finally:
                if aside is not None:
                    shutil.rmtree(aside, ignore_errors=True)
            log.info("cached %s result %s in %s", kind, key, folder)
            return
        raise RuntimeError(f"could not store {folder}: other writers kept replacing it")

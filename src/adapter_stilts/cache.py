"""Content-addressed cache of trained phase results, shared by every experiment that writes to the
same output folder: an intermediate adapter (or encoder) is keyed by everything that determines
it (model, mode, tasks and their sizes, strategy and sampler, hyper-parameters, seed, and a
fingerprint of the very token ids it was trained on), so a second experiment that needs the
same one reuses it instead of training it again. Target results are keyed the same way, plus
the intermediate key they were trained on."""
from __future__ import annotations

import hashlib
import json
import logging
import shutil
from dataclasses import dataclass
from pathlib import Path

from . import distributed as dist
from .integrity import verify_manifest

log = logging.getLogger(__name__)
META = "cache.json"


def content_key(parts: dict) -> str:
    return hashlib.sha256(json.dumps(parts, sort_keys=True, default=str).encode()).hexdigest()[:20]


def fingerprint(features: list[dict]) -> str:
    """A hash of the model inputs and targets of a split (what training actually saw)."""
    h = hashlib.sha256()
    for f in features:
        h.update(json.dumps({k: f[k] for k in ("input_ids", "labels", "start_positions", "end_positions") if k in f},
                            sort_keys=True).encode())
    return h.hexdigest()[:20]


@dataclass(frozen=True)
class CacheEntry:
    path: Path  # the cached result folder (with its manifest)
    meta: dict

    def extra(self, name: str) -> Path | None:
        """A file stored beside the result (`store(..., extra=...)`), if this entry has it."""
        path = self.path.parent / name
        return path if path.is_file() else None


class PhaseCache:
    def __init__(self, root: Path):
        self.root = root

    def _folder(self, kind: str, key: str) -> Path:
        return self.root / kind / key

    def lookup(self, kind: str, key: str, manifest: str) -> CacheEntry | None:
        """An intact cached result, or None (a damaged one is ignored: it will be replaced)."""
        folder = self._folder(kind, key)
        meta_file = folder / META
        if not meta_file.is_file():
            return None
        result = folder / "result"
        if not verify_manifest(result, manifest):
            log.warning("cache entry %s is damaged; it will be trained again", folder)
            return None
        return CacheEntry(result, json.loads(meta_file.read_text()))

    def store(self, kind: str, key: str, result: Path, meta: dict, extra: list[Path] = ()) -> None:
        """Copy a finished result (and `extra` files beside it, e.g. per-item outcomes) into the
        cache (rank 0; temp folder + rename, never half-written)."""
        if dist.is_main():
            folder = self._folder(kind, key)
            tmp = folder.with_name(folder.name + ".tmp")
            shutil.rmtree(tmp, ignore_errors=True)
            tmp.mkdir(parents=True)
            shutil.copytree(result, tmp / "result", ignore=shutil.ignore_patterns("predictions"))
            for path in extra:
                shutil.copy2(path, tmp / Path(path).name)
            (tmp / META).write_text(json.dumps({**meta, "key": key}, indent=2, default=str))
            shutil.rmtree(folder, ignore_errors=True)
            tmp.rename(folder)
            log.info("cached %s result %s in %s", kind, key, folder)
        dist.barrier()

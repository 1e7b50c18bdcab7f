"""Where this rank's tensors live and in which precision its forwards run: the one place that knows
about devices (after torchtune's training/_device.py: get_device, batch_to_device).

One device per rank: cuda:LOCAL_RANK where CUDA is available, else the CPU. Mixed precision is bf16
where the device computes it natively, fp16 (with loss scaling, by DeepSpeed) on GPUs without bf16,
none on CPUs without native bf16 (emulated bf16 ran 30x slower than fp32 there)."""
from __future__ import annotations

import contextlib
import os
from collections.abc import Mapping
from pathlib import Path

import torch


class DeviceError(RuntimeError):
    pass


def get_device() -> torch.device:
    """This rank's device: cuda:LOCAL_RANK when CUDA is available, else cpu."""
    if not torch.cuda.is_available():
        return torch.device("cpu")
    local = int(os.environ.get("LOCAL_RANK", "0"))
    if local >= torch.cuda.device_count():
        raise DeviceError(f"LOCAL_RANK={local} but only {torch.cuda.device_count()} GPU(s) are visible "
                          f"(CUDA_VISIBLE_DEVICES={os.environ.get('CUDA_VISIBLE_DEVICES', 'unset')}): "
                          f"start fewer ranks per node")
    return torch.device("cuda", local)


def cpu_has_native_bf16() -> bool:
    """Whether this CPU computes bf16 in hardware (AVX-512 BF16 or AMX); elsewhere bf16 autocast is
    emulated in software: seen 30x slower than fp32 (me5-small, batch 16: 30 s vs 1 s per step on an
    AVX2 EPYC)."""
    try:
        flags = Path("/proc/cpuinfo").read_text().split()
    except OSError:  # not Linux: trust torch's vector ISA
        return torch.backends.cpu.get_cpu_capability().startswith("AVX512")
    return "avx512_bf16" in flags or "amx_bf16" in flags


def comm_backend(device: torch.device) -> str:
    return "nccl" if device.type == "cuda" else "gloo"


def native_bf16(device: torch.device) -> bool:
    if device.type == "cuda":
        return torch.cuda.is_bf16_supported()
    return cpu_has_native_bf16()


def mixed_precision(device: torch.device, enabled: bool) -> torch.dtype | None:
    """The autocast dtype for `training.bf16` on `device`: bf16 where native, fp16 on a GPU without
    bf16 (DeepSpeed scales its loss), None (fp32) on a CPU without native bf16."""
    if not enabled:
        return None
    if native_bf16(device):
        return torch.bfloat16
    return torch.float16 if device.type == "cuda" else None


def precision_name(dtype: torch.dtype | None) -> str:
    return {torch.bfloat16: "bf16", torch.float16: "fp16"}.get(dtype, "fp32")  # type: ignore[arg-type]


def autocast(device: torch.device, dtype: torch.dtype | None):
    """Autocast for the device's own type (never a CPU autocast around GPU work, or the reverse)."""
    if dtype is None:
        return contextlib.nullcontext()
    return torch.autocast(device.type, dtype=dtype)


def to_device(batch: Mapping[str, object], device: torch.device) -> dict:
    """A collated batch on `device`: on a GPU through pinned memory, without blocking the host."""
    if device.type != "cuda":
        return {k: (v.to(device) if isinstance(v, torch.Tensor) else v) for k, v in batch.items()}
    return {k: (v.pin_memory().to(device, non_blocking=True) if isinstance(v, torch.Tensor) else v)
            for k, v in batch.items()}


def is_partitioned(model: torch.nn.Module) -> bool:
    """Whether ZeRO-3 partitioned the model's parameters (they stay where DeepSpeed put them)."""
    return any(hasattr(p, "ds_id") for p in model.parameters())


def place(model: torch.nn.Module, device: torch.device) -> torch.nn.Module:
    """The model on `device` for inference, unless ZeRO-3 owns where its parameters live."""
    if not is_partitioned(model):
        model.to(device)
    return model


def memory_capacity(device: torch.device, local_ranks: int = 1) -> int:
    """Bytes one rank can use on `device`: the GPU's memory, or this node's RAM shared by its ranks."""
    if device.type == "cuda":
        return torch.cuda.get_device_properties(device).total_memory
    import psutil

    return psutil.virtual_memory().total // max(1, local_ranks)


def release_memory(device: torch.device) -> None:
    """Give a finished phase's GPU memory back (a DeepSpeed engine holds reference cycles, so its
    tensors outlive the phase until a collection)."""
    if device.type == "cuda":
        import gc

        gc.collect()
        torch.cuda.empty_cache()


def peak_memory(device: torch.device) -> int:
    """Peak bytes allocated on a GPU since the last reset (0 on the CPU: see the run's peak RSS)."""
    return torch.cuda.max_memory_allocated(device) if device.type == "cuda" else 0

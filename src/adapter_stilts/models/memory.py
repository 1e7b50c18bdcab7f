"""How much memory one rank needs to train a model, estimated from its config before any weight is
loaded, and the refusal of a configuration that cannot fit the device found (device.py).

Per rank, for the largest phase of an experiment:
- weights: every parameter in fp32 (master weights stay fp32; autocast computes in bf16/fp16);
  ZeRO-3 splits them over the ranks, `offload_param` moves them to the CPU;
- gradients (4 bytes) and AdamW's two moments (8 bytes) of the trainable parameters only (adapters:
  the adapters and heads); ZeRO-2 splits gradients, ZeRO-1 and up split the moments,
  `offload_optimizer` moves the moments (and ZeRO's fp32 partitions) to the CPU;
- activations kept for the backward pass: per layer and token, about 34 bytes x hidden in 16-bit
  (Korthikanti et al. 2022, "Reducing Activation Recomputation in Large Transformer Models", eq. 1;
  twice that in fp32) plus 5 bytes x heads x sequence for eager attention's score matrices (SDPA's
  fused kernels keep none), times the rows of a micro batch (a multiple-choice example is up to 5
  rows); the frozen layers below an adapter still keep theirs, so adapters save no activations;
- a fixed allowance for the CUDA context, the allocator's fragmentation and the largest temporary.
It is an estimate for refusing what cannot fit, not a measurement: bench/ and scripts/gpu_check.sh
print the measured peak beside it."""
from __future__ import annotations

import logging
from dataclasses import dataclass

import torch

from ..config import ConfigError

log = logging.getLogger(__name__)
GIB = 1024 ** 3
CONTEXT_BYTES = GIB  # CUDA context, allocator slack, temporaries
MAX_CHOICE_ROWS = 5  # CommonsenseQA's five choices: the widest multiple-choice batch in the catalog
USABLE_FRACTION = 0.95  # of the device's memory, what a rank may plan to use


class DoesNotFitError(ConfigError):
    """A configuration whose estimate does not fit the device (or, for what it offloads, the host)."""


@dataclass(frozen=True)
class ModelShape:
    parameters: int
    hidden: int
    layers: int
    heads: int


@dataclass(frozen=True)
class MemoryEstimate:
    shape: ModelShape
    trainable: int
    weights: int
    gradients: int
    optimizer: int
    activations: int
    offloaded: int  # bytes per rank kept in the CPU's memory instead (ZeRO offload)

    @property
    def device_bytes(self) -> int:
        return self.weights + self.gradients + self.optimizer + self.activations + CONTEXT_BYTES

    def describe(self) -> str:
        part = (f"weights {self.weights / GIB:.2f}, gradients {self.gradients / GIB:.2f}, "
                f"optimizer {self.optimizer / GIB:.2f}, activations {self.activations / GIB:.2f}, "
                f"context {CONTEXT_BYTES / GIB:.2f}")
        off = f"; {self.offloaded / GIB:.2f} GiB offloaded to the CPU" if self.offloaded else ""
        return (f"{self.device_bytes / GIB:.2f} GiB per rank ({part}){off}; model {self.shape.parameters / 1e6:,.0f}M "
                f"parameters, {self.trainable / 1e6:,.2f}M trained")


def model_shape(path: str) -> ModelShape:
    """Parameter count and layout from the model's config alone (built on the meta device: no
    weights are read or allocated, so an XL model costs nothing here)."""
    from transformers import AutoConfig, AutoModel

    config = AutoConfig.from_pretrained(path)
    with torch.device("meta"):
        model = AutoModel.from_config(config)
    return ModelShape(sum(p.numel() for p in model.parameters()), int(config.hidden_size),
                      int(config.num_hidden_layers), int(config.num_attention_heads))


def adapter_parameters(shape: ModelShape, adapter_cfg) -> int:
    """Trainable parameters of one adapter set plus a head, from the adapter's own arithmetic:
    a bottleneck (down and up projection with biases) at each place the config puts one per layer."""
    reduction = float(getattr(adapter_cfg, "reduction_factor", 16) or 16)
    if isinstance(getattr(adapter_cfg, "reduction_factor", None), dict):  # per-layer factors
        reduction = min(float(v) for v in adapter_cfg.reduction_factor.values())
    bottleneck = max(1, int(shape.hidden // reduction))
    per_layer = sum(bool(getattr(adapter_cfg, k, False)) for k in ("mh_adapter", "output_adapter")) or 2
    adapters = shape.layers * per_layer * (2 * shape.hidden * bottleneck + bottleneck + shape.hidden)
    head = shape.hidden * shape.hidden + shape.hidden * 8  # a dense layer and an output layer
    return adapters + head


def estimate(shape: ModelShape, trainable: int, ds_config: dict, world: int, micro_batch: int, max_length: int,
             rows_per_example: int, mixed: bool, eager_attention: bool) -> MemoryEstimate:
    zero = ds_config.get("zero_optimization", {})
    stage = int(zero.get("stage", 0))
    offload_param = (zero.get("offload_param") or {}).get("device", "none") == "cpu"
    offload_opt = (zero.get("offload_optimizer") or {}).get("device", "none") == "cpu"
    weights = shape.parameters * 4 // (world if stage == 3 else 1)
    gradients = trainable * 4 // (world if stage >= 2 else 1)
    optimizer = trainable * 8 // (world if stage >= 1 else 1)
    offloaded = 0
    if offload_param and stage == 3:
        offloaded += weights
        weights = shape.parameters * 4 // world // max(1, shape.layers)  # about one layer gathered at a time
    if offload_opt:
        offloaded += optimizer
        optimizer = 0
    rows = micro_batch * rows_per_example
    per_token = 34 * shape.hidden * (1 if mixed else 2)
    attention = 5 * shape.heads * max_length * (1 if mixed else 2) if eager_attention else 0
    activations = rows * max_length * shape.layers * (per_token + attention)
    return MemoryEstimate(shape, trainable, weights, gradients, optimizer, activations, offloaded)


def check_fits(est: MemoryEstimate, device_capacity: int, host_capacity: int, where: str) -> None:
    """Refuse, naming what to change, a configuration whose estimate exceeds the device, or whose
    offloaded part exceeds this rank's share of the host's memory."""
    if est.device_bytes > device_capacity * USABLE_FRACTION:
        raise DoesNotFitError(
            f"memory: this configuration needs about {est.describe()}, but {where} has "
            f"{device_capacity / GIB:.1f} GiB. Lower training.micro_batch_size (gradient accumulation keeps "
            f"training.batch_size), use a ZeRO config that splits or offloads more (training.deepspeed: zero2, "
            f"zero3, zero3_offload), or more ranks")
    if est.offloaded > host_capacity * USABLE_FRACTION:
        raise DoesNotFitError(
            f"memory: ZeRO offload keeps {est.offloaded / GIB:.1f} GiB per rank in host memory, but each rank's "
            f"share of it is {host_capacity / GIB:.1f} GiB; use more nodes or fewer ranks per node")

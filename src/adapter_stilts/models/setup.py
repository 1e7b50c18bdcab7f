"""The model of each phase: what is added, trained, frozen and stacked, and how a phase's
result is saved and loaded again. Adapters mode keeps the encoder frozen; full mode trains it.

Everything a phase trains is added before the DeepSpeed engine is built (ZeRO-3 only partitions
what exists then), and saving gathers partitioned parameters first, writing from rank 0 only."""
from __future__ import annotations

import contextlib
import json
import shutil
from dataclasses import dataclass
from pathlib import Path

from .. import distributed as dist
from ..integrity import verify_manifest, write_manifest
from ..tasks.families import family_of
from ..tasks.registry import Task
from .loading import ModelError, adapter_config, build_model, set_full_finetuning

INTERMEDIATE = "inter"  # the name a loaded intermediate adapter gets in phase 3
MANIFEST = "manifest.json"


@dataclass(frozen=True)
class PhaseArtifact:
    """A saved phase result: `adapter/` (adapter + head, adapters mode) or `encoder/` + `head/`."""

    path: Path
    mode: str
    name: str  # adapter / head name

    def intact(self) -> bool:
        """Complete and unchanged since it was saved (a kill mid-save leaves `<name>.old` behind)."""
        old = self.path.with_name(self.path.name + ".old")
        if not self.path.exists() and old.exists() and dist.is_main():
            old.rename(self.path)
        dist.barrier()
        return verify_manifest(self.path, MANIFEST)

    @property
    def adapter_dir(self) -> Path:
        return self.path / "adapter"

    @property
    def encoder_dir(self) -> Path:
        return self.path / "encoder"

    @property
    def head_dir(self) -> Path:
        return self.path / "head"


def check_adapter_fits(adapter_dir: Path, model) -> None:
    """A clear error instead of a size-mismatch trace when an adapter was trained on another model."""
    try:
        saved = json.loads((adapter_dir / "adapter_config.json").read_text())
    except (OSError, json.JSONDecodeError) as e:
        raise ModelError(f"{adapter_dir}: not a readable adapter folder ({e})") from None
    want = (saved.get("model_type"), saved.get("hidden_size"))
    have = (model.config.model_type, model.config.hidden_size)
    if want != have:
        raise ModelError(f"adapter {adapter_dir} was trained for a {want[0]} model with hidden size {want[1]} "
                         f"({saved.get('model_name')}); model.name is a {have[0]} model with hidden size {have[1]}")


def _with_intermediate(base: str, mode: str, inter: PhaseArtifact | None, dropout: float):
    if mode == "full":
        return build_model(str(inter.encoder_dir) if inter else base, dropout)
    model = build_model(base, dropout)
    if inter:
        check_adapter_fits(inter.adapter_dir, model)
        model.load_adapter(str(inter.adapter_dir), load_as=INTERMEDIATE, with_head=False)
    return model


def trainable_model(base: str, mode: str, task: Task, cfg, inter: PhaseArtifact | None = None):
    """Phase 2 (inter=None) or phase 3 model: a new adapter + head named after the task, stacked on a
    frozen intermediate adapter; in full mode a new head on the (phase-2) encoder, all trainable."""
    from adapters.composition import Stack

    model = _with_intermediate(base, mode, inter, cfg.model.dropout)
    family_of(task).add_head(model, task.name, task, cfg.model.classifier_pooling)
    if mode == "full":
        set_full_finetuning(model)
    else:
        model.add_adapter(task.name, config=adapter_config(cfg.adapter))
        # train_adapter unfreezes every adapter of the setup it is given: train only the new one,
        # then activate the stack (the intermediate adapter stays frozen).
        model.train_adapter(task.name)
        if inter:
            model.active_adapters = Stack(INTERMEDIATE, task.name)
    model.active_head = task.name
    return model


def trained_model(base: str, mode: str, result: PhaseArtifact, inter: PhaseArtifact | None, dropout: float = 0.0):
    """Reload a saved phase result for inference (this also proves the saved files are complete)."""
    from adapters.composition import Stack

    if mode == "full":
        model = build_model(str(result.encoder_dir), dropout)
        model.load_head(str(result.head_dir))
    else:
        model = _with_intermediate(base, mode, inter, dropout)
        check_adapter_fits(result.adapter_dir, model)
        model.load_adapter(str(result.adapter_dir), load_as=result.name, with_head=True)
        model.active_adapters = Stack(INTERMEDIATE, result.name) if inter else result.name
    model.active_head = result.name
    return model.eval()


def encoder_model(base: str, mode: str, inter: PhaseArtifact | None):
    """The phase-2 encoder (retrieval tasks are scored straight after phase 2)."""
    model = _with_intermediate(base, mode, inter, 0.0)
    if inter and mode == "adapters":
        model.active_adapters = INTERMEDIATE
    return model.eval()


def _drop_head_configs(config_file: Path) -> None:
    # The encoder's config would carry the phase's head definitions; heads are saved on their own
    # and a later phase adds its own, so the encoder must load bare.
    config = json.loads(config_file.read_text())
    config.pop("prediction_heads", None)
    config_file.write_text(json.dumps(config, indent=2))


@contextlib.contextmanager
def _gathered(params, zero3: bool):
    if zero3:
        import deepspeed

        with deepspeed.zero.GatheredParameters(params, modifier_rank=None):
            yield
    else:
        yield


def save_phase(model, out: Path, mode: str, name: str, zero3: bool) -> PhaseArtifact:
    """Save what the phase trained. Written to a temporary folder and renamed, so a crash never
    leaves a half-written result where a good one was."""
    params = list(model.parameters()) if mode == "full" else [p for p in model.parameters() if p.requires_grad]
    with _gathered(params, zero3):
        if dist.is_main():
            tmp = out.with_name(out.name + ".tmp")
            shutil.rmtree(tmp, ignore_errors=True)
            tmp.mkdir(parents=True)
            if mode == "full":
                model.base_model.save_pretrained(tmp / "encoder")
                _drop_head_configs(tmp / "encoder" / "config.json")
                (tmp / "head").mkdir()
                model.save_head(str(tmp / "head"), name)
            else:
                (tmp / "adapter").mkdir()
                model.save_adapter(str(tmp / "adapter"), name, with_head=True)
            write_manifest(tmp, MANIFEST)
            old = out.with_name(out.name + ".old")
            shutil.rmtree(old, ignore_errors=True)
            if out.exists():
                out.rename(old)
            tmp.rename(out)
            shutil.rmtree(old, ignore_errors=True)
    dist.barrier()
    return PhaseArtifact(out, mode, name)

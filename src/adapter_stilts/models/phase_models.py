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
INTERMEDIATE_TUNED = "intermediate_adapter"  # where phase 3 saves it when it was not frozen
MANIFEST = "manifest.json"
FUSION_MEMBERS = "fusion_members.json"
FUSION_PARAMETERS = "adapter_fusion_layer"  # in the names of the AdapterFusion layers' parameters


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
    def fusion_members(self) -> dict[str, str]:
        """For a fusion setup: adapter name -> folder of each single-task adapter it fuses."""
        f = self.path / FUSION_MEMBERS
        return json.loads(f.read_text()) if f.is_file() else {}

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


def _with_intermediate(base: str, mode: str, inter: PhaseArtifact | None, dropout: float,
                       adapter_dir: Path | None = None, attention: str = "auto"):
    if mode == "full":
        return build_model(str(inter.encoder_dir) if inter else base, dropout, attention)
    model = build_model(base, dropout, attention)
    for member, folder in (inter.fusion_members if inter else {}).items():
        check_adapter_fits(Path(folder), model)
        model.load_adapter(folder, load_as=member, with_head=False)
    if inter and not inter.fusion_members:
        adapter_dir = adapter_dir or inter.adapter_dir
        check_adapter_fits(adapter_dir, model)
        model.load_adapter(str(adapter_dir), load_as=INTERMEDIATE, with_head=False)
    return model


def trainable_model(base: str, mode: str, tasks: Task | list[Task], cfg, inter: PhaseArtifact | None = None,
                    name: str | None = None):
    """Phase 2 (inter=None) or phase 3 model: a new adapter named `name` (default: the task's) with
    a head per task, stacked on the frozen intermediate adapter; in full mode new heads on the
    (phase-2) encoder, all trainable. Several tasks = multi-task: one shared adapter/encoder."""
    from adapters.composition import Fuse, Stack

    tasks = tasks if isinstance(tasks, list) else [tasks]
    name = name or tasks[0].name
    model = _with_intermediate(base, mode, inter, cfg.model.dropout, attention=cfg.model.attention)
    for task in tasks:
        family_of(task).add_head(model, task.name, task, cfg.model.classifier_pooling)
    if mode == "full":
        set_full_finetuning(model)
    elif inter and inter.fusion_members:  # AdapterFusion: train the fusion layer (and the head) only
        fuse = Fuse(*inter.fusion_members)
        model.add_adapter_fusion(fuse)
        model.train_adapter_fusion(fuse)
        model.active_adapters = fuse
        contiguous_fusion_inputs(model)
    else:
        model.add_adapter(name, config=adapter_config(cfg.adapter))
        # train_adapter unfreezes every adapter of the setup it is given: train only the new one,
        # then activate the stack (the intermediate adapter stays frozen unless asked otherwise).
        model.train_adapter(name)
        if inter:
            model.active_adapters = Stack(INTERMEDIATE, name)
            if not cfg.intermediate.frozen_in_target:
                for n, p in model.named_parameters():
                    if f".{INTERMEDIATE}." in n:
                        p.requires_grad = True
    model.active_head = tasks[0].name
    return model


def contiguous_fusion_inputs(model) -> None:
    """adapters hands each fusion layer the fused adapters' outputs as a permuted stack (not
    contiguous); under CPU bf16 autocast a Linear on such a tensor takes a slow path (one
    [16, 128, 7, 384] key projection: 827 ms vs 30 ms contiguous, 1 thread), which made fusion
    scoring ~10x slower than the other setups (pytorch/pytorch#151934). A contiguous copy gives
    the same numbers."""
    from adapters.methods.modeling import BertFusion

    def contiguous(module, args):
        query, key, value, *rest = args
        stacked = key.contiguous()
        return (query, stacked, stacked if value is key else value.contiguous(), *rest)

    for module in model.modules():
        if isinstance(module, BertFusion):
            module.register_forward_pre_hook(contiguous)


def trained_model(base: str, mode: str, result: PhaseArtifact, inter: PhaseArtifact | None, dropout: float = 0.0):
    """Reload a saved phase result for inference (this also proves the saved files are complete)."""
    from adapters.composition import Fuse, Stack

    if mode == "full":
        model = build_model(str(result.encoder_dir), dropout)
        model.load_head(str(result.head_dir))
    elif inter and inter.fusion_members:
        model = _with_intermediate(base, mode, inter, dropout)
        fuse = Fuse(*inter.fusion_members)
        model.load_adapter_fusion(str(result.path / "fusion"), set_active=True, with_head=False)
        model.load_head(str(result.head_dir))
        model.active_adapters = fuse
        contiguous_fusion_inputs(model)
    else:
        tuned = result.path / INTERMEDIATE_TUNED
        model = _with_intermediate(base, mode, inter, dropout, tuned if tuned.is_dir() else None)
        check_adapter_fits(result.adapter_dir, model)
        model.load_adapter(str(result.adapter_dir), load_as=result.name, with_head=True)
        model.active_adapters = Stack(INTERMEDIATE, result.name) if inter else result.name
    model.active_head = result.name
    return model.eval()


def export_setup(model, out: Path) -> Path | None:
    """The whole trained setup of a phase-3 model (e.g. Stack(inter, target) + the target head)
    in the adapters library's `save_adapter_setup` format, for publishing: a user restores it with
    `load_adapter_setup(folder, set_active=True)` on the same base model. Adapters mode only (full
    mode saves the encoder itself); custom heads (mean pooling) need `register_heads` first."""
    from adapters.composition import Fuse

    if not model.active_adapters or isinstance(model.active_adapters, Fuse):
        return None  # full mode; fusion results are exported as their fusion/ folder
    if dist.is_main():
        tmp = out.with_name(out.name + ".tmp")
        shutil.rmtree(tmp, ignore_errors=True)
        model.save_adapter_setup(str(tmp), model.active_adapters, head_setup=model.active_head)
        shutil.rmtree(out, ignore_errors=True)
        tmp.rename(out)
    dist.barrier()
    return out


def untrained_adapter(base: str, cfg, out: Path, name: str) -> PhaseArtifact:
    """An adapter of the intermediate adapter's shape (adapter.config), initialised under the
    current seed and never trained: a control that, stacked in phase 3 like a trained one, adds
    the same layers and parameters but no intermediate task (it separates shape from transfer)."""
    model = build_model(base, 0.0, cfg.model.attention)
    model.add_adapter(name, config=adapter_config(cfg.adapter))
    return save_phase(model, out, "adapters", name, zero3=False)


def encoder_model(base: str, mode: str, inter: PhaseArtifact | None):
    """The phase-2 encoder (retrieval tasks are scored straight after phase 2)."""
    from adapters.composition import Average

    model = _with_intermediate(base, mode, inter, 0.0)
    if inter and inter.fusion_members:  # no target task, so no trained fusion layer: average their outputs
        # weights 1, not the default 1/n: adapters multiplies each output by its weight and then takes
        # the mean, so 1/n scaled every adapter layer's output by 1/n (fusion7's Tatoeba fell 91 -> 47)
        members = list(inter.fusion_members)
        model.active_adapters = Average(*members, weights=[1.0] * len(members), normalize_weights=False)
    elif inter and mode == "adapters":
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


def save_phase(model, out: Path, mode: str, name: str, zero3: bool, heads: list[str] | None = None) -> PhaseArtifact:
    """Save what the phase trained: adapter `name` with its head, or, after multi-task training,
    the shared adapter and each task's head in `heads/<task>`. Written to a temporary folder and
    renamed, so a crash never leaves a half-written result where a good one was."""
    from adapters.composition import Fuse

    heads = heads or [name]
    single = heads == [name]
    params = list(model.parameters()) if mode == "full" else [p for p in model.parameters() if p.requires_grad]
    with _gathered(params, zero3):
        if dist.is_main():
            tmp = out.with_name(out.name + ".tmp")
            shutil.rmtree(tmp, ignore_errors=True)
            tmp.mkdir(parents=True)
            if mode == "full":
                model.base_model.save_pretrained(tmp / "encoder")
                _drop_head_configs(tmp / "encoder" / "config.json")
            elif isinstance(model.active_adapters, Fuse):
                model.save_adapter_fusion(str(tmp / "fusion"), model.active_adapters)
                single = False
                heads = [name]
            else:
                (tmp / "adapter").mkdir()
                model.save_adapter(str(tmp / "adapter"), name, with_head=single)
                if INTERMEDIATE in model.adapters_config and any(
                        p.requires_grad for n, p in model.named_parameters() if f".{INTERMEDIATE}." in n):
                    # an intermediate adapter trained on in phase 3 is part of the result
                    model.save_adapter(str(tmp / INTERMEDIATE_TUNED), INTERMEDIATE, with_head=False)
            for head in heads if mode == "full" or not single else []:
                folder = tmp / "head" if single or len(heads) == 1 else tmp / "heads" / head
                folder.mkdir(parents=True)
                model.save_head(str(folder), head)
            write_manifest(tmp, MANIFEST)
            old = out.with_name(out.name + ".old")
            shutil.rmtree(old, ignore_errors=True)
            if out.exists():
                out.rename(old)
            tmp.rename(out)
            shutil.rmtree(old, ignore_errors=True)
    dist.barrier()
    return PhaseArtifact(out, mode, name)


def average_adapters(base: str, singles: list[PhaseArtifact], out: Path, name: str) -> PhaseArtifact:
    """The single-task adapters averaged with equal weights into one adapter `name` (the adapters
    library's linear merging): a cheap way of combining several intermediate tasks."""
    if dist.is_main() and not verify_manifest(out, MANIFEST):
        model = build_model(base, 0.0)
        names = []
        for artifact in singles:
            check_adapter_fits(artifact.adapter_dir, model)
            names.append(model.load_adapter(str(artifact.adapter_dir), load_as=artifact.name, with_head=False))
        model.average_adapter(name, names, combine_strategy="linear")
        tmp = out.with_name(out.name + ".tmp")
        shutil.rmtree(tmp, ignore_errors=True)
        (tmp / "adapter").mkdir(parents=True)
        model.save_adapter(str(tmp / "adapter"), name, with_head=False)
        (tmp / "averaged.txt").write_text("\n".join(str(a.path) for a in singles) + "\n")
        write_manifest(tmp, MANIFEST)
        shutil.rmtree(out, ignore_errors=True)
        tmp.rename(out)
    dist.barrier()
    return PhaseArtifact(out, "adapters", name)


def fusion_setup(singles: list[PhaseArtifact], out: Path, name: str) -> PhaseArtifact:
    """The intermediate result of a fusion setup: the single-task adapters it fuses (by reference);
    each target task then trains an AdapterFusion layer over them, plus its head."""
    if dist.is_main():
        out.mkdir(parents=True, exist_ok=True)
        (out / FUSION_MEMBERS).write_text(json.dumps({a.name: str(a.adapter_dir) for a in singles}, indent=1))
        write_manifest(out, MANIFEST)
    dist.barrier()
    return PhaseArtifact(out, "adapters", name)

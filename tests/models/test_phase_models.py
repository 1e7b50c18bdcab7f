"""Phase models under DeepSpeed: what is frozen, and that ZeRO-3-saved results are complete."""
import os
import shutil

import pytest
import torch

from adapter_stilts.config import load_experiment
from adapter_stilts.models.phase_models import INTERMEDIATE, save_phase, trainable_model, trained_model
from adapter_stilts.tasks.collate import collate
from adapter_stilts.tasks.lookup import get_task
from adapter_stilts.training.engine import build_engine, load_ds_config


@pytest.fixture(scope="module")
def process_group():
    from adapter_stilts import distributed as dist

    for k in ("RANK", "LOCAL_RANK", "WORLD_SIZE", "LOCAL_WORLD_SIZE", "MASTER_ADDR", "MASTER_PORT"):
        os.environ.pop(k, None)
    dist.init()
    yield
    dist.shutdown()


def _cfg(mode="adapters"):
    return load_experiment("demo", [f"mode={mode}", "model.dropout=0.0", "training.batch_size=4",
                                    "training.bf16=false", "adapter.reduction_factor=4"])


def _batch(n=4, seed=0):
    g = torch.Generator().manual_seed(seed)
    feats = [{"input_ids": [0] + torch.randint(5, 1000, (int(length),), generator=g).tolist() + [2], "labels": i % 3}
             for i, length in enumerate(torch.randint(3, 12, (n,), generator=g))]
    return collate(feats, pad_id=1)


def _train(model, stage: int, steps=3):
    cfg = _cfg()
    engine, _ = build_engine(model, load_ds_config(f"zero{stage}"), cfg.training, 1e-2, steps, 1)
    for s in range(steps):
        loss = engine(**_batch(seed=s)).loss
        engine.backward(loss)
        engine.step()
    return engine


@pytest.mark.parametrize("mode", ["adapters", "full"])
def test_zero3_saved_result_reloads_to_identical_outputs(tiny_model_dir, tmp_path, process_group, mode):
    task = get_task("xnli")
    torch.manual_seed(0)
    engine = _train(trainable_model(str(tiny_model_dir), mode, task, _cfg(mode)), stage=3)
    batch = _batch(seed=99)
    batch.pop("labels")
    # saved right after training, while ZeRO-3 holds the trained parameters partitioned
    assert any(p.numel() == 0 for p in engine.module.parameters() if p.requires_grad)
    artifact = save_phase(engine.module, tmp_path / "xnli", mode, "xnli", zero3=True)
    engine.module.eval()
    with torch.no_grad():
        expected = engine.module(**batch).logits
    reloaded = trained_model(str(tiny_model_dir), mode, artifact, None)
    with torch.no_grad():
        got = reloaded(**batch).logits
    assert torch.allclose(got, expected, atol=1e-5), (got - expected).abs().max()
    # the reload holds exactly the trained weights, whole (not partitioned), under the same names
    import deepspeed

    trained = dict(engine.module.named_parameters())
    with deepspeed.zero.GatheredParameters(list(trained.values())):
        saved = {n: p.detach().clone() for n, p in trained.items()}
    loaded = dict(reloaded.named_parameters())
    assert loaded.keys() == saved.keys()
    assert [n for n, p in saved.items() if not torch.equal(loaded[n], p)] == []


def test_intermediate_adapter_stays_frozen_under_the_stack(tiny_model_dir, tmp_path, process_group):
    cfg = _cfg()
    torch.manual_seed(0)
    engine = _train(trainable_model(str(tiny_model_dir), "adapters", get_task("anli"), cfg), stage=0, steps=1)
    inter = save_phase(engine.module, tmp_path / "anli", "adapters", "anli", zero3=False)
    model = trainable_model(str(tiny_model_dir), "adapters", get_task("xnli"), cfg, inter)
    assert str(model.active_adapters) == f"Stack[{INTERMEDIATE}, xnli]"
    trainable = {n for n, p in model.named_parameters() if p.requires_grad}
    assert trainable and all(".xnli." in n or n.startswith("heads.xnli") for n in trainable), trainable
    before = {n: p.detach().clone() for n, p in model.named_parameters() if f".{INTERMEDIATE}." in n}
    target_before = {n: p.detach().clone() for n, p in model.named_parameters() if n in trainable}
    assert before
    engine = _train(model, stage=2, steps=2)
    after = dict(engine.module.named_parameters())
    assert all(torch.equal(before[n], after[n]) for n in before)
    assert any(not torch.equal(target_before[n], after[n].detach()) for n in trainable)


def test_adapter_from_another_model_is_a_clear_error(tiny_model_dir, tmp_path, process_group):
    from transformers import XLMRobertaConfig, XLMRobertaModel

    from adapter_stilts.models.loading import ModelError

    other = tmp_path / "wider"
    config = XLMRobertaConfig.from_pretrained(tiny_model_dir)
    config.hidden_size, config.intermediate_size = 48, 96
    XLMRobertaModel(config).save_pretrained(other)
    engine = _train(trainable_model(str(other), "adapters", get_task("anli"), _cfg()), stage=0, steps=1)
    inter = save_phase(engine.module, tmp_path / "anli", "adapters", "anli", zero3=False)
    with pytest.raises(ModelError, match="trained for a xlm-roberta model with hidden size 48.*hidden size 32"):
        trainable_model(str(tiny_model_dir), "adapters", get_task("xnli"), _cfg(), inter)


def test_exported_setup_restores_the_whole_stack(tiny_model_dir, tmp_path, process_group):
    """The phase-3 result exported with save_adapter_setup loads into a bare model with
    load_adapter_setup and gives the same outputs (what a user of a published setup gets)."""
    from adapter_stilts.models.loading import build_model
    from adapter_stilts.models.phase_models import export_setup

    cfg = _cfg()
    torch.manual_seed(0)
    engine = _train(trainable_model(str(tiny_model_dir), "adapters", get_task("anli"), cfg), stage=0, steps=2)
    inter = save_phase(engine.module, tmp_path / "anli", "adapters", "anli", zero3=False)
    engine = _train(trainable_model(str(tiny_model_dir), "adapters", get_task("xnli"), cfg, inter), stage=0, steps=2)
    result = save_phase(engine.module, tmp_path / "xnli", "adapters", "xnli", zero3=False)
    best = trained_model(str(tiny_model_dir), "adapters", result, inter)
    folder = export_setup(best, tmp_path / "setup")
    batch = _batch(seed=5)
    batch.pop("labels")
    with torch.no_grad():
        expected = best(**batch).logits
    fresh = build_model(str(tiny_model_dir), 0.0)  # registers the custom heads
    fresh.load_adapter_setup(str(folder), set_active=True)
    assert str(fresh.active_adapters) == f"Stack[{INTERMEDIATE}, xnli]"
    with torch.no_grad():
        got = fresh.eval()(**batch).logits
    torch.testing.assert_close(got, expected, atol=1e-5, rtol=1e-4)
    # the intermediate adapter inside the export is the trained one, not a fresh one
    without = build_model(str(tiny_model_dir), 0.0)
    without.load_adapter(str(result.adapter_dir), load_as="xnli", with_head=True)
    without.active_adapters = "xnli"
    with torch.no_grad():
        assert not torch.allclose(without.eval()(**batch).logits, expected, atol=1e-4)


def _fusion_model(model_dir, tmp_path):
    """An XNLI model over an AdapterFusion layer of two briefly trained single-task adapters."""
    from adapter_stilts.models.phase_models import fusion_setup

    cfg = _cfg()
    singles = []
    for i, name in enumerate(("anli", "mnli")):
        torch.manual_seed(i)
        engine = _train(trainable_model(str(model_dir), "adapters", get_task(name), cfg), stage=0, steps=1)
        singles.append(save_phase(engine.module, tmp_path / name, "adapters", name, zero3=False))
    return trainable_model(str(model_dir), "adapters", get_task("xnli"), cfg,
                           fusion_setup(singles, tmp_path / "fusion2", "fusion2"))


def test_fusion_layers_get_contiguous_inputs_and_the_same_outputs(tiny_model_dir, tmp_path, process_group):
    """The fused adapters' outputs reach each fusion layer as one contiguous tensor (a permuted
    stack sent CPU bf16 matmuls down a ~27x slower path), with unchanged outputs."""
    from adapters.methods.modeling import BertFusion

    model = _fusion_model(tiny_model_dir, tmp_path).eval()
    fusions = [m for m in model.modules() if isinstance(m, BertFusion)]
    assert fusions
    seen = []
    for m in fusions:  # runs after ours: sees what the fusion layer gets
        m.register_forward_pre_hook(lambda _m, args: seen.append((args[1].is_contiguous(), args[1] is args[2])))
    batch = _batch(seed=3)
    batch.pop("labels")
    with torch.no_grad(), torch.autocast("cpu", dtype=torch.bfloat16):
        fast = model(**batch).logits
        assert seen and all(contiguous and same for contiguous, same in seen), seen
        for m in fusions:
            m._forward_pre_hooks.clear()
        slow = model(**batch).logits
    assert torch.equal(fast, slow)


def test_fusion_retrieval_encoder_averages_its_adapters_outputs(tiny_model_dir, tmp_path, process_group):
    """With no target task a fusion setup's encoder averages its adapters' outputs: two copies of
    one adapter give exactly that adapter's hidden states (the library's default Average weights
    1/n are applied and then averaged again, which scaled every adapter layer's output by 1/n)."""
    from adapter_stilts.models.phase_models import PhaseArtifact, encoder_model, fusion_setup

    torch.manual_seed(0)
    engine = _train(trainable_model(str(tiny_model_dir), "adapters", get_task("anli"), _cfg()), stage=0, steps=2)
    single = save_phase(engine.module, tmp_path / "anli", "adapters", "anli", zero3=False)
    shutil.copytree(single.path, tmp_path / "anli_twin")
    twin = PhaseArtifact(tmp_path / "anli_twin", "adapters", "anli_twin")
    batch = _batch(seed=4)
    batch.pop("labels")
    with torch.no_grad():
        alone = encoder_model(str(tiny_model_dir), "adapters", single)(**batch, output_hidden_states=True)
        both = encoder_model(str(tiny_model_dir), "adapters", fusion_setup([single, twin], tmp_path / "f", "f"))(
            **batch, output_hidden_states=True)
    assert torch.allclose(both.hidden_states[-1], alone.hidden_states[-1], atol=1e-5)


def test_fusion_layers_train_at_their_own_rate(tiny_model_dir, tmp_path, process_group):
    """intermediate.fusion_lr reaches the optimizer: every AdapterFusion parameter at that rate,
    the head at the target's; nothing else trains."""
    from adapter_stilts.models.phase_models import FUSION_PARAMETERS

    model = _fusion_model(tiny_model_dir, tmp_path)
    fusion = {id(p) for n, p in model.named_parameters() if FUSION_PARAMETERS in n}
    trainable = {id(p) for p in model.parameters() if p.requires_grad}
    assert fusion and fusion < trainable
    engine, _ = build_engine(model, load_ds_config("zero2"), _cfg().training, 3e-3, 4, 1, {FUSION_PARAMETERS: 5e-5})
    rate = {id(p): g["lr"] for g in engine.optimizer.param_groups for p in g["params"]}
    assert set(rate) == trainable
    assert {rate[i] for i in fusion} == {5e-5}
    assert {rate[i] for i in trainable - fusion} == {3e-3}
    assert engine.get_lr()[0] == 3e-3  # train/lr logs the phase's own rate

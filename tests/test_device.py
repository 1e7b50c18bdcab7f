"""Device handling without a GPU: every forward gets its inputs on the device its weights live on and
runs under autocast of that device's type (and no other), in training, dev scoring, zero-shot
scoring and retrieval embeddings; scoring moves its batches to the device the rank resolves (a
device that is not the CPU, the meta device, stands in for cuda:N); precision per device."""
import json
import subprocess
import sys

import pytest
import torch
from conftest import REPO, cli_command

from adapter_stilts import device as devices
from adapter_stilts.evaluation import embedding, predict
from adapter_stilts.training.engine import load_ds_config, with_mixed_precision


@pytest.mark.parametrize("kind,native,want", [("cuda", True, torch.bfloat16), ("cuda", False, torch.float16),
                                              ("cpu", True, torch.bfloat16), ("cpu", False, None)])
def test_mixed_precision_is_bf16_where_native_fp16_on_older_gpus_none_on_cpus_without_it(monkeypatch, kind, native,
                                                                                         want):
    monkeypatch.setattr(devices, "cpu_has_native_bf16", lambda: native)
    monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda *a, **k: native)
    assert devices.mixed_precision(torch.device(kind, 0) if kind == "cuda" else torch.device(kind), True) == want
    assert devices.mixed_precision(torch.device("cpu"), False) is None


def test_the_engine_autocasts_by_its_config_unless_the_config_sets_its_own_precision():
    cfg = load_ds_config("zero0")
    assert with_mixed_precision(cfg, None) == cfg
    assert with_mixed_precision(cfg, torch.float16)["torch_autocast"] == {"enabled": True, "dtype": "torch.float16"}
    own = {**cfg, "bf16": {"enabled": True}}
    assert with_mixed_precision(own, torch.float16) == own  # DeepSpeed's own bf16: not autocast on top


def test_nccl_on_gpus_gloo_on_cpus():
    assert devices.comm_backend(torch.device("cuda", 1)) == "nccl"
    assert devices.comm_backend(torch.device("cpu")) == "gloo"


@pytest.fixture
def tiny(tiny_model_dir):
    from adapter_stilts.models.loading import build_model, load_tokenizer

    return build_model(str(tiny_model_dir), 0.0), load_tokenizer(str(tiny_model_dir))


class _Seen(Exception):
    """Stops the forward once its inputs were looked at (the meta device computes nothing real)."""


def _input_devices(model) -> set:
    found: set = set()

    def hook(module, args, kwargs):
        found.update(str(t.device) for t in [*args, *kwargs.values()] if isinstance(t, torch.Tensor))
        raise _Seen

    model.register_forward_pre_hook(hook, with_kwargs=True)
    return found


@pytest.mark.parametrize("path", ["scoring", "embedding"])
def test_scoring_and_embeddings_move_model_and_batches_to_the_rank_device(monkeypatch, tiny, path):
    model, tok = tiny
    meta = torch.device("meta")  # not the CPU: a batch left on the host would show up as cpu
    monkeypatch.setattr(predict, "get_device", lambda: meta)
    monkeypatch.setattr(embedding, "get_device", lambda: meta)
    target = model if path == "scoring" else model.base_model
    found = _input_devices(target)
    with pytest.raises(_Seen):
        if path == "scoring":
            model.add_classification_head("h", num_labels=3)
            predict.predict_logits(model, [{"input_ids": [0, 5, 6, 2]}], tok.pad_token_id, 4, False)
        else:
            embedding.embed_sentences(model, tok, ["Ein Satz."], 1, "mean", 4, 16, False)
    assert found == {"meta"}
    assert next(model.parameters()).device == meta


def test_a_batch_left_on_the_host_is_seen(monkeypatch, tiny):
    """The check above can fail: with the transfer skipped, the inputs arrive on the CPU."""
    model, tok = tiny
    monkeypatch.setattr(predict, "get_device", lambda: torch.device("meta"))
    monkeypatch.setattr(predict, "to_device", lambda batch, device: batch)
    model.add_classification_head("h", num_labels=3)
    found = _input_devices(model)
    with pytest.raises(_Seen):
        predict.predict_logits(model, [{"input_ids": [0, 5, 6, 2]}], tok.pad_token_id, 4, False)
    assert found == {"cpu"}


# Installed in a whole tiny run (training, dev scoring, zero-shot scoring, retrieval): every Linear's
# forward is checked; bf16 is forced on (this CPU has no native bf16, and a tiny model does not mind).
PROBE = r"""
import json, sys, torch
from adapter_stilts import device as devices
devices.cpu_has_native_bf16 = lambda: True
other = "cuda" if devices.get_device().type == "cpu" else "cpu"
report = {"forwards": 0, "bad": []}

def check(module, args, kwargs):
    if not isinstance(module, torch.nn.Linear):
        return
    report["forwards"] += 1
    expected = devices.get_device()
    where = {str(t.device) for t in [*args, *kwargs.values(), module.weight] if isinstance(t, torch.Tensor)}
    if where != {str(expected)}:
        report["bad"].append(f"inputs/weights on {sorted(where)}, the rank's device is {expected}")
    if not torch.is_autocast_enabled(expected.type) or torch.get_autocast_dtype(expected.type) != torch.bfloat16:
        report["bad"].append(f"no bf16 autocast for {expected.type}")
    if torch.is_autocast_enabled(other):
        report["bad"].append(f"autocast for {other} on a {expected.type} device")
    if report["bad"] and not mistakes:
        raise SystemExit(json.dumps({**report, "module": type(module).__name__}))

mistakes = "--mistake" in sys.argv
if mistakes:  # the old bug: a CPU-only autocast helper that never autocasts
    import contextlib
    from adapter_stilts.evaluation import predict
    predict.autocast = lambda device, dtype: contextlib.nullcontext()
torch.nn.modules.module.register_module_forward_pre_hook(lambda m, a: check(m, a, {}))
from adapter_stilts.config import load_experiment
from adapter_stilts.runner import run_experiment
from adapter_stilts import distributed as dist
code = run_experiment(load_experiment(sys.argv[1]))
dist.shutdown()
print("PROBE " + json.dumps({**report, "code": code, "bad": sorted(set(report["bad"]))}))
"""


def _probe(tmp_path, exp, *extra: str) -> dict:


    cmd, env = cli_command([], tmp_path)
    proc = subprocess.run([sys.executable, "-c", PROBE, str(exp), *extra], cwd=REPO, env=env, capture_output=True,
                          text=True, timeout=600)
    lines = [ln for ln in proc.stdout.splitlines() if ln.startswith("PROBE ")]
    assert lines, proc.stdout[-2000:] + proc.stderr[-3000:]
    return json.loads(lines[-1][len("PROBE "):])


def test_every_forward_of_a_whole_run_is_on_the_rank_device_under_its_autocast(tmp_path, write_experiment):
    changes = {"training": {"bf16": True}, "target": {"tasks": {
        "xnli": {"train_size": 16, "dev_size": 8, "test_size": 6, "languages": ["de"]},
        "udpos": {"train_size": 8, "dev_size": 8, "test_size": 4, "languages": ["de"]},
        "tatoeba": {"test_size": 10, "languages": ["de"]}}},
        "intermediate": {"tasks": {"anli": {"train_size": 16, "dev_size": 8}}}}
    report = _probe(tmp_path, write_experiment(changes))
    assert report["code"] == 0 and report["bad"] == [] and report["forwards"] > 100, report
    exp = write_experiment({**changes, "tracking": {"output_dir": str(tmp_path / "again")}}, "again.yaml")
    broken = _probe(tmp_path, exp, "--mistake")  # the check fails on scoring without autocast
    assert "no bf16 autocast for cpu" in broken["bad"], broken

"""The memory estimate per rank: parameter counts from configs alone, what ZeRO stages and offloading
move, and a run that cannot fit refused before any compute."""
import pytest
from transformers import AutoModel, XLMRobertaConfig, XLMRobertaXLConfig

from adapter_stilts.models.loading import adapter_config, build_model
from adapter_stilts.models.memory import (
    GIB,
    DoesNotFitError,
    ModelShape,
    adapter_parameters,
    check_fits,
    estimate,
    model_shape,
)
from adapter_stilts.training.engine import load_ds_config

# the published shapes of XLM-R base / large / XL (their config.json on the Hub)
XLMR = {"base": XLMRobertaConfig(vocab_size=250002, hidden_size=768, num_hidden_layers=12, num_attention_heads=12,
                                 intermediate_size=3072, max_position_embeddings=514),
        "large": XLMRobertaConfig(vocab_size=250002, hidden_size=1024, num_hidden_layers=24, num_attention_heads=16,
                                  intermediate_size=4096, max_position_embeddings=514),
        "xl": XLMRobertaXLConfig(vocab_size=250880, hidden_size=2560, num_hidden_layers=36, num_attention_heads=32,
                                 intermediate_size=10240, max_position_embeddings=514)}
H200 = 139 * GIB
A100_80GB = 79 * GIB
HOST = 128 * GIB


@pytest.fixture(scope="module")
def shapes(tmp_path_factory):
    out = {}
    for name, config in XLMR.items():
        folder = tmp_path_factory.mktemp(name)
        config.save_pretrained(folder)
        out[name] = model_shape(str(folder))
    return out


def test_parameter_counts_from_the_config_alone(shapes, me5_dir):
    # the published sizes: 278M, 560M, 3.5B (the encoders without their MLM heads)
    assert 270e6 < shapes["base"].parameters < 280e6
    assert 555e6 < shapes["large"].parameters < 565e6
    assert 3.4e9 < shapes["xl"].parameters < 3.5e9
    me5 = model_shape(str(me5_dir))
    assert me5.parameters == sum(p.numel() for p in AutoModel.from_pretrained(me5_dir).parameters())
    assert (me5.hidden, me5.layers, me5.heads) == (384, 12, 12)


def test_adapter_parameters_match_a_real_adapter_model(me5_dir):
    from adapter_stilts.config import load_experiment

    cfg = load_experiment("demo")
    model = build_model(str(me5_dir), 0.0)
    model.add_adapter("a", config=adapter_config(cfg.adapter))
    model.add_classification_head("a", num_labels=3)
    model.train_adapter("a")
    real = sum(p.numel() for p in model.parameters() if p.requires_grad)
    assert abs(adapter_parameters(model_shape(str(me5_dir)), adapter_config(cfg.adapter)) - real) / real < 0.02


def _full(shape: ModelShape, ds: str, world: int = 1, micro: int = 8):
    return estimate(shape, shape.parameters, load_ds_config(ds), world, micro, 256, 1, True, False)


def test_zero_stages_and_offloading_move_what_they_should(shapes):
    xl = shapes["xl"]
    z0, z2, z3 = _full(xl, "zero0", 4), _full(xl, "zero2", 4), _full(xl, "zero3", 4)
    assert z0.weights == z2.weights == 4 * z3.weights
    assert z2.gradients * 4 == z0.gradients and z2.optimizer * 4 == z0.optimizer
    off = _full(xl, "zero3_offload", 4)
    assert off.optimizer == 0 and off.offloaded > 0 and off.device_bytes < z3.device_bytes


def test_which_sizes_fit_an_80_gb_gpu(shapes):
    """Full fine-tuning of XL (16 bytes per parameter: ~52 GiB of model states) plus its activations
    at 32 x 256 tokens (~24 GiB in bf16) does not fit an 80 GB GPU plain; with ZeRO-3 offloading it
    does, and on an H200 (139 GiB) it fits plain. Adapters fit everywhere."""
    for name in ("base", "large"):
        check_fits(_full(shapes[name], "zero2"), A100_80GB, HOST, "an A100")
    with pytest.raises(DoesNotFitError, match=r"memory: .*GiB per rank.*training.micro_batch_size"):
        check_fits(_full(shapes["xl"], "zero2", micro=32), A100_80GB, HOST, "an A100")
    check_fits(_full(shapes["xl"], "zero3_offload", micro=32), A100_80GB, HOST, "an A100")
    check_fits(_full(shapes["xl"], "zero2", micro=32), H200, HOST, "an H200")
    xl = shapes["xl"]
    adapters = estimate(xl, adapter_parameters(xl, adapter_config(type("A", (), {"config": "seq_bn",
                                                                                  "reduction_factor": 16}))),
                        load_ds_config("zero2"), 1, 32, 256, 1, True, False)
    check_fits(adapters, A100_80GB, HOST, "an A100")


def test_a_run_that_cannot_fit_is_refused_before_any_compute(tmp_path, write_experiment):
    from conftest import mlflow_runs, run_cli

    exp = write_experiment({"model": {"name": "me5-small"},
                            "training": {"batch_size": 4096, "micro_batch_size": 4096}})
    proc = run_cli(["--exp", str(exp)], tmp_path, timeout=300)
    assert proc.returncode == 2, proc.stderr[-3000:]
    assert "memory: this configuration needs about" in proc.stderr and "training.micro_batch_size" in proc.stderr
    assert not (tmp_path / "outputs").exists() or not any((tmp_path / "outputs").rglob("*.pt"))
    if (tmp_path / "mlflow.db").exists():
        assert mlflow_runs(tmp_path)[1] == []

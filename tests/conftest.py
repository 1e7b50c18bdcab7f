"""Shared fixtures: the real offline model, a tiny random XLM-R built on its tokenizer, the real
data folder, and experiment files written for a test."""
from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

REPO = Path(__file__).resolve().parents[1]
DATA = (REPO / ".." / "shared" / "data").resolve()
sys.path.insert(0, str(REPO / "src"))
os.environ.setdefault("DS_ACCELERATOR", "cpu")
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("HF_DATASETS_OFFLINE", "1")


@pytest.fixture(scope="session")
def data_dir() -> Path:
    if not DATA.is_dir():
        pytest.skip(f"real data folder {DATA} is not present")
    return DATA


@pytest.fixture(scope="session")
def me5_dir() -> Path:
    from adapter_stilts.models.me5_small import ensure_me5_small

    return ensure_me5_small()


@pytest.fixture(scope="session")
def tiny_model_dir(tmp_path_factory, me5_dir) -> Path:
    """A 2-layer, hidden-32 random XLM-R with the real XLM-R tokenizer (unit tests only)."""
    import torch
    from transformers import AutoTokenizer, XLMRobertaConfig, XLMRobertaModel

    out = tmp_path_factory.mktemp("tiny-xlmr")
    tok = AutoTokenizer.from_pretrained(me5_dir)
    torch.manual_seed(0)
    config = XLMRobertaConfig(vocab_size=len(tok), hidden_size=32, num_hidden_layers=2, num_attention_heads=2,
                              intermediate_size=64, max_position_embeddings=514, pad_token_id=tok.pad_token_id,
                              hidden_dropout_prob=0.0, attention_probs_dropout_prob=0.0)
    XLMRobertaModel(config).save_pretrained(out)
    tok.save_pretrained(out)
    return out


TINY_EXPERIMENT = {
    "name": "tiny",
    "seed": 7,
    "mode": "adapters",
    "baseline": True,
    "model": {"name": "", "dropout": 0.0, "max_length": 64},
    "data": {"source": "local", "local_dir": str(DATA), "eval_seed": 7},  # the subsets the tests were sized on
    "adapter": {"config": "seq_bn", "reduction_factor": 4},
    "training": {"batch_size": 8, "lr": 1e-3, "epochs": 1, "bf16": False, "log_every": 1, "deepspeed": "zero0"},
    "intermediate": {"tasks": {"anli": {"train_size": 32, "dev_size": 16}}},
    "target": {"tasks": {
        "xnli": {"train_size": 32, "dev_size": 16, "test_size": 12, "languages": ["de", "sw"]},
        "udpos": {"train_size": 16, "dev_size": 8, "test_size": 6, "languages": ["de", "fr"]},
        "tatoeba": {"test_size": 20, "languages": ["de", "fr", "ja"]},
    }},
    "retrieval": {"layer": 2},
}


def deep_update(base: dict, changes: dict) -> dict:
    out = dict(base)
    for k, v in changes.items():
        out[k] = deep_update(out[k], v) if isinstance(v, dict) and isinstance(out.get(k), dict) else v
    return out


@pytest.fixture
def write_experiment(tmp_path, tiny_model_dir):
    """Write a tiny experiment YAML (with changes) and return its path."""

    def write(changes: dict | None = None, name: str = "exp.yaml") -> Path:
        exp = deep_update(TINY_EXPERIMENT, {"model": {"name": str(tiny_model_dir)},
                                            "tracking": {"output_dir": str(tmp_path / "outputs")}})
        exp = deep_update(exp, changes or {})
        path = tmp_path / name
        path.write_text(yaml.safe_dump(exp))
        return path

    return write


def cli_command(args: list[str], tmp_path: Path, launcher: list[str] | None = None,
                env: dict | None = None) -> tuple[list[str], dict]:
    """The command line and environment of `run.py` with its MLflow store under tmp_path."""
    full_env = {**os.environ, "MLFLOW_TRACKING_URI": f"sqlite:///{tmp_path / 'mlflow.db'}", **(env or {})}
    from adapter_stilts.distributed import LAUNCHER_ENV

    for k in LAUNCHER_ENV:
        full_env.pop(k, None)
    return (launcher or [sys.executable]) + [str(REPO / "run.py")] + args, full_env


def run_cli(args: list[str], tmp_path: Path, launcher: list[str] | None = None, timeout: int = 600,
            env: dict | None = None) -> subprocess.CompletedProcess:
    """Run `run.py` in a subprocess with its MLflow store under tmp_path."""
    cmd, full_env = cli_command(args, tmp_path, launcher, env)
    return subprocess.run(cmd, cwd=REPO, env=full_env, capture_output=True, text=True, timeout=timeout)


def start_cli(args: list[str], tmp_path: Path, launcher: list[str] | None = None, env: dict | None = None,
              log: Path | None = None) -> subprocess.Popen:
    """Start `run.py` in its own process group (so a test can SIGKILL all of it), with Ctrl-C's
    default action even when pytest itself was started in the background (where SIGINT is ignored)."""
    cmd, full_env = cli_command(args, tmp_path, launcher, env)
    out = open(log or os.devnull, "w")
    return subprocess.Popen(cmd, cwd=REPO, env=full_env, stdout=out, stderr=subprocess.STDOUT, start_new_session=True,
                            preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))


def mlflow_runs(tmp_path: Path):
    """(client, all runs) of the MLflow store under tmp_path."""
    from mlflow.tracking import MlflowClient

    client = MlflowClient(f"sqlite:///{tmp_path / 'mlflow.db'}")
    return client, [r for e in client.search_experiments() for r in client.search_runs([e.experiment_id])]


def deepspeed_launcher(port: int) -> list[str]:
    return [str(Path(sys.executable).parent / "deepspeed"), "--num_gpus", "2", "--master_port", str(port)]


def write_tiny_study(folder: Path, model_dir: Path, name: str, **study: object) -> Path:
    """experiments-style study file `<folder>/<name>.yaml`; `study` changes its study section."""
    experiment = deep_update(TINY_EXPERIMENT, {
        "name": name, "baseline": False, "model": {"name": str(model_dir)},
        "tracking": {"output_dir": str(folder / "outputs")},
        "target": {"tasks": {"xnli": {"train_size": 64, "dev_size": 16, "test_size": 12, "languages": ["de", "sw"]}}},
    })
    experiment["intermediate"] = {"tasks": {}}
    experiment["study"] = {"pool": ["anli", "sst2", "qqp"], "seeds": [7], "sizes": [{"layers": 1}], "examples": 32,
                           "dev_size": 16, "results_dir": str(folder / "results"), **study}
    path = folder / f"{name}.yaml"
    path.write_text(yaml.safe_dump(experiment))
    return path

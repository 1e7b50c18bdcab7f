"""The real model on real data: brief English training must transfer clearly above chance, so a
broken label mapping, word/sub-word alignment or gold-label file cannot pass."""
import pytest
import yaml

from conftest import run_cli

pytestmark = pytest.mark.integration


def test_me5_small_tagging_transfers_zero_shot(write_experiment, tmp_path, me5_dir):
    exp = write_experiment({"model": {"name": "me5-small"}, "baseline": True,
                            "training": {"batch_size": 16, "lr": 3e-3, "bf16": True, "log_every": 5}})
    raw = yaml.safe_load(exp.read_text())
    raw["intermediate"]["tasks"] = {}
    raw["target"]["tasks"] = {"udpos": {"train_size": 480, "dev_size": 100, "test_size": 100,
                                        "languages": ["de", "es"]}}
    exp.write_text(yaml.safe_dump(raw))
    proc = run_cli(["--exp", str(exp)], tmp_path)
    assert proc.returncode == 0, proc.stderr[-4000:]
    from mlflow.tracking import MlflowClient

    client = MlflowClient(f"sqlite:///{tmp_path / 'mlflow.db'}")
    exp_id = client.get_experiment_by_name("tiny").experiment_id
    run = next(r for r in client.search_runs([exp_id]) if r.info.run_name == "target/udpos/none")
    # 17 tags: a uniform guess scores ~0.06 F1; the most frequent tag (NOUN) alone ~0.2
    assert run.data.metrics["dev/f1"] > 0.5
    assert run.data.metrics["test/de/f1"] > 0.4 and run.data.metrics["test/es/f1"] > 0.4

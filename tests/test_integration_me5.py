"""The real model on real data, one test per target-task family: brief English training must
transfer to other languages clearly above chance (or, for QA, above a no-skill baseline), so a
broken label mapping, word/sub-word alignment, answer-offset bug or gold-label file cannot pass."""
import re

import pytest
import yaml
from conftest import run_cli
from mlflow.tracking import MlflowClient

pytestmark = pytest.mark.integration


def _run_target(write_experiment, tmp_path, task: str, settings: dict, training: dict | None = None) -> dict:
    """Train `task` briefly on English with me5-small (no intermediate phase); its MLflow metrics."""
    exp = write_experiment({"model": {"name": "me5-small", "classifier_pooling": "mean"}, "baseline": True,
                            "training": {"batch_size": 16, "lr": 3e-3, "bf16": True, "log_every": 5,
                                         **(training or {})}})
    raw = yaml.safe_load(exp.read_text())
    raw["intermediate"]["tasks"] = {}
    raw["target"]["tasks"] = {task: settings}
    raw["retrieval"] = {"layer": 12}
    exp.write_text(yaml.safe_dump(raw))
    proc = run_cli(["--exp", str(exp)], tmp_path)
    assert proc.returncode == 0, proc.stderr[-4000:]
    client = MlflowClient(f"sqlite:///{tmp_path / 'mlflow.db'}")
    exp_id = client.get_experiment_by_name("tiny").experiment_id
    run = next(r for r in client.search_runs([exp_id]) if r.info.run_name == f"target/{task}/none")
    return run.data.metrics


def test_me5_small_tagging_transfers_zero_shot(write_experiment, tmp_path, me5_dir):
    m = _run_target(write_experiment, tmp_path, "udpos",
                    {"train_size": 480, "dev_size": 100, "test_size": 100, "languages": ["de", "es"]})
    # 17 tags: a uniform guess scores ~0.06 F1; the most frequent tag (NOUN) alone ~0.2
    assert m["dev/f1"] > 0.5
    assert m["test/de/f1"] > 0.4 and m["test/es/f1"] > 0.4


def test_me5_small_classification_transfers_zero_shot(write_experiment, tmp_path, me5_dir):
    m = _run_target(write_experiment, tmp_path, "xnli",
                    {"train_size": 960, "dev_size": 200, "test_size": 300, "languages": ["de", "es", "zh"]})
    # 3 balanced classes: chance is 1/3 (a test set of 300 has a standard error of ~0.027)
    assert m["dev/accuracy"] > 0.40
    assert m["test/avg/accuracy"] > 0.40


def _first_sentence(context: str) -> str:
    m = re.match(r".*?(?:[.!?](?=\s|$)|[。！？])", context, re.S)
    return m.group(0) if m else context


def test_me5_small_extractive_qa_beats_the_first_sentence_baseline(write_experiment, tmp_path, me5_dir, data_dir):
    from adapter_stilts.evaluation.qa_metrics import squad_scores
    from adapter_stilts.tasks.data import subset
    from adapter_stilts.tasks.lookup import get_task

    langs, test_size = ["de", "zh"], 80
    m = _run_target(write_experiment, tmp_path, "xquad",
                    {"train_size": 320, "dev_size": 80, "test_size": test_size, "languages": langs,
                     "max_length": 160}, training={"lr": 2e-3})
    eval_seed = yaml.safe_load((tmp_path / "exp.yaml").read_text())["data"]["eval_seed"]
    for lang in langs:  # the no-skill baseline on exactly the questions the run was scored on
        questions = subset(get_task("xquad").load_local(data_dir, "test", lang), test_size, eval_seed)
        base = squad_scores([_first_sentence(q["context"]) for q in questions],
                            [[a["text"] for a in q["answers"]] for q in questions])
        assert m[f"test/{lang}/f1"] > base["f1"] + 0.05, (lang, m[f"test/{lang}/f1"], base)

"""LAReQA through `run.py` on the tiny random encoder and real XQuAD articles in the LAReQA
release's layout, checked in the MLflow store: the metric, the predictions and the per-item
outcomes that bootstrap intervals are drawn from. (Beside tests/test_pipeline.py.)"""
import json
from pathlib import Path

import pandas as pd
import pytest
import yaml
from conftest import mlflow_runs, run_cli

from adapter_stilts.evaluation.outcomes import language_metrics, task_formulas
from adapter_stilts.evaluation.ranking import TOP_K, average_precision_at_k
from adapter_stilts.tasks.lookup import get_task
from adapter_stilts.tasks.sentence_breaks import sentence_breaks

ARTICLES = 2  # of XQuAD's 48 (parallel in every language): 10 paragraphs, 40-odd questions


def _release_subset(data_dir: Path, root: Path, langs: tuple[str, ...]) -> None:
    """XQuAD's first articles written as the LAReQA release's files (a `sentence_breaks` per paragraph)."""
    folder = root / "lareqa" / "xquad-r"
    folder.mkdir(parents=True)
    for lang in langs:
        doc = json.loads((data_dir / "xquad" / f"xquad.{lang}.json").read_text(encoding="utf-8"))
        doc["data"] = doc["data"][:ARTICLES]
        for article in doc["data"]:
            for p in article["paragraphs"]:
                p["sentence_breaks"] = [list(b) for b in sentence_breaks(p["context"], lang)]
        (folder / f"{lang}.json").write_text(json.dumps(doc, ensure_ascii=False), encoding="utf-8")


def test_lareqa_scored_with_the_phase2_encoder(write_experiment, tmp_path, data_dir):
    _release_subset(data_dir, tmp_path / "data", ("de", "en", "zh"))
    exp = write_experiment({"baseline": True, "target": {"benchmark": "xtreme-r"},
                            "data": {"local_dir": str(tmp_path / "data")}})
    raw = yaml.safe_load(exp.read_text())
    raw["intermediate"] = {"tasks": {}}
    raw["target"]["tasks"] = {"lareqa": {"test_size": 12, "languages": ["de", "zh"]}}
    exp.write_text(yaml.safe_dump(raw))
    proc = run_cli(["--exp", str(exp)], tmp_path)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-6000:]
    pool = get_task("lareqa").load_local(tmp_path / "data", "pool", "all")
    assert {c["language"] for c in pool} == {"de", "en", "zh"} and len(pool) > 100
    assert f"lareqa: 0 train, 0 dev, 2 test languages, a pool of {len(pool)} candidates" in proc.stderr

    client, runs = mlflow_runs(tmp_path)
    run = next(r for r in runs if r.info.run_name == "target/lareqa/none")
    assert run.info.status == "FINISHED"
    assert {"test/de/map_at_20", "test/zh/map_at_20", "test/avg/map_at_20"} <= set(run.data.metrics)
    assert run.data.metrics["n_items/de"] == 12

    art = Path(client.download_artifacts(run.info.run_id, "", str(tmp_path / "dl")))
    found = json.loads((art / "predictions" / "lareqa" / "test-de.json").read_text())
    assert len(found) == 12 and all(len(ranked) == TOP_K for ranked in found.values())
    questions = {q["id"]: q for q in get_task("lareqa").load_local(tmp_path / "data", "test", "de")}
    assert all(len(questions[qid]["relevant"]) == 3 for qid in found)  # one answer sentence per language
    # the logged metric is the mean AP@20 of the written rankings; the outcomes reproduce it
    ap = {qid: average_precision_at_k(questions[qid]["relevant"], ranked) for qid, ranked in found.items()}
    assert run.data.metrics["test/de/map_at_20"] == pytest.approx(sum(ap.values()) / 12, abs=1e-12)
    frame = pd.read_parquet(art / "outcomes" / "outcomes.parquet")
    de = frame[frame["language"] == "de"]
    assert dict(zip(de["item_id"], de["ap"])) == pytest.approx(ap)
    for lang, metrics in language_metrics(task_formulas(get_task("lareqa")), frame).items():
        assert metrics["map_at_20"] == pytest.approx(run.data.metrics[f"test/{lang}/map_at_20"], abs=1e-12)

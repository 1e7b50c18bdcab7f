"""The whole recipe through `run.py`, on a tiny random encoder and real data subsets, checked in
the MLflow store it writes; plus launch modes and early failures."""
import shutil
from dataclasses import replace
from pathlib import Path

import pandas as pd
import pytest
import yaml
from conftest import deepspeed_launcher, mlflow_runs, run_cli

from adapter_stilts.evaluation.outcomes import language_metrics, task_formulas
from adapter_stilts.identity import ResultIdentity
from adapter_stilts.tasks.catalog.tagging import UPOS
from adapter_stilts.tasks.lookup import get_task


def _runs(tmp_path):
    return mlflow_runs(tmp_path)


def _check(proc):
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-6000:]


def test_adapters_pipeline_lands_in_mlflow(write_experiment, tmp_path, tiny_model_dir, data_dir):
    _check(run_cli(["--exp", str(write_experiment())], tmp_path))
    client, runs = _runs(tmp_path)
    parents = [r for r in runs if "mlflow.parentRunId" not in r.data.tags]
    assert len(parents) == 1
    parent = parents[0]
    children = {r.info.run_name: r for r in runs if r.data.tags.get("mlflow.parentRunId") == parent.info.run_id}
    assert set(children) == {"intermediate/anli", "target/xnli/anli", "target/udpos/anli", "target/tatoeba/anli",
                             "target/xnli/none", "target/udpos/none", "target/tatoeba/none"}
    assert all(r.info.status == "FINISHED" for r in runs)
    assert parent.data.params["training.lr"] == "0.001" and parent.data.params["mode"] == "adapters"
    assert "xnli/anli/gain" in parent.data.metrics and "tatoeba/none/avg" in parent.data.metrics

    xnli = children["target/xnli/anli"]
    assert xnli.data.tags["intermediate"] == "anli" and xnli.data.tags["task"] == "xnli"
    assert {"test/de/accuracy", "test/sw/accuracy", "test/avg/accuracy", "dev/accuracy"} <= set(xnli.data.metrics)
    losses = client.get_metric_history(xnli.info.run_id, "train/loss")
    assert [m.step for m in losses] == [1, 2, 3, 4]  # 32 examples / batch 8, logged every step

    art = Path(client.download_artifacts(xnli.info.run_id, "", str(tmp_path / "dl")))
    preds = (art / "predictions" / "xnli" / "test-de.tsv").read_text().splitlines()
    assert len(preds) == 12 and set(preds) <= {"entailment", "neutral", "contradiction"}
    assert (art / "model" / "adapter" / "pytorch_adapter.bin").is_file()
    tagging = Path(client.download_artifacts(children["target/udpos/anli"].info.run_id, "predictions",
                                             str(tmp_path / "dl2")))
    # XTREME layout: one tag per line, a blank line closing each of the 6 sentences
    lines = (tagging / "udpos" / "test-fr.tsv").read_text().split("\n")
    assert lines.count("") == 6 + 1 and all(t in UPOS for t in lines if t)
    # submission-ready: the sidecar lines each prediction up with the gold of the whole test file, and
    # XTREME's own formulas (evaluate.py: accuracy; seqeval's f1 over tag lines) give what was logged
    from seqeval.metrics import f1_score

    positions = [int(i) for i in (art / "predictions" / "xnli" / "test-de.positions").read_text().split()]
    gold = [get_task("xnli").load_local(data_dir, "test", "de")[i]["label"] for i in positions]
    assert len(positions) == 12 and len(set(positions)) == 12
    assert sum(p == g for p, g in zip(preds, gold)) / len(gold) == pytest.approx(xnli.data.metrics["test/de/accuracy"])
    positions = [int(i) for i in (tagging / "udpos" / "test-fr.positions").read_text().split()]
    gold_tags = [get_task("udpos").load_local(data_dir, "test", "fr")[i]["tags"] for i in positions]
    pred_tags = [s.split("\n") for s in (tagging / "udpos" / "test-fr.tsv").read_text().strip("\n").split("\n\n")]
    assert f1_score(gold_tags, pred_tags) == pytest.approx(
        children["target/udpos/anli"].data.metrics["test/fr/f1"], abs=1e-9)

    # the result's identity, as data (id.* tags): the display name is derived, never the key
    ident = ResultIdentity.from_tags(xnli.data.tags)
    assert replace(ident, target_settings="") == ResultIdentity(
        model=str(tiny_model_dir), model_layers=2, mode="adapters", strategy="each", intermediate_tasks=("anli",),
        intermediate_examples=32, intermediate_seed=7, target_seed=7, target_task="xnli")
    # both arms trained and scored the target the same way: the report pairs them
    assert ident.target_settings and ident.target_settings == children["target/xnli/none"].data.tags[
        "id.target_settings"] != children["target/udpos/none"].data.tags["id.target_settings"]
    assert xnli.data.tags["id.k"] == "1" and xnli.data.tags["id.display_name"] == "anli"
    none = ResultIdentity.from_tags(children["target/xnli/none"].data.tags)
    assert (none.strategy, none.k, none.intermediate_seed, none.display_name) == ("none", 0, None, "none")
    # per-item outcomes of every target scoring reproduce its logged metrics
    for unit in ("target/xnli/anli", "target/udpos/none", "target/tatoeba/anli"):
        run = children[unit]
        task = get_task(run.data.tags["task"])
        frame = pd.read_parquet(client.download_artifacts(run.info.run_id, "outcomes/outcomes.parquet",
                                                          str(tmp_path / "dl5" / unit)))
        for lang, metrics in language_metrics(task_formulas(task), frame).items():
            assert run.data.metrics[f"n_items/{lang}"] == (frame["language"] == lang).sum()
            for m, v in metrics.items():
                assert v == pytest.approx(run.data.metrics[f"test/{lang}/{m}"], abs=1e-12), (unit, lang, m)
    assert len(frame) == 3 * 20 and frame["item_id"].is_unique  # tatoeba: 3 languages x 20 queries

    # the logged adapter (with its head) loads with the adapters library
    from adapters import AutoAdapterModel

    model = AutoAdapterModel.from_pretrained(yaml.safe_load(
        (Path(client.download_artifacts(parent.info.run_id, "config.yaml", str(tmp_path / "dl3")))).read_text()
    )["model"]["name"])
    name = model.load_adapter(str(art / "model" / "adapter"))
    assert name == "xnli" and "xnli" in model.heads
    # the whole phase-3 setup, exported with save_adapter_setup, restores Stack(inter, xnli) + head
    fresh = AutoAdapterModel.from_pretrained(model.config.name_or_path)
    fresh.load_adapter_setup(str(art / "adapter_setup"), set_active=True)
    assert str(fresh.active_adapters) == "Stack[inter, xnli]" and fresh.active_head == "xnli"

    summary = Path(client.download_artifacts(parent.info.run_id, "summary", str(tmp_path / "dl4")))
    assert {"results.csv", "summary.md", "zero_shot_by_language.png"} <= {p.name for p in summary.iterdir()}
    # the MLflow UI: our experiments open on the runs (not the GenAI pages); the run page shows the table
    experiment = client.get_experiment(parent.info.experiment_id)
    assert experiment.tags["mlflow.experimentKind"] == "custom_model_development"
    description = client.get_run(parent.info.run_id).data.tags["mlflow.note.content"]
    assert (summary / "summary.md").read_text() in description


def test_full_finetuning_runs_through_the_same_pipeline(write_experiment, tmp_path):
    exp = write_experiment({"mode": "full", "baseline": False, "training": {"lr": 1e-4},
                            "target": {"tasks": {"udpos": None, "tatoeba": None}}})
    raw = yaml.safe_load(exp.read_text())
    raw["target"]["tasks"] = {k: v for k, v in raw["target"]["tasks"].items() if v}
    exp.write_text(yaml.safe_dump(raw))
    _check(run_cli(["--exp", str(exp)], tmp_path))
    client, runs = _runs(tmp_path)
    names = {r.info.run_name for r in runs}
    assert names == {"tiny", "intermediate/anli", "target/xnli/anli"}
    inter = next(r for r in runs if r.info.run_name == "intermediate/anli")
    assert int(inter.data.params["trainable_parameters"]) == int(inter.data.params["total_parameters"])
    art = Path(client.download_artifacts(inter.info.run_id, "model", str(tmp_path / "dl")))
    assert (art / "encoder" / "model.safetensors").is_file() and (art / "head").is_dir()
    # a target's whole encoder is not logged by default (tracking.log_full_target_models)
    target = next(r for r in runs if r.info.run_name == "target/xnli/anli")
    logged = {a.path for a in client.list_artifacts(target.info.run_id)}
    assert "predictions" in logged and "model" not in logged


def test_bad_experiment_fails_before_anything_runs(write_experiment, tmp_path):
    exp = write_experiment({"training": {"epohcs": 2}})
    proc = run_cli(["--exp", str(exp)], tmp_path)
    assert proc.returncode == 2
    assert "unknown key 'training.epohcs'; did you mean 'training.epochs'?" in proc.stderr
    assert not (tmp_path / "mlflow.db").exists()


def test_missing_data_file_fails_before_training(write_experiment, tmp_path):
    data = tmp_path / "data"
    shutil.copytree(Path(yaml.safe_load(write_experiment().read_text())["data"]["local_dir"]) / "xnli", data / "xnli")
    proc = run_cli(["--exp", str(write_experiment({"data": {"local_dir": str(data)}}))], tmp_path)
    assert proc.returncode == 2
    assert "missing data file" in proc.stderr and "anli" in proc.stderr
    assert "train anli" not in proc.stderr


def _losses(tmp_path, run_name):
    client, runs = _runs(tmp_path)
    run = next(r for r in runs if r.info.run_name == run_name)
    return [m.value for m in sorted(client.get_metric_history(run.info.run_id, "train/loss"), key=lambda m: m.step)]


def test_two_ranks_give_the_loss_of_one_rank(write_experiment, tmp_path):
    """Same global batch: 1 rank x 8 vs 2 gloo ranks x 4 (ZeRO-2) must give the same loss curve."""
    exp = write_experiment({"baseline": False, "training": {"deepspeed": "zero2", "batch_size": 8},
                            "tracking": {"cache": False},
                            "intermediate": {"tasks": {"anli": {"train_size": 48}}},
                            "target": {"tasks": {"xnli": {"train_size": 32}}}})
    raw = yaml.safe_load(exp.read_text())
    raw["target"]["tasks"] = {"xnli": raw["target"]["tasks"]["xnli"]}
    exp.write_text(yaml.safe_dump(raw))
    one, two = tmp_path / "one", tmp_path / "two"
    one.mkdir(), two.mkdir()
    _check(run_cli(["--exp", str(exp)], one))
    proc = run_cli(["--exp", str(exp)], two, launcher=deepspeed_launcher(29533), env={"OMP_NUM_THREADS": "1"})
    _check(proc)
    assert "terminate called" not in proc.stderr
    world = {d: next(r for r in _runs(d)[1] if r.info.run_name == "tiny").data.params["world_size"] for d in (one, two)}
    assert world == {one: "1", two: "2"}
    for name in ("intermediate/anli", "target/xnli/anli"):
        a, b = _losses(one, name), _losses(two, name)
        assert len(a) == len(b) > 0
        assert a == pytest.approx(b, abs=2e-4), (name, a, b)


def test_nan_loss_stops_the_phase_and_marks_the_runs_failed(write_experiment, tmp_path):
    """An lr of 1e30 makes the loss non-finite: the run stops with a clear message, the MLflow
    runs are FAILED with the reason, and nothing after that phase runs."""
    exp = write_experiment({"training": {"lr": 1e30}, "baseline": False})
    proc = run_cli(["--exp", str(exp)], tmp_path)
    assert proc.returncode == 1, proc.stderr[-3000:]
    assert "anli: loss is nan" in proc.stderr or "anli: loss is inf" in proc.stderr
    _, runs = _runs(tmp_path)
    status = {r.info.run_name: (r.info.status, r.data.tags.get("error", "")) for r in runs}
    assert set(status) == {"tiny", "intermediate/anli"}
    assert status["intermediate/anli"][0] == "FAILED" and "loss is" in status["intermediate/anli"][1]
    assert status["tiny"][0] == "FAILED"


def test_max_length_beyond_the_model_is_refused(write_experiment, tmp_path):
    proc = run_cli(["--exp", str(write_experiment({"model": {"max_length": 600}}))], tmp_path)
    assert proc.returncode == 2 and "model.max_length=600 is longer than" in proc.stderr


def test_bf16_only_where_the_cpu_has_it(monkeypatch):
    """Emulated bf16 ran 30x slower than fp32 on an AVX2 CPU: it is switched off there, before keys and logs."""
    from adapter_stilts import device
    from adapter_stilts.config import load_experiment
    from adapter_stilts.pipeline import resolve_bf16

    for native in (True, False):
        monkeypatch.setattr(device, "cpu_has_native_bf16", lambda native=native: native)
        cfg = load_experiment("demo")
        assert cfg.training.bf16
        resolve_bf16(cfg)
        assert cfg.training.bf16 is native


def _qa_experiment(write_experiment, name: str, targets: list[str], cache: bool = True) -> Path:
    """XQuAD and/or MLQA on the tiny encoder, no intermediate task (the baseline arm only)."""
    qa = {"train_size": 24, "dev_size": 8, "test_size": 6, "languages": ["de"], "max_length": 64}
    exp = write_experiment({"name": name, "tracking": {"cache": cache}}, name=f"{name}.yaml")
    raw = yaml.safe_load(exp.read_text())
    raw["intermediate"]["tasks"] = {}
    raw["target"]["tasks"] = {t: qa for t in targets}
    exp.write_text(yaml.safe_dump(raw))
    return exp


def test_targets_trained_on_the_same_data_train_once(write_experiment, tmp_path):
    _check(run_cli(["--exp", str(_qa_experiment(write_experiment, "shared", ["xquad", "mlqa"]))], tmp_path))
    # MLQA trained on its own (no cache: its training key is the shared one), with the same seed
    _check(run_cli(["--exp", str(_qa_experiment(write_experiment, "alone", ["mlqa"], cache=False))], tmp_path))
    client, runs = _runs(tmp_path)
    by = {(r.data.tags.get("experiment"), r.info.run_name): r for r in runs}
    xquad, mlqa, alone = by["shared", "target/xquad/none"], by["shared", "target/mlqa/none"], by["alone",
                                                                                                  "target/mlqa/none"]
    # one training in the cell, logged in the run of the first target that needed it (mlqa: the
    # experiment file lists the targets in alphabetical order)
    losses = {name: [m.value for m in client.get_metric_history(r.info.run_id, "train/loss")]
              for name, r in (("xquad", xquad), ("mlqa", mlqa), ("alone", alone))}
    assert losses["mlqa"] and losses["xquad"] == []
    assert xquad.data.tags["trained_in_run"] == mlqa.data.tags["trained_in_run"] == mlqa.info.run_id
    assert xquad.data.tags["training_key"] == mlqa.data.tags["training_key"]
    assert xquad.data.tags["training_shared_by"] == "mlqa,xquad" and xquad.data.tags["cache"] == "miss"
    assert "dev/best_f1" in mlqa.data.metrics and "dev/best_f1" not in xquad.data.metrics
    # ... and exactly what training MLQA alone gives: the same loss curve, checkpoint and scores
    assert alone.data.tags["trained_in_run"] == alone.info.run_id
    assert losses["alone"] == losses["mlqa"]
    assert alone.data.metrics["dev/best_f1"] == mlqa.data.metrics["dev/best_f1"]
    assert alone.data.metrics["dev/best_step"] == mlqa.data.metrics["dev/best_step"]
    scores = {k: v for k, v in mlqa.data.metrics.items() if k.startswith(("test/", "n_items/"))}
    assert scores and scores == {k: v for k, v in alone.data.metrics.items() if k.startswith(("test/", "n_items/"))}
    assert {k for k in xquad.data.metrics if k.startswith("test/")} == {"test/de/f1", "test/de/exact_match",
                                                                         "test/avg/f1", "test/avg/exact_match"}
    shared_preds, alone_preds = (Path(client.download_artifacts(r.info.run_id, "predictions/mlqa/test-de.json",
                                                                str(tmp_path / name)))
                                 for name, r in (("s", mlqa), ("a", alone)))
    assert shared_preds.read_text() == alone_preds.read_text()

"""The experiment matrix on the tiny model: multi-task intermediate training, averaged adapters,
the content-addressed cache (a second experiment trains nothing it already has), and reuse of an
intermediate adapter from a folder or an earlier MLflow run."""
from pathlib import Path

import yaml
from conftest import mlflow_runs, run_cli

TARGET_ONLY_XNLI = {"xnli": {"train_size": 32, "dev_size": 16, "test_size": 12, "languages": ["de"]}}


def _write(write_experiment, tmp_path, name: str, intermediate: dict, baseline: bool = False,
           targets: dict = TARGET_ONLY_XNLI) -> Path:
    path = write_experiment({"name": name, "baseline": baseline}, name=f"{name}.yaml")
    raw = yaml.safe_load(path.read_text())
    raw["intermediate"] = intermediate
    raw["target"]["tasks"] = targets
    path.write_text(yaml.safe_dump(raw))
    return path


def _ok(proc):
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-5000:]


def _children(tmp_path, experiment: str) -> dict:
    client, runs = mlflow_runs(tmp_path)
    return client, {r.info.run_name: r for r in runs
                    if r.data.tags.get("experiment") == experiment and "mlflow.parentRunId" in r.data.tags}


def test_multitask_and_averaged_intermediate_setups(write_experiment, tmp_path):
    tasks = {"anli": {"train_size": 32, "dev_size": 16}, "sst2": {"train_size": 48, "dev_size": 16}}
    _ok(run_cli(["--exp", str(_write(write_experiment, tmp_path, "mt", {"tasks": tasks, "strategy": "multitask",
                                                                       "sampler": "uniform", "lr": 5e-4}))],
                tmp_path))
    client, runs = _children(tmp_path, "mt")
    inter = runs["intermediate/multitask2"]
    peak_lr = {name: max(m.value for m in client.get_metric_history(runs[name].info.run_id, "train/lr"))
               for name in ("intermediate/multitask2", "target/xnli/multitask2")}
    assert 2.5e-4 < peak_lr["intermediate/multitask2"] <= 5e-4  # intermediate.lr, not training.lr (1e-3)
    assert peak_lr["target/xnli/multitask2"] > 5e-4  # targets keep training.lr
    assert inter.data.tags["intermediate_tasks"] == "anli,sst2"
    assert {"dev/anli/accuracy", "dev/sst2/accuracy", "dev/score"} <= set(inter.data.metrics)
    # as many steps as training the two one after another: 32/8 + 48/8
    assert [m.step for m in client.get_metric_history(inter.info.run_id, "train/loss")] == list(range(1, 11))
    saved = Path(client.download_artifacts(inter.info.run_id, "model", str(tmp_path / "mt")))
    assert (saved / "adapter" / "adapter_config.json").is_file()
    assert {p.name for p in (saved / "heads").iterdir()} == {"anli", "sst2"}  # one head per task
    assert "test/de/accuracy" in runs["target/xnli/multitask2"].data.metrics

    _ok(run_cli(["--exp", str(_write(write_experiment, tmp_path, "avg", {"tasks": tasks, "strategy": "average",
                                                                        "name": "avg2"}))], tmp_path))
    client, runs = _children(tmp_path, "avg")
    assert {"intermediate/anli", "intermediate/sst2", "target/xnli/avg2"} <= set(runs)
    assert "test/de/accuracy" in runs["target/xnli/avg2"].data.metrics

    # fusion: the same single-task adapters (from the cache), an AdapterFusion layer per target
    _ok(run_cli(["--exp", str(_write(write_experiment, tmp_path, "fus", {"tasks": tasks, "strategy": "fusion"}))],
                tmp_path))
    client, runs = _children(tmp_path, "fus")
    assert runs["intermediate/anli"].data.tags["cache"] == "hit"
    target = runs["target/xnli/fusion2"]
    saved = Path(client.download_artifacts(target.info.run_id, "model", str(tmp_path / "fus")))
    assert (saved / "fusion" / "adapter_fusion_config.json").is_file() and (saved / "head").is_dir()
    assert "test/de/accuracy" in target.data.metrics


def test_mlm_mixed_into_the_intermediate_phase(write_experiment, tmp_path):
    tasks = {"anli": {"train_size": 32, "dev_size": 16}, "mlm": {"train_size": 64, "dev_size": 16}}
    inter = {"tasks": tasks, "strategy": "multitask", "mlm_ratio": 0.5, "name": "anli_mlm"}
    _ok(run_cli(["--exp", str(_write(write_experiment, tmp_path, "mlm", inter))], tmp_path))
    client, runs = _children(tmp_path, "mlm")
    metrics = runs["intermediate/anli_mlm"].data.metrics
    assert {"dev/anli/accuracy", "dev/mlm/accuracy"} <= set(metrics) and 0 <= metrics["dev/mlm/accuracy"] <= 1
    assert "test/de/accuracy" in runs["target/xnli/anli_mlm"].data.metrics


def test_cache_reuses_intermediate_and_target_results_across_experiments(write_experiment, tmp_path):
    inter = {"tasks": {"anli": {"train_size": 32, "dev_size": 16}}}
    targets = {**TARGET_ONLY_XNLI, "tatoeba": {"test_size": 20, "languages": ["de"]}}
    _ok(run_cli(["--exp", str(_write(write_experiment, tmp_path, "first", inter, targets=targets))], tmp_path))
    _ok(run_cli(["--exp", str(_write(write_experiment, tmp_path, "second", inter, baseline=True, targets=targets))],
                tmp_path))
    client, first = _children(tmp_path, "first")
    client, second = _children(tmp_path, "second")
    hit = second["intermediate/anli"]
    assert first["intermediate/anli"].data.tags["cache"] == "miss"
    assert (hit.data.tags["cache"] == "hit"
            and hit.data.tags["reused_from_run"] == first["intermediate/anli"].info.run_id)
    assert not client.get_metric_history(hit.info.run_id, "train/loss")  # phase 2 trained nothing
    target = second["target/xnli/anli"]
    assert target.data.tags["cache"] == "hit"  # same intermediate key + same target settings
    # a reused result keeps its per-item outcomes (the report's intervals need them)
    assert [a.path for a in client.list_artifacts(target.info.run_id, "outcomes")] == ["outcomes/outcomes.parquet"]
    assert target.data.metrics["test/de/accuracy"] == first["target/xnli/anli"].data.metrics["test/de/accuracy"]
    assert second["target/xnli/none"].data.tags["cache"] == "miss"  # the baseline was new
    retrieval = second["target/tatoeba/anli"]  # scored with the same phase-2 encoder: not scored again
    assert retrieval.data.tags["cache"] == "hit"
    assert retrieval.data.metrics["test/de/accuracy"] == first["target/tatoeba/anli"].data.metrics["test/de/accuracy"]
    assert second["target/tatoeba/none"].data.tags["cache"] == "miss"
    # full fine-tuning scores the same raw encoder (and dropout is off when scoring): not scored again
    full = _write(write_experiment, tmp_path, "fullnone", {"tasks": {}}, baseline=True,
                  targets={"tatoeba": targets["tatoeba"]})
    _ok(run_cli(["--exp", str(full), "--set", "mode=full", "--set", "model.dropout=0.3"], tmp_path))
    raw = _children(tmp_path, "fullnone")[1]["target/tatoeba/none"]
    assert raw.data.tags["mode"] == "full" and raw.data.tags["cache"] == "hit"
    assert raw.data.metrics["test/de/accuracy"] == second["target/tatoeba/none"].data.metrics["test/de/accuracy"]
    # a changed hyper-parameter is a different key: trained again
    changed = {"tasks": {"anli": {"train_size": 32, "dev_size": 16, "lr": 5e-4}}}
    _ok(run_cli(["--exp", str(_write(write_experiment, tmp_path, "third", changed))], tmp_path))
    assert _children(tmp_path, "third")[1]["intermediate/anli"].data.tags["cache"] == "miss"


def test_given_adapter_from_a_folder_or_an_mlflow_run(write_experiment, tmp_path):
    inter = {"tasks": {"anli": {"train_size": 32, "dev_size": 16}}}
    _ok(run_cli(["--exp", str(_write(write_experiment, tmp_path, "source", inter))], tmp_path))
    client, runs = _children(tmp_path, "source")
    run_id = runs["intermediate/anli"].info.run_id
    folder = Path(client.download_artifacts(run_id, "model", str(tmp_path / "dl"))) / "adapter"
    for spec in (str(folder), f"runs:/{run_id}/model"):
        name = "fromfolder" if spec == str(folder) else "fromrun"
        given = {"tasks": inter["tasks"], "adapter": spec, "name": name}
        _ok(run_cli(["--exp", str(_write(write_experiment, tmp_path, name, given))], tmp_path))
        _, got = _children(tmp_path, name)
        assert got[f"intermediate/{name}"].data.tags["source"] == spec
        assert "test/de/accuracy" in got[f"target/xnli/{name}"].data.metrics
    bad = {"tasks": inter["tasks"], "adapter": "/nonexistent/adapter"}
    proc = run_cli(["--exp", str(_write(write_experiment, tmp_path, "bad", bad))], tmp_path)
    assert proc.returncode == 2 and "intermediate.adapter: folder '/nonexistent/adapter' does not exist" in proc.stderr

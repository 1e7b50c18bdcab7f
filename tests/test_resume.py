"""Crashes cost no more than the last checkpoint: SIGKILL mid-phase, rerun the same command, and the
run continues in the same MLflow runs with the metrics of an uninterrupted run."""
import os
import signal
import time
from pathlib import Path

import pytest
import yaml
from conftest import deepspeed_launcher, mlflow_runs, run_cli, start_cli

RESUME_EXPERIMENT = {
    "baseline": False,
    "training": {"checkpoint_every": 2, "keep_checkpoints": 2, "deepspeed": "zero2"},
    "intermediate": {"tasks": {"anli": {"train_size": 48, "dev_size": 16}}},
}


def _experiment(write_experiment, outputs: Path) -> Path:
    # the cache off: these tests compare fresh runs with each other
    exp = write_experiment({**RESUME_EXPERIMENT, "tracking": {"output_dir": str(outputs), "cache": False}},
                           name=f"{outputs.name}.yaml")
    raw = yaml.safe_load(exp.read_text())
    raw["target"]["tasks"] = {"xnli": {"train_size": 320, "dev_size": 16, "test_size": 12, "languages": ["de", "sw"]},
                              "tatoeba": {"test_size": 20, "languages": ["de", "fr"]}}
    exp.write_text(yaml.safe_dump(raw))
    return exp


def _summary(tmp_path: Path) -> dict:
    """Per run name: status, and every metric's history as [(step, value)]."""
    client, runs = mlflow_runs(tmp_path)
    out = {}
    for r in runs:
        assert r.info.run_name not in out, f"run {r.info.run_name} exists twice"
        hist = {k: [(m.step, m.value) for m in sorted(client.get_metric_history(r.info.run_id, k),
                                                        key=lambda m: (m.step, m.timestamp))]
                for k in r.data.metrics}
        out[r.info.run_name] = (r.info.status, hist)
    return out


def _wait_for(pattern: str, root: Path, proc, timeout: float = 300) -> None:
    t0 = time.time()
    while not list(root.glob(pattern)):
        assert proc.poll() is None, "the run ended before the point where the test kills it"
        assert time.time() - t0 < timeout
        time.sleep(0.02)


def _kill_resume_compare(write_experiment, tmp_path, launcher_ports=None, corrupt=False, corrupt_adapter=False):
    ref, crash = tmp_path / "ref", tmp_path / "crash"
    ref.mkdir(), crash.mkdir()
    launcher = deepspeed_launcher(launcher_ports[0]) if launcher_ports else None
    env = {"OMP_NUM_THREADS": "1"} if launcher_ports else None
    exp_ref = _experiment(write_experiment, ref / "outputs")
    proc = run_cli(["--exp", str(exp_ref)], ref, launcher=launcher, env=env)
    assert proc.returncode == 0, proc.stderr[-3000:]

    exp = _experiment(write_experiment, crash / "outputs")
    p = start_cli(["--exp", str(exp)], crash, launcher=launcher, env=env, log=crash / "first.log")
    # kill once phase 3 (xnli, 40 steps) has written its step-4 checkpoint: phase 2 is finished by then
    _wait_for("tiny/*/target/anli/xnli.trained.checkpoints/step00000004/complete.json", crash / "outputs", p)
    os.killpg(p.pid, signal.SIGKILL)
    p.wait()
    # adapters-mode checkpoints hold trainable state only (the tiny model's embedding alone is 32 MB)
    checkpoint_files = list((crash / "outputs").glob("tiny/*/target/anli/xnli.trained.checkpoints/step*/*.pt"))
    assert checkpoint_files and max(f.stat().st_size for f in checkpoint_files) < 5e6
    # a finished phase's checkpoints are deleted: resuming skips it
    assert list((crash / "outputs").glob("tiny/*/intermediate/anli")) and \
        not list((crash / "outputs").glob("tiny/*/intermediate/anli.checkpoints"))
    if corrupt:  # the newest checkpoint is damaged after the crash: the previous one must be used
        newest = sorted((crash / "outputs").glob("tiny/*/target/anli/xnli.trained.checkpoints/step*"))[-1]
        victim = max((f for f in newest.rglob("*.pt")), key=lambda f: f.stat().st_size)
        victim.write_bytes(victim.read_bytes()[: victim.stat().st_size // 2])
    if corrupt_adapter:  # the finished phase-2 adapter is damaged: detected, and phase 2 is trained again
        weights = next((crash / "outputs").glob("tiny/*/intermediate/anli/adapter/pytorch_adapter.bin"))
        weights.write_bytes(weights.read_bytes()[:100])
    launcher2 = deepspeed_launcher(launcher_ports[1]) if launcher_ports else None
    proc = run_cli(["--exp", str(exp)], crash, launcher=launcher2, env=env)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "Resuming the unfinished run" in proc.stderr
    if corrupt_adapter:
        assert "intermediate/anli: the saved result" in proc.stderr and "training this phase again" in proc.stderr
    else:
        assert "intermediate/anli: finished in an earlier attempt" in proc.stderr
    if corrupt:
        assert "truncated or corrupt; falling back to the previous one" in proc.stderr

    assert not list((crash / "outputs").rglob("*.checkpoints")), "a finished run keeps no checkpoints"
    a, b = _summary(ref), _summary(crash)
    assert set(a) == set(b) == {"tiny", "intermediate/anli", "target/xnli/anli", "target/tatoeba/anli"}
    for name, (status, metrics) in b.items():
        assert status == "FINISHED", name
        for key, hist in metrics.items():
            steps = [s for s, _ in hist]
            assert len(steps) == len(set(steps)), f"{name} {key}: duplicate steps {steps}"
            ref_hist = a[name][1][key]
            if key.endswith("wall_time_s") or key.startswith("train/examples_per_s") or key.startswith("train/tokens"):
                continue
            assert steps == [s for s, _ in ref_hist], (name, key)
            assert [v for _, v in hist] == pytest.approx([v for _, v in ref_hist], abs=1e-6), (name, key)


def test_sigkill_mid_phase_then_rerun_matches_an_uninterrupted_run(write_experiment, tmp_path):
    _kill_resume_compare(write_experiment, tmp_path, corrupt=True)


def test_sigkill_with_two_ranks_then_rerun_with_a_damaged_adapter(write_experiment, tmp_path):
    _kill_resume_compare(write_experiment, tmp_path, launcher_ports=(29541, 29542), corrupt_adapter=True)


def test_same_config_and_seed_give_identical_metrics(write_experiment, tmp_path):
    exp = _experiment(write_experiment, tmp_path / "outputs")
    for _ in range(2):  # the first run finished, so the second is a new run, not a resume
        proc = run_cli(["--exp", str(exp)], tmp_path)
        assert proc.returncode == 0, proc.stderr[-3000:]
    client, runs = mlflow_runs(tmp_path)
    by_name: dict = {}
    for r in runs:
        by_name.setdefault(r.info.run_name, []).append(r.data.metrics)
    assert all(len(v) == 2 for v in by_name.values())
    for name, (m1, m2) in by_name.items():
        keys = [k for k in m1 if not k.endswith("wall_time_s") and k not in ("train/examples_per_s",
                                                                              "train/tokens_per_s")]
        assert keys and {k: m1[k] for k in keys} == {k: m2[k] for k in keys}, name


def test_two_experiments_at_once_on_one_sqlite_store(write_experiment, tmp_path):
    procs = []
    for i in range(2):
        exp = _experiment(write_experiment, tmp_path / f"outputs{i}")
        procs.append(start_cli(["--exp", str(exp)], tmp_path, env={"OMP_NUM_THREADS": "1"},
                               log=tmp_path / f"run{i}.log"))
    for i, p in enumerate(procs):
        assert p.wait(timeout=600) == 0, (tmp_path / f"run{i}.log").read_text()[-3000:]
    _, runs = mlflow_runs(tmp_path)
    parents = [r for r in runs if r.info.run_name == "tiny"]
    assert len(parents) == 2 and all(r.info.status == "FINISHED" for r in runs)
    for parent in parents:
        children = [r for r in runs if r.data.tags.get("mlflow.parentRunId") == parent.info.run_id]
        assert len(children) == 3
        assert all("test/avg/accuracy" in c.data.metrics for c in children if c.info.run_name.startswith("target"))


def test_output_folder_that_cannot_be_written(write_experiment, tmp_path):
    blocker = tmp_path / "a-file"
    blocker.write_text("")
    proc = run_cli(["--exp", str(write_experiment({"tracking": {"output_dir": str(blocker / "out")}}))], tmp_path)
    assert proc.returncode == 2
    assert "tracking.output_dir: cannot write to" in proc.stderr


def test_an_unfinished_run_resumes_only_in_its_own_store(write_experiment, tmp_path):
    """Killed in store A; the same command against a new store B starts afresh there (one line says
    why, A's outputs untouched); against A again, A's run resumes."""
    from mlflow.tracking import MlflowClient

    exp = _experiment(write_experiment, tmp_path / "outputs")
    store_a, store_b = f"sqlite:///{tmp_path / 'a.db'}", f"sqlite:///{tmp_path / 'b.db'}"
    p = start_cli(["--exp", str(exp)], tmp_path, env={"MLFLOW_TRACKING_URI": store_a}, log=tmp_path / "a1.log")
    _wait_for("tiny/*/target/anli/xnli.trained.checkpoints/step00000004/complete.json", tmp_path / "outputs", p)
    os.killpg(p.pid, signal.SIGKILL)
    p.wait()
    (killed,) = list((tmp_path / "outputs" / "tiny").glob("*/state.json"))
    before = killed.read_text()

    in_b = run_cli(["--exp", str(exp)], tmp_path, env={"MLFLOW_TRACKING_URI": store_b})
    assert in_b.returncode == 0, in_b.stderr[-3000:]
    assert "Traceback" not in in_b.stderr and "Resuming" not in in_b.stderr
    assert f"Not resuming the unfinished run in {killed.parent}" in in_b.stderr
    assert f"is not in the store {store_b} (it belongs to {store_a})" in in_b.stderr
    assert killed.read_text() == before  # the old state is left for its own store
    runs_b = MlflowClient(store_b).search_runs([e.experiment_id for e in MlflowClient(store_b).search_experiments()])
    assert [r.info.status for r in runs_b if r.info.run_name == "tiny"] == ["FINISHED"]

    in_a = run_cli(["--exp", str(exp)], tmp_path, env={"MLFLOW_TRACKING_URI": store_a})
    assert in_a.returncode == 0, in_a.stderr[-3000:]
    assert f"Resuming the unfinished run in {killed.parent}" in in_a.stderr
    client_a = MlflowClient(store_a)
    parents = [r for r in client_a.search_runs([e.experiment_id for e in client_a.search_experiments()])
               if r.info.run_name == "tiny"]
    assert [r.info.status for r in parents] == ["FINISHED"]  # the killed run, resumed: no second run


def test_killed_while_scoring_resumes_with_the_finished_training(write_experiment, tmp_path):
    """Killed after the target's training was recorded done, while its test languages are scored:
    the rerun keeps that training (its folder holds no predictions, so it is still intact) and only
    scores again."""
    exp = _experiment(write_experiment, tmp_path / "outputs")
    raw = yaml.safe_load(exp.read_text())
    raw["target"]["tasks"]["xnli"]["test_size"] = 600  # scoring lasts long enough to be killed in
    exp.write_text(yaml.safe_dump(raw))
    p = start_cli(["--exp", str(exp)], tmp_path, log=tmp_path / "first.log")
    _wait_for("tiny/*/target/anli/xnli/predictions/xnli/test-*", tmp_path / "outputs", p)
    os.killpg(p.pid, signal.SIGKILL)
    p.wait()
    proc = run_cli(["--exp", str(exp)], tmp_path)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "Resuming the unfinished run" in proc.stderr
    assert "target_training/anli/xnli: finished in an earlier attempt, skipping" in proc.stderr
    assert "training it again" not in proc.stderr and "train xnli" not in proc.stderr
    summary = _summary(tmp_path)
    status, metrics = summary["target/xnli/anli"]
    assert status == "FINISHED" and {"test/de/accuracy", "test/sw/accuracy"} <= set(metrics)

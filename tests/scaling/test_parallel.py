"""`sweep --backend ray|local` with the real services on 127.0.0.1, started and stopped here: a Ray
cluster (`ray start --head`, 2 CPUs), an `mlflow server` with a SQLite backend store, and tiny
studies of 4 cells. A Ray worker is SIGKILLed mid-cell (the cell is retried and resumes); a local
sweep gets Ctrl-C; two sweeps of one study start at once. Every cell must end FINISHED exactly once, with no cell's
intermediate phase trained twice; `scaling` then reads the server."""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest
from conftest import run_cli, start_cli, write_tiny_study

from adapter_stilts.distributed import free_port

pytestmark = pytest.mark.integration
BIN = Path(sys.executable).parent


def _stop(proc: subprocess.Popen) -> None:
    """SIGTERM the service's process group, SIGKILL what is left after 30 s."""
    for sig, wait in ((signal.SIGTERM, 30), (signal.SIGKILL, 10)):
        try:
            os.killpg(proc.pid, sig)
        except ProcessLookupError:
            return
        try:
            proc.wait(timeout=wait)
            return
        except subprocess.TimeoutExpired:
            continue


@pytest.fixture(scope="module")
def tracking_server(tmp_path_factory):
    """A real MLflow tracking server: SQLite backend store, artifacts served from a local folder."""
    root = tmp_path_factory.mktemp("mlflow-server")
    port = free_port()
    log = open(root / "server.log", "w")
    proc = subprocess.Popen([str(BIN / "mlflow"), "server", "--backend-store-uri", f"sqlite:///{root / 'mlflow.db'}",
                             "--artifacts-destination", str(root / "artifacts"), "--host", "127.0.0.1",
                             "--port", str(port), "--workers", "1"],
                            stdout=log, stderr=subprocess.STDOUT, start_new_session=True,
                            env=dict(os.environ, MLFLOW_SERVER_ENABLE_JOB_EXECUTION="false"))  # no job workers
    uri, deadline = f"http://127.0.0.1:{port}", time.time() + 120
    try:
        while True:
            assert proc.poll() is None, (root / "server.log").read_text()[-3000:]
            try:
                with urllib.request.urlopen(f"{uri}/health", timeout=2) as r:
                    if r.status == 200:
                        break
            except OSError:
                pass
            assert time.time() < deadline, "mlflow server did not answer /health in 120 s"
            time.sleep(0.5)
        yield uri
    finally:
        _stop(proc)


@pytest.fixture(scope="module")
def ray_cluster(tmp_path_factory):
    """A one-node Ray cluster with 2 CPUs, started like a cluster's head node."""
    root = tmp_path_factory.mktemp("ray")
    port = free_port()
    log_path = root / "ray.log"
    proc = subprocess.Popen([str(BIN / "ray"), "start", "--head", "--block", "--node-ip-address", "127.0.0.1",
                             "--port", str(port), "--num-cpus", "2", "--num-gpus", "0", "--include-dashboard=false",
                             "--disable-usage-stats", "--object-store-memory", str(100 * 2**20)],
                            stdout=open(log_path, "w"), stderr=subprocess.STDOUT, start_new_session=True,
                            env=dict(os.environ, RAY_USAGE_STATS_ENABLED="0"))
    deadline = time.time() + 120
    try:
        while "Ray runtime started" not in log_path.read_text():
            assert proc.poll() is None, log_path.read_text()[-3000:]
            assert time.time() < deadline, "ray start did not come up in 120 s:\n" + log_path.read_text()[-3000:]
            time.sleep(0.5)
        yield f"127.0.0.1:{port}"
    finally:
        _stop(proc)


def _server_runs(uri: str, experiment: str) -> list:
    from mlflow.tracking import MlflowClient

    client = MlflowClient(uri)
    exp = client.get_experiment_by_name(experiment)
    return client.search_runs([exp.experiment_id], max_results=5000) if exp else []


def _check_every_cell_once(uri: str, study: str, cells: int) -> None:
    runs = _server_runs(uri, study)
    parents: dict[str, list] = {}
    for r in runs:
        if "study.cell" in r.data.tags:
            parents.setdefault(r.data.tags["study.cell"], []).append(r)
    assert len(parents) == cells, sorted(parents)
    for cell, found in parents.items():
        assert [r.info.status for r in found] == ["FINISHED"], (cell, [r.info.status for r in found])
        children = [r for r in runs if r.data.tags.get("mlflow.parentRunId") == found[0].info.run_id]
        names = [r.info.run_name for r in children]
        assert len(names) == len(set(names)) and all(r.info.status == "FINISHED" for r in children), (cell, names)
    trained = [r for r in runs if r.data.tags.get("phase") == "intermediate" and r.data.tags.get("cache") == "miss"]
    # anli, sst2 and the pair, each once; the none cell trains no intermediate phase
    assert sorted(r.data.tags["id.intermediate_tasks"] for r in trained) == ["anli", "anli,sst2", "sst2"]


def _cell_process(outputs: Path, study: str) -> tuple[int, str] | None:
    """(pid, cell) of a running cell whose intermediate phase is done and whose targets are not."""
    for claim in (outputs / "cache" / "cells").glob("*.claim"):
        try:
            pid = json.loads(claim.read_text())["pid"]
            cmdline = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
        except (OSError, ValueError, KeyError):
            continue
        cell = cmdline[cmdline.index(b"--cell") + 1].decode() if b"--cell" in cmdline else None
        for state in (outputs / f"{study}-{cell}").glob("*/state.json"):
            data = json.loads(state.read_text())
            if not data["finished"] and any(u.startswith("intermediate/") and v.get("done")
                                            for u, v in data["units"].items()):
                return pid, cell
    return None


def test_a_ray_sweep_logs_to_a_tracking_server_and_survives_a_killed_worker(tmp_path, tiny_model_dir, ray_cluster,
                                                                          tracking_server):
    study = write_tiny_study(tmp_path, tiny_model_dir, "tinyray", untrained_control=False)
    env = {"MLFLOW_TRACKING_URI": tracking_server}
    proc = start_cli(["sweep", "--exp", str(study), "--backend", "ray", "--address", ray_cluster], tmp_path,
                     env=env, log=tmp_path / "sweep.log")
    deadline, killed = time.time() + 600, None
    while killed is None:
        assert proc.poll() is None, (tmp_path / "sweep.log").read_text()[-4000:]
        assert time.time() < deadline, "no cell reached its target phase"
        found = _cell_process(tmp_path / "outputs", "tinyray")
        if found:
            pid, cell = found
            worker = int(Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[1])  # its parent
            assert b"ray" in Path(f"/proc/{worker}/cmdline").read_bytes()  # a Ray worker started the cell
            os.kill(worker, signal.SIGKILL)  # as if its node died: the cell goes with it, Ray retries the task
            killed = cell
        time.sleep(0.2)
    assert proc.wait(timeout=900) == 0, (tmp_path / "sweep.log").read_text()[-4000:]
    out = (tmp_path / "sweep.log").read_text()
    assert "done 4, running 0, failed 0, left 0" in out, out[-3000:]

    _check_every_cell_once(tracking_server, "tinyray", 4)
    log = (tmp_path / "outputs" / "tinyray-logs" / f"{killed}.log").read_text()
    assert log.count("==== cell ") == 2, log[-3000:]  # the killed attempt and the retry, which resumed
    assert "Resuming the unfinished run" in log, log[-3000:]
    assert len(list((tmp_path / "results" / "cells").glob("*.csv"))) == 4

    table = run_cli(["results", "--exp", "tinyray", "--out", str(tmp_path / "rows.csv")], tmp_path, env=env)
    assert table.returncode == 0 and "written to" in table.stdout, table.stderr[-3000:]
    analysis = run_cli(["scaling", "--exp", "tinyray", "--output-dir", str(tmp_path / "analysis")], tmp_path, env=env)
    assert analysis.returncode == 0, analysis.stderr[-3000:]
    assert "## Gain vs k" in analysis.stdout and f"MLflow experiment 'tinyray' in {tracking_server}" in \
        analysis.stdout + analysis.stderr


def _processes_of(study: Path) -> list[int]:
    pids = []
    for cmdline in Path("/proc").glob("[0-9]*/cmdline"):
        try:
            if str(study).encode() in cmdline.read_bytes():
                pids.append(int(cmdline.parent.name))
        except OSError:
            continue
    return pids


def test_a_local_sweep_stops_cleanly_on_ctrl_c_and_two_sweeps_at_once_run_each_cell_once(tmp_path, tiny_model_dir,
                                                                                         tracking_server):
    study = write_tiny_study(tmp_path, tiny_model_dir, "tinytwice", untrained_control=False)
    env = {"MLFLOW_TRACKING_URI": tracking_server}
    first = start_cli(["sweep", "--exp", str(study), "--backend", "local", "--jobs", "2"], tmp_path, env=env,
                      log=tmp_path / "first.log")
    deadline = time.time() + 600
    while not any((tmp_path / "outputs").glob("tinytwice-*/*/state.json")):
        assert first.poll() is None and time.time() < deadline, (tmp_path / "first.log").read_text()[-4000:]
        time.sleep(0.2)
    time.sleep(3)  # into the cell's training
    first.send_signal(signal.SIGINT)  # Ctrl-C
    assert first.wait(timeout=300) == 130, (tmp_path / "first.log").read_text()[-4000:]
    assert "Interrupted: stopping" in (tmp_path / "first.log").read_text()
    assert _processes_of(study) == []  # no cell left running
    statuses = [r.info.status for r in _server_runs(tracking_server, "tinytwice") if "study.cell" in r.data.tags]
    assert statuses and "RUNNING" not in statuses and "KILLED" in statuses, statuses

    sweeps = [start_cli(["sweep", "--exp", str(study), "--backend", "local", "--jobs", "2"], tmp_path, env=env,
                        log=tmp_path / f"sweep{i}.log") for i in range(2)]
    for i, proc in enumerate(sweeps):
        assert proc.wait(timeout=900) == 0, (tmp_path / f"sweep{i}.log").read_text()[-4000:]
    _check_every_cell_once(tracking_server, "tinytwice", 4)  # the interrupted cells resumed in their own runs
    logs = [(tmp_path / f"sweep{i}.log").read_text() for i in range(2)]
    finished = sum(log.count(" finished on ") for log in logs)
    skipped = sum(log.count(" was finished by another sweep ") for log in logs)
    assert finished == 4, logs  # every cell ran in one sweep; a cell both started was skipped by the other
    assert finished + skipped <= 8, logs


def test_one_cell_started_twice_at_once_runs_once(tmp_path, tiny_model_dir):
    """The claim, then the store check inside it: the second copy waits, finds the cell FINISHED and
    exits CELL_SKIPPED; one parent run in the store."""
    from conftest import mlflow_runs

    from adapter_stilts.scaling.study import load_study
    from adapter_stilts.scaling.sweep import CELL_SKIPPED, planned_cells

    study_file = write_tiny_study(tmp_path, tiny_model_dir, "tinyonce", untrained_control=False)
    _, _, _, planned = planned_cells(load_study(str(study_file)))
    p = next(c for c in planned if c.cell.k == 1)
    args = ["cell", "--exp", str(study_file), "--cell", p.cell.id, "--key", p.spec_key]
    procs = [start_cli(args, tmp_path, log=tmp_path / f"cell{i}.log") for i in range(2)]
    codes = sorted(proc.wait(timeout=600) for proc in procs)
    assert codes == [0, CELL_SKIPPED], [(tmp_path / f"cell{i}.log").read_text()[-3000:] for i in range(2)]
    _, runs = mlflow_runs(tmp_path)
    assert [r.info.status for r in runs if r.data.tags.get("study.cell") == p.cell.id] == ["FINISHED"]
    assert len([r for r in runs if r.data.tags.get("phase") == "intermediate"]) == 1

"""A tiny study through `sweep` and `scaling` on the tiny random model (real DeepSpeed engines, a
real MLflow store, real data): the dry-run plan, chunks (--limit), a SIGKILL mid-sweep and the
rerun that skips finished cells and resumes the killed one, the per-cell export, the analysis."""
from __future__ import annotations

import json
import os
import signal
import time

import pandas as pd
import pytest
from conftest import mlflow_runs, run_cli, start_cli, write_tiny_study

pytestmark = pytest.mark.integration


@pytest.fixture
def tiny_study(tmp_path, tiny_model_dir):
    return write_tiny_study(tmp_path, tiny_model_dir, "tinystudy")


def _parents(tmp_path) -> dict[str, list]:
    _, runs = mlflow_runs(tmp_path)
    out: dict[str, list] = {}
    for r in runs:
        if "study.cell" in r.data.tags:
            out.setdefault(r.data.tags["study.cell"], []).append(r)
    return out


def test_sweep_plans_runs_in_chunks_resumes_after_a_kill_and_feeds_the_analysis(tiny_study, tmp_path):
    plan = run_cli(["sweep", "--exp", str(tiny_study), "--dry-run"], tmp_path)
    assert plan.returncode == 0, plan.stderr[-3000:]
    # qqp has no data offline: left out; pool of 2 -> none, untrained, 2 singles, the pair
    assert "pool task qqp left out" in plan.stdout and "5 cells, 0 done, 5 to run" in plan.stdout
    assert "units never measured" in plan.stdout

    chunk = run_cli(["sweep", "--exp", str(tiny_study), "--limit", "2"], tmp_path)
    assert chunk.returncode == 3, chunk.stderr[-3000:]  # cells left: rerun to go on
    assert len(_parents(tmp_path)) == 2
    assert len(list((tmp_path / "results" / "cells").glob("*.csv"))) == 2

    # a SIGKILL once a cell's intermediate phase is done and its target is training
    proc = start_cli(["sweep", "--exp", str(tiny_study)], tmp_path, log=tmp_path / "killed.log")
    deadline, killed_in = time.time() + 600, None
    while time.time() < deadline and killed_in is None:
        assert proc.poll() is None, (tmp_path / "killed.log").read_text()[-3000:]
        for state in (tmp_path / "outputs").glob("tinystudy-*/*/state.json"):
            data = json.loads(state.read_text())
            if not data["finished"] and any(u.startswith("intermediate/") and v.get("done")
                                            for u, v in data["units"].items()):
                os.killpg(proc.pid, signal.SIGKILL)
                killed_in = state.parent.parent.name
                break
        time.sleep(0.2)
    assert killed_in, "no cell reached its target phase"
    proc.wait()

    rest = run_cli(["sweep", "--exp", str(tiny_study)], tmp_path)
    assert rest.returncode == 0, rest.stderr[-3000:]
    parents = _parents(tmp_path)
    assert len(parents) == 5
    # every cell ran once: the finished ones were skipped, the killed one resumed in its own MLflow run
    assert all(len(runs) == 1 and runs[0].info.status == "FINISHED" for runs in parents.values())
    _, runs = mlflow_runs(tmp_path)
    trained = [r for r in runs if r.data.tags.get("phase") == "intermediate" and r.data.tags.get("cache") == "miss"]
    assert len(trained) == 3  # anli, sst2, the multi-task pair: the killed cell's phase 2 was not trained again
    layers = {r.data.tags["id.model_layers"] for r in runs if "id.model_layers" in r.data.tags}
    assert layers == {"1"}  # the 2-layer model truncated to its first layer

    cells = sorted((tmp_path / "results" / "cells").glob("*.csv"))
    assert len(cells) == 5 and len(list((tmp_path / "results" / "outcomes").glob("*.parquet"))) == 5
    rows = pd.concat(pd.read_csv(c) for c in cells)
    assert set(rows["k"]) == {0, 1, 2} and set(rows["strategy"]) == {"none", "untrained", "each", "multitask"}

    # another machine: no MLflow store, only the committed rows; nothing is run again
    (tmp_path / "mlflow.db").unlink()
    elsewhere = run_cli(["sweep", "--exp", str(tiny_study), "--dry-run"], tmp_path)
    assert "5 cells, 5 done, 0 to run" in elsewhere.stdout, elsewhere.stdout + elsewhere.stderr[-2000:]

    analysis = run_cli(["scaling", "--exp", "tinystudy", "--from", str(tmp_path / "results"), "--output-dir",
                        str(tmp_path / "analysis")], tmp_path)
    assert analysis.returncode == 0, analysis.stderr[-3000:]
    assert "## Gain vs k" in analysis.stdout and (tmp_path / "analysis" / "gain_vs_k.png").is_file()
    curve = pd.read_csv(tmp_path / "analysis" / "curve.csv")
    assert set(curve[curve["target"] == "xnli"]["k"]) == {0, 1, 2}

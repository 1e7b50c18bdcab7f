"""Screenshots of the MLflow UI as a researcher first sees it, to check the README's walkthrough:
starts `mlflow ui` on a store, then headless Chromium (Debian's `chromium`) takes
  1-experiments.png  the experiments list
  2-first-visit.png  an experiment as a first-time visitor opens it
  3-runs.png         its runs table in the "Model training" view
  4-run.png          the newest parent run's page (its description is the results table)
into the output folder.

    python scripts/mlflow_ui_screenshots.py [--store sqlite:///mlruns/mlflow.db] [--experiment demo] [--out DIR]
"""
from __future__ import annotations

import argparse
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

CHROMIUM_FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                  "--disable-background-networking", "--disable-component-update", "--disable-sync",
                  "--hide-scrollbars", "--window-size=1600,1000", "--virtual-time-budget=15000"]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def screenshot(chromium: str, url: str, path: Path) -> None:
    with tempfile.TemporaryDirectory() as profile:
        subprocess.run([chromium, *CHROMIUM_FLAGS, f"--user-data-dir={profile}", f"--screenshot={path}", url],
                       check=True, capture_output=True, timeout=120)
    print(f"{path}  <- {url}")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--store", default=f"sqlite:///{Path('mlruns/mlflow.db').resolve()}")
    parser.add_argument("--experiment", default="demo")
    parser.add_argument("--out", default="outputs/ui-screenshots")
    args = parser.parse_args()
    chromium = shutil.which("chromium") or shutil.which("chromium-browser")
    if not chromium:
        print("error: no chromium (Debian: apt-get install chromium)", file=sys.stderr)
        return 2
    from mlflow.tracking import MlflowClient

    client = MlflowClient(args.store)
    experiment = client.get_experiment_by_name(args.experiment)
    if experiment is None:
        print(f"error: no experiment '{args.experiment}' in {args.store}", file=sys.stderr)
        return 2
    parents = [r for r in client.search_runs([experiment.experiment_id], order_by=["attributes.start_time DESC"])
               if "mlflow.parentRunId" not in r.data.tags]
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    port = free_port()
    ui = subprocess.Popen([str(Path(sys.executable).with_name("mlflow")), "ui", "--backend-store-uri", args.store,
                           "--host", "127.0.0.1", "--port", str(port)], stdout=subprocess.DEVNULL,
                          stderr=subprocess.DEVNULL, start_new_session=True,
                          env=dict(os.environ, MLFLOW_SERVER_ENABLE_JOB_EXECUTION="false"))
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.time() + 90
        while True:
            try:
                urllib.request.urlopen(f"{base}/health", timeout=2)
                break
            except OSError:
                if time.time() > deadline or ui.poll() is not None:
                    print("error: mlflow ui did not start", file=sys.stderr)
                    return 1
                time.sleep(0.5)
        # MLflow 3.17 opens on its GenAI pages until "Model training" is picked at the top left (a
        # preference kept in the browser): a first-time visitor's view, then the link the README gives
        ml = "?workflowType=machine_learning"
        screenshot(chromium, f"{base}/#/experiments", out / "1-experiments.png")
        screenshot(chromium, f"{base}/#/experiments/{experiment.experiment_id}", out / "2-first-visit.png")
        screenshot(chromium, f"{base}/#/experiments/{experiment.experiment_id}{ml}", out / "3-runs.png")
        if parents:
            run = parents[0].info.run_id
            screenshot(chromium, f"{base}/#/experiments/{experiment.experiment_id}/runs/{run}{ml}", out / "4-run.png")
    finally:
        os.killpg(ui.pid, signal.SIGTERM)
        ui.wait(timeout=30)
    return 0


if __name__ == "__main__":
    sys.exit(main())

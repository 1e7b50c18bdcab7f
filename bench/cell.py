"""`python bench/throughput.py --mode cell`: what one scaling-study cell costs, phase by phase.

The cell (default: the study's first k=1 cell at its first size, 12 layers; the study's model,
me5-small offline; real data; the study's target set and sizes) runs twice, each in a process of
its own with a fresh output folder and MLflow store and the phase cache off, so that everything is
computed:
  shared    as the sweep runs it: targets trained on the same data with the same settings share
            one trained target (XQuAD and MLQA on SQuAD), loaded once for their scorings
  unshared  every target trains and loads its own model (StiltsRecipe(share=False))
Each phase's seconds come from the MLflow runs the cell writes (the `wall_time_s` metrics of its
units): setup (reading and tokenizing the data, loading the tokenizer), the intermediate phase,
each target's training (with loading the trained model, exporting and
storing it: what sharing saves), each target's scoring, retrieval. Prints both columns, the ratio
unshared/shared, each run's peak RSS, and whether every test score is identical.

  --seeds N             N runs of each setting, in alternating order (shared first, then unshared
                        first, ...); the table shows the means
  --add-targets mlqa    add targets to the study's set (each with the settings of the study target
                        it shares training data with: MLQA gets XQuAD's)
  --profile             also run the shared cell under py-spy: where its time goes, by phase and by
                        function (own time); the raw stacks are kept under --profile-out
"""
from __future__ import annotations

import collections
import json
import os
import re
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
PHASE_ORDER = ("setup", "intermediate", "training", "scoring", "retrieval")
PROFILE_HZ = 20


# ---------------------------------------------------------------- one cell, in a process of its own
def _cell(study_name: str, cell_id: str, add_targets: list[str]):
    from adapter_stilts.scaling.study import load_study
    from adapter_stilts.scaling.sweep import planned_cells
    from adapter_stilts.tasks.lookup import get_task

    study, _, _, planned = planned_cells(load_study(study_name))
    if cell_id:
        matches = [p for p in planned if p.cell.id == cell_id]
        if not matches:
            raise SystemExit(f"no cell {cell_id!r} in study {study_name}; its cells: "
                             + ", ".join(p.cell.id for p in planned[:12]) + ", ...")
    else:
        matches = [p for p in planned if p.cell.k == 1] or planned  # the first size's first k = 1 cell
    cell, cfg = matches[0].cell, matches[0].config
    for name in add_targets:
        train_data = get_task(name).train_data
        like = [t for t in cfg.target.tasks if train_data and get_task(t).train_data == train_data]
        if not like:
            raise SystemExit(f"--add-targets {name}: no target of the study trains on the same data")
        cfg.target.tasks[name] = cfg.target.tasks[like[0]]
    return cell, cfg


def worker(study_name: str, cell_id: str, add_targets: list[str], share: bool, out: str) -> None:
    """Run the cell (cache off, outputs under `out`) and print its phase times as one RESULT line."""
    import resource

    from adapter_stilts import distributed as dist
    from adapter_stilts.cli import setup_logging
    from adapter_stilts.pipeline import StiltsRecipe

    setup_logging()
    cell, cfg = _cell(study_name, cell_id, add_targets)
    cfg.tracking.output_dir, cfg.tracking.cache = out, False
    recipe = StiltsRecipe(cfg, {"study.cell": cell.id}, share=share)
    t0, status = time.perf_counter(), "FAILED"
    try:
        dist.init()
        recipe.setup()
        recipe.run()
        status = "FINISHED"
    finally:
        recipe.cleanup(status)
    wall = time.perf_counter() - t0
    phases, scores = _phases(recipe.parent.run_id)
    print("RESULT " + json.dumps({"cell": cell.id, "targets": list(cfg.target.tasks), "wall_s": wall,
                                  "phases": phases, "scores": scores,
                                  "peak_rss_gb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024 ** 2}),
          flush=True)


def _phases(parent_id: str) -> tuple[dict[str, float], dict[str, dict[str, float]]]:
    """Seconds per phase from the cell's MLflow runs, and every unit's test scores."""
    from mlflow.tracking import MlflowClient

    from adapter_stilts.results_table import search_runs
    from adapter_stilts.tasks.lookup import get_task

    client = MlflowClient()
    parent = client.get_run(parent_id)
    phases = {"setup": parent.data.metrics.get("setup/wall_time_s", 0.0)}
    scores = {}
    exp = parent.info.experiment_id
    for run in search_runs(client, [exp], f"tags.mlflow.parentRunId = '{parent_id}'"):
        tags, metrics = run.data.tags, run.data.metrics
        unit_s = metrics.get("wall_time_s", 0.0)
        scores[run.info.run_name] = {k: v for k, v in metrics.items() if k.startswith("test/")}
        if tags["phase"] == "intermediate":
            phases["intermediate"] = phases.get("intermediate", 0.0) + unit_s
        elif not get_task(tags["task"]).trains:
            phases[f"retrieval {tags['task']}"] = unit_s
        else:  # a target's run: its training (where it trained it) and its scoring
            train_s = metrics.get("target_training/wall_time_s")
            if train_s is not None:  # not in a target that shares another's training
                phases[f"training {tags['task']}"] = train_s
            phases[f"scoring {tags['task']}"] = unit_s - (train_s or 0.0)
    return phases, scores


# ---------------------------------------------------------------- the two runs and the table
def _launch(args, share: bool, profile: Path | None = None) -> dict:
    with tempfile.TemporaryDirectory(prefix="cell-bench-") as tmp:
        cmd = [sys.executable, str(Path(__file__).with_name("throughput.py")), "--mode", "cell", "--cell-worker",
               "shared" if share else "unshared", "--cell-out", tmp, "--study", args.study,
               *(["--cell", args.cell] if args.cell else []),
               *(["--add-targets", args.add_targets] if args.add_targets else [])]
        if profile is not None:
            cmd = [str(Path(sys.executable).with_name("py-spy")), "record", "--rate", str(PROFILE_HZ), "--format",
                   "raw", "--output", str(profile), "--", *cmd]
        from adapter_stilts.distributed import LAUNCHER_ENV

        env = {k: v for k, v in os.environ.items() if k not in LAUNCHER_ENV}  # a fresh single-rank process
        env["MLFLOW_TRACKING_URI"] = f"sqlite:///{tmp}/mlflow.db"
        proc = subprocess.run(cmd, capture_output=True, text=True, env=env, cwd=REPO)
    lines = [line for line in proc.stdout.splitlines() if line.startswith("RESULT ")]
    if proc.returncode or not lines:
        raise SystemExit(f"the {'shared' if share else 'unshared'} cell failed:\n{proc.stderr[-3000:]}")
    return json.loads(lines[-1][len("RESULT "):])


def _phase_rank(name: str) -> tuple[int, str]:
    return PHASE_ORDER.index(name.split()[0]), name


def compare(shared: dict, unshared: dict) -> list[str]:
    """The table: per phase, seconds shared / unshared; the totals and their ratio."""
    names = sorted(set(shared["phases"]) | set(unshared["phases"]), key=_phase_rank)
    lines = [f"{'phase':28} {'shared s':>9} {'unshared s':>11}"]
    for name in names:
        a, b = shared["phases"].get(name), unshared["phases"].get(name)
        lines.append(f"{name:28} {'-' if a is None else f'{a:9.1f}':>9} {'-' if b is None else f'{b:11.1f}':>11}")
    lines.append(f"{'cell (process wall)':28} {shared['wall_s']:9.1f} {unshared['wall_s']:11.1f}")
    lines.append(f"{'peak RSS GB':28} {shared['peak_rss_gb']:9.2f} {unshared['peak_rss_gb']:11.2f}")
    same = _same_scores(shared["scores"], unshared["scores"])
    lines.append(f"scores identical: {'yes' if same is True else f'NO ({same})'}")
    lines.append(f"cell cost, unshared/shared: {unshared['wall_s'] / shared['wall_s']:.2f}x")
    return lines


def _same_scores(a: dict, b: dict) -> bool | str:
    if set(a) != set(b):
        return f"different units: {sorted(set(a) ^ set(b))}"
    for unit in a:
        if a[unit] != b[unit]:
            diff = sorted(k for k in set(a[unit]) | set(b[unit]) if a[unit].get(k) != b[unit].get(k))
            return f"{unit}: {', '.join(diff[:4])}"
    return True


# ---------------------------------------------------------------- the profile
FRAME = re.compile(r"^(?P<func>.*) \((?P<file>[^()]*?)(?::(?P<line>\d+))?\)$")


def profile_summary(raw: Path, rate: int = PROFILE_HZ, top: int = 12) -> list[str]:
    """py-spy's raw (collapsed) stacks -> seconds by the recipe's phase (the innermost of our
    StiltsRecipe methods on the stack) and the functions with the most own time."""
    by_phase, own = collections.Counter(), collections.Counter()
    total = 0
    for line in raw.read_text().splitlines():
        stack, _, count = line.rpartition(" ")
        if not stack or not count.isdigit():
            continue
        n = int(count)
        frames = stack.split(";")
        total += n
        recipe = [f for f in frames if "pipeline.py" in f]
        by_phase[_short(recipe[-1]) if recipe else "(outside the recipe)"] += n
        own[_short(frames[-1], with_file=True)] += n
    lines = [f"profile: {total / rate:.0f} s sampled at {rate} Hz; by the innermost recipe step:"]
    lines += [f"  {n / rate:8.1f} s {100 * n / total:5.1f}%  {name}" for name, n in by_phase.most_common(top)]
    lines.append("functions with the most own time:")
    lines += [f"  {n / rate:8.1f} s {100 * n / total:5.1f}%  {name}" for name, n in own.most_common(top)]
    return lines


def _short(frame: str, with_file: bool = False) -> str:
    m = FRAME.match(frame.strip())
    if not m:
        return frame
    where = m["file"].split("site-packages/")[-1].split("src/")[-1]
    return f"{m['func']} ({where})" if with_file else m["func"]


def mean_run(runs: list[dict]) -> dict:
    """Several runs of one setting as one: mean seconds per phase and wall, the highest peak RSS;
    the scores should agree between them (on the CPU the cell is deterministic)."""
    for other in runs[1:]:
        if (same := _same_scores(runs[0]["scores"], other["scores"])) is not True:
            print(f"WARNING: two runs of the same setting scored differently: {same}", flush=True)
    phases = {name: statistics.mean(r["phases"][name] for r in runs) for name in runs[0]["phases"]}
    return {**runs[0], "phases": phases, "wall_s": statistics.mean(r["wall_s"] for r in runs),
            "peak_rss_gb": max(r["peak_rss_gb"] for r in runs)}


def main(args) -> None:
    repeats = args.seeds or 1
    print(f"{time.strftime('%Y-%m-%d')} | cell mode | study {args.study} | {os.cpu_count()} CPU cores | "
          f"{repeats} run(s) per setting, the order alternated", flush=True)
    runs: dict[bool, list[dict]] = {True: [], False: []}
    for i in range(repeats):  # shared first, then unshared first, ...: a warm-up or drift favours neither
        for share in (True, False) if i % 2 == 0 else (False, True):
            runs[share].append(_launch(args, share))
    shared, unshared = mean_run(runs[True]), mean_run(runs[False])
    print(f"cell {shared['cell']}; targets {', '.join(shared['targets'])}", flush=True)
    for line in compare(shared, unshared):
        print(line, flush=True)
    if repeats > 1:
        print("per pair: " + ", ".join(f"{b['wall_s'] / a['wall_s']:.2f}x" for a, b in zip(runs[True], runs[False])),
              flush=True)
    if args.profile:
        out = Path(args.profile_out)
        out.parent.mkdir(parents=True, exist_ok=True)
        _launch(args, share=True, profile=out)
        for line in profile_summary(out):
            print(line, flush=True)

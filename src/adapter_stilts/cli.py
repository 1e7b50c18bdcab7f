"""Command line: `run` (the default) runs an experiment; `tasks` lists the registered tasks;
`results` writes the long-format results table of the MLflow store; `report` builds the
cross-experiment comparison (a view of that table, with intervals on every gain); `sweep` runs a
study's cells (`cell` runs one, as a sweep's worker does); `scaling` analyses a study (gain vs
number of tasks and model size)."""
from __future__ import annotations

import argparse
import logging
import os
import signal
import sys

from .config import ConfigError, load_experiment


def setup_logging() -> None:
    rank = int(os.environ.get("RANK", "0"))
    logging.basicConfig(level=logging.INFO if rank == 0 else logging.WARNING,
                        format=f"%(asctime)s [rank {rank}] %(levelname)s %(name)s: %(message)s", datefmt="%H:%M:%S")
    for noisy in ("DeepSpeed", "deepspeed", "httpx", "alembic", "mlflow.store.db.utils", "adapters", "faiss.loader"):
        logging.getLogger(noisy).setLevel(logging.WARNING)
    # transient while a saved adapter is being loaded, before the setup is activated
    logging.getLogger("adapters.model_mixin").setLevel(logging.ERROR)
    import transformers

    # e.g. "pooler weights newly initialised": expected, the e5 pooler is never trained or used
    transformers.logging.set_verbosity_error()


def cmd_run(args: argparse.Namespace) -> int:
    from . import distributed as dist

    if args.exp and len(args.exp) > 1:
        raise ConfigError(f"run: one --exp at a time (got {', '.join(args.exp)})")
    # a bad file fails here, before anything starts
    cfg = load_experiment(args.exp[0] if args.exp else "demo", args.set)
    dist.prepare_environment()
    from .runner import run_experiment

    try:
        return run_experiment(cfg)
    finally:
        dist.shutdown()


def cmd_tasks(args: argparse.Namespace) -> int:
    from .config import DataConfig
    from .tasks.data import resolve_source
    from .tasks.overview import format_rows, task_rows

    source = resolve_source(DataConfig())
    print(format_rows(task_rows(source), source))
    return 0


def _listed(values: list[str] | None) -> list[str]:
    """A repeatable option that also takes comma-separated lists: ["a,b", "c"] -> [a, b, c]."""
    return [n.strip() for item in values or [] for n in item.split(",") if n.strip()]


def cmd_report(args: argparse.Namespace) -> int:
    """The cross-experiment table from MLflow: `report --exp a,b` (no --exp: every experiment)."""
    from .report import ReportError, build_report

    names, seeds = (_listed(args.exp) or None), _listed(args.seed)
    try:
        report = build_report(names, args.output, seeds)
    except ReportError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    print(report.table.markdown())
    logging.getLogger("adapter_stilts").info("Report in %s (MLflow run %s in experiment 'reports')",
                                             args.output, report.run_id)
    return 0


def cmd_results(args: argparse.Namespace) -> int:
    """The long-format results table from MLflow: `results --exp a,b --out results.parquet`."""
    from .results_table import ResultsError, build_results, write_table

    try:
        table = build_results(_listed(args.exp) or None, seeds=_listed(args.seed))
        path = write_table(table.frame, args.out)
    except ResultsError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    for note in table.notes:
        print(f"note: {note}", file=sys.stderr)
    print(f"{len(table.frame)} rows ({table.frame['run_id'].nunique()} target runs of "
          f"{', '.join(table.experiments)}) written to {path}")
    return 0


def cmd_sweep(args: argparse.Namespace) -> int:
    """Run a study's cells that have not finished: `sweep --exp scaling [--dry-run] [--hours 2]`."""
    from . import distributed as dist
    from .scaling.study import load_study

    if not args.exp or len(args.exp) > 1:
        raise ConfigError("sweep: name one study with --exp (e.g. --exp scaling)")
    study = load_study(args.exp[0], args.set)  # a bad study file fails here, before anything starts
    execute = None
    if args.backend:
        if int(os.environ.get("WORLD_SIZE", "1")) > 1:
            raise ConfigError(f"sweep --backend {args.backend}: start it with python, not a launcher: each cell "
                              f"starts its own ranks (study.resources.ranks)")
        from .scaling.parallel import dispatch, forwarded_env, make_backend

        env = forwarded_env()  # the user's, before prepare_environment sets this machine's
        interrupt_on_sigterm()  # a scheduler's preemption stops the cells as Ctrl-C does

        def execute(plan):  # the backend starts only once the plan is checked
            return dispatch(plan, make_backend(args.backend, study, args.jobs, args.address), args.set, env,
                            args.hours, args.limit)
    elif args.jobs != 1 or args.address:
        raise ConfigError("sweep: --jobs and --address need --backend local or --backend ray")
    dist.prepare_environment()
    from .scaling.sweep import run_sweep

    try:
        return run_sweep(study, dry_run=args.dry_run, hours=args.hours, limit=args.limit, execute=execute)
    finally:
        dist.shutdown()


def interrupt_once(signum, frame) -> None:
    """SIGINT / SIGTERM as one KeyboardInterrupt: a second signal (the DeepSpeed launcher answers
    SIGINT with SIGTERM) must not interrupt the cleanup that marks the runs KILLED."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    raise KeyboardInterrupt


def interrupt_on_sigterm() -> None:
    signal.signal(signal.SIGTERM, interrupt_once)


def cmd_cell(args: argparse.Namespace) -> int:
    """One cell of a study, as a sweep's worker starts it: `cell --exp scaling --cell ID [--key K]`."""
    from . import distributed as dist
    from .scaling.parallel import watch_parent
    from .scaling.study import load_study
    from .scaling.sweep import find_cell, run_cell

    if not args.exp or len(args.exp) > 1 or not args.cell:
        raise ConfigError("cell: name one study with --exp and one of its cells with --cell")
    watch_parent()
    # a Ray worker blocks and ignores SIGINT, and its children inherit that: a sweep stops a cell with
    # SIGINT (the DeepSpeed launcher passes it on as SIGTERM), which must end its runs KILLED
    signal.pthread_sigmask(signal.SIG_UNBLOCK, {signal.SIGINT})
    signal.signal(signal.SIGINT, interrupt_once)
    interrupt_on_sigterm()
    study = load_study(args.exp[0], args.set)
    study, cell = find_cell(study, args.cell, args.key)
    dist.prepare_environment()
    try:
        dist.init()
        return run_cell(study, cell)
    finally:
        dist.shutdown()


def cmd_scaling(args: argparse.Namespace) -> int:
    """The study's analysis: `scaling --exp scaling` (from the store) or `scaling --from results/scaling`."""
    if args.set:
        raise ConfigError("scaling: --set does not apply (the analysis reads results; change the study file and sweep)")
    from .results_table import ResultsError
    from .scaling.analysis import AnalysisError, run_analysis

    try:
        summary = run_analysis(study_name=(args.exp or ["scaling"])[0], source=args.from_dir, output=args.output_dir)
    except (ResultsError, AnalysisError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    print(summary)
    return 0


def main(argv: list[str] | None = None) -> int:
    setup_logging()
    parser = argparse.ArgumentParser(prog="run.py", description="English intermediate-task training (STILTs) for "
                                     "zero-shot cross-lingual transfer")
    parser.add_argument("command", nargs="?", default="run",
                        choices=("run", "tasks", "results", "report", "sweep", "scaling", "cell"))
    parser.add_argument("--exp", action="append", default=None, metavar="NAME",
                        help="run: experiments/NAME.yaml or a path to a YAML file (default: demo); "
                             "results, report: the experiments to read (repeatable or a,b; default: all)")
    parser.add_argument("--set", action="append", default=[], metavar="KEY.PATH=VALUE",
                        help="override any field of the experiment, e.g. --set training.lr=3e-4")
    parser.add_argument("--seed", action="append", default=None, metavar="SEED",
                        help="results, report: only runs of these seeds (repeatable or 42,43; default: every seed)")
    parser.add_argument("--output", default="outputs/report", metavar="DIR",
                        help="report: the folder for report.md, report.csv and report.png")
    parser.add_argument("--out", default="outputs/results.parquet", metavar="FILE",
                        help="results: the table's file, .parquet or .csv")
    parser.add_argument("--dry-run", action="store_true", help="sweep: print the plan and its cost, run nothing")
    parser.add_argument("--hours", type=float, default=0.0, metavar="H",
                        help="sweep: start no new cell after H hours (a chunk; rerun to go on); 0 = no limit")
    parser.add_argument("--limit", type=int, default=0, metavar="N", help="sweep: run at most N cells; 0 = all")
    parser.add_argument("--backend", choices=("local", "ray"), default=None,
                        help="sweep: run cells at once, each in its own process: local (--jobs N on this machine) "
                             "or ray (a Ray cluster); default: one after another in this process and its ranks")
    parser.add_argument("--jobs", type=int, default=1, metavar="N", help="sweep --backend local: N cells at once")
    parser.add_argument("--address", default=None, metavar="HOST:PORT",
                        help="sweep --backend ray: the cluster (HOST:PORT or auto); default: start Ray on this machine")
    parser.add_argument("--cell", default=None, help=argparse.SUPPRESS)  # cell: what a sweep's worker runs
    parser.add_argument("--key", default=None, help=argparse.SUPPRESS)
    parser.add_argument("--from", dest="from_dir", default=None, metavar="DIR",
                        help="scaling: read the study's committed rows (e.g. results/scaling) instead of the store")
    parser.add_argument("--output-dir", default=None, metavar="DIR",
                        help="scaling: where the analysis is written (default: outputs/<study>-analysis)")
    parser.add_argument("--local_rank", "--local-rank", type=int, default=None, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    try:
        return {"run": cmd_run, "tasks": cmd_tasks, "results": cmd_results, "report": cmd_report,
                "sweep": cmd_sweep, "scaling": cmd_scaling, "cell": cmd_cell}[args.command](args)
    except ConfigError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2

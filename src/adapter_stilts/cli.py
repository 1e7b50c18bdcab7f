"""Command line: `run` (the default) runs an experiment; `tasks` lists the registered tasks."""
from __future__ import annotations

import argparse
import logging
import os
import sys
import time

from .config import ConfigError, load_experiment



def _user_errors() -> tuple[type, ...]:
    from .models.loading import ModelError
    from .tasks.readers import DataError
    from .tasks.registry import UnknownTaskError

    return (ConfigError, DataError, ModelError, UnknownTaskError)


def _setup_logging() -> None:
    rank = int(os.environ.get("RANK", "0"))
    logging.basicConfig(level=logging.INFO if rank == 0 else logging.WARNING,
                        format=f"%(asctime)s [rank {rank}] %(levelname)s %(name)s: %(message)s", datefmt="%H:%M:%S")
    for noisy in ("DeepSpeed", "deepspeed", "httpx", "alembic", "mlflow.store.db.utils", "adapters"):
        logging.getLogger(noisy).setLevel(logging.WARNING)
    # transient while a saved adapter is being loaded, before the setup is activated
    logging.getLogger("adapters.model_mixin").setLevel(logging.ERROR)
    import transformers

    # e.g. "pooler weights newly initialised": expected, the e5 pooler is never trained or used
    transformers.logging.set_verbosity_error()


def cmd_run(args: argparse.Namespace) -> int:
    from . import distributed as dist

    log = logging.getLogger("adapter_stilts")
    cfg = load_experiment(args.exp, args.set)  # a bad file fails here, before anything starts
    dist.prepare_environment()
    from .pipeline import StiltsRecipe
    from .training.loop import TrainingError

    recipe = StiltsRecipe(cfg)
    status, t0 = "FAILED", time.time()
    try:
        dist.init()
        recipe.setup()
        recipe.run()
        status = "FINISHED"
        log.info("Experiment '%s' finished in %.1f min; outputs in %s", cfg.name, (time.time() - t0) / 60, recipe.out)
    except _user_errors() as e:
        log.error("%s", e)
        if hasattr(recipe, "parent"):
            recipe.parent.set_tags({"error": str(e)[:5000]})
        return 2
    except TrainingError as e:  # e.g. a NaN loss: the phase stops, earlier results stay as they are
        log.error("%s", e)
        recipe.parent.set_tags({"error": str(e)[:5000]})
        return 1
    finally:
        recipe.cleanup(status)
        dist.shutdown()
    return 0


def cmd_tasks(args: argparse.Namespace) -> int:
    from .config import DataConfig
    from .tasks.data import available_languages, resolve_source
    from .tasks.registry import all_tasks

    source = resolve_source(DataConfig())
    print(f"{'task':10} {'family':15} {'role':13} {'metric':11} offline languages ({source.describe()})")
    for t in all_tasks():
        langs = available_languages(t, source) if source.kind == "local" else ()
        print(f"{t.name:10} {t.family:15} {t.role:13} {t.metric:11} {len(langs):3}  {' '.join(langs)}")
    return 0


def main(argv: list[str] | None = None) -> int:
    _setup_logging()
    parser = argparse.ArgumentParser(prog="run.py", description="English intermediate-task training (STILTs) "
                                     "for zero-shot cross-lingual transfer")
    parser.add_argument("command", nargs="?", default="run", choices=("run", "tasks"))
    parser.add_argument("--exp", default="demo", help="experiments/NAME.yaml, or a path to a YAML file")
    parser.add_argument("--set", action="append", default=[], metavar="KEY.PATH=VALUE",
                        help="override any field of the experiment, e.g. --set training.lr=3e-4")
    parser.add_argument("--local_rank", "--local-rank", type=int, default=None, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    try:
        return {"run": cmd_run, "tasks": cmd_tasks}[args.command](args)
    except ConfigError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2

"""Run one experiment invocation start to end: what `python run.py --exp NAME` does, and what a
sweep does for each cell of a study (in this process, or on any worker that can import this)."""
from __future__ import annotations

import logging
import time

from . import distributed as dist
from .config import ConfigError, ExperimentConfig

log = logging.getLogger("adapter_stilts")


def user_errors() -> tuple[type, ...]:
    """Errors a user can fix (a bad file, missing data, an unknown model or task): exit code 2."""
    from .models.loading import ModelError
    from .tasks.lookup import UnknownTaskError
    from .tasks.readers import DataError

    return (ConfigError, DataError, ModelError, UnknownTaskError)


def run_experiment(cfg: ExperimentConfig, tags: dict | None = None) -> int:
    """Set up and run the recipe; the exit code: 0 finished, 1 a training error (a NaN loss: the
    phase stops, earlier results stay), 2 a user error. The caller shuts the process group down."""
    from .pipeline import StiltsRecipe
    from .training.loop import TrainingError

    recipe = StiltsRecipe(cfg, tags)
    status, t0 = "FAILED", time.time()
    try:
        dist.init()
        recipe.setup()
        recipe.run()
        status = "FINISHED"
        log.info("Experiment '%s' finished in %.1f min; outputs in %s", cfg.name, (time.time() - t0) / 60, recipe.out)
    except user_errors() as e:
        log.error("%s", e)
        if hasattr(recipe, "parent"):
            recipe.parent.set_tags({"error": str(e)[:5000]})
        return 2
    except TrainingError as e:
        log.error("%s", e)
        recipe.parent.set_tags({"error": str(e)[:5000]})
        return 1
    except KeyboardInterrupt:  # Ctrl-C, or a sweep stopping its cells: rerunning the command resumes
        status = "KILLED"
        log.warning("Interrupted: the run ends KILLED; rerun the same command to resume it")
        raise
    finally:
        recipe.cleanup(status)
    return 0

"""The tiny study the sweep tests run: the tiny random model on real data, a pool of three tasks
(QQP has no data offline, so two remain)."""
from __future__ import annotations

from pathlib import Path

import yaml
from conftest import TINY_EXPERIMENT, deep_update


def write_tiny_study(folder: Path, model_dir: Path, name: str, **study: object) -> Path:
    """experiments-style study file `<folder>/<name>.yaml`; `study` changes its study section."""
    experiment = deep_update(TINY_EXPERIMENT, {
        "name": name, "baseline": False, "model": {"name": str(model_dir)},
        "tracking": {"output_dir": str(folder / "outputs")},
        "target": {"tasks": {"xnli": {"train_size": 64, "dev_size": 16, "test_size": 12, "languages": ["de", "sw"]}}},
    })
    experiment["intermediate"] = {"tasks": {}}
    experiment["study"] = {"pool": ["anli", "sst2", "qqp"], "seeds": [7], "sizes": [{"layers": 1}], "examples": 32,
                           "dev_size": 16, "results_dir": str(folder / "results"), **study}
    path = folder / f"{name}.yaml"
    path.write_text(yaml.safe_dump(experiment))
    return path

"""Load the splits an experiment needs, from local files or the Hub, sized by its settings.
Everything is read up front, so a missing file or bad line fails before any compute."""
from __future__ import annotations

import logging
import random
from dataclasses import dataclass, field
from pathlib import Path

from ..config import REPO_ROOT, DataConfig, TaskSettings
from .readers import DataError
from .registry import Task

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class DataSource:
    kind: str  # local | hub
    root: Path | None = None

    def describe(self) -> str:
        return f"local files in {self.root}" if self.kind == "local" else "the Hugging Face Hub"


def resolve_source(cfg: DataConfig) -> DataSource:
    root = Path(cfg.local_dir).expanduser()
    if not root.is_absolute():
        root = (REPO_ROOT / root).resolve()
    if cfg.source == "hub":
        return DataSource("hub")
    if cfg.source == "local" and not root.is_dir():
        raise DataError(f"data.local_dir: folder {root} does not exist (data.source=local)")
    return DataSource("local", root) if root.is_dir() else DataSource("hub")


@dataclass
class TaskData:
    task: Task
    train: list[dict] = field(default_factory=list)
    dev: list[dict] = field(default_factory=list)
    test: dict[str, list[dict]] = field(default_factory=dict)  # language -> examples


def subset(items: list, n: int, seed: int) -> list:
    """A seeded sample of n items in their original order (all of them when n is 0 or too big)."""
    if not n or n >= len(items):
        return items
    keep = sorted(random.Random(seed).sample(range(len(items)), n))
    return [items[i] for i in keep]


def available_languages(task: Task, source: DataSource) -> tuple[str, ...]:
    return task.local_languages(source.root) if source.kind == "local" else task.languages


def test_languages(task: Task, settings: TaskSettings, source: DataSource) -> list[str]:
    available = available_languages(task, source)
    langs = settings.languages or [lang for lang in available if lang != task.train_language]
    unknown = [lang for lang in langs if lang not in available]
    if unknown:
        where = "offline in " + str(source.root) if source.kind == "local" else "in the benchmark"
        raise DataError(f"target.tasks.{task.name}.languages: {', '.join(unknown)} not available {where}; "
                        f"available: {', '.join(available)}")
    return langs


def load_task_data(task: Task, settings: TaskSettings, source: DataSource, seed: int, role: str) -> TaskData:
    def load(split: str, lang: str) -> list[dict]:
        if source.kind == "local":
            examples = task.load_local(source.root, split, lang)
        else:
            examples = task.load_hub(split, lang)
        if not examples:
            raise DataError(f"{task.name}: the {split} split for '{lang}' is empty ({source.describe()})")
        return examples

    data = TaskData(task)
    if task.trains:
        data.train = subset(load("train", task.train_language), settings.train_size, seed)
        data.dev = subset(load("dev", task.train_language), settings.dev_size, seed)
    if role == "target":
        for lang in test_languages(task, settings, source):
            data.test[lang] = subset(load("test", lang), settings.test_size, seed)
    log.info("%s: %d train, %d dev, %d test languages (%s)", task.name, len(data.train), len(data.dev),
             len(data.test), source.describe())
    return data

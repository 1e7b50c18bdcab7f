"""Load the splits an experiment needs, from local files or the Hub, sized by its settings.
Everything is read up front, so a missing file or bad line fails before any compute."""
from __future__ import annotations

import dataclasses
import logging
import random
from dataclasses import dataclass, field
from pathlib import Path

from ..config import REPO_ROOT, ConfigError, DataConfig, TaskSettings
from .readers import DataError
from .registry import POOL_SPLIT, TASKS, Task

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
    test_dev: dict[str, list[dict]] = field(default_factory=dict)  # per-language dev (BUCC's threshold)
    pool: list[dict] = field(default_factory=list)  # the candidates every test query searches (LAReQA, Mewsli-X)
    # language -> each test item's position in its language's whole test split, where a subset was drawn
    # (the prediction files' sidecar: an outside scorer lines them up with the gold)
    test_positions: dict[str, list[int]] = field(default_factory=dict)
    train_languages: tuple[str, ...] = ()  # the languages of `train` (an intermediate task's `languages`)

    @property
    def translated(self) -> bool:
        """Trained on more than (or other than) the task's own language: translate-train data."""
        return self.train_languages not in ((), (self.task.train_language,))


def subset_positions(n_items: int, n: int, seed: int) -> list[int] | None:
    """The positions of a seeded sample of n of n_items, in their original order; None: all of them
    (n is 0 or too big)."""
    if not n or n >= n_items:
        return None
    return sorted(random.Random(seed).sample(range(n_items), n))


def subset(items: list, n: int, seed: int) -> list:
    """A seeded sample of n items in their original order (all of them when n is 0 or too big)."""
    keep = subset_positions(len(items), n, seed)
    return items if keep is None else [items[i] for i in keep]


def available_languages(task: Task, source: DataSource) -> tuple[str, ...]:
    return task.local_languages(source.root) if source.kind == "local" else task.languages


ALL_LANGUAGES = "all"


def _named_languages(task: Task, settings: TaskSettings, source: DataSource, role: str) -> list[str] | None:
    """The languages `languages` names ([all]: every language with data), checked against the data;
    None when it names none (the caller's default)."""
    available = available_languages(task, source)
    if settings.languages == [ALL_LANGUAGES]:
        return list(available)
    unknown = [lang for lang in settings.languages if lang not in available]
    if unknown:
        where = "offline in " + str(source.root) if source.kind == "local" else "in the benchmark"
        translated = sorted(t.name for t in TASKS.values() if t.has_translations)
        hint = f" (translated training data: {', '.join(translated)})" if role == "intermediate" and translated else ""
        raise DataError(f"{role}.tasks.{task.name}.languages: {', '.join(unknown)} not available {where}; "
                        f"available: {', '.join(available)}{hint}")
    return list(settings.languages) or None


def test_languages(task: Task, settings: TaskSettings, source: DataSource, benchmark: str = "xtreme") -> list[str]:
    """The languages a target task is tested in: the experiment's list; by default the benchmark's
    list (those with data); `[all]`: every language with data. As in XTREME, the benchmark lists
    include English, so the task average is the official one (the mean over all its languages)."""
    from .benchmarks import BENCHMARKS

    named = _named_languages(task, settings, source, "target")
    if named is not None:
        return named
    available = available_languages(task, source)
    listed = BENCHMARKS.get(benchmark, {}).get(task.name) or available
    missing = [lang for lang in listed if lang not in available]
    if missing:
        log.info("%s: %s languages without data in %s: %s", task.name, benchmark, source.describe(),
                 " ".join(missing))
    return [lang for lang in listed if lang in available]


def training_languages(task: Task, settings: TaskSettings, source: DataSource) -> tuple[str, ...]:
    """The languages an intermediate task trains on, its own first: `languages` ([all]: every language
    with data); by default the task's list (those with data). English tasks have only English; a task
    with translated training data (e.g. mnli_translated) has English and its translations."""
    langs = _named_languages(task, settings, source, "intermediate")
    if langs is None:
        available = available_languages(task, source)
        langs = [lang for lang in task.languages if lang in available] or [task.train_language]
    return tuple(sorted(set(langs), key=lambda lang: (lang != task.train_language, lang)))


def intermediate_languages(data: list[TaskData]) -> tuple[str, ...]:
    """The languages an intermediate setup trained on (sorted, over its tasks) when any of its tasks
    trained on translated data; () when each trained in its own language only (English): the value
    of every result made before translated data existed."""
    if not any(d.translated for d in data):
        return ()
    return tuple(sorted({lang for d in data for lang in d.train_languages}))


def bind_labels(task: Task, train: list[dict]) -> Task:
    """Tasks with an open label set (CCG supertags) take theirs from the training split."""
    if task.labels or not train or task.family not in ("tagging", "classification"):
        return task
    key = "tags" if task.family == "tagging" else "label"
    values = (v for e in train for v in (e[key] if key == "tags" else [e[key]]))
    labels = tuple(sorted(set(values)))
    log.info("%s: %d labels read from the training split", task.name, len(labels))
    return dataclasses.replace(task, labels=labels)


def load_task_data(task: Task, settings: TaskSettings, source: DataSource, seed: int, role: str,
                   benchmark: str = "xtreme", eval_seed: int | None = None) -> TaskData:
    """`seed` draws the training subset, `eval_seed` (default: `seed`) the dev and test subsets."""
    eval_seed = seed if eval_seed is None else eval_seed

    def load(split: str, lang: str) -> list[dict]:
        if source.kind == "local":
            examples = task.load_local(source.root, split, lang)
        else:
            examples = task.load_hub(split, lang)
        if not examples:
            raise DataError(f"{task.name}: the {split} split for '{lang}' is empty ({source.describe()})")
        return examples

    def sized(split: str, size: int, draw_seed: int, lang: str = task.train_language) -> list[dict]:
        examples = load(split, lang)
        if size > len(examples):  # a test split may be smaller in some languages: all of it is scored
            # a setting to fix, not missing data: intermediate.skip_missing must not leave the task out
            where = f" in {lang}" if lang != task.train_language else ""
            raise ConfigError(f"{role}.tasks.{task.name}.{split}_size: {size} is more than the {len(examples)} "
                              f"examples of its {split} split{where} ({source.describe()}); 0 = the whole split")
        return subset(examples, size, draw_seed)

    data = TaskData(task)
    if task.trains:
        # translated training data: `train_size` examples per language (parallel files give the same items
        # in each language); the dev split that selects checkpoints stays in the task's own language
        data.train_languages = (training_languages(task, settings, source) if role == "intermediate"
                                else (task.train_language,))
        data.train = [e for lang in data.train_languages for e in sized("train", settings.train_size, seed, lang)]
        data.dev = sized("dev", settings.dev_size, eval_seed)
        data.task = bind_labels(task, data.train)
    if role == "target":
        for lang in test_languages(task, settings, source, benchmark):
            examples = load("test", lang)
            keep = subset_positions(len(examples), settings.test_size, eval_seed)
            data.test[lang] = examples if keep is None else [examples[i] for i in keep]
            if keep is not None:
                data.test_positions[lang] = keep
            if not task.trains and "dev" in task.splits:
                data.test_dev[lang] = load("dev", lang)
        if POOL_SPLIT in task.splits:  # one pool for every language: its queries' relevant ids must be in it
            data.pool = load(POOL_SPLIT, "all")
            check_relevant(task, data.test, data.pool)
    log.info("%s: %d train%s, %d dev, %d test languages%s (%s)", task.name, len(data.train),
             f" (in {' '.join(data.train_languages)})" if data.translated else "", len(data.dev), len(data.test),
             f", a pool of {len(data.pool)} candidates" if data.pool else "", source.describe())
    return data


def check_relevant(task: Task, tests: dict[str, list[dict]], pool: list[dict]) -> None:
    """Every answer-retrieval query has relevant candidates, all of them in the pool (found before
    anything is embedded)."""
    ids = {c["id"] for c in pool}
    for lang, queries in tests.items():
        for q in queries:
            missing = [r for r in q["relevant"] if r not in ids]
            if not q["relevant"] or missing:
                why = f"relevant candidates {missing[:3]} are not in the pool" if missing else "no relevant candidate"
                raise DataError(f"{task.name} {lang}: query {q['id']}: {why} ({len(pool)} candidates)")

"""Bad input, generated from the schema: for EVERY field of the experiment schema (and of the study
file) wrong types, values out of the field's declared range and unknown choices, plus unknown
names (task, language, model, DeepSpeed and adapter configs), missing files and folders, sizes
larger than the data and inconsistent combinations. Each goes through the real command line
(`run.py` in this process, on the tiny model): it must exit non-zero with one line naming the
field and the value, before any MLflow run or output folder exists."""
from __future__ import annotations

import dataclasses
import logging
import os
import shutil
import typing

import yaml
from conftest import TINY_EXPERIMENT, deep_update, write_tiny_study

from adapter_stilts.cli import main
from adapter_stilts.config import CHOICES, RANGE, ExperimentConfig
from adapter_stilts.distributed import LAUNCHER_ENV
from adapter_stilts.scaling.study import STUDY_CHOICES, StudyConfig

# a dict of per-task settings is filled in under one task of each section
TASK_KEYS = {"target.tasks": "xnli", "intermediate.tasks": "anli"}
NOT_USER_FIELDS = {"source_file", "full_overrides"}  # full_overrides: read only for full-<experiment> files


def leaf_fields(cls: type, prefix: str = "") -> list[tuple[str, type, dataclasses.Field]]:
    """(dotted path, type, field) of every setting under a schema class."""
    out, hints = [], typing.get_type_hints(cls)
    for f in dataclasses.fields(cls):
        if f.name in NOT_USER_FIELDS:
            continue
        path, tp = f"{prefix}{f.name}", hints[f.name]
        if dataclasses.is_dataclass(tp):
            out += leaf_fields(tp, f"{path}.")
        elif typing.get_origin(tp) is dict:
            out.append((path, tp, f))
            out += leaf_fields(typing.get_args(tp)[1], f"{path}.{TASK_KEYS[path]}.")
        elif typing.get_origin(tp) is list and dataclasses.is_dataclass(typing.get_args(tp)[0]):
            out.append((path, tp, f))
            out += leaf_fields(typing.get_args(tp)[0], f"{path}[0].")
        else:
            out.append((path, tp, f))
    return out


def bad_values(path: str, tp: type, f: dataclasses.Field, choices: dict) -> list[object]:
    """Wrong types, the edges just outside the declared range, an unknown choice."""
    origin = typing.get_origin(tp)
    values: list[object] = {int: ["many", 2.5, [3]], float: ["fast", [0.1]], bool: ["maybe", 3], str: [[1, 2]]}.get(
        tp, [5] if origin in (list, dict) else [])
    limits = f.metadata.get(RANGE, {})
    step = 1 if tp is int else 0.5
    if limits.get("ge") is not None:
        values.append(limits["ge"] - step)
    if limits.get("gt") is not None:
        values.append(limits["gt"])
    if limits.get("le") is not None:
        values.append(limits["le"] + step)
    if limits.get("lt") is not None:
        values.append(limits["lt"])
    if path in choices:
        values.append("no_such_choice")
    return values


def _set(path: str, value: object) -> str:
    return f"{path}={yaml.safe_dump(value, default_flow_style=True).strip().removesuffix('...').strip()}"


# unknown names, missing files, sizes larger than the data, inconsistent combinations:
# (overrides, what the one line must name)
NAMED_CASES = [
    (["model.name=./no/such/model"], "model.name"),
    (["model.name=not a model!"], "model.name"),
    (["model.name=xlm-roberta-bas"], "model.name"),  # a Hub id that cannot be resolved offline
    (["training.deepspeed=zero7"], "training.deepspeed"),
    (["adapter.config=no_such_adapter"], "adapter.config"),
    (["data.local_dir=/no/such/folder"], "data.local_dir"),
    (["intermediate.name=bad name!"], "intermediate.name"),
    (["intermediate.adapter=/no/such/adapter"], "intermediate.adapter"),
    (["target.tasks.xnli.languages=[xx]"], "target.tasks.xnli.languages"),
    (["intermediate.tasks.anli.languages=[de]"], "intermediate.tasks.anli.languages"),  # no translations
    (["target.tasks.nosuchtask.train_size=5"], "target.tasks.nosuchtask"),
    (["intermediate.tasks.nosuchtask.train_size=5"], "intermediate.tasks.nosuchtask"),
    (["intermediate.tasks.anli.train_size=100000000"], "intermediate.tasks.anli.train_size"),
    (["target.tasks.xnli.dev_size=100000000"], "target.tasks.xnli.dev_size"),
    (["model.max_length=100000"], "max_length"),
    (["training.batch_size=30", "training.micro_batch_size=8"], "training.batch_size"),
    (["mode=full", "intermediate.strategy=fusion"], "intermediate.strategy"),
    (["mode=full", "intermediate.strategy=average"], "intermediate.strategy"),
    (["intermediate.strategy=untrained"], "intermediate.strategy"),  # with intermediate tasks
    (["intermediate.mlm_ratio=0.5"], "intermediate.mlm_ratio"),  # without the mlm task
    (["target.tasks={}"], "target.tasks"),
    (["training.lrr=1e-3"], "training.lrr"),
]


def _attempt(args: list[str], tmp_path, capsys, caplog) -> tuple[int, str, list[str]]:
    """Run the command line here; (exit code, every error line it wrote)."""
    saved = dict(os.environ)
    os.environ["MLFLOW_TRACKING_URI"] = f"sqlite:///{tmp_path / 'mlflow.db'}"
    os.environ["HF_HUB_OFFLINE"] = "1"  # a Hub id is judged from the cache, never from the network
    for k in LAUNCHER_ENV:
        os.environ.pop(k, None)
    caplog.clear()
    try:
        code = main(args)
    except SystemExit as e:  # argparse
        code = e.code
    finally:
        os.environ.clear()
        os.environ.update(saved)
    err = capsys.readouterr().err
    lines = [ln for ln in err.splitlines() if ln.startswith("error:")]
    lines += [r.getMessage() for r in caplog.records if r.levelno >= logging.ERROR]
    return code, err, lines


def _check(args, expected: list[str], tmp_path, capsys, caplog, problems: list[str]) -> None:
    code, err, lines = _attempt(args, tmp_path, capsys, caplog)
    what = " ".join(args[2:])
    if code in (0, None):
        problems.append(f"{what}: accepted (exit {code})")
    elif "Traceback" in err or len(lines) != 1 or "\n" in lines[0]:
        problems.append(f"{what}: not one error line: {lines or err[-500:]}")
    elif not all(e in lines[0] for e in expected):
        problems.append(f"{what}: the line does not name {expected}: {lines[0]}")
    if (tmp_path / "mlflow.db").exists() or (tmp_path / "outputs").exists():
        problems.append(f"{what}: an MLflow store or output folder was created")
        (tmp_path / "mlflow.db").unlink(missing_ok=True)  # the next value is judged on its own
        shutil.rmtree(tmp_path / "outputs", ignore_errors=True)


def test_every_bad_value_of_every_field_is_refused_before_any_run(tmp_path, tiny_model_dir, capsys, caplog):
    exp = deep_update(TINY_EXPERIMENT, {"model": {"name": str(tiny_model_dir)},
                                        "tracking": {"output_dir": str(tmp_path / "outputs")}})
    path = tmp_path / "exp.yaml"
    path.write_text(yaml.safe_dump(exp))
    not_a_model = tmp_path / "not-a-model"
    not_a_model.mkdir()
    problems: list[str] = []
    fields = leaf_fields(ExperimentConfig)
    tried = 0
    for field_path, tp, f in fields:
        for value in bad_values(field_path, tp, f, CHOICES):
            shown = str(value) if not isinstance(value, str) else value
            _check(["--exp", str(path), "--set", _set(field_path, value)], [field_path, shown], tmp_path, capsys,
                   caplog, problems)
            tried += 1
    for overrides, name in [*NAMED_CASES, ([f"model.name={not_a_model}"], "model.name")]:
        _check(["--exp", str(path), *(a for o in overrides for a in ("--set", o))], [name], tmp_path, capsys,
               caplog, problems)
        tried += 1
    print(f"experiment schema: {len(fields)} fields, {tried} bad values tried; refused before any run: "
          f"{tried - len(problems)}")
    assert not problems, "\n".join(problems)


def test_every_bad_value_of_every_study_field_is_refused_before_any_run(tmp_path, tiny_model_dir, capsys, caplog):
    study = write_tiny_study(tmp_path, tiny_model_dir, "badstudy")
    problems: list[str] = []
    fields = leaf_fields(StudyConfig, "study.")
    tried = 0
    for field_path, tp, f in fields:
        for value in bad_values(field_path, tp, f, STUDY_CHOICES):
            _check(["sweep", "--exp", str(study), "--dry-run", "--set", _set(field_path, value)],
                   [field_path.split("[")[0]], tmp_path, capsys, caplog, problems)
            tried += 1
    print(f"study schema: {len(fields)} fields, {tried} bad values tried; refused: {tried - len(problems)}")
    assert not problems, "\n".join(problems)


def test_a_bad_data_file_is_named_by_file_and_line_before_any_run(tmp_path, tiny_model_dir, capsys, caplog):
    """Found at load time, before the MLflow run: here an empty line in a Tatoeba file (each reader's
    own errors are tested in tests/tasks)."""
    folder = tmp_path / "data" / "tatoeba"
    folder.mkdir(parents=True)
    (folder / "tatoeba.deu-eng.deu").write_text("Hallo.\n\nDanke.\n", encoding="utf-8")
    (folder / "tatoeba.deu-eng.eng").write_text("Hello.\nYes.\nThanks.\n", encoding="utf-8")
    exp = deep_update(TINY_EXPERIMENT, {"model": {"name": str(tiny_model_dir)}, "baseline": False,
                                        "data": {"local_dir": str(tmp_path / "data")},
                                        "tracking": {"output_dir": str(tmp_path / "outputs")}})
    exp["intermediate"] = {"tasks": {}}
    exp["target"] = {"tasks": {"tatoeba": {"languages": ["de"]}}}
    path = tmp_path / "exp.yaml"
    path.write_text(yaml.safe_dump(exp))
    problems: list[str] = []
    _check(["--exp", str(path)], [f"{folder / 'tatoeba.deu-eng.deu'}:2: empty sentence"], tmp_path, capsys, caplog,
           problems)
    assert not problems, problems

import copy
import os
from pathlib import Path

import pytest

from adapter_stilts.config import EXPERIMENTS_DIR, ConfigError, ExperimentConfig, flatten, load_experiment
from adapter_stilts.models.loading import ModelError, check_model_name
from adapter_stilts.pipeline import validate

PAPER_TASKS = ("anli_plus", "mnli", "qqp", "squad", "squad_v2", "hellaswag", "ccg", "cosmosqa", "commonsenseqa")
STUDIES = sorted(p for p in EXPERIMENTS_DIR.glob("*.yaml") if "\nstudy:" in p.read_text())  # run by `sweep`
FILES = sorted(p for p in EXPERIMENTS_DIR.glob("*.yaml") if not p.stem.endswith("-TASK") and p not in STUDIES)
TEMPLATES = sorted(p for p in EXPERIMENTS_DIR.glob("*-TASK.yaml"))


@pytest.mark.parametrize("path", FILES, ids=lambda p: p.stem)
def test_every_experiment_file_loads_and_validates(path: Path):
    cfg = load_experiment(path.stem)
    assert isinstance(cfg, ExperimentConfig) and cfg.name == path.stem
    validate(cfg)
    full = load_experiment(f"full-{path.stem}")  # every experiment also runs as full fine-tuning
    assert full.mode == "full" and full.name == f"full-{path.stem}"
    assert max(full.training.lr, full.intermediate.lr) < 1e-3  # full_overrides: no adapter rates
    if cfg.intermediate.strategy in ("average", "fusion"):  # they combine adapters: no full- variant
        with pytest.raises(ConfigError, match="combines adapters; it needs mode: adapters"):
            validate(full)
    else:
        validate(full)


@pytest.mark.parametrize("path", STUDIES, ids=lambda p: p.stem)
def test_every_study_file_loads_and_is_refused_as_an_experiment(path: Path):
    from adapter_stilts.scaling.study import load_study

    study = load_study(path.stem)
    assert study.name == path.stem and study.config.pool and study.config.seeds
    for i, size in enumerate(study.config.sizes):
        model = size.model or study.experiment.model.name
        if model.startswith(("xlm-roberta", "facebook/")) and os.environ.get("HF_HUB_OFFLINE") == "1":
            # a GPU cluster's study (scaling-xlmr): its Hub models cannot be checked offline, and say so
            with pytest.raises(ModelError, match="not in the local Hugging Face cache"):
                check_model_name(model)
            continue
        check_model_name(model)
    experiment = copy.deepcopy(study.experiment)
    if experiment.model.name.startswith(("xlm-roberta", "facebook/")):
        experiment.model.name = "me5-small"  # everything else of it is checked here
    validate(experiment)
    with pytest.raises(ConfigError, match="a study .* run it with `python run.py sweep"):
        load_experiment(path.stem)


@pytest.mark.parametrize("template", TEMPLATES, ids=lambda p: p.stem)
@pytest.mark.parametrize("task", PAPER_TASKS)
def test_every_template_loads_for_each_paper_task(template: Path, task: str):
    name = template.stem.replace("TASK", task)
    cfg = load_experiment(name)
    assert cfg.name == name and list(cfg.intermediate.tasks)[0] == task
    validate(cfg)


def test_matrix_experiments_share_the_baseline_settings():
    base, multi = load_experiment("baseline"), load_experiment("multitask9")
    assert multi.target == base.target and multi.training == base.training
    assert set(multi.intermediate.tasks) == set(PAPER_TASKS) and multi.intermediate.strategy == "multitask"
    with pytest.raises(ConfigError, match="a template; run it as [a-z]+-<task>"):
        load_experiment(str(TEMPLATES[0]))


def test_override_nested_fields_and_task_settings():
    cfg = load_experiment("demo", ["training.lr=3e-4", "target.tasks.xnli.languages=[de,fr]", "mode=full",
                                   "target.tasks.xnli.train_size=64"])
    assert cfg.training.lr == 3e-4 and cfg.mode == "full"
    assert cfg.target.tasks["xnli"].languages == ["de", "fr"]
    assert cfg.target.tasks["xnli"].train_size == 64
    assert cfg.target.tasks["udpos"].train_size == 1500  # untouched siblings survive


def test_flatten_gives_dotted_params():
    flat = flatten(load_experiment("demo").to_dict())
    assert flat["training.deepspeed"] == "zero2"
    assert flat["target.tasks.xnli.train_size"] == 3000


def _write(tmp_path, text: str) -> str:
    p = tmp_path / "bad.yaml"
    p.write_text(text)
    return str(p)


@pytest.mark.parametrize("text, message", [
    ("name: x\ntrainig: {lr: 1}\n", "unknown key 'trainig'; did you mean 'training'?"),
    ("name: x\ntraining: {lrr: 0.1}\n", "unknown key 'training.lrr'; did you mean 'training.lr'"),
    ("name: x\ntraining: {batch_size: many}\n", "training.batch_size: expected int, got str 'many'"),
    ("name: x\ntraining: {bf16: 1}\n", "training.bf16: expected true or false"),
    ("name: x\nmode: partial\n", "mode: 'partial' is not one of adapters, full"),
    ("name: x\ntarget: {tasks: {xnli: {languages: 3}}}\n", "target.tasks.xnli.languages: expected a list"),
    ("- just\n- a list\n", "the top level must be a mapping"),
    ("name: [unclosed\n", "not valid YAML"),
])
def test_bad_files_name_the_field(tmp_path, text, message):
    with pytest.raises(ConfigError) as e:
        load_experiment(_write(tmp_path, text))
    assert message in str(e.value)
    assert "bad.yaml" in str(e.value)


@pytest.mark.parametrize("override, message", [
    (["target.tasks.xnlii.train_size=5"], "target.tasks.xnlii: unknown task 'xnlii'. Did you mean 'xnli'?"),
    (["intermediate.tasks=[tatoeba]"], "intermediate.tasks.tatoeba: a retrieval task has no training data"),
    (["training.deepspeed=zero9"], "training.deepspeed: no DeepSpeed config 'zero9'"),
    (["model.name=not a model!"], "model.name: 'not a model!' is neither"),
    (["model.name=./no/such/folder"], "model.name: local folder './no/such/folder' does not exist"),
    (["model.name=FacebookAI/xlm-roberta-base"], "not in the local Hugging Face cache and cannot be fetched offline"),
    (["training.batch_size=30", "training.micro_batch_size=8"], "not a multiple of micro_batch_size=8"),
    (["target.tasks={}"], "target.tasks: at least one target task is required"),
    (["intermediate.lr=-1e-3"], "intermediate.lr: -0.001 is out of range (must be >= 0)"),
    (["intermediate.fusion_lr=-1e-5"], "intermediate.fusion_lr: -1e-05 is out of range (must be >= 0)"),
])
def test_validation_fails_before_compute(override, message, monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(ConfigError) as e:
        validate(load_experiment("demo", override))
    assert message in str(e.value)


def test_zero_stage_out_of_range(tmp_path):
    ds = tmp_path / "zero7.json"
    ds.write_text('{"zero_optimization": {"stage": 7}}')
    cfg = load_experiment("demo", [f"training.deepspeed={ds}"])
    with pytest.raises(ConfigError, match="stage must be 0, 1, 2 or 3, got 7"):
        validate(cfg)


def test_unknown_experiment_name_suggests():
    with pytest.raises(ConfigError, match="Did you mean 'demo'"):
        load_experiment("dmeo")


def test_full_variant_applies_full_overrides_and_set_wins(tmp_path, monkeypatch):
    from adapter_stilts import config

    base, full = load_experiment("multitask9"), load_experiment("full-multitask9")
    assert base.full_overrides  # the matrix states its full fine-tuning rates (inherited from baseline)
    assert full.mode == "full" and full.name == "full-multitask9"
    assert full.training.lr < base.training.lr / 10 and full.intermediate.lr < base.intermediate.lr
    assert full.model.dropout > 0 and base.model.dropout == 0
    assert base.training.lr == 3e-3  # the adapters experiment itself is untouched
    assert load_experiment("full-multitask9", ["training.lr=7e-5"]).training.lr == 7e-5  # --set wins
    (tmp_path / "demo.yaml").write_text((EXPERIMENTS_DIR / "demo.yaml").read_text())
    (tmp_path / "badfull.yaml").write_text('extends: demo\nname: badfull\nfull_overrides: ["training.lrr=1e-4"]\n')
    monkeypatch.setattr(config, "EXPERIMENTS_DIR", tmp_path)
    assert load_experiment("badfull").training.lr == 3e-3  # the adapters experiment still loads
    with pytest.raises(ConfigError, match=r"full_overrides \['training.lrr=1e-4'\].*unknown key 'training.lrr'"):
        load_experiment("full-badfull")

"""Cache keys from declared fields: every setting is declared as deciding a result or not, and
only the deciding ones change a key."""
from dataclasses import replace

import pytest

from adapter_stilts.cache_keys import (
    MODEL_OTHER_FIELDS,
    MODEL_RESULT_FIELDS,
    TRAINING_OTHER_FIELDS,
    TRAINING_RESULT_FIELDS,
    intermediate_key,
    model_part,
    target_key,
    undeclared_fields,
)
from adapter_stilts.config import TaskSettings, load_experiment


def test_every_training_and_model_field_is_declared():
    assert undeclared_fields() == set()


def _keys(cfg):
    settings = {"mnli": TaskSettings(train_size=400)}
    inter = intermediate_key(cfg, "/m", settings, 1e-3, {"mnli": ["a", "b"]})
    return inter, target_key(cfg, inter, "xnli", TaskSettings(), seed=cfg.seed), \
        target_key(cfg, inter, "tatoeba", TaskSettings(), scored_only=True)


CHANGED = {"batch_size": 3, "lr": 0.5, "weight_decay": 0.3, "warmup_ratio": 0.5, "epochs": 9, "bf16": False,
           "group_by_length": True, "eval_every": 7, "micro_batch_size": 1, "packing": False, "log_every": 1,
           "deepspeed": "zero3", "checkpoint_every": 3, "keep_checkpoints": 9,
           "name": "other", "layers": 4, "dropout": 0.3, "max_length": 17, "classifier_pooling": "cls",
           "attention": "sdpa"}


@pytest.mark.parametrize("field", [*TRAINING_RESULT_FIELDS, *TRAINING_OTHER_FIELDS, *MODEL_RESULT_FIELDS,
                                   *MODEL_OTHER_FIELDS])
def test_only_result_fields_change_keys(field):
    cfg = load_experiment("demo")
    section = "training" if field in (*TRAINING_RESULT_FIELDS, *TRAINING_OTHER_FIELDS) else "model"
    changed = load_experiment("demo")
    setattr(changed, section, replace(getattr(cfg, section), **{field: CHANGED[field]}))
    before, after = _keys(cfg), _keys(changed)
    deciding = field in (*TRAINING_RESULT_FIELDS, *MODEL_RESULT_FIELDS)
    assert (before[0] != after[0]) == deciding and (before[1] != after[1]) == deciding
    if field == "dropout":  # a retrieval score, dropout off, depends on it only through the intermediate key
        assert target_key(cfg, "same", "tatoeba", TaskSettings(), scored_only=True) == \
            target_key(changed, "same", "tatoeba", TaskSettings(), scored_only=True)


def test_whole_model_layers_keep_the_keys_made_before_the_field():
    cfg = load_experiment("demo")
    assert "layers" not in model_part(cfg) and model_part(cfg, scored_only=True).keys() == {
        "name", "max_length", "classifier_pooling"}
    cfg.model.layers = 4
    assert model_part(cfg)["layers"] == 4


def test_translated_languages_change_the_intermediate_key_and_english_keys_stay():
    cfg = load_experiment("demo")
    settings, data = {"mnli": TaskSettings(train_size=400)}, {"mnli": ["a", "b"]}
    english = intermediate_key(cfg, "/m", settings, 1e-3, data)
    assert intermediate_key(cfg, "/m", settings, 1e-3, data, {}) == english  # keys made before still hold
    assert intermediate_key(cfg, "/m", settings, 1e-3, data, {"mnli": ["en", "de"]}) != english


def test_targets_with_the_same_training_data_share_a_training_key():
    from adapter_stilts.cache_keys import target_training_key
    from adapter_stilts.tasks.lookup import get_task

    cfg = load_experiment("demo")

    def key(task: str, **settings) -> str:
        t = get_task(task)
        return target_training_key(cfg, "inter", t.train_data or t.name, [t.family, list(t.labels)],
                                   TaskSettings(**settings), data=["train", "dev"])

    assert get_task("xquad").train_data == get_task("mlqa").train_data == "squad"
    assert key("xquad") == key("mlqa") != key("tydiqa")
    # what a target is scored on does not decide its training; what it trains on does
    assert key("xquad", test_size=5, languages=["de"]) == key("mlqa")
    assert key("xquad", train_size=5) != key("mlqa") and key("xquad", max_length=384) != key("mlqa")

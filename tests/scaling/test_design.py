"""Study files and the design: validation naming the field, balanced subsets, the cells and the
experiment each cell runs."""
from __future__ import annotations

from collections import Counter
from itertools import combinations

import pytest
import yaml

from adapter_stilts.config import ConfigError
from adapter_stilts.scaling.design import balanced_subsets, cell_config, cells, subsets_by_k
from adapter_stilts.scaling.study import load_study

POOL = ["anli_plus", "mnli", "squad", "squad_v2", "hellaswag", "cosmosqa", "commonsenseqa", "sst2", "siqa"]


@pytest.mark.parametrize("k,count", [(2, 4), (3, 4), (5, 4), (7, 4), (2, 20), (8, 9)])
def test_subsets_are_distinct_and_balanced(k, count):
    subsets = balanced_subsets(POOL, k, count, seed=3)
    assert len(subsets) == min(count, len(list(combinations(POOL, k))))
    assert len(set(subsets)) == len(subsets) and all(len(s) == k and list(s) == sorted(s) for s in subsets)
    uses = Counter(t for s in subsets for t in s)
    counts = [uses.get(t, 0) for t in POOL]
    assert max(counts) - min(counts) <= 1, uses  # every task about equally often


def test_subsets_are_reproducible_and_depend_on_the_seed():
    assert balanced_subsets(POOL, 3, 4, seed=1) == balanced_subsets(POOL, 3, 4, seed=1)
    assert balanced_subsets(POOL, 3, 4, seed=1) != balanced_subsets(POOL, 3, 4, seed=2)


def test_k1_is_every_single_task_and_the_whole_pool_is_one_subset():
    assert balanced_subsets(POOL, 1, 4, 0) == [(t,) for t in POOL]
    assert balanced_subsets(POOL, 9, 4, 0) == [tuple(sorted(POOL))]
    assert balanced_subsets(POOL, 0, 4, 0) == [()]


def _study_file(tmp_path, study: dict, **experiment) -> str:
    path = tmp_path / "study.yaml"
    path.write_text(yaml.safe_dump({"extends": "baseline", "name": "study", "baseline": False,
                                    "target": {"tasks": {"xnli": {"train_size": 10}}}, **experiment,
                                    "study": study}))
    return str(path)


def test_cells_of_a_study_with_sizes_and_controls(tmp_path):
    study = load_study(_study_file(tmp_path, {"pool": POOL, "k": [0, 1, 2], "subsets_per_k": 3, "seeds": [1, 2],
                                              "sizes": [{"layers": 12}, {"layers": 4, "k": [0, 9]}]}))
    all_cells = cells(study, POOL)
    per = Counter((c.layers, c.k, c.strategy) for c in all_cells)
    # 12 layers: none + untrained + 9 singles + 3 pairs + the whole pool; 4 layers: none + untrained + whole pool
    assert per == Counter({(12, 0, "none"): 2, (12, 0, "untrained"): 2, (12, 1, "each"): 18,
                           (12, 2, "multitask"): 6, (12, 9, "multitask"): 2, (4, 0, "none"): 2,
                           (4, 0, "untrained"): 2, (4, 9, "multitask"): 2})
    assert [c.seed for c in all_cells] == sorted(c.seed for c in all_cells)  # seed-major
    assert len({c.id for c in all_cells}) == len(all_cells)
    assert set(subsets_by_k(study.config, POOL)) == {0, 1, 2, 9}


def test_a_cell_runs_its_size_seed_tasks_and_budget(tmp_path):
    study = load_study(_study_file(tmp_path, {"pool": POOL[:4], "k": [0, 2], "seeds": [5], "examples": 300,
                                              "budget": "fixed_total", "sizes": [{"layers": 4}]},
                                   retrieval={"layer": 12}))
    by_k = {c.k: c for c in cells(study, POOL[:4]) if c.strategy != "untrained"}
    cfg = cell_config(study, by_k[2])
    assert (cfg.model.layers, cfg.seed, cfg.baseline, cfg.intermediate.strategy) == (4, 5, False, "multitask")
    assert {t: s.train_size for t, s in cfg.intermediate.tasks.items()} == {t: 150 for t in by_k[2].tasks}
    assert cfg.tracking.experiment == "study" and cfg.name == f"study-{by_k[2].id}"
    assert cfg.retrieval.layer == 4  # layer 12 of a 4-layer truncation is its last
    assert cell_config(study, by_k[0]).baseline and not cell_config(study, by_k[0]).intermediate.tasks
    assert study.experiment.model.layers == 0  # the cells' copies, not the study's experiment, change


@pytest.mark.parametrize("study,message", [
    ({"pool": POOL, "kk": [1]}, "unknown key 'study.kk'; did you mean 'study.k'"),
    ({"pool": POOL, "k": [0, 10]}, "study.k: 10 is outside 0..9"),
    ({"pool": POOL, "budget": "per_tsk"}, "study.budget: 'per_tsk' is not one of per_task, fixed_total"),
    ({"pool": ["mnli", "no_such_task"]}, "study.pool\\[1\\]"),
    ({"pool": ["mnli", "tatoeba"]}, "study.pool\\[1\\]: tatoeba is a retrieval task with no training data"),
    ({"pool": POOL, "seeds": []}, "study.seeds"),
    ({"pool": POOL, "sizes": [{"layers": -1}]}, "study.sizes\\[0\\].layers"),
    ({"pool": POOL, "sizes": [{"layers": 4, "k": [0, 12]}]}, "study.sizes\\[0\\].k: 12 is outside"),
    ({"pool": []}, "study.pool: list"),
    ({"pool": POOL, "resources": {"cpus": 0}}, "study.resources.cpus: 0.0 is out of range \\(must be > 0\\)"),
    ({"pool": POOL, "seeds": [42, -1]}, "study.seeds\\[1\\]: -1 is out of range"),
    ({"pool": POOL, "dev_size": 0}, "study.dev_size: 0 is out of range"),
    ({"pool": POOL, "resources": {"gpu": 1}}, "unknown key 'study.resources.gpu'; did you mean 'study.resources.gpus'"),
    ({"pool": POOL, "resources": {"gpus": 1, "ranks": 2}}, "study.resources.ranks: 2 ranks on 1.0 GPUs"),
    ({"pool": POOL, "resources": {"retries": -1}}, "study.resources.retries: -1 is out of range"),
])
def test_a_bad_study_fails_before_compute_naming_the_field(tmp_path, study, message):
    with pytest.raises(ConfigError, match=message):
        load_study(_study_file(tmp_path, study))


def test_overrides_reach_the_study_and_the_experiment(tmp_path):
    study = load_study(_study_file(tmp_path, {"pool": POOL}), ["study.seeds=[7]", "training.lr=0.01"])
    assert study.config.seeds == [7] and study.experiment.training.lr == 0.01
    with pytest.raises(ConfigError, match="study.subsets_per_k: expected int"):
        load_study(_study_file(tmp_path, {"pool": POOL}), ["study.subsets_per_k=many"])


def test_an_experiment_is_not_a_study(tmp_path):
    with pytest.raises(ConfigError, match="not a study"):
        load_study("baseline")


def test_every_size_needs_its_baseline(tmp_path):
    with pytest.raises(ConfigError, match="study.k: must include 0"):
        load_study(_study_file(tmp_path, {"pool": POOL, "k": [1, 2]}))
    with pytest.raises(ConfigError, match="study.sizes\\[1\\].k: must include 0"):
        load_study(_study_file(tmp_path, {"pool": POOL, "sizes": [{"layers": 4}, {"layers": 2, "k": [1]}]}))

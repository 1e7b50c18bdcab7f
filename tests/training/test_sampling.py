from collections import Counter

import pytest

from adapter_stilts.training.batching import global_batches
from adapter_stilts.training.sampling import plan_steps, task_probabilities

SIZES = {"big": 9000, "mid": 900, "small": 100}


def test_sampler_probabilities_follow_jiant_definitions():
    prop = task_probabilities(SIZES, "proportional")
    assert prop["big"] == pytest.approx(0.9) and prop["small"] == pytest.approx(0.01)
    capped = task_probabilities(SIZES, "capped", cap=900)
    assert capped["big"] == pytest.approx(capped["mid"]) and capped["small"] == pytest.approx(100 / 1900)
    temp = task_probabilities(SIZES, "temperature", temperature=2.0)
    assert temp["big"] / temp["mid"] == pytest.approx((9000 / 900) ** 0.5)
    assert list(task_probabilities(SIZES, "uniform").values()) == pytest.approx([1 / 3] * 3)
    with pytest.raises(ValueError, match="unknown sampler"):
        task_probabilities(SIZES, "roundrobin")


def test_single_task_plan_is_epochs_of_seeded_passes():
    lengths = [i % 50 + 1 for i in range(100)]
    plan = plan_steps({"t": lengths}, 16, epochs=2, seed=3, group_by_length=False)
    assert [b for _, b in plan] == global_batches(lengths, 16, 3, False) + global_batches(lengths, 16, 4, False)


def test_multitask_plan_is_seeded_and_draws_tasks_in_proportion():
    lengths = {t: [5] * n for t, n in {"a": 3200, "b": 800}.items()}
    plan = plan_steps(lengths, 16, epochs=1, seed=0, group_by_length=False, sampler="proportional")
    assert plan == plan_steps(lengths, 16, epochs=1, seed=0, group_by_length=False, sampler="proportional")
    assert len(plan) == 3200 // 16 + 800 // 16  # as many steps as training them one after another
    share = Counter(t for t, _ in plan)["a"] / len(plan)
    assert 0.72 < share < 0.88  # 0.8 expected
    uniform = Counter(t for t, _ in plan_steps(lengths, 16, 1, 0, False, "uniform"))
    assert 0.4 < uniform["a"] / len(plan) < 0.6
    # a task that runs out of batches starts a new, reshuffled pass rather than stopping: b's draws
    # run through whole passes, each serving every example of b once, the second in a new order
    ids_b = [b for t, b in plan_steps(lengths, 16, 1, 0, False, "uniform") if t == "b"]
    per_pass = 800 // 16
    passes = [ids_b[s: s + per_pass] for s in range(0, len(ids_b) - per_pass + 1, per_pass)]
    assert len(passes) >= 2
    assert all(sorted(i for batch in p for i in batch) == list(range(800)) for p in passes)
    assert passes[0] != passes[1]


def test_fixed_share_for_the_mlm_stream():
    probs = task_probabilities({"mnli": 900, "squad": 100, "mlm": 5000}, "proportional", fixed={"mlm": 0.5})
    assert probs["mlm"] == 0.5 and probs["mnli"] == pytest.approx(0.45) and probs["squad"] == pytest.approx(0.05)

"""The sweep's cost model: measured unit times, scaled to sizes and tasks not measured yet."""
from __future__ import annotations

import pytest

from adapter_stilts.scaling.sweep import UnitCosts


def test_intermediate_cost_is_per_task_where_measured_and_scaled_by_layers():
    costs = UnitCosts(per_example={("m", 12): [0.1, 0.1, 0.4]},
                      per_task_example={("hellaswag", "m", 12): [0.5]})
    # hellaswag at its own rate (multiple choice: several sequences per example), mnli at the median of all phases
    assert costs.intermediate({"hellaswag": 10, "mnli": 10}, "m", 12) == pytest.approx(10 * 0.5 + 10 * 0.1)
    assert costs.intermediate({"hellaswag": 10}, "m", 6) == pytest.approx(10 * 0.5 * 6 / 12)
    assert costs.intermediate({"mnli": 10}, "other-model", 12) is None  # never measured: no guess


def test_target_cost_prefers_the_same_protocol_then_scales_by_layers():
    costs = UnitCosts(targets={("xnli", "m", 12, "p1"): [100.0, 120.0], ("xnli", "m", 8, "p2"): [30.0]})
    assert costs.target("xnli", "m", 12, "p1") == pytest.approx(110.0)
    assert costs.target("xnli", "m", 4, "p1") == pytest.approx(110.0 * 4 / 12)  # same protocol, another size
    assert costs.target("xnli", "m", 8, "p3") == pytest.approx(30.0 * 8 / 8)  # another protocol: nearest size
    assert costs.target("udpos", "m", 12, "p1") is None

"""DeepSpeed config handling: one rank runs ZeRO-1/2 as stage 0 (nothing to partition), but keeps
ZeRO-3 and optimizer offloading, whose point is memory."""
import pytest

from adapter_stilts.training.engine import load_ds_config, single_rank_config, zero_stage


@pytest.mark.parametrize("name,world,stage", [("zero1", 1, 0), ("zero2", 1, 0), ("zero2", 2, 2), ("zero3", 1, 3),
                                              ("zero0", 1, 0)])
def test_single_rank_runs_zero_1_and_2_as_stage_0(name, world, stage):
    cfg = load_ds_config(name)
    assert zero_stage(single_rank_config(cfg, world)) == stage
    assert zero_stage(cfg) == int(name[-1])  # the loaded config itself is not changed


def test_offloading_keeps_its_stage_on_one_rank():
    cfg = load_ds_config("zero2")
    cfg["zero_optimization"]["offload_optimizer"] = {"device": "cpu"}
    assert zero_stage(single_rank_config(cfg, 1)) == 2

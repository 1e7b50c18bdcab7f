import torch

from adapter_stilts.tasks.collate import collate, feature_length


def test_collate_pads_dynamically_and_masks_labels():
    feats = [{"input_ids": [0, 5, 2], "labels": [-100, 3, -100]}, {"input_ids": [0, 2], "labels": [-100, -100]}]
    b = collate(feats, pad_id=1)
    assert b["input_ids"].tolist() == [[0, 5, 2], [0, 2, 1]]
    assert b["attention_mask"].tolist() == [[1, 1, 1], [1, 1, 0]]
    assert b["labels"].tolist() == [[-100, 3, -100], [-100, -100, -100]]
    cls = collate([{"input_ids": [0, 2], "labels": 2}], pad_id=1)
    assert cls["labels"].dtype == torch.long and cls["labels"].tolist() == [2]


def test_feature_length_counts_every_choice_of_a_multiple_choice_feature():
    assert feature_length({"input_ids": [0, 5, 2]}) == 3
    assert feature_length({"input_ids": [[0, 5, 2], [0, 2]]}) == 5

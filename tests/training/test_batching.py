from adapter_stilts.training.batching import global_batches, micro_batches


def test_global_batches_are_seeded_complete_and_length_grouped():
    lengths = [(i * 37) % 101 + 1 for i in range(1000)]
    a = global_batches(lengths, 16, seed=1, group_by_length=True)
    assert a == global_batches(lengths, 16, seed=1, group_by_length=True)
    assert a != global_batches(lengths, 16, seed=2, group_by_length=True)
    assert len(a) == 1000 // 16 and all(len(b) == 16 for b in a)
    assert len({i for b in a for i in b}) == 62 * 16  # no example twice
    spread = sum(max(lengths[i] for i in b) - min(lengths[i] for i in b) for b in a) / len(a)
    random_spread = sum(max(lengths[i] for i in b) - min(lengths[i] for i in b)
                        for b in global_batches(lengths, 16, seed=1, group_by_length=False)) / len(a)
    assert spread < random_spread / 5  # grouping is what removes the padding waste


def test_micro_batches_partition_the_global_batch_across_ranks_and_accumulation():
    batch = list(range(16))
    one_rank = micro_batches(batch, 0, 1, 2)
    two_ranks = micro_batches(batch, 0, 2, 1) + micro_batches(batch, 1, 2, 1)
    assert one_rank == two_ranks == [list(range(8)), list(range(8, 16))]

"""The real offline data, read through the registered tasks."""
from collections import Counter

import pytest

from adapter_stilts.config import TaskSettings
from adapter_stilts.tasks.catalog.nli import NLI_LABELS
from adapter_stilts.tasks.data import DataSource, load_task_data, subset
from adapter_stilts.tasks.lookup import UnknownTaskError, get_task
from adapter_stilts.tasks.readers import DataError


def test_unknown_task_lists_known():
    with pytest.raises(UnknownTaskError, match="Did you mean 'udpos'"):
        get_task("udops")


def test_xnli_test_gets_gold_labels_from_the_labelled_english_file(data_dir):
    task = get_task("xnli")
    de = task.load_local(data_dir, "test", "de")
    sw = task.load_local(data_dir, "test", "sw")
    assert len(de) == len(sw) == 5010
    assert [e["label"] for e in de] == [e["label"] for e in sw]
    assert Counter(e["label"] for e in de) == {lab: 1670 for lab in NLI_LABELS}
    # the Swahili file with labels (myxnli) agrees with the labels we attach to the XTREME file
    labelled = [line.split("\t") for line in (data_dir / "xnli/myxnli/sw.genre.test.tsv").read_text().splitlines()[1:]]
    assert [c[1] for c in labelled] == [e["label"] for e in sw]


def test_xnli_train_is_english_mnli_and_dev_is_xnli_dev(data_dir):
    task = get_task("xnli")
    assert len(task.load_local(data_dir, "train", "en")) == 9815
    dev = task.load_local(data_dir, "dev", "en")
    assert len(dev) == 2490 and Counter(e["label"] for e in dev)["neutral"] == 830


def test_anli_split_is_disjoint(data_dir):
    task = get_task("anli")
    train, dev = task.load_local(data_dir, "train", "en"), task.load_local(data_dir, "dev", "en")
    assert len(train) + len(dev) == 3198
    assert not {e["text_b"] for e in dev} & {e["text_b"] for e in train} - {""}


def test_udpos_english_train_is_lines_and_partut(data_dir):
    train = get_task("udpos").load_local(data_dir, "train", "en")
    assert len(train) == 3457 + 1781
    assert all(len(e["words"]) == len(e["tags"]) for e in train)


def test_udpos_languages_discovered_from_files(data_dir):
    langs = get_task("udpos").local_languages(data_dir)
    assert len(langs) == 33 and {"de", "yo", "zh"} <= set(langs)


def test_tatoeba_pairs_aligned(data_dir):
    pairs = get_task("tatoeba").load_local(data_dir, "test", "de")
    assert len(pairs) == 1000 and all(p["source"] and p["target"] for p in pairs)


def test_unknown_language_is_a_clear_error(data_dir):
    with pytest.raises(DataError, match="target.tasks.xnli.languages: xx not available offline"):
        load_task_data(get_task("xnli"), TaskSettings(languages=["xx"]), DataSource("local", data_dir), 0, "target")


def test_missing_file_named(tmp_path):
    (tmp_path / "xnli" / "xtreme").mkdir(parents=True)
    with pytest.raises(DataError, match="missing data file: .*dev-en.tsv"):
        get_task("xnli").load_local(tmp_path, "dev", "en")


def test_label_outside_label_set_names_line(tmp_path):
    (tmp_path / "xnli" / "xtreme").mkdir(parents=True)
    (tmp_path / "xnli" / "xtreme" / "dev-en.tsv").write_text("a\tb\tneutral\nc\td\tmaybe\n")
    with pytest.raises(DataError, match=r"dev-en.tsv:2: label 'maybe' is not one of"):
        get_task("xnli").load_local(tmp_path, "dev", "en")


def test_hub_loader_offline_gives_a_clear_message(monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HF_DATASETS_OFFLINE", "1")
    with pytest.raises(DataError, match="cannot load Hub dataset 'facebook/xnli'.*offline"):
        get_task("xnli").load_hub("test", "de")


def test_subset_is_seeded_and_ordered():
    items = list(range(100))
    a, b = subset(items, 10, 3), subset(items, 10, 3)
    assert a == b == sorted(a) and len(a) == 10 and subset(items, 10, 4) != a
    assert subset(items, 0, 3) == items


def test_training_seeds_share_the_dev_and_test_subsets(data_dir):
    settings, source = (TaskSettings(train_size=50, dev_size=20, test_size=30, languages=["de"]),
                        DataSource("local", data_dir))
    a, b = (load_task_data(get_task("xnli"), settings, source, seed, "target", eval_seed=42) for seed in (1, 2))
    assert a.train != b.train  # each training seed draws its own training examples
    assert a.dev == b.dev and a.test == b.test and len(a.test["de"]) == 30
    c = load_task_data(get_task("xnli"), settings, source, 1, "target", eval_seed=43)
    assert c.train == a.train and c.test != a.test


def test_empty_split_is_a_clear_error(tmp_path):
    (tmp_path / "xnli" / "xtreme").mkdir(parents=True)
    (tmp_path / "xnli" / "xtreme" / "dev-en.tsv").write_text("")
    (tmp_path / "mnli" / "generative-nli").mkdir(parents=True)
    (tmp_path / "mnli" / "generative-nli" / "dev.jsonl").write_text(
        '{"premise": "a", "hypothesis": "b", "label": "neutral"}\n')
    with pytest.raises(DataError, match="xnli: the dev split for 'en' is empty"):
        load_task_data(get_task("xnli"), TaskSettings(languages=["de"]), DataSource("local", tmp_path), 0, "target")


def test_a_targets_train_data_is_a_task_of_its_family_that_trains_on_the_same_examples(data_dir):
    from adapter_stilts.tasks.lookup import all_tasks

    sharing = [t for t in all_tasks() if t.train_data]
    assert {t.name for t in sharing} >= {"xquad", "mlqa"}
    for task in sharing:
        source = get_task(task.train_data)
        # the source's metric selects the target's checkpoints: same family, same metric name
        assert (source.family, source.metric) == (task.family, task.metric), task.name
        for split in ("train", "dev"):
            assert task.load_local(data_dir, split, "en") == source.load_local(data_dir, split, "en"), (task, split)

"""Tatoeba and BUCC 2018 loaders on the real offline files (and small hand-written ones)."""
import zlib

import pytest

from adapter_stilts.tasks.catalog.retrieval import (
    TATOEBA_ISO,
    XTREME_R_TATOEBA,
    XTREME_TATOEBA,
    split_halves,
    tatoeba_code,
)
from adapter_stilts.tasks.lookup import get_task
from adapter_stilts.tasks.readers import DataError


# ---------------------------------------------------------------- Tatoeba
def test_tatoeba_discovers_every_offline_language_pair(data_dir):
    folder = data_dir / "tatoeba"
    codes = {p.name.split(".")[1][:-len("-eng")] for p in folder.glob("tatoeba.*-eng.eng")}
    codes = {c for c in codes if (folder / f"tatoeba.{c}-eng.{c}").is_file()}
    langs = get_task("tatoeba").local_languages(data_dir)
    assert len(langs) == len(codes) >= 100
    assert sorted(tatoeba_code(lang) for lang in langs) == sorted(codes)
    assert set(XTREME_R_TATOEBA) <= set(langs)
    assert {"zh", "fa", "sw", "yue", "wuu", "ang"} <= set(langs) and not {"cmn", "pes", "eng"} & set(langs)
    assert all(len(lang) == 2 or (len(lang) == 3 and lang not in TATOEBA_ISO) for lang in langs)


def test_tatoeba_benchmark_language_lists():
    assert len(XTREME_TATOEBA) == 36 and len(XTREME_R_TATOEBA) == 41
    assert set(XTREME_R_TATOEBA) - set(XTREME_TATOEBA) == {"az", "lt", "pl", "uk", "ro"}
    task = get_task("tatoeba")
    assert task.languages == XTREME_TATOEBA and task.notes["retrieval"] == "alignment"


def test_tatoeba_loads_by_iso_code_and_by_three_letter_code(data_dir):
    task = get_task("tatoeba")
    zh = task.load_local(data_dir, "test", "zh")
    cmn = (data_dir / "tatoeba" / "tatoeba.cmn-eng.cmn").read_text(encoding="utf-8").splitlines()
    assert [p["source"] for p in zh] == cmn
    yue = task.load_local(data_dir, "test", "yue")
    assert yue and all(p["source"] and p["target"] for p in yue)
    assert len(task.load_local(data_dir, "test", "lv")) == len(
        (data_dir / "tatoeba" / "tatoeba.lvs-eng.eng").read_text(encoding="utf-8").splitlines())


def test_tatoeba_user_added_language_is_discovered(tmp_path):
    folder = tmp_path / "tatoeba"
    folder.mkdir()
    (folder / "tatoeba.xyz-eng.xyz").write_text("a\nb\n", encoding="utf-8")
    (folder / "tatoeba.xyz-eng.eng").write_text("A\nB\n", encoding="utf-8")
    (folder / "tatoeba.deu-eng.deu").write_text("Hallo\n", encoding="utf-8")  # no English side
    task = get_task("tatoeba")
    assert task.local_languages(tmp_path) == ("xyz",)
    assert task.load_local(tmp_path, "test", "xyz") == [{"source": "a", "target": "A"}, {"source": "b", "target": "B"}]
    with pytest.raises(DataError, match=r"missing data file: .*tatoeba.deu-eng.eng"):
        task.load_local(tmp_path, "test", "de")


def test_tatoeba_malformed_files_name_file_and_line(tmp_path):
    folder = tmp_path / "tatoeba"
    folder.mkdir()
    (folder / "tatoeba.fra-eng.fra").write_text("Bonjour.\n\nMerci.\n", encoding="utf-8")
    (folder / "tatoeba.fra-eng.eng").write_text("Hello.\nYes.\nThanks.\n", encoding="utf-8")
    with pytest.raises(DataError, match=r"tatoeba.fra-eng.fra:2: empty sentence"):
        get_task("tatoeba").load_local(tmp_path, "test", "fr")
    (folder / "tatoeba.fra-eng.fra").write_text("Bonjour.\nMerci.\n", encoding="utf-8")
    with pytest.raises(DataError, match=r"2 lines but .*tatoeba.fra-eng.eng has 3"):
        get_task("tatoeba").load_local(tmp_path, "test", "fr")


# ---------------------------------------------------------------- BUCC 2018
def _read(path):
    return dict(line.split("\t") for line in path.read_text(encoding="utf-8").splitlines())


def test_bucc_task_and_offline_languages(data_dir):
    task = get_task("bucc2018")
    assert (task.family, task.role, task.metric, task.splits) == ("retrieval", "target", "f1", ("dev", "test"))
    assert task.languages == ("de", "fr", "ru", "zh") and task.notes["retrieval"] == "mining"
    # fr has no English side, de and ru only gold: zh alone is complete
    assert task.local_languages(data_dir) == ("zh",)


def test_bucc_offline_halves_are_disjoint_and_cover_the_sample(data_dir):
    task = get_task("bucc2018")
    [dev] = task.load_local(data_dir, "dev", "zh")
    [test] = task.load_local(data_dir, "test", "zh")
    zh, en = _read(data_dir / "bucc2018/zh-en.dev.zh"), _read(data_dir / "bucc2018/zh-en.dev.en")
    gold = [tuple(line.split("\t")) for line in (data_dir / "bucc2018/zh-en.dev.gold").read_text().splitlines()]
    assert not set(dev["source_ids"]) & set(test["source_ids"])
    assert not set(dev["target_ids"]) & set(test["target_ids"])
    assert set(dev["source_ids"]) | set(test["source_ids"]) == set(zh)
    assert set(dev["target_ids"]) | set(test["target_ids"]) == set(en)
    assert dev["gold"] == gold[0::2] and test["gold"] == gold[1::2]  # by gold pair index parity
    for half in (dev, test):
        assert {s for s, _ in half["gold"]} <= set(half["source_ids"])
        assert {t for _, t in half["gold"]} <= set(half["target_ids"])
        assert [zh[i] for i in half["source_ids"]] == half["sources"]
        assert [en[i] for i in half["target_ids"]] == half["targets"]
        assert 0.4 < len(half["source_ids"]) / len(zh) < 0.6  # the hash splits the rest about evenly
    # a non-gold sentence's half is a stable function of its id
    gold_ids = {s for s, _ in gold}
    assert all(zlib.crc32(i.encode()) & 1 == 0 for i in dev["source_ids"] if i not in gold_ids)
    assert task.load_local(data_dir, "dev", "zh") == [dev]  # deterministic


def test_split_halves_drops_a_gold_pair_split_across_halves():
    src, tgt = {"s1": "a", "s3": "c"}, {"t1": "A", "t2": "B", "t3": "C"}
    gold = [("s1", "t1"), ("s1", "t2"), ("s3", "t3")]  # s1 follows pair 0 (even), t2 pair 1 (odd)
    dev, test = split_halves(src, tgt, gold, 0), split_halves(src, tgt, gold, 1)
    assert dev["source_ids"] == ["s1", "s3"] and dev["target_ids"] == ["t1", "t3"] and test["target_ids"] == ["t2"]
    assert dev["gold"] == [("s1", "t1"), ("s3", "t3")] and test["gold"] == []


def _bucc_files(folder, split, src, en, gold):
    folder.mkdir(exist_ok=True)
    (folder / f"zh-en.{split}.zh").write_text(src, encoding="utf-8")
    (folder / f"zh-en.{split}.en").write_text(en, encoding="utf-8")
    (folder / f"zh-en.{split}.gold").write_text(gold, encoding="utf-8")


def test_bucc_uses_real_test_files_when_present(tmp_path):
    folder = tmp_path / "bucc2018"
    _bucc_files(folder, "dev", "zh-1\t你好\nzh-2\t谢谢\n", "en-1\thello\nen-2\tthanks\n", "zh-1\ten-1\n")
    _bucc_files(folder, "test", "zh-9\t再见\n", "en-8\tyes\nen-9\tbye\n", "zh-9\ten-9\n")
    task = get_task("bucc2018")
    assert task.local_languages(tmp_path) == ("zh",)
    assert task.load_local(tmp_path, "test", "zh") == [{"source_ids": ["zh-9"], "sources": ["再见"],
                                                         "target_ids": ["en-8", "en-9"], "targets": ["yes", "bye"],
                                                         "gold": [("zh-9", "en-9")]}]
    assert task.load_local(tmp_path, "dev", "zh")[0]["source_ids"] == ["zh-1", "zh-2"]


def test_bucc_malformed_lines_name_file_and_line(tmp_path):
    folder = tmp_path / "bucc2018"
    task = get_task("bucc2018")
    _bucc_files(folder, "dev", "zh-1\t你好\nzh-2 no tab\n", "en-1\thello\n", "zh-1\ten-1\n")
    with pytest.raises(DataError, match=r"zh-en.dev.zh:2: expected 2 tab-separated columns, got 1"):
        task.load_local(tmp_path, "dev", "zh")
    _bucc_files(folder, "dev", "zh-1\t你好\nzh-1\t谢谢\n", "en-1\thello\n", "zh-1\ten-1\n")
    with pytest.raises(DataError, match=r"zh-en.dev.zh:2: sentence id 'zh-1' appears twice"):
        task.load_local(tmp_path, "dev", "zh")
    _bucc_files(folder, "dev", "zh-1\t你好\n", "en-1\thello\n", "zh-1\ten-1\nzh-1\ten-7\n")
    with pytest.raises(DataError, match=r"zh-en.dev.gold:2: English id 'en-7' is not in the English sentence file"):
        task.load_local(tmp_path, "dev", "zh")
    (folder / "zh-en.dev.en").unlink()
    with pytest.raises(DataError, match=r"missing data file: .*zh-en.dev.en"):
        task.load_local(tmp_path, "dev", "zh")

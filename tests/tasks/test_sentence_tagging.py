"""QQP, PAWS-X, PAN-X, CCG and UD-POS's XTREME-R languages, read through the registered tasks:
the real offline files where they exist, small files in the datasets' native layouts otherwise."""
import io
import shutil
import tarfile
import zipfile
from collections import Counter

import pytest

from adapter_stilts.tasks.benchmarks import BENCHMARKS
from adapter_stilts.tasks.catalog.sentence import QQP_LABELS
from adapter_stilts.tasks.catalog.tagging import PANX_LABELS, UD_LANGUAGE_NAMES, UD_XTREME_R_TREEBANKS
from adapter_stilts.tasks.data import bind_labels
from adapter_stilts.tasks.lookup import get_task
from adapter_stilts.tasks.readers import DataError

GLUE_QQP_HEADER = "id\tqid1\tqid2\tquestion1\tquestion2\tis_duplicate\n"


# ---------------------------------------------------------------- PAWS-X (real files)
def test_pawsx_test_sets_get_the_german_gold_labels(data_dir):
    task = get_task("pawsx")
    assert task.local_languages(data_dir) == ("de", "en", "es", "fr", "ja", "ko", "zh")
    tests = {lang: task.load_local(data_dir, "test", lang) for lang in task.local_languages(data_dir)}
    assert {lang: len(ex) for lang, ex in tests.items()} == {lang: 2000 for lang in tests}
    labels = [e["label"] for e in tests["de"]]
    assert all([e["label"] for e in ex] == labels for ex in tests.values())
    assert Counter(labels) == {"0": 1105, "1": 895}
    # XTREME's German test, unquoted, is the labelled German file's text, line by line
    gold = [line.split("\t") for line in (data_dir / "pawsx/de_supergleber/test.tsv").read_text().splitlines()[1:]]
    assert [(e["text_a"], e["text_b"], e["label"]) for e in tests["de"]] == [(c[1], c[2], c[3]) for c in gold]
    assert not any(e["text_a"].startswith('"""') for ex in tests.values() for e in ex)  # csv quoting undone


def test_pawsx_offline_train_and_dev_split_english_dev(data_dir):
    task = get_task("pawsx")
    train, dev = task.load_local(data_dir, "train", "en"), task.load_local(data_dir, "dev", "en")
    assert (len(train), len(dev)) == (1800, 200)
    pairs = lambda ex: {(e["text_a"], e["text_b"]) for e in ex}  # noqa: E731
    assert not pairs(train) & pairs(dev)
    assert set(Counter(e["label"] for e in train + dev)) == {"0", "1"}


def test_pawsx_uses_an_english_train_file_when_present(tmp_path, data_dir):
    folder = tmp_path / "pawsx" / "xtreme"
    folder.mkdir(parents=True)
    shutil.copy(data_dir / "pawsx/xtreme/dev-en.tsv", folder / "dev-en.tsv")
    (folder / "train-en.tsv").write_text('"A ""quoted"" one"\tB\t1\nC\tD\t0\n')
    train = get_task("pawsx").load_local(tmp_path, "train", "en")
    assert train == [{"text_a": 'A "quoted" one', "text_b": "B", "label": "1"},
                     {"text_a": "C", "text_b": "D", "label": "0"}]
    assert len(get_task("pawsx").load_local(tmp_path, "dev", "en")) == 2000


def test_pawsx_misaligned_gold_names_both_files(tmp_path):
    (tmp_path / "pawsx" / "xtreme").mkdir(parents=True)
    (tmp_path / "pawsx" / "de_supergleber").mkdir(parents=True)
    (tmp_path / "pawsx/xtreme/test-fr.tsv").write_text("a\tb\nc\td\ne\tf\n")
    (tmp_path / "pawsx/de_supergleber/test.tsv").write_text("id\tsentence1\tsentence2\tlabel\n1\ta\tb\t0\n2\tc\td\t1\n")
    with pytest.raises(DataError, match=r"test-fr.tsv: 3 items but .*de_supergleber/test.tsv has 2 gold labels"):
        get_task("pawsx").load_local(tmp_path, "test", "fr")


def test_pawsx_bad_label_names_line(tmp_path):
    (tmp_path / "pawsx" / "xtreme").mkdir(parents=True)
    (tmp_path / "pawsx/xtreme/dev-en.tsv").write_text("a\tb\t1\nc\td\t2\n")
    with pytest.raises(DataError, match=r"dev-en.tsv:2: label '2' is not one of 0, 1"):
        get_task("pawsx").load_local(tmp_path, "train", "en")


# ---------------------------------------------------------------- QQP (GLUE layout)
def test_qqp_reads_glue_layout(tmp_path):
    (tmp_path / "qqp").mkdir()
    (tmp_path / "qqp/train.tsv").write_text(GLUE_QQP_HEADER + "7\t15\t16\tHow do I read?\tHow can I read?\t1\n"
                                            "8\t17\t18\tWhy?\tWhat?\t0\n")
    assert get_task("qqp").load_local(tmp_path, "train", "en") == [
        {"text_a": "How do I read?", "text_b": "How can I read?", "label": "duplicate"},
        {"text_a": "Why?", "text_b": "What?", "label": "not_duplicate"}]


def test_qqp_reads_the_glue_excerpt_of_the_hf_fixture(tmp_path, data_dir):
    with zipfile.ZipFile(data_dir / "fixtures_hf_dummy/glue/dummy/qqp/1.0.0/dummy_data.zip") as z:
        (tmp_path / "qqp").mkdir()
        for split in ("train", "dev"):
            (tmp_path / "qqp" / f"{split}.tsv").write_bytes(z.read(f"dummy_data/QQP/{split}.tsv"))
    dev = get_task("qqp").load_local(tmp_path, "dev", "en")
    assert dev[0] == {"text_a": "Why are African-Americans so beautiful?", "text_b": "Why are hispanics so beautiful?",
                      "label": "not_duplicate"}
    assert all(e["label"] in QQP_LABELS and e["text_a"]
               for e in dev + get_task("qqp").load_local(tmp_path, "train", "en"))


@pytest.mark.parametrize("content, message", [
    (GLUE_QQP_HEADER + "7\t15\t16\ta\tb\tyes\n", r"train.tsv:2: is_duplicate 'yes' is not 0 or 1"),
    (GLUE_QQP_HEADER + "7\t15\t16\ta\tb\n", r"train.tsv:2: expected 6 tab-separated columns, got 5"),
    ("a\tb\tc\td\te\tf\n", r"train.tsv:1: expected GLUE's QQP header"),
])
def test_qqp_bad_input_names_file_and_line(tmp_path, content, message):
    (tmp_path / "qqp").mkdir()
    (tmp_path / "qqp/train.tsv").write_text(content)
    with pytest.raises(DataError, match=message):
        get_task("qqp").load_local(tmp_path, "train", "en")


def test_qqp_missing_file_and_test_split(tmp_path):
    with pytest.raises(DataError, match=r"missing data file: .*qqp/dev.tsv"):
        get_task("qqp").load_local(tmp_path, "dev", "en")
    with pytest.raises(DataError, match="no labelled test split"):
        get_task("qqp").load_local(tmp_path, "test", "en")


# ---------------------------------------------------------------- PAN-X (HF fixtures, XTREME layouts)
def test_panx_fixtures_cover_xtremes_languages(data_dir):
    task = get_task("panx")
    langs = task.local_languages(data_dir)
    assert set(langs) == set(BENCHMARKS["xtreme"]["panx"]) and len(langs) == 40
    for lang in langs:
        for split in ("train", "dev", "test"):
            ex = task.load_local(data_dir, split, lang)
            assert ex and all(len(e["words"]) == len(e["tags"]) and set(e["tags"]) <= set(PANX_LABELS) for e in ex)
            assert not any(w.startswith(f"{lang}:") for e in ex for w in e["words"])  # language prefix stripped
    en = task.load_local(data_dir, "train", "en")
    assert en[0]["words"][:2] == ["R.H.", "Saunders"] and en[0]["tags"][:3] == ["B-ORG", "I-ORG", "O"]


def test_panx_xtreme_processed_layout_wins_and_test_without_tags_is_an_error(tmp_path):
    (tmp_path / "panx").mkdir()
    (tmp_path / "panx/train-en.tsv").write_text("Paris\tB-LOC\nis\tO\n\nBob\tB-PER\n")
    (tmp_path / "panx/test-de.tsv").write_text("Berlin\nist\n")
    task = get_task("panx")
    assert task.load_local(tmp_path, "train", "en") == [{"words": ["Paris", "is"], "tags": ["B-LOC", "O"]},
                                                         {"words": ["Bob"], "tags": ["B-PER"]}]
    assert task.local_languages(tmp_path) == ("de",)
    with pytest.raises(DataError, match=r"test-de.tsv:1: expected 'token<TAB>tag'.*cannot be scored"):
        task.load_local(tmp_path, "test", "de")


def _raw_archive(path, members: dict[str, str]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    with tarfile.open(path, "w:gz") as tar:
        for name, text in members.items():
            data = text.encode("utf-8")
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))


def test_panx_raw_wikiann_archive(tmp_path):
    _raw_archive(tmp_path / "panx_dataset/sw.tar.gz", {"test": "sw:Nairobi\tB-LOC\nsw:ni\tO\n\n", "train": "",
                                                       "dev": ""})
    _raw_archive(tmp_path / "panx_dataset/yo.tar.gz", {"test": "sw:Eko\tB-LOC\n"})
    task = get_task("panx")
    assert task.local_languages(tmp_path) == ("sw", "yo")
    assert task.load_local(tmp_path, "test", "sw") == [{"words": ["Nairobi", "ni"], "tags": ["B-LOC", "O"]}]
    with pytest.raises(DataError, match=r"yo.tar.gz!test:1: expected a raw WikiANN line starting with 'yo:'"):
        task.load_local(tmp_path, "test", "yo")


def test_panx_unknown_tag_and_missing_language(tmp_path):
    (tmp_path / "panx").mkdir()
    (tmp_path / "panx/test-fr.tsv").write_text("Paris\tB-GPE\n")
    with pytest.raises(DataError, match=r"test-fr.tsv: label 'B-GPE' is not one of O, B-PER"):
        get_task("panx").load_local(tmp_path, "test", "fr")
    with pytest.raises(DataError, match=r"missing data file: .*panx/test-xx.tsv"):
        get_task("panx").load_local(tmp_path, "test", "xx")


# ---------------------------------------------------------------- CCG (our documented local layout)
def test_ccg_reads_word_supertag_lines_and_labels_come_from_train(tmp_path):
    (tmp_path / "ccg").mkdir()
    (tmp_path / "ccg/train.tsv").write_text("Pierre\tN/N\nVinken\tN\nsleeps\tS[dcl]\\NP\n\nHe\tNP\nruns\tS[dcl]\\NP\n")
    task = get_task("ccg")
    assert task.labels == () and task.family == "tagging" and task.role == "intermediate"
    train = task.load_local(tmp_path, "train", "en")
    assert train[0] == {"words": ["Pierre", "Vinken", "sleeps"], "tags": ["N/N", "N", "S[dcl]\\NP"]}
    assert bind_labels(task, train).labels == ("N", "N/N", "NP", "S[dcl]\\NP")


def test_ccg_errors(tmp_path):
    (tmp_path / "ccg").mkdir()
    (tmp_path / "ccg/dev.tsv").write_text("Pierre\tN/N\nVinken N\n")
    with pytest.raises(DataError, match=r"ccg/dev.tsv:2: expected 'token<TAB>tag', got 1"):
        get_task("ccg").load_local(tmp_path, "dev", "en")
    with pytest.raises(DataError, match=r"missing data file: .*ccg/test.tsv"):
        get_task("ccg").load_local(tmp_path, "test", "en")
    with pytest.raises(DataError, match="CCGbank is licensed .* data.source=local"):
        get_task("ccg").load_hub("train", "en")


# ---------------------------------------------------------------- UD-POS languages, Hub messages
def test_udpos_hub_names_cover_xtreme_r():
    assert set(BENCHMARKS["xtreme-r"]["udpos"]) <= set(UD_LANGUAGE_NAMES)
    assert set(UD_XTREME_R_TREEBANKS) == set(BENCHMARKS["xtreme-r"]["udpos"]) - set(BENCHMARKS["xtreme"]["udpos"])
    assert set(get_task("udpos").languages) == set(BENCHMARKS["xtreme"]["udpos"])


@pytest.mark.parametrize("task, split, lang, hub_id", [
    ("pawsx", "test", "ko", "google-research-datasets/paws-x"), ("qqp", "train", "en", "nyu-mll/glue"),
    ("panx", "test", "yo", "unimelb-nlp/wikiann"),
    ("udpos", "test", "wo", "universal-dependencies/universal_dependencies"),
])
def test_hub_loaders_offline_give_a_clear_message(monkeypatch, task, split, lang, hub_id):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HF_DATASETS_OFFLINE", "1")
    with pytest.raises(DataError, match=f"cannot load Hub dataset '{hub_id}'.*offline"):
        get_task(task).load_hub(split, lang)

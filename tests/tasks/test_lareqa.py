"""LAReQA (XQuAD-R): built from the real XQuAD files offline, from files in the release's layout
(with their sentence breaks), and from Hub-shaped rows; bad files are named."""
import json

import pytest

from adapter_stilts.config import TaskSettings
from adapter_stilts.tasks.catalog import lareqa
from adapter_stilts.tasks.catalog.lareqa import XQUAD_R_LANGS
from adapter_stilts.tasks.data import DataSource, check_relevant, load_task_data
from adapter_stilts.tasks.lookup import get_task
from adapter_stilts.tasks.readers import DataError

# the LAReQA release's README (google-research-datasets/lareqa): candidates per language of XQuAD-R
RELEASE_CANDIDATES = {"ar": 1222, "de": 1276, "el": 1234, "en": 1180, "es": 1215, "hi": 1244, "ru": 1219,
                      "th": 852, "tr": 1167, "vi": 1209, "zh": 1196}
# what tasks/sentence_breaks.py gives on XQuAD's files (see its docstring)
OFFLINE_CANDIDATES = {"ar": 1214, "de": 1279, "el": 1240, "en": 1177, "es": 1212, "hi": 1243, "ru": 1217,
                      "th": 880, "tr": 1142, "vi": 1202, "zh": 1161}


@pytest.fixture
def xquad_only(tmp_path, data_dir):
    """A data folder with the real XQuAD files only (the offline fallback is tested even where the
    LAReQA release's files are staged too)."""
    root = tmp_path / "xquad-only"
    root.mkdir()
    (root / "xquad").symlink_to(data_dir / "xquad")
    return root


def test_task_registration():
    task = get_task("lareqa")
    assert (task.family, task.role, task.metric, task.splits) == ("retrieval", "target", "map_at_20", ("test", "pool"))
    assert task.languages == XQUAD_R_LANGS and task.notes["retrieval"] == "answer_retrieval" and not task.trains


def test_offline_build_from_xquad(xquad_only, data_dir):
    task = get_task("lareqa")
    assert task.local_languages(xquad_only) == XQUAD_R_LANGS  # xquad.ro.json is there, but not part of XQuAD-R
    pool = task.load_local(xquad_only, "pool", "all")
    by_id = {c["id"]: c for c in pool}
    assert len(by_id) == len(pool) == sum(OFFLINE_CANDIDATES.values()) == 12967
    for lang in XQUAD_R_LANGS:
        assert sum(c["language"] == lang for c in pool) == OFFLINE_CANDIDATES[lang]
        assert abs(OFFLINE_CANDIDATES[lang] / RELEASE_CANDIDATES[lang] - 1) < 0.035
    xquad = {lang: {e["id"]: e for e in get_task("xquad").load_local(data_dir, "test", lang)} for lang in XQUAD_R_LANGS}
    for lang in XQUAD_R_LANGS:
        questions = task.load_local(xquad_only, "test", lang)
        assert len(questions) == 1190  # every answer starts inside a sentence: none is skipped
        for q in questions:
            qid = q["id"][:-len(lang) - 1]
            assert q["id"] == f"{qid}_{lang}" and q["query"] == xquad[lang][qid]["question"]
            # one relevant sentence per language, the parallel answer sentences of the same question
            assert sorted(by_id[r]["language"] for r in q["relevant"]) == list(XQUAD_R_LANGS)
            own = next(by_id[r]["text"] for r in q["relevant"] if by_id[r]["language"] == lang)
            answer = xquad[lang][qid]["answers"][0]
            assert own in xquad[lang][qid]["context"]
            context = xquad[lang][qid]["context"]
            start = context.index(own)
            assert start <= answer["answer_start"] < start + len(own)
    en = {q["id"][:-3]: q["relevant"] for q in task.load_local(xquad_only, "test", "en")}
    zh = {q["id"][:-3]: q["relevant"] for q in task.load_local(xquad_only, "test", "zh")}
    assert en == zh  # a question's relevant set is the same in every language


def test_the_release_files_where_staged(data_dir):
    """With the LAReQA release's files in the data folder, the build is XTREME-R's: the release
    README's counts exactly (measured on the files read from google-research-datasets/lareqa)."""
    if not (data_dir / "lareqa" / "xquad-r").is_dir():
        pytest.skip("the LAReQA release's files are not staged in the data folder")
    task = get_task("lareqa")
    pool = task.load_local(data_dir, "pool", "all")
    assert {lang: sum(c["language"] == lang for c in pool) for lang in XQUAD_R_LANGS} == RELEASE_CANDIDATES
    assert all(len(task.load_local(data_dir, "test", lang)) == 1190 for lang in XQUAD_R_LANGS)


def _write_release(folder, lang, paragraphs):
    """A release-layout file: paragraphs of (context, [(start, end)], [(id, question, answer_start)])."""
    folder.mkdir(parents=True, exist_ok=True)
    data = {"data": [{"title": "t", "paragraphs": [
        {"context": c, "sentence_breaks": [list(b) for b in breaks],
         "qas": [{"id": i, "question": q, "answers": [{"text": c[s:s + 1], "answer_start": s}]} for i, q, s in qas]}
        for c, breaks, qas in paragraphs]}], "version": "1.1"}
    path = folder / f"{lang}.json"
    path.write_text(json.dumps(data, ensure_ascii=False), encoding="utf-8")
    return path


def test_release_layout_follows_utils_lareqa(tmp_path):
    folder = tmp_path / "lareqa" / "xquad-r"
    en1 = "Cats purr. Dogs bark. Cats purr."
    _write_release(folder, "en", [
        (en1, [(0, 10), (11, 21), (22, 32)], [("q1", "What purrs?", 0), ("q2", "What barks?", 12)]),
        ("Birds sing. Fish swim.", [(0, 11)], [("q3", "What swims?", 13)]),  # answer outside every sentence
    ])
    _write_release(folder, "de", [
        ("Katzen schnurren. Hunde bellen.", [(0, 31)], [("q1", "Was schnurrt?", 0), ("q2", "Was bellt?", 18)]),
        ("Vögel singen. Fische schwimmen.", [(0, 13), (14, 31)], [("q3", "Was schwimmt?", 14)]),
    ])
    task = get_task("lareqa")
    assert task.local_languages(tmp_path) == ("de", "en")
    pool = task.load_local(tmp_path, "pool", "all")
    # candidate ids <lang>_<paragraph from 1>_<sentence from 0>; en's 2nd paragraph kept no question
    assert [c["id"] for c in pool] == ["de_1_0", "de_2_0", "de_2_1", "en_1_0", "en_1_1", "en_1_2"]
    assert pool[0]["text"] == "Katzen schnurren. Hunde bellen." and pool[3]["text"] == "Cats purr."
    en = {q["id"]: q for q in task.load_local(tmp_path, "test", "en")}
    assert set(en) == {"q1_en", "q2_en"}  # q3's answer starts in no sentence: skipped
    # both equal "Cats purr." sentences answer q1 (utils_lareqa compares sentence text), and the
    # German paragraph's one sentence answers q1 and q2
    assert en["q1_en"]["relevant"] == ["de_1_0", "en_1_0", "en_1_2"]
    assert en["q2_en"]["relevant"] == ["de_1_0", "en_1_1"]
    de = task.load_local(tmp_path, "test", "de")
    assert [q["id"] for q in de] == ["q1_de", "q2_de", "q3_de"] and de[2]["relevant"] == ["de_2_1"]
    assert de[0]["relevant"] == en["q1_en"]["relevant"] and de[0]["query"] == "Was schnurrt?"
    with pytest.raises(DataError, match=r"no XQuAD-R data for 'fr'.*languages: de en"):
        task.load_local(tmp_path, "test", "fr")
    with pytest.raises(DataError, match="a test and a pool split, not 'train'"):
        task.load_local(tmp_path, "train", "en")


def test_data_loading_subsets_questions_and_keeps_the_whole_pool(tmp_path):
    folder = tmp_path / "lareqa" / "xquad-r"
    for lang in ("en", "de"):
        _write_release(folder, lang, [("A b. C d.", [(0, 4), (5, 9)], [(f"q{i}", f"{lang} {i}", 5 * (i % 2))
                                                                      for i in range(6)])])
    data = load_task_data(get_task("lareqa"), TaskSettings(test_size=4, languages=["de"]),
                          DataSource("local", tmp_path), seed=1, role="target")
    assert list(data.test) == ["de"] and len(data.test["de"]) == 4 and len(data.pool) == 4
    with pytest.raises(DataError, match=r"lareqa de: query q0_de: relevant candidates \['de_1_0'\] are not in "
                                        r"the pool \(1 candidates\)"):
        check_relevant(data.task, data.test, [{"id": "en_1_0", "text": "A b.", "language": "en"}])


@pytest.mark.parametrize("change, message", [
    (lambda p: p["data"][0]["paragraphs"][0].update(sentence_breaks=[[0, 99]]),
     r"en.json:1: article 0 paragraph 0: sentence break \[0, 99\] is outside the 9-character context"),
    (lambda p: p["data"][0]["paragraphs"][0].update(sentence_breaks=[["a"]]),
     r"en.json:1: article 0 paragraph 0: sentence_breaks must be a list of \[start, end\] pairs"),
    (lambda p: p["data"][0]["paragraphs"][0].pop("sentence_breaks"),
     r"en.json:1: article 0 paragraph 0: no 'sentence_breaks'"),
    (lambda p: p["data"][0]["paragraphs"][0]["qas"][0]["answers"].append({"text": "x", "answer_start": 1}),
     r"en.json:1: article 0 paragraph 0: question q0 has 2 answers; XQuAD-R has exactly one"),
    (lambda p: p["data"][0]["paragraphs"][0]["qas"][0].pop("question"),
     r"en.json:1: article 0 paragraph 0: malformed SQuAD entry \(KeyError: 'question'\)"),
    (lambda p: p["data"][0]["paragraphs"][0]["qas"].append(dict(p["data"][0]["paragraphs"][0]["qas"][0])),
     r"en.json:1: article 0 paragraph 0: question id 'q0' appears twice in the en data"),
])
def test_bad_release_files_are_named(tmp_path, change, message):
    path = _write_release(tmp_path / "lareqa" / "xquad-r", "en", [("A b. C d.", [(0, 4), (5, 9)], [("q0", "?", 0)])])
    doc = json.loads(path.read_text())
    change(doc)
    path.write_text(json.dumps(doc))
    with pytest.raises(DataError, match=message):
        get_task("lareqa").load_local(tmp_path, "pool", "all")


def test_missing_and_broken_files(tmp_path):
    with pytest.raises(DataError, match=r"lareqa: no XQuAD-R data: neither .*lareqa/xquad-r/<lang>.json nor "
                                        r".*xquad/xquad.<lang>.json"):
        get_task("lareqa").load_local(tmp_path, "test", "en")
    assert get_task("lareqa").local_languages(tmp_path) == ()
    folder = tmp_path / "lareqa" / "xquad-r"
    folder.mkdir(parents=True)
    (folder / "en.json").write_text('{"data": [', encoding="utf-8")
    with pytest.raises(DataError, match=r"en.json: not a SQuAD-format JSON object with a 'data' list"):
        get_task("lareqa").load_local(tmp_path, "test", "en")


def test_hub_rows_build_what_the_local_xquad_files_build(xquad_only, data_dir, monkeypatch):
    """google-research-datasets/xquad_r's rows (id, context, question, answers{text, answer_start}):
    here made from the real XQuAD files as the Hub's loading script makes them from the release: the
    context and answer text stripped, the answer offset kept (so off by the stripped spaces)."""
    calls = []

    def fake_hub_split(path, config, split):
        calls.append((path, config, split))
        return [{"id": e["id"], "context": e["context"].strip(), "question": e["question"].strip(),
                 "answers": {"text": [a["text"].strip() for a in e["answers"]],
                             "answer_start": [a["answer_start"] for a in e["answers"]]}}
                for e in get_task("xquad").load_local(data_dir, "test", config)]

    monkeypatch.setattr(lareqa, "hub_split", fake_hub_split)
    lareqa._hub.cache_clear()
    try:
        task = get_task("lareqa")
        assert task.load_hub("pool", "all") == task.load_local(xquad_only, "pool", "all")
        for lang in ("th", "zh"):  # zh: 140-odd contexts lost a leading space
            local = [{**q, "query": q["query"].strip()} for q in task.load_local(xquad_only, "test", lang)]
            assert task.load_hub("test", lang) == local
        assert sorted(calls) == [("google-research-datasets/xquad_r", lang, "validation") for lang in XQUAD_R_LANGS]
    finally:
        lareqa._hub.cache_clear()

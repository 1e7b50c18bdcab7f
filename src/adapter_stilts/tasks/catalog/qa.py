"""Extractive QA tasks: SQuAD v1.1 and v2.0 (intermediate), XQuAD, MLQA, TyDiQA-GoldP (target).

Examples: {id, question, context, answers: [{text, answer_start}]}; `answers` lists every gold
answer (the first one is the training target) and is empty for an unanswerable question (SQuAD v2.0).

Offline (../shared/data) only SQuAD's dev sets exist, and XQuAD's 240 paragraphs are SQuAD v1.1 dev
paragraphs. So offline:
- every SQuAD paragraph that is an XQuAD paragraph (same context, or an XQuAD question id or
  question text) is removed first (XQuAD's English file is needed for that: the leak rule);
- train/dev = a fixed split BY ARTICLE of what is left: articles 0, 10, 20, ... (file order) are dev,
  the others train. squad (v1.1 dev, zipped) -> 43 train / 5 dev articles; squad_v2 (the CS224N half
  of v2.0 dev) -> 14 / 2;
- xquad and mlqa train and select on that same leak-free English SQuAD v1.1 split (XTREME trains
  both on SQuAD v1.1); MLQA's same-language test files are absent, so its dev files are the test
  sets (a test-context-<l>-question-<l>.json file, where present, is preferred);
- tydiqa trains on the English GoldP train file, dev = every 10th passage of it (by context, so a
  passage never sits on both sides). The staged GoldP dev copies carry no gold answers (every answer
  is "", as in XTREME's submission copies): a language is tested on its GoldP dev file when that
  file has answers, else on its GoldP train file (never trained on: training is English only), so
  offline TyDiQA tests ko and sw. A language with neither fails with a DataError.
Online (Hub): SQuAD train is the training data; SQuAD validation, without XQuAD's paragraphs, the dev
split. Ids: rajpurkar/squad, rajpurkar/squad_v2, google/xquad (xquad.<l>), google/xtreme
(MLQA.<l>.<l>; parquet, unlike the script-based facebook/mlqa), google-research-datasets/tydiqa
(secondary_task = GoldP; languages are the id prefixes)."""
from __future__ import annotations

import functools
import json
import zipfile
from pathlib import Path

from ..readers import DataError, require_file
from ..registry import Task, register
from .common import DEV_EVERY, english_only, hub_split

XQUAD_LANGS = ("ar", "de", "el", "en", "es", "hi", "ru", "th", "tr", "vi", "zh")  # XTREME (XTREME-R adds ro)
MLQA_LANGS = ("ar", "de", "en", "es", "hi", "vi", "zh")
TYDIQA_LANGS = ("ar", "bn", "en", "fi", "id", "ko", "ru", "sw", "te")
TYDIQA_NAMES = {"ar": "arabic", "bn": "bengali", "en": "english", "fi": "finnish", "id": "indonesian",
                "ko": "korean", "ru": "russian", "sw": "swahili", "te": "telugu"}


# ---------------------------------------------------------------- reading SQuAD-format JSON
def read_squad_file(path: Path) -> list[tuple[str, list[dict]]]:
    """(title, examples) per article of a SQuAD-format JSON file (or a zip holding one). Answers with
    empty text are dropped (they mark stripped gold). Every error names the file."""
    raw, where = _read_bytes(require_file(path))
    try:
        doc = json.loads(raw)
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        line = f":{e.lineno}" if isinstance(e, json.JSONDecodeError) else ""
        raise DataError(f"{where}{line}: not valid SQuAD-format JSON ({e})") from None
    if not isinstance(doc, dict) or not isinstance(doc.get("data"), list):
        raise DataError(f"{where}: expected a SQuAD-format object with a 'data' list of articles")
    articles = []
    for a_i, article in enumerate(doc["data"]):
        try:
            examples = [_example(p["context"], qa) for p in article["paragraphs"] for qa in p["qas"]]
        except (KeyError, TypeError, ValueError, AttributeError) as e:
            raise DataError(f"{where}: article {a_i}: malformed SQuAD entry ({type(e).__name__}: {e})") from None
        for e in examples:
            for a in e["answers"]:
                if e["context"][a["answer_start"]: a["answer_start"] + len(a["text"])] != a["text"]:
                    raise DataError(f"{where}{_line_of(raw, e['id'])}: question {e['id']}: answer {a['text']!r} "
                                    f"is not at character {a['answer_start']} of its context")
        articles.append((str(article.get("title", a_i)), examples))
    return articles


NEWLINE = b"\n"


def _line_of(raw: bytes, question_id: str) -> str:
    """':<line>' of a question's id in the file (SQuAD files are often one line: then ':1')."""
    at = raw.find(json.dumps(str(question_id)).encode())
    return f":{raw.count(NEWLINE, 0, at) + 1}" if at >= 0 else ""


def _example(context: str, qa: dict) -> dict:
    if not isinstance(context, str) or not isinstance(qa["question"], str):
        raise TypeError("context and question must be strings")
    answers = [{"text": a["text"], "answer_start": int(a["answer_start"])} for a in qa.get("answers", []) if a["text"]]
    return {"id": str(qa["id"]), "question": qa["question"], "context": context, "answers": answers}


def _read_bytes(path: Path) -> tuple[bytes, str]:
    if path.suffix != ".zip":
        return path.read_bytes(), str(path)
    with zipfile.ZipFile(path) as z:
        members = [n for n in z.namelist() if n.endswith(".json")]
        if len(members) != 1:
            raise DataError(f"{path}: expected one .json file in the zip, found {len(members)}")
        return z.read(members[0]), f"{path}!{members[0]}"


def _flat(articles: list[tuple[str, list[dict]]]) -> list[dict]:
    return [e for _, examples in articles for e in examples]


def _require_answers(examples: list[dict], path: Path) -> list[dict]:
    for e in examples:
        if not e["answers"]:
            raise DataError(f"{path}: question {e['id']} has no gold answer (files whose answers were "
                            f"stripped, like XTREME's TyDiQA-GoldP dev copies, cannot be trained or scored on)")
    return examples


def _by_article(articles: list, split: str) -> list[dict]:
    """The fixed split by article: every DEV_EVERY-th article (file order) is dev."""
    keep = [a for i, a in enumerate(articles) if (i % DEV_EVERY == 0) == (split == "dev")]
    return _flat(keep)


def _hub_examples(rows) -> list[dict]:
    return [{"id": str(r["id"]), "question": r["question"], "context": r["context"],
             "answers": [{"text": t, "answer_start": int(s)} for t, s in
                         zip(r["answers"]["text"], r["answers"]["answer_start"]) if t]} for r in rows]


# ---------------------------------------------------------------- SQuAD v1.1 / v2.0 (intermediate)
def _ws(text: str) -> str:
    return " ".join(text.split())


def _xquad_keys(examples: list[dict]) -> tuple[set[str], set[str], set[str]]:
    """(contexts, question ids, question texts) of XQuAD's English examples, whitespace-normalised."""
    return {_ws(e["context"]) for e in examples}, {e["id"] for e in examples}, {_ws(e["question"]) for e in examples}


def _without_xquad(articles: list, xquad_en: list[dict]) -> list:
    """Drop every paragraph that is, or shares a question with, an XQuAD paragraph (the leak rule)."""
    contexts, ids, questions = _xquad_keys(xquad_en)
    out = []
    for title, examples in articles:
        leaked = {e["context"] for e in examples
                  if _ws(e["context"]) in contexts or e["id"] in ids or _ws(e["question"]) in questions}
        out.append((title, [e for e in examples if e["context"] not in leaked]))
    return out


def _local_xquad_en(root: Path) -> list[dict]:
    return _flat(read_squad_file(root / "xquad" / "xquad.en.json"))


def _no_test(task: str, split: str) -> str:
    if split == "test":
        raise DataError(f"{task} has no test split (intermediate task); use its dev split")
    return split


def squad_english(root: Path, split: str) -> list[dict]:
    """Leak-free SQuAD v1.1 dev, split by article: the offline English train/dev of squad, xquad, mlqa."""
    _no_test("squad", split)
    path = root / "squad" / "dev-v1.1.json.zip"
    return _require_answers(_by_article(_without_xquad(read_squad_file(path), _local_xquad_en(root)), split), path)


def squad_local(root: Path, split: str, lang: str) -> list[dict]:
    return squad_english(root, split)


def _squad_hub(path: str, task: str, split: str) -> list[dict]:
    """Hub SQuAD: train = train; dev = validation without XQuAD's paragraphs, so that no checkpoint is
    selected on XQuAD's English items."""
    examples = _hub_examples(hub_split(path, None, {"train": "train", "dev": "validation"}[_no_test(task, split)]))
    if split == "dev":
        xquad_en = _hub_examples(hub_split("google/xquad", "xquad.en", "validation"))
        examples = _flat(_without_xquad([("", examples)], xquad_en))
    return examples


def squad_hub(split: str, lang: str) -> list[dict]:
    return _squad_hub("rajpurkar/squad", "squad", split)


def squad_v2_local(root: Path, split: str, lang: str) -> list[dict]:
    _no_test("squad_v2", split)
    path = root / "squad" / "v2.0_cs224n_split" / "dev-v2.0.json"
    return _by_article(_without_xquad(read_squad_file(path), _local_xquad_en(root)), split)


def squad_v2_hub(split: str, lang: str) -> list[dict]:
    return _squad_hub("rajpurkar/squad_v2", "squad_v2", split)


# ---------------------------------------------------------------- XQuAD (target)
def xquad_local(root: Path, split: str, lang: str) -> list[dict]:
    if split != "test":
        return squad_english(root, split)
    path = root / "xquad" / f"xquad.{lang}.json"
    return _require_answers(_flat(read_squad_file(path)), path)


def xquad_languages(root: Path) -> tuple[str, ...]:
    return tuple(sorted(p.name.split(".")[1] for p in (root / "xquad").glob("xquad.*.json")))


def xquad_hub(split: str, lang: str) -> list[dict]:
    if split != "test":
        return squad_hub(split, "en")
    return _hub_examples(hub_split("google/xquad", f"xquad.{lang}", "validation"))


# ---------------------------------------------------------------- MLQA (target)
def _mlqa_file(root: Path, lang: str) -> Path:
    folder = root / "mlqa" / "MLQA_V1"
    test = folder / "test" / f"test-context-{lang}-question-{lang}.json"
    return test if test.is_file() else folder / "dev" / f"dev-context-{lang}-question-{lang}.json"


def mlqa_local(root: Path, split: str, lang: str) -> list[dict]:
    if split != "test":
        return squad_english(root, split)
    path = _mlqa_file(root, lang)
    return _require_answers(_flat(read_squad_file(path)), path)


def mlqa_languages(root: Path) -> tuple[str, ...]:
    folder = root / "mlqa" / "MLQA_V1"
    langs = set()
    for p in [*folder.glob("dev/dev-context-*-question-*.json"), *folder.glob("test/test-context-*-question-*.json")]:
        parts = p.stem.split("-")  # <split>-context-<l>-question-<l>
        if len(parts) == 5 and parts[2] == parts[4]:
            langs.add(parts[2])
    return tuple(sorted(langs))


def mlqa_hub(split: str, lang: str) -> list[dict]:
    if split != "test":
        return squad_hub(split, "en")
    return _hub_examples(hub_split("google/xtreme", f"MLQA.{lang}.{lang}", "test"))


# ---------------------------------------------------------------- TyDiQA-GoldP (target)
def _tydiqa_paths(root: Path, lang: str) -> tuple[Path, Path]:
    folder = root / "tydiqa"
    return (folder / "tydiqa-goldp-v1.1-dev" / f"tydiqa.goldp.{lang}.dev.json",
            folder / "tydiqa-goldp-v1.1-train" / f"tydiqa.goldp.{lang}.train.json")


def _has_gold(path: Path) -> bool:
    return path.is_file() and _has_gold_cached(str(path), path.stat().st_mtime_ns, path.stat().st_size)


@functools.lru_cache(maxsize=64)
def _has_gold_cached(path: str, mtime_ns: int, size: int) -> bool:  # language scans run more than once
    return any(e["answers"] for e in _flat(read_squad_file(Path(path))))


def _tydiqa_test_file(root: Path, lang: str) -> Path | None:
    dev, train = _tydiqa_paths(root, lang)
    if _has_gold(dev):
        return dev
    if lang != "en" and train.is_file():  # English train is the training data
        return train
    return None


def tydiqa_local(root: Path, split: str, lang: str) -> list[dict]:
    if split != "test":
        path = _tydiqa_paths(root, "en")[1]
        examples = _require_answers(_flat(read_squad_file(path)), path)
        return _by_context(examples, split)
    path = _tydiqa_test_file(root, lang)
    if path is None:
        dev, train = _tydiqa_paths(root, lang)
        raise DataError(f"tydiqa: no test data with gold answers for '{lang}': {dev} is missing or its answers "
                        f"are stripped, and there is no {train}" + (" (English train is the training data)"
                                                                   if lang == "en" else ""))
    return _require_answers(_flat(read_squad_file(path)), path)


def _by_context(examples: list[dict], split: str) -> list[dict]:
    """Every DEV_EVERY-th distinct passage (first-seen order) is dev, with all its questions."""
    order = {c: i for i, c in enumerate(dict.fromkeys(e["context"] for e in examples))}
    return [e for e in examples if (order[e["context"]] % DEV_EVERY == 0) == (split == "dev")]


def tydiqa_languages(root: Path) -> tuple[str, ...]:
    found = {p.name.split(".")[2] for p in (root / "tydiqa").glob("tydiqa-goldp-v1.1-*/tydiqa.goldp.*.json")}
    return tuple(sorted(lang for lang in found if _tydiqa_test_file(root, lang) is not None))


def tydiqa_hub(split: str, lang: str) -> list[dict]:
    rows = hub_split("google-research-datasets/tydiqa", "secondary_task", "validation" if split == "test" else "train")
    prefix = TYDIQA_NAMES["en" if split != "test" else lang] + "-"
    examples = _hub_examples(r for r in rows if r["id"].startswith(prefix))
    return examples if split == "test" else _by_context(examples, split)


register(Task("squad", "extractive_qa", "intermediate", "f1",
              "SQuAD v1.1 extractive QA; offline: SQuAD v1.1 dev without XQuAD's paragraphs, split by article",
              squad_local, squad_hub, english_only, ("en",), splits=("train", "dev")))
register(Task("squad_v2", "extractive_qa", "intermediate", "f1",
              "SQuAD v2.0 (extractive QA with unanswerable questions); offline: the CS224N half of v2.0 dev "
              "without XQuAD's paragraphs, split by article",
              squad_v2_local, squad_v2_hub, english_only, ("en",), splits=("train", "dev"),
              notes={"no_answer": True}))
register(Task("xquad", "extractive_qa", "target", "f1",
              "XQuAD: trained on English SQuAD v1.1 (offline: leak-free SQuAD v1.1 dev), tested zero-shot",
              xquad_local, xquad_hub, xquad_languages, XQUAD_LANGS, train_data="squad"))
register(Task("mlqa", "extractive_qa", "target", "f1",
              "MLQA (same-language): trained on English SQuAD v1.1, MLQA's language-aware metric; "
              "offline: leak-free SQuAD v1.1 dev for training, MLQA dev as test",
              mlqa_local, mlqa_hub, mlqa_languages, MLQA_LANGS, notes={"qa_metric": "mlqa"}, train_data="squad"))
register(Task("tydiqa", "extractive_qa", "target", "f1",
              "TyDiQA-GoldP: trained on its English train set; offline the dev copies have no answers, so "
              "languages with a GoldP train file (ko, sw) are tested on it",
              tydiqa_local, tydiqa_hub, tydiqa_languages, TYDIQA_LANGS))

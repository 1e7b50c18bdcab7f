"""LAReQA on XQuAD-R (Roy et al. 2020, arXiv 2004.05484), an XTREME-R retrieval task: a question
retrieves the sentences that answer it from ONE pool holding the sentences of every language's
paragraphs, so the right answers in other languages must outrank wrong ones in the question's own.
Scored with the phase-2 encoder (no training), mAP@20 (evaluation/answer_retrieval.py).

Built as google-research/xtreme builds it (third_party/utils_lareqa.py: load_data and
generate_examples; evaluate_retrieval.py, task 'lareqa', reads every file of
<data>/lareqa/xquad-r/, the LAReQA release that scripts/download_data.sh fetches: 11 languages):
- the candidates are the sentences of every paragraph (its `sentence_breaks`), id `<lang>_<n>_<i>`:
  the n-th paragraph of the language's file (from 1), its i-th sentence (from 0); two equal sentences
  are two candidates. The pool is the union over the languages;
- a question (id `<question id>_<lang>`) is kept when its answer starts inside a sentence (else it
  is skipped, as there, with a warning); its relevant candidates are, in every language, the
  sentences of its paragraph whose text equals that language's answer sentence for the same
  question id: about one per language, 11 in all;
- a paragraph none of whose questions is kept adds no candidate; a question needs exactly one answer.

Examples: test split {id, query, relevant: [candidate ids]} per language; the `pool` split (one for
all languages) {id, language, text}. Candidates are embedded from their sentence alone (the official
answer encoder reads sentence + paragraph; with one mean-pooled encoder and no training the shared
paragraph would make a paragraph's sentences near-identical vectors).

Sources, first found wins:
- the release's files, `lareqa/xquad-r/<lang>.json` (XQuAD with a `sentence_breaks` field per
  paragraph; every file there is a language, as in XTREME): exactly XTREME-R's task;
- offline fallback: XQuAD's own files, `xquad/xquad.<lang>.json` for the 11 XQuAD-R languages (not
  ro: it is not part of XQuAD-R and would change the pool), split into sentences by
  tasks/sentence_breaks.py (the release's contexts and questions are XQuAD's, checked; the answer
  sentence is the release's for 96-99% of questions, zh 93%, th 7%: see there), so scores are
  close to XTREME-R's, not equal;
- Hub: google-research-datasets/xquad_r (config per language, split `validation`); its rows drop the
  release's sentence breaks, so its sentences also come from tasks/sentence_breaks.py."""
from __future__ import annotations

import functools
import json
import logging
from collections import defaultdict
from dataclasses import dataclass
from pathlib import Path

from ..readers import DataError, require_file
from ..registry import POOL_SPLIT, Task, register
from ..sentence_breaks import sentence_breaks
from .common import hub_split
from .qa import _line_of

log = logging.getLogger(__name__)

XQUAD_R_LANGS = ("ar", "de", "el", "en", "es", "hi", "ru", "th", "tr", "vi", "zh")  # the LAReQA release's files
HUB_ID = "google-research-datasets/xquad_r"


@dataclass(frozen=True)
class Paragraph:
    context: str
    breaks: tuple[tuple[int, int], ...]  # [start, end) of each sentence in `context`
    questions: tuple[tuple[str, str, int], ...]  # (question id, question, answer start)
    where: str  # the file (and line) it came from, for errors


def build_xquad_r(paragraphs: dict[str, list[Paragraph]]) -> tuple[dict[str, list[dict]], list[dict]]:
    """(questions per language, the pool) from each language's paragraphs (see the module docstring)."""
    pool: list[dict] = []
    kept: dict[str, list[tuple[str, str, str]]] = {}  # lang -> (id, question, question id across languages)
    relevant: dict[str, list[str]] = defaultdict(list)
    for lang in sorted(paragraphs):
        kept[lang], seen, skipped = [], set(), 0
        for n, p in enumerate(paragraphs[lang], 1):
            sentences = [p.context[s:e] for s, e in p.breaks]
            ids = [f"{lang}_{n}_{i}" for i in range(len(sentences))]
            any_kept = False
            for qid, question, start in p.questions:
                if qid in seen:
                    raise DataError(f"{p.where}: question id {qid!r} appears twice in the {lang} data")
                seen.add(qid)
                answer = next((sentences[i] for i, (s, e) in enumerate(p.breaks) if s <= start < e), None)
                if answer is None:  # no single sentence holds the answer's start
                    skipped += 1
                    continue
                kept[lang].append((f"{qid}_{lang}", question, qid))
                relevant[qid] += [c for c, sentence in zip(ids, sentences) if sentence == answer]
                any_kept = True
            if any_kept:
                pool += [{"id": c, "language": lang, "text": s} for c, s in zip(ids, sentences)]
        if skipped:
            log.warning("lareqa %s: %d questions skipped (the answer starts outside every sentence)", lang, skipped)
    questions = {lang: [{"id": uid, "query": q, "relevant": relevant[qid]} for uid, q, qid in rows]
                 for lang, rows in kept.items()}
    return questions, pool


# ---------------------------------------------------------------- reading
def _breaks(value, context: str, where: str) -> tuple[tuple[int, int], ...]:
    try:
        spans = tuple((int(s), int(e)) for s, e in value)
    except (TypeError, ValueError):
        raise DataError(f"{where}: sentence_breaks must be a list of [start, end] pairs") from None
    for s, e in spans:
        if not 0 <= s < e <= len(context):
            raise DataError(f"{where}: sentence break [{s}, {e}] is outside the {len(context)}-character context")
    return spans


def read_squad_paragraphs(path: Path, lang: str, with_breaks: bool) -> list[Paragraph]:
    """The paragraphs of a SQuAD-format file: with the release's `sentence_breaks` (with_breaks)
    or split by tasks/sentence_breaks.py. Every error names the file (and the line of a question id)."""
    raw = require_file(path).read_bytes()
    try:
        doc = json.loads(raw)
        articles = doc["data"]
    except (json.JSONDecodeError, UnicodeDecodeError, KeyError, TypeError) as e:
        raise DataError(f"{path}: not a SQuAD-format JSON object with a 'data' list ({type(e).__name__}: {e})") \
            from None
    out = []
    for a_i, article in enumerate(articles):
        for p_i, para in enumerate(article.get("paragraphs", []) if isinstance(article, dict) else [None]):
            where = f"{path}: article {a_i} paragraph {p_i}"
            try:
                context, qas = para["context"], para["qas"]
                where = f"{path}{_line_of(raw, qas[0]['id']) if qas else ''}: article {a_i} paragraph {p_i}"
                questions = tuple(_question(qa, where) for qa in qas)
            except (KeyError, TypeError, IndexError) as e:
                raise DataError(f"{where}: malformed SQuAD entry ({type(e).__name__}: {e})") from None
            if with_breaks and "sentence_breaks" not in para:
                raise DataError(f"{where}: no 'sentence_breaks' (an XQuAD-R release file has one per paragraph)")
            breaks = _breaks(para["sentence_breaks"], context, where) if with_breaks else \
                tuple(sentence_breaks(context, lang))
            out.append(Paragraph(context, breaks, questions, where))
    return out


def _question(qa: dict, where: str) -> tuple[str, str, int]:
    answers = qa["answers"]
    if len(answers) != 1:  # utils_lareqa.generate_examples asserts one answer per question
        raise DataError(f"{where}: question {qa['id']} has {len(answers)} answers; XQuAD-R has exactly one")
    return str(qa["id"]), str(qa["question"]), int(answers[0]["answer_start"])


def _release_dir(root: Path) -> Path:
    return root / "lareqa" / "xquad-r"


def _files(root: Path) -> tuple[dict[str, Path], bool]:
    """{lang: file} and whether they are the release's (with sentence breaks)."""
    release = {p.stem: p for p in sorted(_release_dir(root).glob("*.json"))}
    if release:
        return release, True
    xquad = {lang: root / "xquad" / f"xquad.{lang}.json" for lang in XQUAD_R_LANGS}
    return {lang: p for lang, p in xquad.items() if p.is_file()}, False


def lareqa_languages(root: Path) -> tuple[str, ...]:
    return tuple(sorted(_files(root)[0]))


@functools.lru_cache(maxsize=4)
def _built(stamp: tuple) -> tuple[dict[str, list[dict]], list[dict]]:
    files, release = stamp[0], stamp[1]
    return build_xquad_r({lang: read_squad_paragraphs(Path(path), lang, release) for lang, path, *_ in files})


def _local(root: Path) -> tuple[dict[str, list[dict]], list[dict]]:
    """Built once per set of files (each language's test split needs every language's data)."""
    files, release = _files(root)
    if not files:
        raise DataError(f"lareqa: no XQuAD-R data: neither {_release_dir(root)}/<lang>.json nor "
                        f"{root / 'xquad'}/xquad.<lang>.json for any of {' '.join(XQUAD_R_LANGS)}")
    stamp = tuple((lang, str(p), p.stat().st_mtime_ns, p.stat().st_size) for lang, p in files.items())
    return _built((stamp, release))


def _split(questions: dict[str, list[dict]], pool: list[dict], split: str, lang: str, where: str) -> list[dict]:
    if split == POOL_SPLIT:
        return list(pool)
    if split != "test":
        raise DataError(f"lareqa has a test and a {POOL_SPLIT} split, not {split!r}")
    if lang not in questions:
        raise DataError(f"lareqa: no XQuAD-R data for '{lang}' ({where}); languages: {' '.join(sorted(questions))}")
    return list(questions[lang])


def lareqa_local(root: Path, split: str, lang: str) -> list[dict]:
    questions, pool = _local(root)
    return _split(questions, pool, split, lang, str(root))


def paragraphs_from_rows(rows, lang: str, where: str) -> list[Paragraph]:
    """Hub rows (one per question: id, context, question, answers {text, answer_start}) grouped into
    paragraphs by consecutive equal contexts, split into sentences by tasks/sentence_breaks.py.
    The Hub's loading script strips each context but keeps the unstripped offsets (157 XQuAD contexts,
    most of zh's, start with a space): an answer start one character late still falls in its sentence
    (tests/tasks/test_lareqa.py builds the same questions and pool from such rows)."""
    out: list[Paragraph] = []
    context, questions = None, []
    for r in rows:
        if r["context"] != context and questions:
            out.append(Paragraph(context, tuple(sentence_breaks(context, lang)), tuple(questions), where))
            questions = []
        context = r["context"]
        questions.append(_question({"id": r["id"], "question": r["question"],
                                    "answers": [{"answer_start": s} for s in r["answers"]["answer_start"]]}, where))
    if questions:
        out.append(Paragraph(context, tuple(sentence_breaks(context, lang)), tuple(questions), where))
    return out


@functools.lru_cache(maxsize=1)
def _hub() -> tuple[dict[str, list[dict]], list[dict]]:
    return build_xquad_r({lang: paragraphs_from_rows(hub_split(HUB_ID, lang, "validation"), lang,
                                                     f"{HUB_ID} ({lang})") for lang in XQUAD_R_LANGS})


def lareqa_hub(split: str, lang: str) -> list[dict]:
    questions, pool = _hub()
    return _split(questions, pool, split, lang, HUB_ID)


register(Task("lareqa", "retrieval", "target", "map_at_20",
              "LAReQA (XQuAD-R): each question retrieves its answer sentences from the pool of all 11 languages' "
              "sentences; mAP@20; no training",
              lareqa_local, lareqa_hub, lareqa_languages, XQUAD_R_LANGS, splits=("test", POOL_SPLIT),
              notes={"retrieval": "answer_retrieval",
                     "offline": "built from XQuAD's files with a rule-based sentence splitter unless the LAReQA "
                                "release's lareqa/xquad-r/<lang>.json (with its sentence breaks) is present"}))

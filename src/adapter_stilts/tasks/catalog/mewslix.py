"""Mewsli-X (XTREME-R's entity linking as retrieval; google-research dense_representations_for_
entity_retrieval/mel/mewsli-x.md): an entity mention in a WikiNews article (11 languages) retrieves
its WikiData entity from a fixed set of 1,003,893 candidates, each represented by a short Wikipedia
description in one of 50 languages. Scored with the phase-2 encoder (no training), mAP@20 = MRR@20
with the one gold entity (evaluation/answer_retrieval.py).

No Mewsli-X data is offline here (the candidate set alone is 535 MB); the task runs from:
- local files in the official release's layout (get-mewsli-x.sh: `mewslix/candidate_set_entities.jsonl`
  and `mewslix/wikinews_mentions-{dev,test}.jsonl`, all languages in one file, gold entities inside), or
  in XTREME's (scripts/download_data.sh + utils_preprocess.py mewslix_preprocess:
  `mewslix/wikinews_mentions/<split>-<lang>.jsonl` and `mewslix/wikinews_labels/<split>-<lang>.json`,
  {example_id: [entity id]}). XTREME blanks the TEST gold entities (they live on its leaderboard):
  such a file is refused, naming it, unless its labels file has them;
- the Hub: izhx/mewsli-x, a community copy of the release (`wikinews_mentions/<lang>/test.jsonl`,
  `candidate_entities.jsonl.tar.gz`). Its files are read as the release's schema (unverified here:
  no network; a record with one `mention` instead of a `mentions` list is read too).

Texts as XTREME's baseline builds them (third_party/utils_mewslix.py): the query is
`preprocess_mention` (the mention's sentence only, the mention marked `{ mention }`, pre-existing
{...} turned into (...), and the mention prepended: "Smith: The verdict ... { Smith } , who ...");
a candidate is `preprocess_entity_description` (its description's sentences joined by spaces).
Both have newlines folded into spaces and one pass of double spaces replaced, exactly as there.

Examples: test split {id: example_id, query, relevant: [gold entity id]}; the `pool` split
{id: entity id, language: description language, text}."""
from __future__ import annotations

import functools
import json
import re
import tarfile
from pathlib import Path

from ..readers import DataError, read_jsonl, require_file
from ..registry import POOL_SPLIT, Task, register
from .common import hub_file

MEWSLIX_LANGS = ("ar", "de", "en", "es", "fa", "ja", "pl", "ro", "ta", "tr", "uk")  # utils_mewslix.MENTION_LANGUAGES
CANDIDATES = "candidate_set_entities.jsonl"
HUB_ID = "izhx/mewsli-x"
HUB_CANDIDATES = "candidate_entities.jsonl.tar.gz"
_MARKED = re.compile(r"\{(.*?)\}")  # utils_mewslix._REGEX: a pre-existing {...}, turned into (...)


# ---------------------------------------------------------------- the official text preprocessing
def _normalise(text: str) -> str:
    return " ".join(text.splitlines()).replace("  ", " ").strip()


def _spans(value, length: int, what: str) -> list[tuple[int, int]]:
    """Span and validate_offsets_relative_to_context of utils_mewslix: 0 <= start < end, start
    inside the text, end at most its length."""
    try:
        spans = [(int(s["start"]), int(s["end"])) for s in value]
    except (KeyError, TypeError, ValueError):
        raise ValueError(f"{what}: expected a list of {{start, end}} objects") from None
    for s, e in spans:
        if s < 0 or s >= e or s >= length or e > length:
            raise ValueError(f"{what}: span [{s}, {e}] is not inside the {length}-character text")
    return spans


def mention_query(text: str, sentences: list[tuple[int, int]], start: int, end: int) -> str:
    """utils_mewslix.preprocess_mention: the sentence that holds the mention (Span.locate_in: the
    first that covers it), the mention marked in it, and the mention prepended."""
    focus = next(((s, e) for s, e in sentences if s <= start < e and s < end <= e), None)
    if focus is None:
        raise ValueError(f"mention [{start}, {end}] is in no sentence (or crosses a sentence boundary)")
    sentence, mention = text[focus[0]:focus[1]], text[start:end]
    left = _MARKED.sub(r"(\1)", sentence[:start - focus[0]])
    right = _MARKED.sub(r"(\1)", sentence[end - focus[0]:])
    return _normalise(f"{mention}: {left} {{ {mention} }} {right}")


def entity_text(description: str, sentences: list[tuple[int, int]]) -> str:
    """utils_mewslix.preprocess_entity_description."""
    return _normalise(" ".join(description[s:e] for s, e in sentences))


# ---------------------------------------------------------------- reading records
def _queries(record: dict, where: str, lang: str | None) -> list[tuple[str, str, str]]:
    """(example id, query, gold entity id or '') of a ContextualMentions (or ContextualMention) record;
    those of another language are left out when `lang` is given."""
    try:
        context = record["context"]
        if "mentions" not in record and "mention" not in record:
            raise ValueError("expected a 'mentions' list (a ContextualMentions record) or one 'mention'")
        mentions = record["mentions"] if "mentions" in record else [record["mention"]]
        if lang is not None and context["language"] != lang:
            return []
        text = context["text"]
        if not isinstance(text, str) or not text:
            raise ValueError("empty context text (the release's *_no_text files need get-mewsli-x.sh to fill it)")
        sentences = _spans(context["sentence_spans"], len(text), "context.sentence_spans")
        out = []
        for m in mentions:
            span = m["mention_span"]
            s, e = _spans([span], len(text), f"mention {m['example_id']}")[0]
            if text[s:e] != span["text"]:
                raise ValueError(f"mention {m['example_id']}: text {span['text']!r} is not at [{s}, {e}] of the "
                                 f"context")
            out.append((str(m["example_id"]), mention_query(text, sentences, s, e), str(m.get("entity_id") or "")))
        return out
    except ValueError as e:
        raise DataError(f"{where}: {e}") from None
    except (KeyError, TypeError, AttributeError) as e:
        raise DataError(f"{where}: not a Mewsli-X mention record ({type(e).__name__}: {e})") from None


def read_mentions(path: Path, lang: str, labels: dict[str, list[str]] | None = None,
                  one_language: bool = False) -> list[dict]:
    """Queries of `lang` from a mentions file (all languages: the release; `one_language`: XTREME's
    per-language file, where another language is an error). Gold from the mention, else `labels`."""
    out = []
    for lineno, record in read_jsonl(path):
        where = f"{path}:{lineno}"
        found = _queries(record, where, None if one_language else lang)
        if one_language and (found_lang := record["context"].get("language")) != lang:
            raise DataError(f"{where}: a context in language {found_lang!r} in the file of '{lang}'")
        for example_id, query, gold in found:
            gold = gold or ((labels or {}).get(example_id) or [""])[0].strip()
            if not gold:
                raise DataError(f"{where}: mention {example_id} has no gold entity id (XTREME blanks the test "
                                f"labels: use the release's wikinews_mentions-test.jsonl, or score another split)")
            out.append({"id": example_id, "query": query, "relevant": [gold]})
    return out


def read_candidates(lines, where: str) -> list[dict]:
    """The candidate set: one Entity per JSON line (`lines`: (line number, text) pairs)."""
    out, seen = [], set()
    for lineno, line in lines:
        if not line.strip():
            continue
        here = f"{where}:{lineno}"
        try:
            e = json.loads(line)
            entity_id, description = str(e["entity_id"]), e["description"]
            spans = _spans(e["sentence_spans"], len(description), "sentence_spans")
            language = str(e["description_language"])
        except json.JSONDecodeError as err:
            raise DataError(f"{here}: not valid JSON ({err.msg})") from None
        except (KeyError, TypeError, ValueError) as err:
            raise DataError(f"{here}: not a Mewsli-X entity ({type(err).__name__}: {err})") from None
        if entity_id in seen:
            raise DataError(f"{here}: entity id {entity_id!r} appears twice (the set maps ids to descriptions 1:1)")
        seen.add(entity_id)
        out.append({"id": entity_id, "language": language, "text": entity_text(description, spans)})
    return out


def _file_lines(path: Path):
    with open(require_file(path), encoding="utf-8") as f:
        yield from enumerate(f, 1)


def _tar_lines(path: Path):
    with tarfile.open(path) as tar:
        member = next((m for m in tar.getmembers() if m.isfile() and m.name.endswith(".jsonl")), None)
        if member is None:
            raise DataError(f"{path}: no .jsonl file in the archive")
        for lineno, raw in enumerate(tar.extractfile(member), 1):
            yield lineno, raw.decode("utf-8")


@functools.lru_cache(maxsize=2)
def _candidates(path: str, mtime_ns: int, size: int) -> tuple[dict, ...]:
    p = Path(path)
    lines = _tar_lines(p) if p.name.endswith(".tar.gz") else _file_lines(p)
    return tuple(read_candidates(lines, path))


def _cached_candidates(path: Path) -> list[dict]:
    stat = require_file(path).stat()
    return list(_candidates(str(path), stat.st_mtime_ns, stat.st_size))


# ---------------------------------------------------------------- local layouts and the Hub
def _test_files(folder: Path, split: str, lang: str) -> tuple[Path, Path, Path]:
    """(XTREME's per-language mentions, its labels, the release's all-language mentions)."""
    return (folder / "wikinews_mentions" / f"{split}-{lang}.jsonl", folder / "wikinews_labels" / f"{split}-{lang}.json",
            folder / f"wikinews_mentions-{split}.jsonl")


def _labels(path: Path) -> dict[str, list[str]]:
    if not path.is_file():
        return {}
    try:
        labels = json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as e:
        raise DataError(f"{path}:{e.lineno}: not valid JSON ({e.msg})") from None
    if not isinstance(labels, dict) or not all(isinstance(v, list) and v for v in labels.values()):
        raise DataError(f"{path}: expected {{example_id: [gold entity id]}}")
    return labels


def mewslix_local(root: Path, split: str, lang: str) -> list[dict]:
    folder = root / "mewslix"
    if split == POOL_SPLIT:
        return _cached_candidates(folder / CANDIDATES)
    if split != "test":
        raise DataError(f"mewslix has a test and a {POOL_SPLIT} split, not {split!r}")
    sharded, labels, release = _test_files(folder, split, lang)
    if sharded.is_file():
        return read_mentions(sharded, lang, _labels(labels), one_language=True)
    if release.is_file():
        return read_mentions(release, lang)
    raise DataError(f"mewslix: no test mentions for '{lang}': neither {sharded} (XTREME's layout) nor {release} "
                    f"(the release's)")


def mewslix_languages(root: Path) -> tuple[str, ...]:
    """Languages with test mentions, given the candidate set. The release's single file is taken to
    hold all 11 (reading 35 MB to list them would slow `run.py tasks`)."""
    folder = root / "mewslix"
    if not (folder / CANDIDATES).is_file():
        return ()
    sharded = {p.stem[len("test-"):] for p in (folder / "wikinews_mentions").glob("test-*.jsonl")}
    release = set(MEWSLIX_LANGS) if (folder / "wikinews_mentions-test.jsonl").is_file() else set()
    return tuple(sorted(sharded | release))


def mewslix_hub(split: str, lang: str) -> list[dict]:
    if split == POOL_SPLIT:
        return _cached_candidates(hub_file(HUB_ID, HUB_CANDIDATES))
    if split != "test":
        raise DataError(f"mewslix has a test and a {POOL_SPLIT} split, not {split!r}")
    return read_mentions(hub_file(HUB_ID, f"wikinews_mentions/{lang}/test.jsonl"), lang, one_language=True)


register(Task("mewslix", "retrieval", "target", "map_at_20",
              "Mewsli-X: a WikiNews entity mention retrieves its entity's description from 1M candidates in 50 "
              "languages; mAP@20 (= MRR@20); no training",
              mewslix_local, mewslix_hub, mewslix_languages, MEWSLIX_LANGS, splits=("test", POOL_SPLIT),
              notes={"retrieval": "answer_retrieval",
                     "offline": "no Mewsli-X data offline: mewslix/ in the release's or XTREME's layout, or the Hub"}))

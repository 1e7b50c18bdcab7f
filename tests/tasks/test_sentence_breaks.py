"""The rule-based sentence splitter that builds XQuAD-R offline: each rule on a small case (its
agreement with the release on the real files is checked through the LAReQA counts)."""
import pytest

from adapter_stilts.tasks.sentence_breaks import THAI_MIN_CHARS, sentence_breaks


def _sentences(text, lang):
    return [text[s:e] for s, e in sentence_breaks(text, lang)]


def test_terminal_punctuation_with_closers_and_whitespace_outside():
    text = '  He said "Stop." Then he left!  Why?\nNobody knows... It ended (finally.) Done'
    assert _sentences(text, "en") == ['He said "Stop."', "Then he left!", "Why?", "Nobody knows...",
                                      "It ended (finally.)", "Done"]
    spans = sentence_breaks(text, "en")
    assert all(not text[s].isspace() and not text[e - 1].isspace() for s, e in spans)


@pytest.mark.parametrize("text, lang, expected", [
    ("It rose 5 per cent. the next year too.", "en", 1),  # a lower-case word continues the sentence
    ("Das ist z.B. ein Test. Und d.h. nichts.", "de", 2),  # letter-period abbreviations
    ("Tesla starb am 7. Januar 1943. Seine Arbeit blieb.", "de", 2),  # German ordinal
    ("Tesla died in 1943. His work stayed.", "en", 2),  # a year ends an English sentence
    ("Sung by Maria C. Tiddeman in 1875.", "en", 1),  # an initial in English
    ("Cantado por Maria C. Tiddeman en 1875.", "es", 2),  # the release splits it in Spanish
    ("Dr. Smith arrived. Mr. Jones left.", "en", 2),
    ("Savaştı. 1038 yılında döndü.", "tr", 1),  # Turkish: no break before a digit
    ("Ναι; Όχι.", "el", 2),  # the Greek question mark
    ("ما هذا؟ لا شيء.", "ar", 2),
    ("यह है। वह है।", "hi", 2),
])
def test_the_rules(text, lang, expected):
    assert len(sentence_breaks(text, lang)) == expected, _sentences(text, lang)


def test_chinese_breaks_without_whitespace_but_not_before_a_digit():
    assert _sentences("第一句。第二句！第三句？", "zh") == ["第一句。", "第二句！", "第三句？"]
    assert _sentences("成立于 1817 年。1991 年重建。如今很好。", "zh") == [
        "成立于 1817 年。1991 年重建。", "如今很好。"]
    assert _sentences("他说“好。”然后走了。", "zh") == ["他说“好。”", "然后走了。"]


def test_thai_breaks_at_spaces_between_long_stretches():
    word = "ก" * (THAI_MIN_CHARS // 2)
    text = f"{word} {word} {word} {word} สั้น"
    spans = sentence_breaks(text, "th")
    # a break needs THAI_MIN_CHARS before it (since the last one) and after it
    assert [text[s:e] for s, e in spans] == [f"{word} {word}", f"{word} {word} สั้น"]
    assert sentence_breaks("สั้น สั้น", "th") == [(0, 9)]
    assert sentence_breaks("", "en") == [] and sentence_breaks("   ", "th") == []

"""Tests for the shared transcript normaliser."""

import unicodedata

import pytest

from espnet_plugins.text.normalize import normalize_text


@pytest.mark.parametrize(
    "raw, expected",
    [
        ("नमस्ते। दुनिया॥", "नमस्ते दुनिया"),  # danda and double danda
        ("विश्व-शान्ति, न्याय", "विश्व शान्ति न्याय"),  # hyphen splits, comma goes
        ("Hello, World! (Test) #1 $5 ₹ 50% a+b=c", "hello world test 1 5 50 a b c"),
        ("don't — it’s", "dont its"),  # apostrophes join, dashes separate
        ("  a\t\n b \u00a0 c  ", "a b c"),  # all whitespace, incl. no-break space
        ("१२३ ௧௨ 45", "१२३ ௧௨ 45"),  # digits of any script are kept
        ("", ""),
        ("।॥ , .", ""),
    ],
)
def test_normalize_examples(raw, expected):
    assert normalize_text(raw) == expected


@pytest.mark.parametrize(
    "word",
    ["स्वतन्त्रता", "मनुष्यों", "ज्ञान", "பிறக்கின்றனர்", "சுதந்திரம்", "స్వాతంత్ర్య", "అంతఃకరణమును", "क़ानून"],
)
def test_indic_words_are_unchanged(word):
    nfc = unicodedata.normalize("NFC", word)
    assert normalize_text(word) == nfc
    assert normalize_text(f"«{word}»।") == nfc


@pytest.mark.parametrize("block", [(0x0900, 0x097F), (0x0B80, 0x0BFF), (0x0C00, 0x0C7F)])
def test_no_combining_mark_is_ever_removed(block):
    base = {0x0900: "क", 0x0B80: "க", 0x0C00: "క"}[block[0]]
    for code in range(block[0], block[1] + 1):
        mark = chr(code)
        if unicodedata.category(mark) in ("Mn", "Mc"):
            assert normalize_text(base + mark) == unicodedata.normalize("NFC", base + mark), hex(code)


def test_nfc_makes_equivalent_spellings_equal():
    assert normalize_text("\u0958") == normalize_text("\u0915\u093c")  # qa: precomposed vs nukta
    assert normalize_text("e\u0301") == "\u00e9"
    assert normalize_text("CAFÉ") == "café"


def test_invisible_format_characters_are_dropped():
    assert normalize_text("र्\u200dय") == "र्य"  # zero-width joiner
    assert normalize_text("क्\u200cष") == "क्ष"  # zero-width non-joiner
    assert normalize_text("\ufeffabc\u00ad") == "abc"  # BOM, soft hyphen


@pytest.mark.parametrize("raw", ["नमस्ते। दुनिया॥", "A-b, 'c' d’e", "क़ानून  (1948)", "x\u200d-\u0301y"])
def test_idempotent(raw):
    once = normalize_text(raw)
    assert normalize_text(once) == once

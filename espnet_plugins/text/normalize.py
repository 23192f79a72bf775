"""The single text normaliser shared by corpus preparation, training text and scoring.

Why one function: CER/WER are only comparable when the reference transcripts, the text the
tokenizer is trained on and the hypotheses being scored went through exactly the same
normalisation.  Any second, slightly different normaliser silently inflates error rates
(e.g. a danda kept in references but never produced by the model).
"""

from __future__ import annotations

import re
import unicodedata

__all__ = ["normalize_text"]

# Apostrophes inside a word ("don't") are dropped without leaving a gap, so the word stays
# one token; every other punctuation mark becomes a word boundary (see normalize_text).
_JOINING_APOSTROPHES = frozenset("'\u2019\u02bc")
_WHITESPACE = re.compile(r"\s+")


def normalize_text(text: str) -> str:
    """Return ``text`` in the canonical form used for transcripts everywhere.

    Steps and why:

    * Unicode NFC, so that the same grapheme always has the same code points (Indic text
      from different sources mixes precomposed and decomposed forms, e.g. nukta letters).
    * Punctuation (Unicode categories ``P*``) and symbols (``S*``), including the danda
      ``।`` and double danda ``॥``, are replaced by a space: a synthesiser does not speak
      them and an acoustic model cannot hear them.  Replacing (not deleting) keeps
      hyphenated compounds such as ``विश्व-शान्ति`` as the two words that are spoken.
      Apostrophes are the exception and are deleted, so ``don't`` stays one word.
    * Combining marks (``Mn``/``Mc``: Indic vowel signs, virama, anusvara, nukta) are
      never touched; they are part of the letters.
    * Invisible format characters (``Cf``: zero-width joiner/non-joiner, BOM, soft
      hyphen) are deleted: they only change rendering, and keeping them would create
      distinct but identical-sounding tokens.
    * Digits are kept (a corpus filter, not the normaliser, decides whether it wants
      them).
    * Cased letters are lowercased (the case that matters is Latin; Greek or Cyrillic get
      the same treatment for the same reason).
    * Whitespace runs collapse to one space; leading/trailing space is stripped.
    """
    text = unicodedata.normalize("NFC", text).lower()
    out = []
    for ch in text:
        if ch in _JOINING_APOSTROPHES:
            continue
        category = unicodedata.category(ch)
        if category[0] in "PS" or category in ("Zs", "Zl", "Zp", "Cc"):
            out.append(" ")
        elif category != "Cf":
            out.append(ch)
    # lower() can decompose a few letters (e.g. U+0130), hence NFC once more at the end.
    return unicodedata.normalize("NFC", _WHITESPACE.sub(" ", "".join(out)).strip())

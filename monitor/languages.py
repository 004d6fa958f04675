"""Languages and scripts: which language an article is in, and which script a word is in.

An article's language comes from its source's ``language:`` setting, else
from its script (``detect_language``): most letters Hangul is Korean, most
Cyrillic is Russian, most Latin is English. A word's script picks the
language whose morphology gives its forms (``monitor.forms``): a Latin word
is English, a Cyrillic one Russian, a Hangul one Korean. Languages are ISO
639-1 codes; a setting such as ``en-GB`` counts as its primary subtag.
"""

from __future__ import annotations

import re

# The script each language is written in, for the languages whose script is not Latin.
# Only the script matters here: it decides whether a word's own language or the
# article's applies (``forms_apply``).
_SCRIPT_OF_LANGUAGE = {
    "ko": "hangul",
    **dict.fromkeys(("ru", "uk", "be", "bg", "mk", "sr", "kk", "ky", "mn", "tg"), "cyrillic"),
    **dict.fromkeys(("el",), "greek"),
    **dict.fromkeys(("ar", "fa", "ur", "ps"), "arabic"),
    **dict.fromkeys(("he", "yi"), "hebrew"),
    **dict.fromkeys(("ja",), "japanese"),
    **dict.fromkeys(("zh",), "han"),
}
# The language a word in each script is taken to be in when nothing says otherwise.
DEFAULT_LANGUAGE = {"latin": "en", "cyrillic": "ru", "hangul": "ko"}
LANGUAGE_CODE = re.compile(r"^[A-Za-z]{2,3}(?:[-_][A-Za-z0-9]{1,8})*$")

# Characters of the scripts ``script_of`` tells apart (Hangul syllables and jamo;
# Cyrillic and its supplement; Latin with its accented letters).
_HANGUL = re.compile(r"[\uac00-\ud7a3\u1100-\u11ff\u3130-\u318f]")
_CYRILLIC = re.compile(r"[\u0400-\u052f]")
_LATIN = re.compile(r"[A-Za-z\u00c0-\u024f]")
_DETECT_CHARS = 4000  # enough letters to tell; a long article costs no more


def _bytes_in(*ranges: tuple[int, int]) -> bytes:
    """For ``bytes.translate``: every byte outside ``ranges`` (inclusive), to delete."""
    keep = {b for low, high in ranges for b in range(low, high + 1)}
    return bytes(b for b in range(256) if b not in keep)


# ``detect_language`` counts characters by the first byte of their UTF-8 encoding, which
# ``bytes.translate`` does in C: a Python pass over an article's characters cost several
# times its tokenising (RFC 3629 §3 gives the byte ranges). ASCII letters and the lead
# bytes of U+00C0-U+024F (C3-C9) are Latin, of U+0400-U+052F (D0-D4) Cyrillic, of
# U+AC00-U+D7FF (EA-ED) Hangul syllables; other lead bytes are other scripts' letters,
# but for C2 (U+0080-U+00BF) and E2 (U+2000-U+2FFF), punctuation and symbols (curly
# quotes, dashes) that English copy is full of.
_COUNTED = {
    "en": _bytes_in((0x41, 0x5A), (0x61, 0x7A), (0xC3, 0xC9)),
    "ru": _bytes_in((0xD0, 0xD4)),
    "ko": _bytes_in((0xEA, 0xED)),
}
_OTHER_LETTERS = _bytes_in((0xCA, 0xCF), (0xD5, 0xDF), (0xE0, 0xE1), (0xE3, 0xE9), (0xEE, 0xF4))


def primary(language: str) -> str:
    """``en-GB`` -> ``en``: the primary subtag of a BCP 47 tag, lower case (RFC 5646 §2.2.1)."""
    return re.split(r"[-_]", language.strip(), maxsplit=1)[0].lower()


def script_of_language(language: str) -> str:
    return _SCRIPT_OF_LANGUAGE.get(language, "latin")


def script_of(word: str) -> str:
    """The script of a word's first letter: ``latin``, ``cyrillic``, ``hangul`` or ``other``."""
    for char in word:
        if char.isascii():
            if char.isalpha():
                return "latin"
            continue
        if _HANGUL.match(char):
            return "hangul"
        if _CYRILLIC.match(char):
            return "cyrillic"
        if _LATIN.match(char):
            return "latin"
        if char.isalpha():
            return "other"
    return "latin"  # digits only: no forms either way


def detect_language(text: str) -> str | None:
    """The language of ``text`` from the script most of its letters are in; None if no
    script we know has most of them."""
    if text.isascii():
        return "en" if any(c.isalpha() for c in text[:_DETECT_CHARS]) else None
    data = text[:_DETECT_CHARS].encode("utf-8", "surrogatepass")
    counts = {language: len(data.translate(None, other)) for language, other in _COUNTED.items()}
    language, count = max(counts.items(), key=lambda item: item[1])
    letters = sum(counts.values()) + len(data.translate(None, _OTHER_LETTERS))
    return language if count and count * 2 > letters else None


def forms_apply(forms_language: str | None, article_language: str | None) -> bool:
    """Whether forms made by ``forms_language``'s morphology count in an article.

    They do in an article of that language, of unknown language, or written in
    another script (a Russian name quoted in an English story is still
    Russian); not in another language of the same script (English forms of a
    Latin word are no forms of it in a German story). Spellings of no language
    (``None``: a romanised name) count everywhere.
    """
    if forms_language is None or article_language is None or article_language == forms_language:
        return True
    return script_of_language(article_language) != script_of_language(forms_language)

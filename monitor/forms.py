"""Word forms: the inflected forms of a word, and the forms a name takes, per language.

``~report`` matches report, reports, reported, reporting; ``~доклад`` its
Russian cases; ``~보고`` the word with a Korean particle or a 하다 ending
attached. Names (``entity:``) take the forms their language gives a name,
with no syntax: a Russian name its case endings (``Мацегоры``, ``Мацегорой``),
a Korean name its particles (``마체고라는``, ``마체고라가``). The word's
script picks the language (``monitor.languages``); the matcher uses the
forms only where they apply to the article's language.

Forms are computed once per word when rules are compiled, never per
article: matching a word's forms is matching any of a few exact words, which
the presearch index and the exact evaluation already do cheaply.

- English: lemminflect's lexicon (a word that is a dictionary form keeps
  its own paradigm: ``~meeting`` is meeting, meetings, not met; any other
  word is lemmatised first: ``~talks`` is talk, talks, talked, talking).
  Words it does not know get the regular noun and verb endings.
- Russian: pymorphy3 with the OpenCorpora dictionary, whose predictor also
  declines surnames it has never seen; a word it cannot parse (``Ын`` of
  ``Ким Чен Ын``) gets the regular noun endings of its last letter.
- Korean: particles and the copula, chosen by whether the last syllable has
  a final consonant (가 after a vowel, 이 after a consonant), and for ``~``
  words the endings of the 하다/되다 verbs that Sino-Korean nouns form
  (수출 -> 수출했다, 수출된). A particle attaches to the last word of a
  phrase only; a Korean phrase also matches its words written together.

bench/bench_forms.py measures these choices against the alternatives on
labelled words (tests/word_forms.yaml).
"""

from __future__ import annotations

import logging
import re
import sys
import threading
from dataclasses import dataclass
from functools import lru_cache
from typing import Any

from monitor.languages import DEFAULT_LANGUAGE, script_of
from monitor.tokens import fold

# The languages whose words have forms here; a word in any other has none.
FORMS_LANGUAGES = frozenset(DEFAULT_LANGUAGE.values())


@dataclass(frozen=True)
class Forms:
    """The folded forms of one word in one language, the word itself among them.

    ``language`` None: spellings that count in any language (a romanised name).
    """

    language: str | None
    words: frozenset[str]


def phrase_forms(words: list[str], *, name: bool) -> list[Forms | None]:
    """Forms for each word of a phrase (``~"a b"``) or of a name (``name=True``).

    Korean attaches particles and endings to the last word alone; Russian and
    English inflect every word. Latin-script names take no forms: English
    names do not inflect (a possessive is its own token, ``Putin's``).
    """
    last = len(words) - 1
    return [_forms(w.lower(), name=name, last=i == last) for i, w in enumerate(words)]


@lru_cache(maxsize=200_000)
def _forms(word: str, *, name: bool, last: bool) -> Forms | None:
    script = script_of(word)
    language = DEFAULT_LANGUAGE.get(script)
    if language == "en":
        found = set() if name else _english(word)
    elif language == "ru":
        found = _russian(word)
    elif language == "ko":
        found = _korean(word, verbs=not name) if last else set()
    else:
        return None
    folded = frozenset(map(fold, found | {word}))
    return Forms(language, folded) if len(folded) > 1 else None


def release_lexicons() -> None:
    """Let go of the lexicons (lemminflect's tables, pymorphy3's dictionary: ~70 MiB).

    They serve loading rules only: the forms of every word seen stay cached here,
    and a lexicon loads again (a fraction of a second) when a reload brings a new
    word. A daemon calls this once its rules are compiled.
    """
    _analyzer.cache_clear()
    if "lemminflect" in sys.modules:
        # lemminflect keeps its tables in singletons, registered in one dict; a fresh
        # instance loads its table again on first use.
        from lemminflect.utils.Singleton import _Singleton

        _Singleton._instances.clear()


# --- English -------------------------------------------------------------------------

_MIN_GUESSED = 4  # unknown words shorter than this get no guessed endings ("us" -> "uses")


def _english(word: str) -> set[str]:
    import lemminflect  # deferred: only rules with English word forms pay for its tables

    own = lemminflect.getAllInflections(word)
    if own:
        paradigms = {word: own}
    else:
        lemmas = {lemma for found in lemminflect.getAllLemmas(word).values() for lemma in found}
        paradigms = {lemma: lemminflect.getAllInflections(lemma) for lemma in lemmas}
    forms = set(paradigms)
    for inflections in paradigms.values():
        forms.update(form for found in inflections.values() for form in found)
    if not paradigms and len(word) >= _MIN_GUESSED and word.isalpha():
        # Not in the lexicon (a rare word or a coinage): the regular endings of a noun
        # and a verb. A guess that is no word costs nothing; it never occurs.
        for upos in ("NOUN", "VERB"):
            guessed = lemminflect.getAllInflectionsOOV(word, upos)
            forms.update(form for found in guessed.values() for form in found)
    return forms


# --- Russian -------------------------------------------------------------------------

_morph_lock = threading.Lock()


@lru_cache(maxsize=1)
def _analyzer() -> Any:
    import pymorphy3  # deferred: ~25 MiB of dictionary, only for rules with Cyrillic words

    # It logs two INFO lines per load ("Loading dictionaries from ..."): not news to a user.
    logging.getLogger("pymorphy3").setLevel(logging.WARNING)
    return pymorphy3.MorphAnalyzer()


def _russian(word: str) -> set[str]:
    with _morph_lock:  # pymorphy3's analyzer keeps caches; compile threads may share it
        parses = _analyzer().parse(word)
        # The word's own paradigms when it is a dictionary form (nominative, infinitive),
        # else the likeliest parse's: ``стали`` is a form of стать before it is of сталь.
        known = [p for p in parses if "UNKN" not in p.tag]
        own = [p for p in known if p.normal_form == word]
        forms = {form.word for p in (own or known[:1]) for form in p.lexeme}
    if len(forms - {word}) == 0:
        forms |= _declined(word)
    return forms


# Regular endings of a Russian noun by its last letter, for words the dictionary
# cannot parse: a foreign name declines as a native noun of the same ending.
_HARD_ENDINGS = ("а", "у", "ом", "е", "ы", "ов", "ам", "ами", "ах")
_SOFT_ENDINGS = {
    "а": ("ы", "и", "е", "у", "ой", "ою", "ей"),
    "я": ("и", "е", "ю", "ей", "ею"),
    "й": ("я", "ю", "ем", "е", "и", "ев"),
    "ь": ("я", "ю", "ем", "е", "и", "ью"),
}
_CONSONANTS = "бвгджзклмнпрстфхцчшщ"


def _declined(word: str) -> set[str]:
    last = word[-1:]
    if last in _SOFT_ENDINGS:
        return {word[:-1] + ending for ending in _SOFT_ENDINGS[last]}
    if last and last in _CONSONANTS:
        return {word + ending for ending in _HARD_ENDINGS}
    return set()  # -о, -у, -и, -е, -ю: foreign words that do not decline


# --- Korean --------------------------------------------------------------------------

# Particles (조사) and the copula as they follow a final consonant / a vowel; the
# rest follow either. ㄹ takes the vowel forms of -(으)로 (서울로, not 서울으로).
_AFTER_CONSONANT = """은 이 을 과 으로 으로는 으로도 으로서 으로써 으로부터 으로의 이나 이랑
    이라도 이든 이든지 이야 이며 이다 이었다 이었고 이었으며 이었던 이고 인 인데 이라 이라고
    이라는 이란 이라며 이라면 이라서 입니다 이지만 이자 이면""".split()  # noqa: SIM905
_AFTER_VOWEL = """는 가 를 와 로 로는 로도 로서 로써 로부터 로의 나 랑 라도 든 든지 야 며
    다 였다 였고 였으며 였던 이다 이었다 인 인데 라 라고 라는 란 라며 라면 라서 입니다 이지만
    이자 이면""".split()  # noqa: SIM905
_ANY = """의 에 에서 에게 에게서 한테 한테서 께 께서 께서는 께서도 도 만 까지 부터 마다 조차
    마저 밖에 처럼 보다 만큼 같이 대로 뿐 하고 에는 에서는 에도 에서도 에게는 에게도 까지는
    까지도 만은 만을 만이 만의 부터는 에서의 에의 에서만 에게만 과의 와의 과는 와는 과도 와도
    이나마 측 측은 측이 측의 측도 측에 측과""".split()  # noqa: SIM905
# Endings of the verbs a Sino-Korean noun forms with 하다 (to do) and 되다 (to become):
# 수출 (export) -> 수출하다, 수출했다, 수출한, 수출된. Only ``~`` words take them.
_VERB_ENDINGS = """하다 한다 했다 하였다 하는 한 할 하고 하며 하여 해 해서 했고 했으며 하였으며
    하였고 했는데 하는데 하기 하기로 함 하면 하면서 하자 하지 했던 하던 하겠다 합니다 했습니다
    했다고 한다고 했다며 한다며 할지 했지만 하려 하려고 되다 된다 됐다 되었다 되는 된 될 되고
    되어 돼 되며 됐고 되면서 됐다고 된다고""".split()  # noqa: SIM905
_PLURAL = "들"
_HANGUL_FIRST, _HANGUL_LAST = 0xAC00, 0xD7A3
_JONG_COUNT, _RIEUL = 28, 8  # final consonants per vowel; the index of ㄹ among them


def _final(syllable: str) -> int | None:
    """The final-consonant index of a Hangul syllable (0: none), None for anything else."""
    code = ord(syllable)
    if not _HANGUL_FIRST <= code <= _HANGUL_LAST:
        return None
    return (code - _HANGUL_FIRST) % _JONG_COUNT


def _particles(word: str) -> list[str]:
    final = _final(word[-1])
    if final is None:  # ends in a digit or Latin letter: either form may follow
        return [*_AFTER_CONSONANT, *_AFTER_VOWEL, *_ANY]
    if final == 0:
        return [*_AFTER_VOWEL, *_ANY]
    if final == _RIEUL:
        vowel_ro = [p for p in _AFTER_VOWEL if p.startswith("로")]
        own = [p for p in _AFTER_CONSONANT if not p.startswith("으로")]
        return [*own, *vowel_ro, *_ANY]
    return [*_AFTER_CONSONANT, *_ANY]


def _korean(word: str, *, verbs: bool) -> set[str]:
    """A name takes particles; a ``~`` word also its plural and its 하다/되다 endings."""
    forms = {word + particle for particle in _particles(word)}
    if verbs:
        plural = word + _PLURAL
        forms.add(plural)
        forms.update(plural + particle for particle in _particles(plural))
        forms.update(word + ending for ending in _VERB_ENDINGS)
    return forms


# --- romanised Korean names ----------------------------------------------------------

# Korean surnames as the press romanises them, each group one surname: Revised
# Romanization (2000, South Korea's official system), McCune-Reischauer without its
# breves (North Korea's, and older Western copy) and the usual personal spellings.
_SURNAME_GROUPS = [
    group.split()
    for group in """kim gim|lee yi rhee ri i|park pak bak|choi choe|jung jeong
    chung chong|kang gang|cho jo joe|yoon yun|jang chang|lim im rim|han|oh o|seo suh so|
    shin sin|kwon gwon|hwang|ahn an|song|yoo yu you|ryu ryoo|hong|jeon jun chon chun|
    ko go|moon mun|yang|son sohn|bae pae|baek paek paik|heo hur ho|nam|sim shim|
    noh roh no|ha|kwak gwak|sung seong|cha|joo ju chu|woo wu|koo gu ku|min|na ra|
    jin chin|ji chi|eom um uhm|chae|won|bang pang|kong gong|hyun hyeon""".split("|")  # noqa: SIM905
]
_SURNAMES = {name: frozenset(group) for group in _SURNAME_GROUPS for name in group}
# One romanised syllable: an initial, a vowel, a final, in either system.
_SYLLABLE = re.compile(
    r"(kk|tt|pp|ss|jj|ch|[gkndtrlmbpsjh]?)"
    r"(wae|yae|yeo|wa|wo|we|wi|ae|ya|eo|ye|oe|yo|yu|eu|ui|oo|a|e|i|o|u)"
    r"(ng|[kntlmp]?)"
)
# How one sound is spelt across the systems: ㅓ is eo (RR), o (MR's ŏ) or u ("Byung"
# for 병); ㅕ yeo, yo or yu; ㅡ eu or u (MR's ŭ); ㅜ u or oo. ㅂ ㄱ ㄷ ㅈ open a syllable
# as b g d j in RR, p k t ch in MR.
_VOWELS = {
    "eo": ("eo", "o", "u"), "o": ("o", "eo"), "u": ("u", "eo", "eu", "oo"), "oo": ("oo", "u"),
    "yeo": ("yeo", "yo", "yu"), "yo": ("yo", "yeo"), "yu": ("yu", "yeo", "yo"),
    "eu": ("eu", "u"),
}  # fmt: skip
_INITIALS = {"b": ("b", "p"), "p": ("p", "b"), "g": ("g", "k"), "k": ("k", "g"),
             "d": ("d", "t"), "t": ("t", "d"), "j": ("j", "ch"), "ch": ("ch", "j")}  # fmt: skip


def romanised_variants(tokens: tuple[str, ...]) -> list[tuple[frozenset[str], ...]]:
    """The ways the press writes a romanised Korean name given as folded ``tokens``.

    A known surname with a two-syllable given name, in either order, given name
    joined or not (``Byung-hwan`` is already ``byung hwan``), each word as a set
    of its spellings: ``park byung hwan`` also matches Park Byunghwan,
    Byung-hwan Park, Pak Pyong-hwan and Park Byeong-hwan. Anything else: [].
    """
    if len(tokens) != 3:
        return []
    first, second, third = tokens
    if first in _SURNAMES and _is_syllable(second) and _is_syllable(third):
        surname, given = first, (second, third)
    elif third in _SURNAMES and _is_syllable(first) and _is_syllable(second):
        surname, given = third, (first, second)
    else:
        return []
    family = _SURNAMES[surname]
    one, two = _spellings(given[0]), _spellings(given[1])
    joined = frozenset(a + b for a in one for b in two)
    return [(family, one, two), (family, joined), (one, two, family), (joined, family)]


def _is_syllable(token: str) -> bool:
    return _SYLLABLE.fullmatch(token) is not None


def _spellings(syllable: str) -> frozenset[str]:
    """A romanised syllable in every spelling of its sounds (``byung``: byeong, pyong...)."""
    match = _SYLLABLE.fullmatch(syllable)
    assert match is not None  # romanised_variants checked it
    initial, vowel, final = match.groups()
    return frozenset(
        i + v + final
        for i in _INITIALS.get(initial, (initial,))
        for v in _VOWELS.get(vowel, (vowel,))
    )

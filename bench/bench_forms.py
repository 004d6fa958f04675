"""Word forms: our morphology against the alternatives, on labelled words.

tests/word_forms.yaml lists, per language, words as a rule writer writes them,
the forms a story may use (which must match) and look-alike words (which must
not). Each installed candidate is scored on every pair:

- ``exact``: the token equals the word (what a keyword filter does);
- ``monitor``: our forms (monitor/forms.py): lemminflect for English,
  pymorphy3 for Russian, particle and ending rules for Korean, expanded once
  per rule word;
- stemmers and lemmatisers that would instead analyse every token of every
  article: Snowball (PyStemmer or snowballstemmer), simplemma, spaCy's lookup
  tables (spacy-lookups-data), kiwipiepy for Korean. A pair matches when both
  sides reduce to the same stem or lemma (for kiwipiepy: the token's leading
  nouns are the word and the rest are particles or endings).

Printed per section and candidate: recall (labelled forms matched), false
(look-alikes matched), F1 over all pairs, the cost (per rule word for an
expansion, per article token for an analyser) and the installed size. A
candidate that is not installed is named with how to install it; the project
installs only the ones it uses (pyproject.toml).

Run: ``make bench`` (or ``.venv/bin/python bench/bench_forms.py``).
"""

from __future__ import annotations

import importlib.metadata
import importlib.util
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from monitor.forms import _forms, phrase_forms
from monitor.tokens import fold

WORDS = Path(__file__).resolve().parent.parent / "tests" / "word_forms.yaml"
LANGUAGE = {"en": "en", "ru": "ru", "ko": "ko", "ru_names": "ru", "ko_names": "ko"}

Matches = Callable[[str, str], bool]  # (rule word, story token) -> does it match


@dataclass
class Score:
    method: str
    recall: float
    false: float
    f1: float
    cost: str
    size: str


def pairs(entries: dict[str, Any]) -> list[tuple[str, str, bool]]:
    found = []
    for word, labels in entries.items():
        found += [(word, form, True) for form in labels.get("match") or ()]
        found += [(word, form, False) for form in labels.get("no_match") or ()]
    return found


def score(method: str, matches: Matches, labelled: list[tuple[str, str, bool]]) -> Score:
    tp = fn = fp = tn = 0
    for word, form, expected in labelled:
        got = matches(word, form)
        tp, fn = tp + (got and expected), fn + (not got and expected)
        fp, tn = fp + (got and not expected), tn + (not got and not expected)
    recall = tp / (tp + fn) if tp + fn else 1.0
    precision = tp / (tp + fp) if tp + fp else 1.0
    f1 = 2 * precision * recall / (precision + recall) if precision + recall else 0.0
    return Score(method, recall, fp / (fp + tn) if fp + tn else 0.0, f1, "", "")


def timed_per(calls: Callable[[], int]) -> float:
    """Microseconds per unit of work: ``calls`` does the work and returns how many units."""
    started = time.perf_counter()
    units = calls()
    return (time.perf_counter() - started) * 1e6 / max(units, 1)


def installed_size(*distributions: str) -> str:
    total = 0
    for name in distributions:
        try:
            files = importlib.metadata.files(name) or []
        except importlib.metadata.PackageNotFoundError:
            return "?"
        total += sum(f.size or 0 for f in files)
    return f"{total / (1 << 20):.1f} MiB"


# --- candidates --------------------------------------------------------------------


def ours(name: bool) -> Matches:
    def matches(word: str, form: str) -> bool:
        (found,) = phrase_forms([word], name=name)
        return fold(form) == fold(word) or (found is not None and fold(form) in found.words)

    return matches


def exact(word: str, form: str) -> bool:
    return fold(word) == fold(form)


def snowball(language: str) -> tuple[Callable[[str], str], str]:
    name = {"en": "english", "ru": "russian"}[language]
    if importlib.util.find_spec("Stemmer"):
        import Stemmer

        return Stemmer.Stemmer(name).stemWord, installed_size("PyStemmer")
    import snowballstemmer

    return snowballstemmer.stemmer(name).stemWord, installed_size("snowballstemmer")


def simplemma_lemma(language: str) -> tuple[Callable[[str], str], str]:
    import simplemma

    return (lambda w: simplemma.lemmatize(w, lang=language)), installed_size("simplemma")


def spacy_lookup(language: str) -> tuple[Callable[[str], str], str]:
    import gzip
    import json

    import spacy_lookups_data

    path = Path(spacy_lookups_data.__file__).parent / "data" / f"{language}_lemma_lookup.json.gz"
    table = json.loads(gzip.decompress(path.read_bytes()))
    return (lambda w: table.get(w, w)), installed_size("spacy-lookups-data")


# Analysers: name, the languages compared, the modules any of which provides it (and the
# package to install), and what builds its reduce function for a language.
ANALYSERS: list[tuple[str, tuple[str, ...], tuple[str, ...], str, Any]] = [
    ("snowball", ("en", "ru"), ("Stemmer", "snowballstemmer"), "PyStemmer", snowball),
    ("simplemma", ("en", "ru"), ("simplemma",), "simplemma", simplemma_lemma),
    ("spacy lookup", ("en",), ("spacy_lookups_data",), "spacy-lookups-data", spacy_lookup),
]


def kiwi_matcher() -> tuple[Matches, Callable[[str], object], str] | None:
    if not importlib.util.find_spec("kiwipiepy"):
        return None
    from kiwipiepy import Kiwi

    kiwi = Kiwi()
    # Particles (J), endings (E), suffixes (XS) and the copula/verb stems they make.
    grammatical = ("J", "E", "XS", "VCP", "VX")

    def matches(word: str, form: str) -> bool:
        morphemes = kiwi.tokenize(form)
        nouns = ""
        for i, m in enumerate(morphemes):
            if m.tag.startswith("N") and nouns != word:
                nouns += m.form
                continue
            return nouns == word and all(t.tag.startswith(grammatical) for t in morphemes[i:])
        return nouns == word

    return matches, kiwi.tokenize, installed_size("kiwipiepy", "kiwipiepy_model")


def analyser_row(
    method: str, reduce: Callable[[str], str], size: str, labelled: list[tuple[str, str, bool]]
) -> Score:
    def matches(word: str, form: str) -> bool:
        return reduce(word.lower()) == reduce(form.lower())

    row = score(method, matches, labelled)
    tokens = [form.lower() for _, form, _ in labelled] * 20
    row.cost = f"{timed_per(lambda: sum(1 for t in tokens if reduce(t) is not None)):.1f} us/token"
    row.size = size
    return row


def rows(section: str, entries: dict[str, Any]) -> tuple[list[Score], list[str]]:
    language, name = LANGUAGE[section], section.endswith("_names")
    labelled = pairs(entries)
    found = [score("exact", exact, labelled)]
    mine = score("monitor", ours(name), labelled)
    words = list(entries)
    _forms.cache_clear()  # the cost of a word's first lookup, as a config load pays it
    mine.cost = f"{timed_per(lambda: sum(1 for w in words if phrase_forms([w], name=name))):.0f}"
    mine.cost += " us/word"
    mine.size = {
        "en": installed_size("lemminflect"),
        "ru": installed_size("pymorphy3", "pymorphy3-dicts-ru"),
        "ko": "0 (rules)",
    }[language]
    found.append(mine)
    missing = []
    for method, languages, modules, package, make in ANALYSERS:
        if language not in languages:
            continue
        if any(importlib.util.find_spec(m) for m in modules):
            reduce, size = make(language)
            found.append(analyser_row(method, reduce, size, labelled))
        else:
            missing.append(package)
    if language == "ko":
        kiwi = kiwi_matcher()
        if kiwi is None:
            missing.append("kiwipiepy")
        else:
            matches, analyse, size = kiwi
            row = score("kiwipiepy", matches, labelled)
            tokens = [form for _, form, _ in labelled]
            row.cost = f"{timed_per(lambda: sum(1 for t in tokens if analyse(t))):.0f} us/token"
            row.size = size
            found.append(row)
    return found, missing


def main() -> None:
    sections = yaml.safe_load(WORDS.read_text(encoding="utf-8"))
    print(f"labelled words: {WORDS.relative_to(WORDS.parent.parent)}")
    header = f"{'section':<9} {'method':<13} {'words':>5} {'recall':>6} {'false':>6} {'F1':>5}"
    print(f"{header}  {'cost':<14} installed")
    not_installed: set[str] = set()
    for section, entries in sections.items():
        found, missing = rows(section, entries)
        not_installed.update(missing)
        for row in found:
            print(f"{section:<9} {row.method:<13} {len(entries):>5} {row.recall:>6.2f} "
                  f"{row.false:>6.2f} {row.f1:>5.2f}  {row.cost:<14} {row.size}")  # fmt: skip
    if not_installed:
        wanted = " ".join(sorted(not_installed))
        print(f"\nnot installed, so not compared: {wanted} (pip install {wanted})")
    print("\nmonitor uses: lemminflect (en), pymorphy3 (ru), particle and ending rules (ko)")


if __name__ == "__main__":
    main()

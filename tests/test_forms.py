"""Word forms (monitor.forms): a case per rule of each language's morphology."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from monitor.forms import Forms, phrase_forms, release_lexicons, romanised_variants
from monitor.tokens import fold


def forms_of(word: str, *, name: bool = False) -> set[str]:
    """The folded forms of one word (the word alone when it has none)."""
    (found,) = phrase_forms([word], name=name)
    return set(found.words) if found else {fold(word)}


def folded(*words: str) -> set[str]:
    return {fold(w) for w in words}


@pytest.mark.parametrize(
    ("word", "present", "absent"),
    [
        # a dictionary form keeps its own paradigm
        ("report", ("reports", "reported", "reporting"), ("reporter", "reportedly")),
        ("weapon", ("weapons",), ("weaponry",)),
        ("freeze", ("froze", "frozen", "freezes", "freezing"), ("freezer",)),
        ("withdraw", ("withdrew", "withdrawn", "withdraws"), ("withdrawal",)),
        ("meeting", ("meetings",), ("met", "meet")),
        ("police", ("policed", "policing"), ("policy", "policies")),
        ("child", ("children",), ("childhood",)),
        ("crisis", ("crises",), ()),
        # an inflected form is lemmatised first
        ("talks", ("talk", "talked", "talking"), ()),
        ("exported", ("export", "exports", "exporting"), ("exporter",)),
        # a word the lexicon does not know gets the regular endings, a short one none
        ("denuclearize", ("denuclearized", "denuclearizes", "denuclearizing"), ()),
        ("us", (), ("uses", "used")),
    ],
)
def test_english_forms(word: str, present: tuple[str, ...], absent: tuple[str, ...]) -> None:
    """An English word matches its inflections, never a derived or a look-alike word."""
    forms = forms_of(word)
    assert folded(word, *present) <= forms
    assert not folded(*absent) & forms


def test_english_names_take_no_forms() -> None:
    """A Latin-script name does not inflect: no "Putins", no "Matsegoras"."""
    assert phrase_forms(["Vladimir", "Putin"], name=True) == [None, None]


@pytest.mark.parametrize(
    ("word", "present", "absent"),
    [
        ("доклад", ("доклада", "докладе", "докладом", "доклады", "докладов"), ("докладчик",)),
        ("санкция", ("санкции", "санкций", "санкциями"), ("санкционный",)),
        ("экспортировать", ("экспортирует", "экспортировали", "экспортируют"), ("экспортёр",)),
        # an inflected form: the likeliest paradigm (стать before сталь)
        ("стали", ("стать", "стал", "станет"), ()),
    ],
)
def test_russian_word_forms(word: str, present: tuple[str, ...], absent: tuple[str, ...]) -> None:
    """A Russian word matches the forms of its paradigm, not words derived from it."""
    forms = forms_of(word)
    assert folded(word, *present) <= forms
    assert not folded(*absent) & forms


@pytest.mark.parametrize(
    ("name", "present"),
    [
        ("Мацегора", ("Мацегоры", "Мацегоре", "Мацегору", "Мацегорой")),
        ("Александр", ("Александра", "Александру", "Александром")),
        ("Путин", ("Путина", "Путину", "Путиным", "Путине")),
        ("Лавров", ("Лаврова", "Лаврову", "Лавровым")),
        # the dictionary cannot parse it: the regular endings of a hard consonant
        ("Ын", ("Ына", "Ыну", "Ыном", "Ыне")),
    ],
)
def test_russian_names_take_their_cases(name: str, present: tuple[str, ...]) -> None:
    """A Russian name matches in every case the press writes it in."""
    assert folded(name, *present) <= forms_of(name, name=True)


def test_a_russian_word_that_does_not_decline_keeps_one_form() -> None:
    """Шойгу is indeclinable: it has no other forms to match."""
    assert phrase_forms(["Шойгу"], name=True) == [None]


@pytest.mark.parametrize(
    ("name", "present", "absent"),
    [
        # after a vowel: 는 가 를 와 로
        ("마체고라", ("마체고라는", "마체고라가", "마체고라를", "마체고라와", "마체고라의"),
         ("마체고라은", "마체고라을", "마체고라과")),
        # after a consonant: 은 이 을 과 으로
        ("북한", ("북한은", "북한이", "북한을", "북한과", "북한으로", "북한에서"),
         ("북한는", "북한가", "북한를", "북한로", "북한산")),
        # after ㄹ: 로, never 으로
        ("서울", ("서울로", "서울은", "서울에서"), ("서울으로",)),
    ],
)  # fmt: skip
def test_korean_particles_follow_the_last_syllable(
    name: str, present: tuple[str, ...], absent: tuple[str, ...]
) -> None:
    """A Korean name takes the particle its final sound calls for, and no other suffix."""
    forms = forms_of(name, name=True)
    assert folded(name, *present) <= forms
    assert not folded(*absent) & forms


def test_korean_verb_endings_only_for_words() -> None:
    """수출 (export) as a ~ word matches 수출했다 and 수출된; as a name it does not."""
    assert folded("수출했다", "수출하는", "수출된", "수출을") <= forms_of("수출")
    assert not folded("수출했다", "수출된") & forms_of("수출", name=True)


def test_korean_particles_attach_to_the_last_word_of_a_phrase() -> None:
    """In 제재 위원회 only 위원회 takes particles: 제재는 위원회 is no form of the phrase."""
    first, last = phrase_forms(["제재", "위원회"], name=False)
    assert first is None
    assert last is not None and fold("위원회는") in last.words


def test_forms_carry_their_language() -> None:
    """Each word's forms say which morphology made them (its script's language)."""
    languages = [f.language if f else None for f in phrase_forms(["report", "доклад", "보고"],
                                                                  name=False)]  # fmt: skip
    assert languages == ["en", "ru", "ko"]
    assert isinstance(phrase_forms(["report"], name=False)[0], Forms)


def test_words_in_other_scripts_take_no_forms() -> None:
    """A word in a script without a morphology here (Greek, Han, digits) stays exact."""
    assert phrase_forms(["λόγος", "报告", "1718"], name=False) == [None, None, None]


def spelt(variants: list[tuple[frozenset[str], ...]]) -> set[tuple[str, ...]]:
    """Every word sequence the variants stand for."""
    found: set[tuple[str, ...]] = set()
    for variant in variants:
        sequences: list[tuple[str, ...]] = [()]
        for spellings in variant:
            sequences = [(*seq, word) for seq in sequences for word in spellings]
        found.update(sequences)
    return found


@pytest.mark.parametrize(
    ("tokens", "present"),
    [
        (("park", "byung", "hwan"),
         {("park", "byung", "hwan"), ("park", "byunghwan"), ("byung", "hwan", "park"),
          ("byunghwan", "park"), ("pak", "pyong", "hwan"), ("park", "byeong", "hwan"),
          ("bak", "byeonghwan")}),
        (("byung", "hwan", "park"), {("park", "byung", "hwan"), ("byeong", "hwan", "park")}),
        (("kim", "jong", "un"),
         {("kim", "jongun"), ("jong", "un", "kim"), ("kim", "jeong", "eun"),
          ("kim", "chong", "un")}),
    ],
)  # fmt: skip
def test_romanised_korean_names(tokens: tuple[str, ...], present: set[tuple[str, ...]]) -> None:
    """A romanised Korean name is also found in the other orders, joinings and spellings the
    press uses (Revised Romanization, McCune-Reischauer, the usual personal spellings)."""
    assert present <= spelt(romanised_variants(tokens))


@pytest.mark.parametrize(
    "tokens", [("lee", "harvey", "oswald"), ("alexander", "matsegora"), ("park", "avenue")]
)
def test_names_that_are_not_romanised_korean_have_no_variants(tokens: tuple[str, ...]) -> None:
    """Only a known surname with a two-syllable given name gets variants."""
    assert romanised_variants(tokens) == []


# Look-alikes that are also true forms, which a word's forms cannot tell apart: 러시아인
# is 러시아 with the copula 인 ("being Russia") and the word "a Russian"; Александров is
# the genitive plural of Александр and a surname.
KNOWN_LOOK_ALIKES = {("ko", "러시아", "러시아인"), ("ru_names", "Александр", "Александров")}


def test_labelled_words() -> None:
    """Every labelled form of tests/word_forms.yaml matches its word, and no look-alike does
    but the known homographs (bench/bench_forms.py scores the alternatives on the same)."""
    sections = yaml.safe_load((Path(__file__).parent / "word_forms.yaml").read_text("utf-8"))
    missed, wrong = [], set()
    for section, entries in sections.items():
        name = section.endswith("_names")
        for word, labels in entries.items():
            forms = forms_of(word, name=name)
            missed += [
                (section, word, f) for f in labels.get("match") or () if fold(f) not in forms
            ]
            wrong |= {(section, word, f) for f in labels.get("no_match") or () if fold(f) in forms}
    assert missed == []
    assert wrong == KNOWN_LOOK_ALIKES


def test_released_lexicons_load_again_when_a_word_needs_them() -> None:
    """After release_lexicons (a daemon's, once rules are compiled), a new word still gets
    its forms: the lexicons load again; words already seen keep theirs without them."""
    from lemminflect.utils.Singleton import _Singleton

    before = forms_of("exported")
    release_lexicons()
    assert not _Singleton._instances  # lemminflect's tables are gone
    assert forms_of("exported") == before  # cached
    assert folded("shipped", "shipping") <= forms_of("ships")  # a new word: loaded again
    assert folded("докладом") <= forms_of("доклады")

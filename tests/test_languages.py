"""Languages and scripts (monitor.languages): detection and where word forms apply."""

from __future__ import annotations

import pytest

from monitor.languages import detect_language, forms_apply, primary, script_of


@pytest.mark.parametrize(
    ("text", "language"),
    [
        ("Putin arrives in Pyongyang", "en"),
        ("Путин прибыл в Пхеньян", "ru"),
        ("푸틴 대통령이 평양에 도착했다", "ko"),
        ("Посол Matsegora сказал, что визит Путина состоится", "ru"),  # most letters Cyrillic
        ("São Paulo é a maior cidade", "en"),  # Latin script: English unless a source says
        ("北京会议", None),
        ("2024 — 17:30", None),
    ],
)
def test_detect_language_by_script(text: str, language: str | None) -> None:
    """An article's language is that of the script most of its letters are in."""
    assert detect_language(text) == language


@pytest.mark.parametrize(
    ("word", "script"),
    [("report", "latin"), ("São", "latin"), ("доклад", "cyrillic"), ("보고", "hangul"),
     ("λόγος", "other"), ("1718", "latin")],
)  # fmt: skip
def test_script_of_a_word(word: str, script: str) -> None:
    """A word's script is that of its first letter."""
    assert script_of(word) == script


@pytest.mark.parametrize(
    ("forms_language", "article", "applies"),
    [
        ("en", "en", True),
        ("en", None, True),  # unknown language: forms apply
        ("en", "de", False),  # English forms are no forms of a word in a German story
        ("en", "ru", True),  # a Latin word in a Russian story is English (or a name)
        ("ru", "en", True),  # a Russian name quoted in an English story still declines
        ("ru", "uk", False),  # Ukrainian is Cyrillic but not Russian
        ("ko", "en", True),
        ("ko", "ko", True),
    ],
)
def test_forms_apply(forms_language: str, article: str | None, applies: bool) -> None:
    """Forms count in their own language, unknown ones, and articles of another script."""
    assert forms_apply(forms_language, article) is applies


def test_primary_subtag() -> None:
    """A language setting such as en-GB counts as its primary language."""
    assert [primary(t) for t in ("en-GB", "RU", "ko_KR", "pt-BR")] == ["en", "ru", "ko", "pt"]

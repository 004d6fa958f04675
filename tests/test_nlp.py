"""Optional named-entity scopes (person:, org:, gpe:) with a real spaCy pipeline built on disk."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import pytest
import spacy

from conftest import run_monitor
from monitor.domain import Article, Rule
from monitor.errors import ModelError, QueryError
from monitor.match import Matcher
from monitor.nlp import EntityRecognizer
from monitor.query import parse_query

NOW = datetime(2024, 6, 19, tzinfo=UTC)
PATTERNS = [
    {"label": "PERSON", "pattern": [{"LOWER": "kim"}, {"LOWER": "jong"}, {"LOWER": "un"}]},
    {"label": "PERSON", "pattern": "Alexander Matsegora"},
    {"label": "GPE", "pattern": "Pyongyang"},
    {"label": "ORG", "pattern": "Kim Il Sung University"},
]


@pytest.fixture(scope="module")
def model(tmp_path_factory: pytest.TempPathFactory) -> str:
    """A blank English pipeline with an entity ruler, saved to disk and named by its path."""
    nlp = spacy.blank("en")
    ruler = nlp.add_pipe("entity_ruler")
    ruler.add_patterns(PATTERNS)  # after add_pipe, no initialize(): it would wipe them
    path = tmp_path_factory.mktemp("model") / "ruler"
    nlp.to_disk(path)
    return str(path)


def hits(query: str, body: str, nlp_model: str | None) -> list[list[str]]:
    rule = Rule("r", "r", query, ())
    matcher = Matcher([rule], {"r": parse_query(query)}, nlp_model=nlp_model)
    found = matcher.match(Article("src", "k", "News", body, None, None, NOW))
    return [[m.text for m in hit.matches] for hit in found]


def test_person_scope_counts_terms_inside_person_entities(model: str) -> None:
    """person:kim matches Kim in "Kim Jong Un", not in "Kim Il Sung University" (an ORG)."""
    assert hits("person:kim", "Students of Kim Il Sung University met.", model) == []
    assert hits("person:kim", "Kim Jong Un met students.", model) == [["Kim"]]
    assert hits("org:kim", "Students of Kim Il Sung University met.", model) == [["Kim"]]


def test_gpe_scope_with_phrase_and_group(model: str) -> None:
    """gpe: takes a group; each term must lie inside an entity of the label."""
    assert hits("gpe:(pyongyang OR seoul) AND summit", "Summit in Pyongyang.", model) == [
        ["Summit", "Pyongyang"]
    ]
    assert hits('person:"alexander matsegora"', "Alexander Matsegora spoke.", model) == [
        ["Alexander Matsegora"]
    ]


def test_without_a_model_scoped_rules_are_disabled() -> None:
    """No nlp.model: the rule is listed as disabled with the reason and never hits."""
    rule = Rule("r", "r", "person:kim", ())
    matcher = Matcher([rule], {"r": parse_query("person:kim")})
    assert "nlp.model" in matcher.disabled["r"]
    assert matcher.match(Article("src", "k", "Kim Jong Un", "", None, None, NOW)) == []


def test_missing_model_is_a_model_error_not_a_download(tmp_path: Path) -> None:
    """A model that is not installed raises ModelError; nothing is fetched."""
    with pytest.raises(ModelError) as raised:
        EntityRecognizer("en_core_web_missing_sm")
    assert "en_core_web_missing_sm" in str(raised.value)
    rule = Rule("r", "r", "org:x", ())
    matcher = Matcher([rule], {"r": parse_query("org:x")}, nlp_model=str(tmp_path / "none"))
    assert "cannot be loaded" in matcher.disabled["r"]


def test_scope_syntax_errors_name_the_column() -> None:
    """A scope needs an operand right after the colon and cannot hold source: or a scope."""
    for query, column in (("person: kim", 8), ("person:source:x", 8), ("org:(gpe:x)", 5)):
        with pytest.raises(QueryError) as raised:
            parse_query(query)
        assert raised.value.column == column, query


def test_string_store_stays_bounded(model: str) -> None:
    """Reloading the pipeline every N documents keeps spaCy's StringStore from growing forever."""
    recognizer = EntityRecognizer(model, max_new_strings=1000)
    sizes = []
    for i in range(200):
        recognizer(" ".join(f"word{i}x{j}" for j in range(50)))
        sizes.append(recognizer.strings)
    assert max(sizes) < 1000 + 50 + 2000  # at most one bound's worth, not 200 x 50 strings


def test_entity_scopes_run_the_model_only_for_candidates(model: str) -> None:
    """An article with no candidate rule never runs the recognizer (NLP only where needed)."""
    rule = Rule("r", "r", "person:matsegora", ())
    matcher = Matcher([rule], {"r": parse_query("person:matsegora")}, nlp_model=model)
    calls: list[str] = []
    real = matcher.recognizer
    assert real is not None
    matcher.recognizer = lambda text: calls.append(text) or real(text)
    matcher.match(Article("src", "k", "Weather", "Rain today.", None, None, NOW))
    assert calls == []
    assert matcher.match(Article("src", "k", "Envoy", "Alexander Matsegora spoke.", None, None,
                                 NOW))  # fmt: skip
    assert len(calls) == 1


def test_check_names_rules_that_need_a_model(workdir: Path) -> None:
    """`monitor check` with no nlp.model names each scoped rule as disabled and still exits 0."""
    (workdir / "config" / "watchlists" / "ner.yaml").write_text(
        "rules:\n  - id: kim-person\n    query: person:kim\n"
    )
    result = run_monitor("check", cwd=workdir)
    assert result.returncode == 0, result.stderr
    assert "rule kim-person: disabled: needs a named-entity model" in result.stderr

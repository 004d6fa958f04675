"""Config loading and validation (contract 1)."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path

import pytest
from hostile_rows import row

from monitor.config import load_config
from monitor.errors import ConfigError
from monitor.query import Term

ROOT = Path(__file__).resolve().parent.parent


def write(path: Path, text: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    return path


def config_with(tmp_path: Path, main: str, watchlist: str = "rules: []\n") -> Path:
    write(tmp_path / "watchlists" / "w.yaml", watchlist)
    return write(tmp_path / "monitor.yaml", main)


def problems(path: Path, env: dict[str, str] | None = None) -> list[str]:
    with pytest.raises(ConfigError) as info:
        load_config(path, env=env or {})
    return [str(p) for p in info.value.problems]


def test_sample_config_loads() -> None:
    """The shipped config and watchlists are valid."""
    config = load_config(ROOT / "config" / "monitor.yaml", env={})
    assert config.rules and config.entities
    assert config.folders[0].path.resolve() == (ROOT / "seeds").resolve()
    assert config.database_url == "sqlite:///" + str((ROOT / "data" / "monitor.db").resolve())


def test_minimal_config_gets_defaults(tmp_path: Path) -> None:
    """An empty file is a valid config: console sink, 15m interval, default watchlist glob."""
    path = config_with(tmp_path, "{}\n")
    config = load_config(path, env={})
    assert [s.name for s in config.sinks] == ["console"]
    assert config.interval == timedelta(minutes=15)
    assert config.notify == ("console",)
    assert config.fetch.max_bytes == 10 * 1024 * 1024


def test_env_interpolation_with_default(tmp_path: Path) -> None:
    """${VAR} and ${VAR:-default} are replaced in every string."""
    path = config_with(
        tmp_path,
        "sinks:\n  - {name: ops, type: webhook, url: '${OPS_URL}', secret: '${OPS_SECRET:-}'}\n"
        "defaults: {notify: [ops], interval: '${IV:-10m}'}\n",
    )
    config = load_config(path, env={"OPS_URL": "https://hooks.example.org/x"})
    assert config.sinks[0].url == "https://hooks.example.org/x"
    assert config.sinks[0].secret is None
    assert config.interval == timedelta(minutes=10)


def test_unset_variable_is_an_error(tmp_path: Path) -> None:
    """A ${VAR} with no value and no default names the variable and the place."""
    path = config_with(tmp_path, "sinks:\n  - {name: ops, type: webhook, url: '${OPS_URL}'}\n"
                       "defaults: {notify: [ops]}\n")  # fmt: skip
    assert any("sinks[0].url: environment variable OPS_URL is not set" in p for p in problems(path))


def test_database_url_env_wins(tmp_path: Path) -> None:
    """$DATABASE_URL overrides the file's database."""
    path = config_with(tmp_path, "database: sqlite:///x.db\n")
    config = load_config(path, env={"DATABASE_URL": "postgresql+psycopg://u@h/db"})
    assert config.database_url == "postgresql+psycopg://u@h/db"


@row("C2")
def test_every_error_reported_with_file_and_place(tmp_path: Path) -> None:
    """Bad query, unknown sink, duplicate rule id, unknown key and bad duration, all at once."""
    path = config_with(
        tmp_path,
        "defaults: {interval: 10 minutes}\n"
        "sources:\n  folders:\n    - {name: s, path: ., colour: red}\n",
        "rules:\n"
        "  - {id: a, query: 'Korea'}\n"
        "  - {id: b, query: '(North Korea', notify: [pager]}\n"
        "  - {id: a, query: 'Russia'}\n"
        "  - {id: c, query: 'x', severity: huge, frequency: 3}\n",
    )
    found = problems(path)
    expected = [
        "monitor.yaml: defaults.interval: not a duration: '10 minutes'",
        "monitor.yaml: sources.folders[0].colour: unknown key",
        "watchlists/w.yaml: rules[1].query: column 13: expected ')'",
        "watchlists/w.yaml: rules[1].notify[0]: unknown sink 'pager'",
        "watchlists/w.yaml: rules[2].id: duplicate rule id 'a'",
        "watchlists/w.yaml: rules[3].severity: must be one of",
        "watchlists/w.yaml: rules[3].frequency: unknown key",
    ]
    for line in expected:
        assert any(p.startswith(line) for p in found), (line, found)


@row("C1")
def test_invalid_yaml_names_line_and_column(tmp_path: Path) -> None:
    """A YAML syntax error gives file, line and column."""
    path = config_with(tmp_path, "sources:\n  folders: [\n")
    (problem,) = problems(path)
    assert problem.startswith("monitor.yaml: line 3, column 1: invalid YAML")


@row("C3")
def test_yaml_aliases_are_refused(tmp_path: Path) -> None:
    """An alias bomb is refused before it is expanded."""
    bomb = 'a: &a ["x","x","x","x","x","x","x","x","x"]\nb: &b [*a,*a,*a,*a,*a,*a,*a,*a,*a]\n'
    path = config_with(tmp_path, bomb)
    (problem,) = problems(path)
    assert "anchors and aliases are not allowed" in problem


def test_files_over_one_mib_are_refused(tmp_path: Path) -> None:
    """A config file over 1 MiB is refused without being parsed."""
    path = config_with(tmp_path, "# " + "x" * (1024 * 1024) + "\n")
    (problem,) = problems(path)
    assert "limit is 1 MiB" in problem


@row("C2")
@pytest.mark.parametrize(
    ("yaml_text", "fragment"),
    [
        ("defaults: {interval: 0s}\n", "defaults.interval: must be greater than zero"),
        ("fetch: {timeout: -5s}\n", "fetch.timeout: not a duration"),
        ("sources: {feeds: [{url: 'ftp://x.org/f'}]}\n",
         "sources.feeds[0].url: must be an http(s) URL"),
        ("sources: {feeds: [{url: 'https://a.org/f'}, {url: 'https://a.org/f', name: b}]}\n",
         "sources.feeds[1].url: duplicate feed URL"),
        ("sinks: [{name: x, type: pager}]\ndefaults: {notify: [x]}\n",
         "sinks[0].type: unknown sink type"),
        ("http: {listen: nowhere}\n", "http.listen: expected host:port"),
        ("watchlists: [nothing/*.yaml]\n", "watchlists[0]: no file matches"),
    ],
)  # fmt: skip
def test_schema_errors(tmp_path: Path, yaml_text: str, fragment: str) -> None:
    """Each schema violation is reported at its place."""
    path = config_with(tmp_path, yaml_text)
    assert any(fragment in p for p in problems(path)), problems(path)


def test_rule_defaults_and_entities(tmp_path: Path) -> None:
    """Rules inherit defaults.notify; entity: refers to entities of any watchlist file."""
    path = config_with(
        tmp_path,
        "{}\n",
        "entities:\n  - {id: matsegora, name: Alexander Matsegora, aliases: [Matsegora]}\n"
        "rules:\n  - {id: amb, query: 'entity:matsegora', tags: [korea], severity: high}\n",
    )
    config = load_config(path, env={})
    (rule,) = config.rules
    assert rule.notify == ("console",) and rule.severity == "high" and rule.tags == ("korea",)
    assert config.entities["matsegora"].aliases == ("Matsegora",)
    assert "amb" in config.queries


def test_unknown_entity_in_query(tmp_path: Path) -> None:
    """A query naming an undefined entity is an error at its column."""
    path = config_with(tmp_path, "{}\n", "rules:\n  - {id: a, query: 'Korea AND entity:nobody'}\n")
    assert any("rules[0].query: column" in p and "nobody" in p for p in problems(path))


def test_rule_sources_must_exist(tmp_path: Path) -> None:
    """A rule's sources filter names configured sources only."""
    path = config_with(tmp_path, "{}\n", "rules:\n  - {id: a, query: Korea, sources: [wire]}\n")
    assert any("rules[0].sources[0]: unknown source 'wire'" in p for p in problems(path))


def test_forms_setting_of_a_watchlist_and_its_rules(tmp_path: Path) -> None:
    """forms: inflected on a watchlist applies to its rules; a rule may set its own."""
    path = config_with(
        tmp_path,
        "{}\n",
        "forms: inflected\n"
        "rules:\n  - {id: a, query: report}\n  - {id: b, query: report, forms: exact}\n",
    )
    config = load_config(path, env={})
    assert [r.forms for r in config.rules] == ["inflected", "exact"]
    a, b = (config.queries[r] for r in ("a", "b"))
    assert isinstance(a.root, Term) and a.root.forms is not None
    assert isinstance(b.root, Term) and b.root.forms is None


@pytest.mark.parametrize(
    ("watchlist", "fragment"),
    [
        ("forms: stemmed\nrules: []\n", "w.yaml: forms: must be one of exact, inflected"),
        ("rules:\n  - {id: a, query: x, forms: [exact]}\n", "rules[0].forms: expected a string"),
        ("entities:\n  - {id: e, name: Lavrov, aliases: ['La*v']}\nrules: []\n",
         "entities[0].aliases[0]: column 3: '*' is only allowed at the end of a word"),
        ("entities:\n  - {id: e, name: 'La*', aliases: []}\nrules: []\n",
         "entities[0].name: column 1: a wildcard needs at least 3 letters"),
        ("entities:\n  - {id: e, name: Lavrov, aliases: ['U.S*']}\nrules: []\n",
         "entities[0].aliases[0]: column 1: '*' must end a single word"),
        ("entities:\n  - {id: e, name: Lavrov, aliases: ['--']}\nrules: []\n",
         "entities[0].aliases[0]: '--' has no letters or digits"),
    ],
)  # fmt: skip
def test_forms_and_name_errors_name_their_place(
    tmp_path: Path, watchlist: str, fragment: str
) -> None:
    """A bad forms: value or a bad wildcard in an entity name is reported where it is written."""
    path = config_with(tmp_path, "{}\n", watchlist)
    assert any(fragment in p for p in problems(path)), problems(path)


def test_source_language_setting(tmp_path: Path) -> None:
    """A source's language: is a language tag (its primary subtag kept); others are errors."""
    path = config_with(
        tmp_path,
        "sources:\n  feeds:\n    - {url: 'https://a.org/f', name: tass, language: ru-RU}\n"
        "  folders:\n    - {name: seeds, path: ., language: ko}\n"
        "    - {name: other, path: .}\n",
    )
    assert load_config(path, env={}).languages == {"tass": "ru", "seeds": "ko"}
    bad = config_with(
        tmp_path, "sources:\n  folders:\n    - {name: s, path: ., language: '日本'}\n"
    )
    assert any("sources.folders[0].language: must be a language code" in p for p in problems(bad))

"""Watchlist files: entities, rules (their queries parsed here), and labelled examples."""

from __future__ import annotations

import glob
import os
import re
from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

from monitor.config.checker import (
    _Checker,
    _items,
    _read_yaml,
)
from monitor.config.model import (
    ID_PATTERN,
)
from monitor.domain import FORMS_MODES, Entity, Example, FormsMode, Rule, Severity
from monitor.errors import QueryError
from monitor.query import Query, name_phrases, parse_query
from monitor.units import parse_duration

if TYPE_CHECKING:
    from monitor.config.loader import _Builder


# --- watchlists ---------------------------------------------------------------------

_RULE_KEYS = {
    "id": True, "title": False, "query": True, "notify": False, "sources": False,
    "tags": False, "severity": False, "enabled": False, "examples": False,
    "realert": False, "forms": False,
}  # fmt: skip
_ENTITY_KEYS = {"id": True, "name": True, "aliases": False}


def _watchlist_files(builder: _Builder, value: Any) -> list[Path]:
    files: list[Path] = []
    for i, pattern in enumerate(builder.c.strings(value, "watchlists")):
        matched = sorted(glob.glob(str(builder.resolve(pattern))))
        if not matched:
            builder.c.problem(f"watchlists[{i}]", f"no file matches {pattern!r}")
        files.extend(Path(m) for m in matched if Path(m) not in files)
    return files


def _load_watchlists(
    builder: _Builder, value: Any, notify: tuple[str, ...], sinks: set[str], sources: set[str]
) -> tuple[dict[str, Entity], tuple[Rule, ...], dict[str, Query]]:
    """Entities first (rules of any file may use any entity), then rules."""
    docs = []
    path_of: dict[str, Path] = {}
    for path in _watchlist_files(builder, value):
        shown = os.path.relpath(path, builder.base)
        path_of[shown] = path
        c = builder.c.for_file(shown)
        raw = _read_yaml(path, c)
        if raw is None:
            continue
        doc = c.mapping(raw, "", {"entities": False, "rules": False, "forms": False})
        docs.append((shown, c, doc, _forms(c, doc.get("forms"), "forms", "exact")))
    entities: dict[str, Entity] = {}
    for _shown, c, doc, _mode in docs:
        for place, item in _items(c, doc.get("entities"), "entities"):
            entity = _entity(c, item, place)
            if entity and entity.id in entities:
                c.problem(f"{place}.id", f"duplicate entity id {entity.id!r}")
            elif entity:
                entities[entity.id] = entity
    rules: dict[str, Rule] = {}
    queries: dict[str, Query] = {}
    for shown, c, doc, mode in docs:
        for place, item in _items(c, doc.get("rules"), "rules"):
            rule = _rule(c, item, place, shown, notify, sinks, sources, mode)
            if rule is not None and isinstance(item, dict) and "examples" in item:
                examples = _examples(c, item["examples"], f"{place}.examples", path_of[shown])
                rule = replace(rule, examples=examples)
            if rule is None:
                continue
            if rule.id in rules:
                c.problem(
                    f"{place}.id", f"duplicate rule id {rule.id!r} (also in {rules[rule.id].file})"
                )
                continue
            try:
                queries[rule.id] = parse_query(rule.query, entities, forms=rule.forms)
            except QueryError as e:
                c.problem(f"{place}.query", str(e))
            rules[rule.id] = rule
    return entities, tuple(rules.values()), queries


def _entity(c: _Checker, item: Any, place: str) -> Entity | None:
    raw = c.mapping(item, place, _ENTITY_KEYS)
    if not raw.get("id") or not raw.get("name"):
        return None
    ident = c.string(raw["id"], f"{place}.id", pattern=ID_PATTERN)
    name = c.string(raw["name"], f"{place}.name")
    aliases = c.strings(raw.get("aliases", []), f"{place}.aliases")
    # A name is checked where it is written, so a bad alias is named, not each rule using it.
    for where, text in [(f"{place}.name", name), *((f"{place}.aliases[{i}]", a)
                                                   for i, a in enumerate(aliases))]:  # fmt: skip
        try:
            if not name_phrases(text):
                c.problem(where, f"{text!r} has no letters or digits")
        except QueryError as e:
            c.problem(where, str(e))
    return Entity(ident, name, aliases)


def _forms(c: _Checker, value: Any, place: str, default: FormsMode) -> FormsMode:
    """``forms: exact | inflected``: whether bare words match their inflected forms."""
    if value is None:
        return default
    text = c.string(value, place)
    for mode in FORMS_MODES:
        if text == mode:
            return mode
    c.problem(place, f"must be one of {', '.join(FORMS_MODES)}, got {text!r}")
    return default


def _rule(
    c: _Checker, item: Any, place: str, file: str,
    notify: tuple[str, ...], sinks: set[str], sources: set[str], forms: FormsMode,
) -> Rule | None:  # fmt: skip
    raw = c.mapping(item, place, _RULE_KEYS)
    if not raw.get("id") or raw.get("query") is None:
        return None
    ident = c.string(raw["id"], f"{place}.id", pattern=ID_PATTERN)
    rule_notify = c.strings(raw["notify"], f"{place}.notify") if "notify" in raw else notify
    for i, name in enumerate(rule_notify):
        if name not in sinks:
            c.problem(f"{place}.notify[{i}]", f"unknown sink {name!r}")
    rule_sources = c.strings(raw.get("sources", []), f"{place}.sources")
    for i, name in enumerate(rule_sources):
        if name not in sources:
            c.problem(f"{place}.sources[{i}]", f"unknown source {name!r}")
    severity = c.string(raw.get("severity", "medium"), f"{place}.severity")
    if severity not in Severity.__members__.values():
        c.problem(f"{place}.severity", f"must be one of {', '.join(Severity)}, got {severity!r}")
        severity = "medium"
    return Rule(
        id=ident,
        title=c.string(raw.get("title", ident), f"{place}.title"),
        query=c.string(raw["query"], f"{place}.query"),
        notify=rule_notify,
        sources=rule_sources,
        tags=c.strings(raw.get("tags", []), f"{place}.tags"),
        severity=Severity(severity),
        enabled=c.boolean(raw.get("enabled", True), f"{place}.enabled"),
        file=file,
        forms=_forms(c, raw.get("forms"), f"{place}.forms", forms),
        realert=(
            c.convert(raw["realert"], f"{place}.realert", parse_duration, None)
            if raw.get("realert") is not None
            else None
        ),
    )


# --- labelled examples ----------------------------------------------------------------

# An example that looks like a file name is a file, relative to its watchlist.
_EXAMPLE_FILE = re.compile(r"^[^\n]+\.(txt|md|html|json)$", re.IGNORECASE)


def _examples(c: _Checker, value: Any, place: str, watchlist: Path) -> tuple[Example, ...]:
    """``examples: {match: [...], no_match: [...]}``: texts, or files beside the watchlist."""
    raw = c.mapping(value, place, {"match": False, "no_match": False})
    examples = []
    for key, expected in (("match", True), ("no_match", False)):
        for item_place, item in _items(c, raw.get(key), f"{place}.{key}"):
            text = c.string(item, item_place)
            if not text.strip():
                c.problem(item_place, "empty example")
            elif _EXAMPLE_FILE.match(text.strip()):
                path = (watchlist.parent / text.strip()).resolve()
                if not path.is_file():
                    c.problem(item_place, f"example file {text.strip()!r} not found at {path}")
                examples.append(Example(expected, path=str(path), place=item_place))
            else:
                examples.append(Example(expected, text=text, place=item_place))
    return tuple(examples)

"""The query language's parser: query text -> an immutable syntax tree (pure, no I/O).

The language is documented in ``monitor.match``, which evaluates the tree.
Grammar, loosest binding first (operators are uppercase only)::

    or      := and ("OR" and)*               the whole query
    and     := near (["AND"] near)*          adjacent operands are ANDed
    near    := unary (NEAROP unary)*         NEAROP: NEAR/n ONEAR/n NEAR/S NEAR/P
    unary   := "NOT" unary | primary
    primary := "(" or ")" | word | "phrase" | ("=" | "~") (word | "phrase") | field:value

Words are tokenised by the text rules (``monitor.tokens``): ``Byung-hwan`` is
the phrase ``byung hwan``. ``~word`` carries the word's inflected forms
(``monitor.forms``), looked up here once; parsed with ``forms="inflected"``
every bare word and phrase does. Every error is a ``QueryError`` with a
1-based column.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field, replace
from functools import lru_cache
from typing import Literal, NamedTuple, TypeAlias

from monitor.domain import FORMS_MODES, Entity, FormsMode
from monitor.errors import QueryError
from monitor.forms import Forms, phrase_forms, romanised_variants
from monitor.languages import script_of
from monitor.tokens import Token, tokenize

MAX_LENGTH = 10_000
MAX_DEPTH = 100
MAX_DISTANCE = 100_000
MIN_PREFIX = 3

NearKind = Literal["n", "S", "P"]


@dataclass(frozen=True)
class _Node:
    # Where a node starts, for error messages; not part of its identity.
    column: int = field(default=0, compare=False, repr=False, kw_only=True)


@dataclass(frozen=True)
class Term(_Node):
    """One token; ``word`` is folded, or accent-stripped with case kept when case-sensitive.

    ``forms``: any of these folded words also counts, where they apply to the
    article's language (``monitor.languages.forms_apply``); None: exact.
    """

    word: str
    prefix: bool = False
    case_sensitive: bool = False
    forms: Forms | None = None


@dataclass(frozen=True)
class Phrase(_Node):
    """Tokens in sequence, each matched as its ``Term`` is."""

    words: tuple[Term, ...]


@dataclass(frozen=True)
class EntityRef(_Node):
    """``entity:id``, expanded at parse time to the phrases of its names (``name_phrases``)."""

    id: str
    names: tuple[Phrase, ...] = ()


@dataclass(frozen=True)
class And(_Node):
    children: tuple[Node, ...]


@dataclass(frozen=True)
class Or(_Node):
    children: tuple[Node, ...]


@dataclass(frozen=True)
class Not(_Node):
    child: Node


@dataclass(frozen=True)
class Near(_Node):
    """``kind`` 'n' counts tokens between (``distance``); 'S' same sentence, 'P' paragraph."""

    left: Node
    right: Node
    kind: NearKind
    distance: int | None = None
    ordered: bool = False


@dataclass(frozen=True)
class Title(_Node):
    child: Node


@dataclass(frozen=True)
class Source(_Node):
    name: str


@dataclass(frozen=True)
class Scope(_Node):
    """``person:X``, ``org:X``, ``gpe:X``: X counts only inside a named entity with ``label``.

    Named entities come from the statistical pipeline named by ``nlp.model``;
    a rule using a scope is disabled when no model is configured or loadable.
    """

    label: str  # the spaCy label: PERSON, ORG or GPE
    child: Node


Node: TypeAlias = Term | Phrase | EntityRef | And | Or | Not | Near | Title | Source | Scope


def walk(node: Node) -> Iterator[Node]:
    """Every node of the tree, parents before children."""
    yield node
    if isinstance(node, And | Or):
        for child in node.children:
            yield from walk(child)
    elif isinstance(node, Not | Title | Scope):
        yield from walk(node.child)
    elif isinstance(node, Near):
        yield from walk(node.left)
        yield from walk(node.right)


@dataclass(frozen=True)
class Query:
    """A parsed query: its tree and the text it came from."""

    root: Node
    text: str
    needs_sentences: bool = field(init=False)
    needs_paragraphs: bool = field(init=False)
    entity_labels: frozenset[str] = field(init=False)  # non-empty: needs an NLP model

    def __post_init__(self) -> None:
        kinds = {n.kind for n in walk(self.root) if isinstance(n, Near)}
        object.__setattr__(self, "needs_sentences", "S" in kinds)
        object.__setattr__(self, "needs_paragraphs", "P" in kinds)
        labels = frozenset(n.label for n in walk(self.root) if isinstance(n, Scope))
        object.__setattr__(self, "entity_labels", labels)


def parse_query(
    text: str, entities: Mapping[str, Entity] | None = None, forms: FormsMode = "exact"
) -> Query:
    """Parse ``text``; raises ``QueryError`` (with a 1-based column) if it is not a valid query.

    ``forms="inflected"`` makes every bare word and phrase match its inflected
    forms, as ``~`` does; ``=word`` and ``word*`` stay exact.
    """
    if len(text) > MAX_LENGTH:
        raise QueryError(MAX_LENGTH + 1, f"query is longer than {MAX_LENGTH} characters")
    if forms not in FORMS_MODES:
        raise ValueError(f"forms must be one of {FORMS_MODES}, not {forms!r}")
    root = _Parser(text, entities or {}, inflected=forms == "inflected").parse()
    free = _free_branch(root)
    if free is not None:
        raise QueryError(free.column, "query can match with no positive term (e.g. 'NOT x' alone)")
    return Query(root, text)


class Lex(NamedTuple):
    kind: str  # word phrase ( ) = field AND OR NOT NEAR end
    text: str  # raw text; a phrase's content; a field's name
    column: int  # 1-based column of the first character
    end: int  # 0-based index just past the lexeme, to check adjacency


# A field name is matched only where a lexeme starts, so `10:30` stays one word.
# `~` is an operator only where a lexeme starts: inside a word it separates tokens, as before.
_LEXEME = re.compile(
    r'(?P<field>[A-Za-z]+:)|(?P<punct>[()=~])|"(?P<phrase>[^"]*)"|(?P<open>")|(?P<run>[^\s()"]+)'
)
_NEAR = re.compile(r"(O?)NEAR/(?:([0-9]+)|([SP]))")
_OPERAND_START = {"word", "phrase", "(", "=", "~", "field", "NOT"}


def _operator_kind(run: str) -> str:
    if run in ("AND", "OR", "NOT"):
        return run
    if run in ("NEAR", "ONEAR") or run.startswith(("NEAR/", "ONEAR/")):
        return "NEAR"
    return "word"


def _lex(text: str) -> list[Lex]:
    out = []
    # Every character but whitespace matches some alternative, so finditer skips only spaces.
    for m in _LEXEME.finditer(text):
        kind, lexeme, column = m.lastgroup, m.group(), m.start() + 1
        if kind == "open":
            raise QueryError(column, "unterminated phrase")
        if kind == "field":
            # The value is lexed on its own, so `title:"a b"` and `title:(x)` work.
            out.append(Lex("field", lexeme[:-1], column, m.end()))
        elif kind == "phrase":
            out.append(Lex("phrase", m.group("phrase"), column, m.end()))
        elif kind == "punct":
            out.append(Lex(lexeme, lexeme, column, m.end()))
        else:
            out.append(Lex(_operator_kind(lexeme), lexeme, column, m.end()))
    out.append(Lex("end", "", len(text) + 1, len(text)))
    return out


class _Parser:
    def __init__(self, text: str, entities: Mapping[str, Entity], inflected: bool = False):
        self.lexemes = _lex(text)
        self.entities = entities
        self.inflected = inflected
        self.pos = 0
        self.depth = 0

    def peek(self) -> Lex:
        return self.lexemes[self.pos]

    def advance(self) -> Lex:
        lex = self.lexemes[self.pos]
        self.pos = min(self.pos + 1, len(self.lexemes) - 1)
        return lex

    @contextmanager
    def nested(self, lex: Lex) -> Iterator[None]:
        # A depth cap turns hostile nesting into a QueryError, never a RecursionError.
        self.depth += 1
        if self.depth > MAX_DEPTH:
            raise QueryError(lex.column, f"query nests deeper than {MAX_DEPTH} levels")
        yield
        self.depth -= 1

    def parse(self) -> Node:
        if self.peek().kind == "end":
            raise QueryError(1, "empty query")
        node = self.or_expr()
        extra = self.peek()
        if extra.kind != "end":
            raise QueryError(extra.column, f"unexpected '{extra.text}'")
        return node

    def or_expr(self) -> Node:
        children = [self.and_expr()]
        while self.peek().kind == "OR":
            self.advance()
            children.append(self.and_expr())
        return _join(Or, children)

    def and_expr(self) -> Node:
        children = [self.near_expr()]
        while True:
            if self.peek().kind == "AND":
                self.advance()
            elif self.peek().kind not in _OPERAND_START:
                break
            children.append(self.near_expr())
        return _join(And, children)

    def near_expr(self) -> Node:
        left = self.unary()
        while self.peek().kind == "NEAR":
            operator = self.advance()
            kind, distance, ordered = _near_operator(operator)
            if isinstance(left, Near):
                raise QueryError(operator.column, "a NEAR cannot be an operand of another NEAR")
            right = self.unary()
            _check_near_operand(left)
            _check_near_operand(right)
            left = Near(left, right, kind, distance, ordered, column=left.column)
        return left

    def unary(self) -> Node:
        lex = self.peek()
        if lex.kind != "NOT":
            return self.primary()
        self.advance()
        with self.nested(lex):
            return Not(self.unary(), column=lex.column)

    def primary(self) -> Node:
        lex = self.advance()
        if lex.kind == "(":
            with self.nested(lex):
                node = self.or_expr()
            close = self.advance()
            if close.kind != ")":
                raise QueryError(close.column, "expected ')'")
            return replace(node, column=lex.column)
        if lex.kind in ("word", "phrase"):
            return _words(lex, case_sensitive=False, inflect=self.inflected)
        if lex.kind == "=":
            self.adjacent(lex, "a word or phrase after '='", ("word", "phrase"))
            return _words(self.advance(), case_sensitive=True)
        if lex.kind == "~":
            value = self.adjacent(lex, "a word or phrase after '~'", ("word", "phrase"))
            if value.kind == "word" and value.text.endswith("*"):
                raise QueryError(value.column, "'~' and '*' do not combine: a wildcard is exact")
            return _words(self.advance(), case_sensitive=False, inflect=True)
        if lex.kind == "field":
            handler = FIELDS.get(lex.text.lower())
            if handler is None:
                raise QueryError(lex.column, f"unknown field '{lex.text}'")
            with self.nested(lex):
                return handler(self, lex)
        found = "the end of the query" if lex.kind == "end" else f"'{lex.text}'"
        raise QueryError(lex.column, f"expected a word, phrase or '(' but found {found}")

    def adjacent(self, lex: Lex, expected: str, kinds: tuple[str, ...]) -> Lex:
        """The next lexeme (not consumed), which must be one of ``kinds`` right after ``lex``."""
        value = self.peek()
        if value.kind not in kinds or value.column != lex.end + 1:
            raise QueryError(lex.end + 1, f"expected {expected}")
        return value


def _join(cls: type[And] | type[Or], children: list[Node]) -> Node:
    if len(children) == 1:
        return children[0]
    # `a AND (b AND c)` is one AND of three: a flat tree is cheaper to evaluate.
    flat = [g for c in children for g in (c.children if isinstance(c, cls) else (c,))]
    return cls(tuple(flat), column=children[0].column)


def _near_operator(lex: Lex) -> tuple[NearKind, int | None, bool]:
    m = _NEAR.fullmatch(lex.text)
    ordered = lex.text.startswith("O")
    if ordered and not (m and m.group(2)):
        raise QueryError(lex.column, "ONEAR needs /n (the most words between)")
    if not m:
        raise QueryError(lex.column, "NEAR needs /n, /S or /P")
    if m.group(3):
        return ("S" if m.group(3) == "S" else "P"), None, False
    # Capping the digits also keeps int() clear of Python's 4,300-digit limit.
    if len(m.group(2)) > 6 or int(m.group(2)) > MAX_DISTANCE:
        raise QueryError(lex.column, f"NEAR distance must be at most {MAX_DISTANCE}")
    return "n", int(m.group(2)), ordered


def _check_near_operand(node: Node) -> None:
    if isinstance(node, Or):
        for child in node.children:
            _check_near_operand(child)
    elif not isinstance(node, Term | Phrase | EntityRef):
        message = "NEAR operands must be words, phrases, entities or OR-groups of them"
        raise QueryError(node.column, message)


def _words(lex: Lex, case_sensitive: bool, inflect: bool = False) -> Node:
    """A bare word or quoted phrase, tokenised by the text rules; with ``inflect``, its forms.

    A word with a ``*`` stays exact, as a case-sensitive one does.
    """
    # Inside quotes `*` is just a separator, as every non-letter is in text.
    prefix = lex.kind == "word" and lex.text.endswith("*")
    stem = lex.text[:-1] if prefix else lex.text
    if lex.kind == "word" and "*" in stem:
        raise QueryError(lex.column + stem.index("*"), "'*' is only allowed at the end of a word")
    tokens = tokenize(stem)
    if not tokens:
        what = "empty phrase" if lex.kind == "phrase" else f"'{lex.text}' has no letters or digits"
        raise QueryError(lex.column, what)
    if prefix and len(tokens) > 1:
        raise QueryError(lex.column, f"'*' must end a single word, not '{stem}'")
    if prefix and len(tokens[0].cased) < MIN_PREFIX:
        raise QueryError(lex.column, f"a wildcard needs at least {MIN_PREFIX} letters before '*'")
    if case_sensitive or prefix or not inflect:
        terms = [_term(t, prefix=prefix, case_sensitive=case_sensitive) for t in tokens]
        if len(terms) == 1:
            return replace(terms[0], column=lex.column)
        return Phrase(tuple(terms), column=lex.column)
    return _inflected(stem, tokens, lex.column, name=False)


def _term(token: Token, *, prefix: bool = False, case_sensitive: bool = False) -> Term:
    word = token.cased if case_sensitive else token.folded
    return Term(word, prefix, case_sensitive)


def _inflected(text: str, tokens: list[Token], column: int, *, name: bool) -> Node:
    """The tokens of ``text`` with their forms: a term, a phrase, or (Korean) an OR of the
    phrase and its words written together, as Korean writes compounds and names."""
    raw = [text[t.start : t.end] for t in tokens]
    forms = phrase_forms(raw, name=name)
    terms = tuple(
        Term(t.folded, forms=f, column=column) for t, f in zip(tokens, forms, strict=True)
    )
    if len(terms) == 1:
        return terms[0]
    phrase = Phrase(terms, column=column)
    together = _written_together(raw, name=name)
    if together is None:
        return phrase
    return Or((phrase, replace(together, column=column)), column=column)


def _written_together(raw: list[str], *, name: bool) -> Term | None:
    """Korean words of several tokens as the one token Korean often writes them as
    (제재 위원회 -> 제재위원회), with its forms; None for other words or one token."""
    if len(raw) < 2 or not all(script_of(word) == "hangul" for word in raw):
        return None
    joined = "".join(raw)
    return Term(tokenize(joined)[0].folded, forms=phrase_forms([joined], name=name)[0])


# Fields are `name:value`, no space after the colon. To add one (e.g. a `person:`
# scope), register a handler taking the parser and the field lexeme in FIELDS.


def _title_field(parser: _Parser, lex: Lex) -> Node:
    expected = "a word, phrase, group or entity after 'title:'"
    parser.adjacent(lex, expected, ("word", "phrase", "=", "~", "(", "field"))
    child = parser.primary()
    if isinstance(child, Source):
        raise QueryError(child.column, "title: cannot contain source:")
    return Title(child, column=lex.column)


def _source_field(parser: _Parser, lex: Lex) -> Node:
    parser.adjacent(lex, "a source name after 'source:'", ("word", "phrase"))
    value = parser.advance()
    if not value.text.strip():
        raise QueryError(value.column, "empty source name")
    return Source(value.text, column=lex.column)


def _spelt(spellings: frozenset[str]) -> Term:
    """A name word that counts in any of its spellings (the same in every language)."""
    first = min(spellings)
    return Term(first, forms=Forms(None, spellings)) if len(spellings) > 1 else Term(first)


def _entity_field(parser: _Parser, lex: Lex) -> Node:
    parser.adjacent(lex, "an entity id after 'entity:'", ("word",))
    value = parser.advance()
    entity = parser.entities.get(value.text)
    if entity is None:
        raise QueryError(value.column, f"entity '{value.text}' is not defined")
    found: list[Phrase] = []
    for name in entity.names:
        try:
            found.extend(name_phrases(name))
        except QueryError as e:  # the watchlist check names the alias; a query names its column
            raise QueryError(value.column, f"entity '{entity.id}': {name!r}: {e.message}") from e
    # dict.fromkeys drops spellings that come to the same phrase, keeping the order.
    names = tuple(dict.fromkeys(found))
    if not names:
        raise QueryError(value.column, f"entity '{value.text}' has no name with letters or digits")
    return EntityRef(entity.id, names, column=lex.column)


@lru_cache(maxsize=65_536)
def name_phrases(name: str) -> tuple[Phrase, ...]:
    """The phrases an entity name or alias matches; ``QueryError`` (column in ``name``) if bad.

    The name's tokens, with the forms its language gives a name (Korean
    particles on the last word, Russian case endings on each), a word ending in
    ``*`` as a prefix of at least ``MIN_PREFIX`` letters; then its variants: a
    romanised Korean name in its other orders, joinings and spellings, a Korean
    name of several words written together. A name with no letters gives ().
    """
    terms: list[Term] = []
    raw: list[str] = []
    for chunk in re.finditer(r"\S+", name):
        text, column = chunk.group(), chunk.start() + 1
        if "*" not in text:
            tokens = tokenize(text)
            terms.extend(_term(t) for t in tokens)
            raw.extend(text[t.start : t.end] for t in tokens)
            continue
        if text.index("*") != len(text) - 1:
            raise QueryError(column + text.index("*"), "'*' is only allowed at the end of a word")
        tokens = tokenize(text[:-1])
        if len(tokens) > 1:
            raise QueryError(column, f"'*' must end a single word, not {text!r}")
        if not tokens or len(tokens[0].cased) < MIN_PREFIX:
            raise QueryError(column, f"a wildcard needs at least {MIN_PREFIX} letters before '*'")
        terms.append(_term(tokens[0], prefix=True))
        raw.append("")  # a prefix takes no forms
    if not terms:
        return ()
    forms = phrase_forms(raw, name=True)
    words = tuple(
        replace(term, forms=f) if f is not None and not term.prefix else term
        for term, f in zip(terms, forms, strict=True)
    )
    if any(term.prefix for term in terms):
        return (Phrase(words),)
    # A romanised Korean name's variants include its own order, in every spelling.
    variants = romanised_variants(tuple(term.word for term in terms))
    phrases = [Phrase(tuple(map(_spelt, v))) for v in variants] or [Phrase(words)]
    together = _written_together(raw, name=True)
    if together is not None:
        phrases.append(Phrase((together,)))
    return tuple(phrases)


def _scope_field(label: str) -> Callable[[_Parser, Lex], Node]:
    """A handler for ``person:``, ``org:`` or ``gpe:``: a word, phrase, group or entity inside."""

    def handler(parser: _Parser, lex: Lex) -> Node:
        name = lex.text.lower()
        expected = f"a word, phrase, group or entity after '{name}:'"
        parser.adjacent(lex, expected, ("word", "phrase", "=", "~", "(", "field"))
        child = parser.primary()
        for node in walk(child):
            if isinstance(node, Source | Title | Scope):
                field_name = "source:" if isinstance(node, Source) else "title: or another scope"
                raise QueryError(node.column, f"{name}: cannot contain {field_name}")
        return Scope(label, child, column=lex.column)

    return handler


# Entity scopes and the spaCy labels they stand for (OntoNotes labels, which
# en_core_web_* pipelines and our entity-ruler test pipelines use).
ENTITY_SCOPES = {"person": "PERSON", "org": "ORG", "gpe": "GPE"}

FIELDS: dict[str, Callable[[_Parser, Lex], Node]] = {
    "title": _title_field,
    "source": _source_field,
    "entity": _entity_field,
    **{name: _scope_field(label) for name, label in ENTITY_SCOPES.items()},
}


def _free_branch(node: Node) -> Node | None:
    """A part through which the query can be true with no positive term occurring, if any.

    A term under NOT never counts as positive, not even under two: so every
    hit has at least one span to report and to build the alert's snippet from.
    """
    if isinstance(node, Term | Phrase | EntityRef | Near):
        return None
    if isinstance(node, Source | Not):
        return node
    if isinstance(node, Title | Scope):
        return _free_branch(node.child)
    branches = [_free_branch(child) for child in node.children]
    if isinstance(node, And):
        return node if all(b is not None for b in branches) else None
    return next((b for b in branches if b is not None), None)

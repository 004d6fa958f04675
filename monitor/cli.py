"""The command line (contract 3). Exit codes: 0 ok, 2 bad config or arguments, 1 anything else."""

from __future__ import annotations

import argparse
import json
import logging
import re
import sys
from collections.abc import Sequence
from datetime import datetime
from pathlib import Path
from typing import Any, NoReturn

from rich.console import Console
from rich.progress import MofNCompleteColumn, Progress
from rich.table import Table
from rich.text import Text

from monitor import __version__
from monitor.backtest import RuleTally, backtest, score_examples
from monitor.config import Config, config_path, is_loopback_listen, load_config
from monitor.daemon import Daemon
from monitor.domain import FORMS_MODES, Article, Match, Rule, utcnow
from monitor.errors import ConfigError, MonitorError, QueryError, SourceError
from monitor.forms import FORMS_LANGUAGES
from monitor.http import HttpServer
from monitor.logs import setup_logging
from monitor.match import Matcher
from monitor.pipeline import Pipeline
from monitor.query import parse_query
from monitor.rarity import DocumentFrequencies
from monitor.sources.folder import iter_paths, read_file
from monitor.store import Store
from monitor.store.database import create_db_engine
from monitor.store.leases import release, release_dead_leases
from monitor.units import format_duration, parse_duration
from monitor.web import create_web_app
from monitor.wiring import build_sinks, stored_word_frequencies

log = logging.getLogger("monitor.cli")


def _console(**options: Any) -> Console:
    """A console that prints text as it is: titles and words from feeds are never markup
    (``[/bold]`` in a headline would make rich raise; ``[x](url)`` would become a link)."""
    return Console(highlight=False, markup=False, **options)


EXIT_OK, EXIT_ERROR, EXIT_USAGE = 0, 1, 2


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    setup_logging(args.log_format, args.verbose)
    try:
        return int(args.func(args))
    except ConfigError as e:
        for problem in e.problems:
            print(problem, file=sys.stderr)
        print(f"{len(e.problems)} config error(s); nothing was started", file=sys.stderr)
        return EXIT_USAGE
    except MonitorError as e:
        print(f"monitor: {e}", file=sys.stderr)
        return EXIT_ERROR


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="monitor", description="News-monitoring daemon.")
    parser.add_argument("--version", action="version", version=f"monitor {__version__}")
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument(
        "--config", help="config file (default: $MONITOR_CONFIG or config/monitor.yaml)"
    )
    common.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    common.add_argument(
        "--log-format", choices=("text", "json"), default="text", help="log lines on stderr"
    )
    sub = parser.add_subparsers(dest="command", required=True)

    run = sub.add_parser("run", parents=[common], help="run the daemon")
    run.add_argument("--once", action="store_true", help="poll every source once, deliver, exit")
    run.set_defaults(func=cmd_run)

    check = sub.add_parser("check", parents=[common], help="validate config and watchlists")
    check.set_defaults(func=cmd_check)

    test = sub.add_parser("test-rule", parents=[common], help="match files without storing")
    which = test.add_mutually_exclusive_group(required=True)
    which.add_argument("--rule", help="a rule id from the watchlists")
    which.add_argument("--query", help="a query to try (reported as rule id 'query')")
    which.add_argument("--all", action="store_true", help="every enabled rule")
    test.add_argument("--json", action="store_true", help="JSON Lines, one article per line")
    test.add_argument(
        "--forms",
        choices=FORMS_MODES,
        default="exact",
        help="for --query: bare words as written, or with their inflected forms",
    )
    test.add_argument("--since", help="backtest on articles stored this far back (e.g. 30d)")
    test.add_argument("paths", nargs="*", metavar="PATH", help="files or folders")
    test.set_defaults(func=cmd_test_rule)

    hits = sub.add_parser("hits", parents=[common], help="list stored hits")
    hits.add_argument("--rule", help="only this rule")
    hits.add_argument("--since", default="7d", help="how far back (default 7d)")
    hits.add_argument("--json", action="store_true", help="JSON Lines")
    hits.set_defaults(func=cmd_hits)

    sources = sub.add_parser("sources", parents=[common], help="each source's state")
    sources.add_argument("--json", action="store_true", help="JSON Lines")
    sources.set_defaults(func=cmd_sources)

    deliveries = sub.add_parser("deliveries", parents=[common], help="the outbox: every delivery")
    deliveries.add_argument("--failed", action="store_true", help="only failed deliveries")
    deliveries.add_argument("--json", action="store_true", help="JSON Lines")
    deliveries.set_defaults(func=cmd_deliveries)

    redeliver = sub.add_parser("redeliver", parents=[common], help="send deliveries again")
    again = redeliver.add_mutually_exclusive_group(required=True)
    again.add_argument("ids", nargs="*", default=[], metavar="ID", help="delivery ids")
    again.add_argument("--failed", action="store_true", help="every failed delivery")
    redeliver.set_defaults(func=cmd_redeliver)

    serve = sub.add_parser("serve", parents=[common], help="serve the dashboard alone, read-only")
    serve.add_argument("--listen", help="host:port (default: http.listen, else 127.0.0.1:9464)")
    serve.set_defaults(func=cmd_serve)
    return parser


def _load(args: argparse.Namespace) -> Config:
    return load_config(config_path(args.config))


# --- run and check ---------------------------------------------------------------


def cmd_run(args: argparse.Namespace) -> int:
    config = _load(args)  # a bad config stops here, before the database is touched
    store = Store(config.database_url, lock=True)
    release_dead_leases(store)
    try:
        pipeline = Pipeline(config, store, build_sinks(config))
        try:
            if args.once:
                pipeline.poll_all()
                pipeline.deliver_due()
                return EXIT_OK
            daemon = Daemon(pipeline, config_path(args.config))
            daemon.install_signal_handlers()
            daemon.run()
            return EXIT_OK
        finally:
            pipeline.close()  # the poll threads, the fetch client and the parse workers
            release(store, pipeline.owner)
    finally:
        store.close()


def cmd_check(args: argparse.Namespace) -> int:
    config = _load(args)
    enabled = sum(rule.enabled for rule in config.rules)
    print(
        f"{config.path}: OK — {len(config.feeds)} feeds, {len(config.folders)} folders, "
        f"{len(config.sinks)} sinks, {len(config.entities)} entities, "
        f"{len(config.rules)} rules ({enabled} enabled)"
    )
    matcher = Matcher(config.rules, config.queries, nlp_model=config.nlp_model,
                      languages=config.languages)  # fmt: skip
    for rule_id, reason in matcher.disabled.items():
        print(f"rule {rule_id}: disabled: {reason}", file=sys.stderr)
    for source, language in config.languages.items():
        if language not in FORMS_LANGUAGES:
            print(f"source {source}: language {language!r} has no word forms here: words and "
                  "names match as written in its articles", file=sys.stderr)  # fmt: skip
    return _check_examples(config, matcher)


def _check_examples(config: Config, matcher: Matcher) -> int:
    """Precision and recall of each rule on its own labelled examples; 2 if any disagrees."""
    scores = score_examples(config.rules, config.queries, matcher)
    if not scores:
        return EXIT_OK
    table = Table(title="Labelled examples")
    for column in ("rule", "examples", "precision", "recall", "result"):
        table.add_column(column)
    for score in scores:
        total = score.true_positives + score.false_negatives
        total += score.false_positives + score.true_negatives
        result = f"skipped: {score.skipped}" if score.skipped else "ok" if score.passed else "FAIL"
        table.add_row(score.rule_id, str(total), _ratio(score.precision), _ratio(score.recall),
                      result)  # fmt: skip
    _console(width=200).print(table)
    failed = [score for score in scores if not score.passed]
    for score in failed:
        for wrong in score.wrong:
            print(f"rule {score.rule_id}: {wrong}", file=sys.stderr)
    if failed:
        print(f"{len(failed)} rule(s) disagree with their own examples", file=sys.stderr)
        return EXIT_USAGE
    return EXIT_OK


def _ratio(value: float | None) -> str:
    return "—" if value is None else f"{value:.2f}"


# --- test-rule -----------------------------------------------------------------


def cmd_test_rule(args: argparse.Namespace) -> int:
    config = _load(args)
    if not args.paths and args.since is None:
        _usage("test-rule needs PATH... or --since")
    rules, queries = _rules_to_test(args, config)
    if args.since is not None:
        return _backtest(args, config, rules, queries)
    # Files, not the store: the index prices its keys by wordfreq alone.
    matcher = _test_matcher(config, rules, queries)
    console = _console()
    total = 0
    for path in iter_paths([Path(p) for p in args.paths], _patterns(config)):
        for article in _read_for_test(path, config):
            hits = matcher.match(article)
            total += len(hits)
            if args.json:
                print(json.dumps(_test_line(path, article, hits), ensure_ascii=False))
            elif hits:
                console.print(Text.assemble((article.title, "bold"), "  ", (str(path), "dim")))
                for hit in hits:
                    words = ", ".join(sorted({m.text for m in hit.matches}))
                    console.print(f"  {hit.rule.id}: {words}")
    if not args.json:
        print(f"{total} hit(s)")
    return EXIT_OK


def _test_matcher(
    config: Config, rules: list[Rule], queries: dict, documents: DocumentFrequencies | None = None
) -> Matcher:
    matcher = Matcher(rules, queries, nlp_model=config.nlp_model, languages=config.languages,
                      documents=documents)  # fmt: skip
    for rule_id, reason in matcher.disabled.items():
        print(f"rule {rule_id}: disabled: {reason}", file=sys.stderr)
    return matcher


def _backtest(args: argparse.Namespace, config: Config, rules: list[Rule], queries: dict) -> int:
    """``test-rule --since``: the rules over stored articles, with a progress bar on stderr.

    The index prices its keys by the stored articles' words, as the daemon's does.
    """
    try:
        since = utcnow() - parse_duration(args.since)
    except ValueError as e:
        _usage(f"--since: {e}")
    store = Store(config.database_url)
    err = _console(stderr=True)
    try:
        matcher = _test_matcher(config, rules, queries, stored_word_frequencies(store))
        total = store.count_articles(since)
        columns = (*Progress.get_default_columns(), MofNCompleteColumn())
        with Progress(*columns, console=err) as progress:
            task = progress.add_task(f"matching stored articles since {args.since}", total=total)

            def on_article(article_id: int, article: Article, hits: list) -> None:
                progress.advance(task)
                if args.json:
                    line = {"article_id": article_id, "source": article.source,
                            **_test_line(Path(article.path or ""), article, hits)}  # fmt: skip
                    line["path"] = article.path or article.url
                    print(json.dumps(line, ensure_ascii=False))

            tallies = backtest(store, matcher, since, on_article)
    finally:
        store.close()
    if not args.json:
        _print_tallies(tallies, total, args.since)
    return EXIT_OK


def _print_tallies(tallies: dict[str, RuleTally], total: int, since: str) -> None:
    table = Table(title=f"Backtest over {total} stored article(s) since {since}")
    for column in ("rule", "hits", "example titles"):
        table.add_column(column, overflow="fold")
    for tally in sorted(tallies.values(), key=lambda t: (-t.hits, t.rule_id)):
        table.add_row(tally.rule_id, str(tally.hits), "\n".join(tally.titles))
    _console().print(table)


def _rules_to_test(args: argparse.Namespace, config: Config) -> tuple[list[Rule], dict]:
    if args.query is not None:
        try:
            query = parse_query(args.query, config.entities, forms=args.forms)
        except QueryError as e:
            _usage(f"--query: {e}")
        rule = Rule(id="query", title="query", query=args.query, notify=(), forms=args.forms)
        return [rule], {"query": query}
    if args.rule is not None:
        rules = [r for r in config.rules if r.id == args.rule]
        if not rules:
            _usage(f"--rule: no rule {args.rule!r} in the watchlists")
        return [r.__class__(**{**r.__dict__, "enabled": True}) for r in rules], config.queries
    return [r for r in config.rules if r.enabled], config.queries


def _usage(message: str) -> NoReturn:
    print(f"monitor: {message}", file=sys.stderr)
    raise SystemExit(EXIT_USAGE)


def _patterns(config: Config) -> tuple[str, ...]:
    patterns: list[str] = []
    for folder in config.folders:
        patterns += [p for p in folder.patterns if p not in patterns]
    return tuple(patterns) or ("*.txt", "*.md", "*.html", "*.json")


def _read_for_test(path: Path, config: Config) -> list[Article]:
    """Read a file as the folder source would; it counts as that folder's source."""
    source = path.parent.name
    for folder in config.folders:
        if path.resolve().is_relative_to(folder.path.resolve()):
            source = folder.name
    try:
        return read_file(path, source=source, fetched_at=utcnow(), max_bytes=5 << 20)
    except SourceError as e:
        log.warning("file skipped path=%r reason=%s", str(path), e.reason)
        return []


def _test_line(path: Path, article: Article, hits: list) -> dict:
    return {
        "path": str(path),
        "title": article.title,
        "hits": [{"rule": hit.rule.id, "matches": _matches(hit.matches)} for hit in hits],
    }


def _matches(matches: Sequence[Match]) -> list[dict]:
    return [{"start": m.start, "end": m.end, "text": m.text} for m in matches]


# --- hits and sources ----------------------------------------------------------------


def cmd_hits(args: argparse.Namespace) -> int:
    config = _load(args)
    try:
        since = utcnow() - parse_duration(args.since)
    except ValueError as e:
        _usage(f"--since: {e}")
    store = Store(config.database_url)
    try:
        hits = store.hits(since=since, rule=args.rule)
    finally:
        store.close()
    if args.json:
        for hit in hits:
            line = {
                "rule": hit.rule_id,
                "article": {"id": hit.article_id, "title": hit.title, "url": hit.url,
                            "source": hit.source},
                "matches": _matches(hit.matches),
                "time": hit.created_at.isoformat(),
            }  # fmt: skip
            print(json.dumps(line, ensure_ascii=False))
        return EXIT_OK
    table = Table(title=f"Hits since {args.since}", show_lines=False)
    for column in ("time", "rule", "source", "article", "matched"):
        table.add_column(column, overflow="fold")
    for hit in hits:
        words = ", ".join(sorted({m.text for m in hit.matches}))
        table.add_row(_when(hit.created_at), hit.rule_id, hit.source, hit.title, words)
    _console().print(table)
    return EXIT_OK


def cmd_sources(args: argparse.Namespace) -> int:
    config = _load(args)
    store = Store(config.database_url)
    try:
        rows = store.sources()
    finally:
        store.close()
    configured = set(config.source_names)
    rows = [r for r in rows if r.name in configured]
    if args.json:
        for r in rows:
            print(json.dumps({
                "name": r.name, "kind": r.kind, "status": r.status,
                "last_poll": _iso(r.last_poll_at),
                "last_success": _iso(r.last_success_at), "last_error": r.last_error,
                "items_seen": r.items_seen, "next_poll": _iso(r.next_poll_at),
            }))  # fmt: skip
        return EXIT_OK
    table = Table(title="Sources")
    for column in ("source", "kind", "status", "last poll", "last success", "last error",
                   "items", "next poll"):  # fmt: skip
        table.add_column(column, overflow="fold")
    for r in rows:
        table.add_row(
            r.name, r.kind, r.status, _when(r.last_poll_at), _when(r.last_success_at),
            r.last_error if r.consecutive_errors else "", str(r.items_seen), _when(r.next_poll_at),
        )  # fmt: skip
    _console().print(table)
    return EXIT_OK


# --- deliveries (the outbox) -------------------------------------------------------------


def cmd_deliveries(args: argparse.Namespace) -> int:
    config = _load(args)
    store = Store(config.database_url)
    try:
        rows = store.deliveries(failed_only=args.failed)
        disabled = {n: s for n, s in store.sink_states().items() if s.status == "disabled"}
    finally:
        store.close()
    if args.json:
        for d in rows:
            print(json.dumps({
                "id": d.id, "sink": d.sink, "rule": d.rule_id, "title": d.title,
                "status": d.status, "attempts": d.attempts, "last_status": d.last_status,
                "last_error": d.last_error, "next_attempt": _iso(d.next_attempt_at),
                "created": _iso(d.created_at), "delivered": _iso(d.delivered_at),
            }, ensure_ascii=False))  # fmt: skip
        return EXIT_OK
    console = _console()
    for name, state in disabled.items():
        console.print(f"sink {name} is DISABLED: {state.reason}", style="bold red")
    table = Table(title="Failed deliveries" if args.failed else "Deliveries")
    for column in ("id", "sink", "rule", "article", "status", "tries", "last error", "next"):
        table.add_column(column, overflow="fold")
    for d in rows:
        table.add_row(
            d.id, d.sink, d.rule_id, d.title, d.status, str(d.attempts),
            d.last_error or "", _when(d.next_attempt_at) if d.status == "pending" else "",
        )  # fmt: skip
    console.print(table)
    return EXIT_OK


def cmd_redeliver(args: argparse.Namespace) -> int:
    """Requeue deliveries with their ids unchanged (the receiver sees the same webhook-id);
    the running daemon, or the next ``run --once``, sends them."""
    config = _load(args)
    store = Store(config.database_url)
    try:
        done = store.requeue(None if args.failed else list(args.ids), utcnow())
    finally:
        store.close()
    missing = sorted(set(args.ids) - set(done))
    for ident in missing:
        print(f"monitor: no delivery {ident!r}", file=sys.stderr)
    print(f"{len(done)} delivery(ies) queued again")
    return EXIT_USAGE if missing else EXIT_OK


# --- serve (issue #8) -------------------------------------------------------------


def cmd_serve(args: argparse.Namespace) -> int:
    """The dashboard without the daemon: no lock, no migration, no writes."""
    config = _load(args)
    listen = args.listen or config.http_listen or "127.0.0.1:9464"
    if not re.match(r"^[\w.\-\[\]:]*:\d{1,5}$", listen):
        _usage(f"--listen: expected host:port, got {listen!r}")
    if not is_loopback_listen(listen) and not config.http_token:
        _usage(f"{listen} is not loopback: set http.token in the config to serve there")
    engine = create_db_engine(config.database_url)
    server = HttpServer(create_web_app(engine, lambda: config, listen), listen)
    server.start()
    print(f"dashboard on http://{server.address}/ (Ctrl-C stops)", flush=True)
    try:
        server.thread.join()
    except KeyboardInterrupt:
        server.stop()
    finally:
        engine.dispose()
    return EXIT_OK


def _iso(value: datetime | None) -> str | None:
    return value.isoformat() if value else None


def _when(value: datetime | None) -> str:
    """A time and how far it is from now, e.g. ``2026-11-28 09:00 (3m ago)``."""
    if value is None:
        return "—"
    delta = value - utcnow()
    relative = (
        f"in {format_duration(delta)}"
        if delta.total_seconds() > 0
        else (f"{format_duration(-delta)} ago")
    )
    return f"{value:%Y-%m-%d %H:%M:%S} ({relative})"


if __name__ == "__main__":
    sys.exit(main())

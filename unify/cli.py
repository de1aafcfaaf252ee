"""The `unify` command line: thin over the pipeline; one error handler turns expected
failures into a red one-line message and exit code 1 (``--debug`` for the traceback)."""

from __future__ import annotations

import functools
import json
import os
import sys
import time
from collections.abc import Callable, Iterator, Mapping
from contextlib import AbstractAsyncContextManager, contextmanager
from contextvars import ContextVar
from datetime import date
from enum import Enum
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, TypeVar

import typer
from rich.console import Console
from rich.table import Table

from pipelines.config import Config, load_config
from profiles.errors import ConfigError, UnifyError
from profiles.store import Store
from unify.control import ControlServer, delegate, socket_path

if TYPE_CHECKING:  # the batch (splink, pandas) is imported by the commands that run it: other commands start in half the time
    from pipelines.batch.run import RunSummary

app = typer.Typer(add_completion=False, no_args_is_help=True, help="unify: customer data unification.")
F = TypeVar("F", bound=Callable[..., Any])
_state = {"debug": False}

#: Where the commands write: the terminal, or (a command a server runs for the CLI, see
#: unify.control) consoles writing back to the CLI that asked.
_OUTPUT: ContextVar[tuple[Console, Console] | None] = ContextVar("unify_cli_output", default=None)


class _RoutedConsole:
    def __init__(self, default: Console, which: int):
        self._default, self._which = default, which

    def __getattr__(self, name: str) -> Any:
        routed = _OUTPUT.get()
        return getattr(routed[self._which] if routed else self._default, name)


console: Console = _RoutedConsole(Console(), 0)  # type: ignore[assignment]
err_console: Console = _RoutedConsole(Console(stderr=True), 1)  # type: ignore[assignment]


@contextmanager
def output_to(out: Console, err: Console) -> Iterator[None]:
    """Commands run inside write to ``out`` and ``err`` (a server running one for the CLI)."""
    token = _OUTPUT.set((out, err))
    try:
        yield
    finally:
        _OUTPUT.reset(token)


def delegable(fn: F) -> F:
    """A command that needs the store: while `unify serve` serves it, the server runs the
    command (unify.control) and this process prints what it writes."""

    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        if _OUTPUT.get() is None and not args:  # in the CLI's own process, not in the server
            store_path = load_config(kwargs["config"]).store_path
            code = delegate(
                store_path, fn.__name__, kwargs, lambda line, err: print(line, end="", flush=True, file=sys.stderr if err else sys.stdout)
            )
            if code is not None:
                if code:
                    raise typer.Exit(code)
                return None
        return fn(*args, **kwargs)

    return wrapper  # type: ignore[return-value]


ConfigOption = Annotated[Path, typer.Option("--config", "-c", help="Config file.", dir_okay=False)]


@app.callback()
def main(debug: Annotated[bool, typer.Option("--debug", help="Show tracebacks on errors.")] = False) -> None:
    _state["debug"] = debug


def friendly_errors(fn: F) -> F:
    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return fn(*args, **kwargs)
        except UnifyError as exc:
            if _state["debug"]:
                raise
            first_line = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
            err_console.print(f"[bold red]error:[/] {first_line}", highlight=False, soft_wrap=True)
            raise typer.Exit(1) from None

    return wrapper  # type: ignore[return-value]


def _event_counts(name: str, counts: Mapping[str, Any]) -> str:
    """One event file's read in a summary line."""
    if counts.get("unchanged"):
        return f"{name} unchanged since its last read ({counts['accepted']:,} events)"
    return f"{name} {counts['accepted']:,} events ({counts['written']:,} new or changed), {counts['quarantined']:,} quarantined"


def _print_summary(summary: RunSummary, elapsed: float) -> None:
    table = Table(title=f"run {summary.run_id}", title_justify="left")
    for column in ("source", "rows", "accepted", "previous run", "quarantined", "field issues"):
        table.add_column(column, justify="right" if column != "source" else "left")
    for name, counts in summary.sources.items():
        issues = ", ".join(f"{f} {n}" for f, n in sorted(counts.field_issues.items())) or "-"
        if counts.previous is None:
            previous = "-"
        else:
            change = f" ({(counts.accepted - counts.previous) / counts.previous:+.1%})" if counts.previous else ""
            previous = f"{counts.previous:,}{change}"
        table.add_row(name, f"{counts.rows:,}", f"{counts.accepted:,}", previous, f"{counts.quarantined:,}", issues)
    console.print(table)
    console.print(
        f"{summary.records:,} records -> {summary.profiles:,} profiles "
        f"({summary.ids_kept:,} ids kept, {summary.ids_new:,} new); "
        f"{summary.candidate_pairs:,} scored pairs, {summary.review_queue:,} in the review queue; "
        f"model {'trained' if summary.model_trained else 'reused'}"
    )
    if summary.events:
        console.print(
            "events: "
            + "; ".join(_event_counts(name, c) for name, c in summary.events.items())
            + f"; {summary.events_unlinked:,} not linked to a profile yet"
        )
    if summary.suppressed:
        per_source = ", ".join(f"{name} {c.suppressed:,}" for name, c in summary.sources.items() if c.suppressed)
        console.print(f"suppressed: {summary.suppressed:,} rows of erased people left out ({per_source})")
    if summary.labels is not None and summary.labels.pairs:
        labels = summary.labels
        scores = ", ".join(
            f"{name} {value:.3f}" for name, value in (("precision", labels.precision), ("recall", labels.recall)) if value is not None
        )
        console.print(
            f"steward labels: {labels.same} same, {labels.different} different; model {scores or 'not measurable'}; {labels.note}"
        )
    if summary.vetoes:
        console.print("vetoes: " + "; ".join(f"{rule} {why}" for rule, why in summary.vetoes.items()))
    for assumption in summary.assumptions:
        console.print(f"[yellow]assumed: {assumption}[/]")
    if summary.untrained_levels:
        console.print(
            "[dim]comparison levels never observed in training (scored neutrally): " + "; ".join(summary.untrained_levels) + "[/]"
        )
    stages = ", ".join(f"{k} {v:.1f}s" for k, v in summary.seconds.items() if ": " not in k)  # stages, not their parts
    console.print(f"[dim]{stages}; total {elapsed:.1f}s[/]")


def _run(config_path: Path, retrain: bool, accept_shrink: list[str] | None = None) -> RunSummary:
    from pipelines.batch.run import run_pipeline

    config = load_config(config_path)
    start = time.perf_counter()
    with console.status("starting", spinner="dots") as status:
        summary = run_pipeline(
            config, retrain=retrain, on_stage=lambda stage: status.update(f"{stage} ..."), accept_shrink=accept_shrink or ()
        )
    _print_summary(summary, time.perf_counter() - start)
    _compact_if_due(config)
    return summary


def _compact_if_due(config: Config) -> None:
    """Compact the store when an erasure left the deleted rows' bytes in its file (an
    ``eraseProfile`` through the API; `unify erase` compacts at once): at the latest the
    next batch run does it (docs/privacy.md)."""
    from profiles.store.backup import compact_store, compaction_due

    with Store.open(config.store_path, compress=config.store.compress) as store:
        due = compaction_due(store)
    if due:
        start = time.perf_counter()
        done = compact_store(config.store_path)
        console.print(
            f"compacted the store after {len(due)} erasure{'s' if len(due) != 1 else ''}: {done.bytes_before:,} -> "
            f"{done.bytes_after:,} bytes in {time.perf_counter() - start:.1f} s (deleted rows leave no bytes behind)",
            highlight=False,
        )


@app.command()
@friendly_errors
@delegable
def run(
    config: ConfigOption = Path("unify.toml"),
    retrain: Annotated[bool, typer.Option("--retrain", help="Train the model again even if one is saved.")] = False,
    accept_shrink: Annotated[
        list[str] | None,
        typer.Option(
            "--accept-shrink",
            metavar="SOURCE",
            help="Publish although SOURCE arrived empty or shrank by more than run.max_shrink (repeatable).",
        ),
    ] = None,
) -> None:
    """Batch pipeline: ingest -> standardize -> link -> cluster -> survivorship -> publish."""
    _run(config, retrain, accept_shrink)


def _serve(config_path: Path, host: str, port: int, dev: bool = False, announce: Callable[[], None] = lambda: None) -> None:
    """Serve until stopped; ``announce`` once the store is open (a store another process
    holds fails before anything says the server is up)."""
    import uvicorn

    config = load_config(config_path)  # fail here, in one line, rather than inside the server
    from pipelines.demo.config import demo_key_roles

    if not (config.api.development or dev) and (demo := demo_key_roles(k.sha256 for k in config.api.keys)):
        raise ConfigError(
            f"{config_path}: the published demo key of role {', '.join(demo)} is accepted, and api.development is false: "
            "anyone who read the README could use it. Give each [[api.keys]] a key of your own, or set development = true for a demo"
        )
    from resolvers.app import create_app  # here: the other commands need not load the API

    def execute(command: str, params: dict[str, Any], out: Console, err: Console) -> None:
        if command in SERVED_CONFIG_COMMANDS and isinstance(params.get("config"), Path):
            try:
                differs = load_config(params["config"]).serving_differences(config)
            except ConfigError:  # the command itself says what is wrong with it
                differs = []
            if differs:  # the run would publish what this server's live path and API do not know
                err.print(
                    f"error: {params['config']} differs from the config this server serves with ({', '.join(differs)}): "
                    "restart `unify serve` with it, then run the command again",
                    highlight=False,
                    soft_wrap=True,
                )
                raise typer.Exit(1)
        execute_for_server(command, params, out, err)

    def control(store: Store, changed: Callable[[str], None]) -> AbstractAsyncContextManager[None]:
        return ControlServer(store, socket_path(config.store_path), execute, on_changed=changed).running()

    app = create_app(config, sidecar=control, dev=dev)
    announce()
    # Stopping (SIGTERM, Ctrl+C) waits at most 2 s for requests under way, then cancels them.
    uvicorn.run(app, host=host, port=port, log_level="warning", timeout_graceful_shutdown=2)


#: Commands a server runs for the CLI only with the config it serves with (see :func:`_serve`).
SERVED_CONFIG_COMMANDS = frozenset({"run", "ingest"})


def execute_for_server(command: str, params: dict[str, Any], out: Console, err: Console) -> None:
    """Runs one of the commands a CLI asked the server for, writing to ``out`` and ``err``."""
    commands: dict[str, Callable[..., None]] = {
        "run": run,
        "ingest": ingest,
        "export": export,
        "review": review,
        "erase": erase,
        "unsuppress": unsuppress,
        "audit_verify": audit_verify,
        "backup": backup,
        "restore": restore,
        "compact": compact,
    }
    with output_to(out, err):
        commands[command](**params)


@app.command()
@friendly_errors
def serve(
    config: ConfigOption = Path("unify.toml"),
    host: Annotated[str, typer.Option("--host", help="Interface to listen on.")] = "127.0.0.1",
    port: Annotated[int, typer.Option("--port", help="Port to listen on.")] = 8000,
    dev: Annotated[
        bool,
        typer.Option(
            "--dev", help="Development mode: GraphiQL at /graphiql, introspection, field suggestions, demo keys. Never in production."
        ),
    ] = False,
) -> None:
    """Serve the web console and the GraphQL API over the published profiles (owns the store while it runs)."""

    def announce() -> None:
        console.print(f"Console on http://{host}:{port}/ and GraphQL API on http://{host}:{port}/graphql (Ctrl+C stops it)")
        if dev:
            console.print(f"Development mode: GraphiQL on http://{host}:{port}/graphiql")

    _serve(config, host, port, dev, announce)


class ExportFormat(str, Enum):
    parquet = "parquet"
    csv = "csv"


@app.command()
@friendly_errors
@delegable
def export(
    out: Annotated[Path, typer.Option("--out", help="Directory to write to.", file_okay=False)],
    config: ConfigOption = Path("unify.toml"),
    format: Annotated[ExportFormat, typer.Option("--format", help="File format.")] = ExportFormat.parquet,
    profile: Annotated[
        str | None, typer.Option("--profile", help="Only what is held about this profile's person, as JSON (the right of access).")
    ] = None,
) -> None:
    """Write profiles, membership and the review queue (and lineage; events, traits and life events) as files."""
    from pipelines.batch.export import export as do_export
    from pipelines.batch.export import export_profile

    cfg = load_config(config)
    if profile is not None:
        written_to, sections = export_profile(cfg.store_path, out, profile, cfg)
        console.print(f"{written_to}: " + ", ".join(f"{name} {n:,}" for name, n in sections.items()))
        return
    suffix = ExportFormat(format).value  # given by value when the server runs it for the CLI
    written = do_export(cfg.store_path, out, "csv" if suffix == "csv" else "parquet", cfg)
    for name, rows in written.items():
        console.print(f"{out / (name + '.' + suffix)}: {rows:,} rows")


@app.command()
@friendly_errors
@delegable
def ingest(
    file: Annotated[Path, typer.Argument(help="Records of the source (CSV/TSV, Parquet, NDJSON or JSON).", exists=True, dir_okay=False)],
    source: Annotated[str | None, typer.Option("--source", "-s", help="Configured source the records come from.")] = None,
    events: Annotated[str | None, typer.Option("--events", "-e", help="Configured event source the file's events come from.")] = None,
    config: ConfigOption = Path("unify.toml"),
) -> None:
    """Match new or changed records of one source into the profiles now (no batch run), or
    add a file of events (--events NAME)."""
    from pipelines.live.ingest import LiveIngest
    from profiles.store import Steward

    if (source is None) == (events is None):
        raise ConfigError("give --source NAME (records) or --events NAME (events)")
    cfg = load_config(config)
    if events is not None:
        _ingest_events(cfg, events, file)
        return
    assert source is not None
    by = Steward(actor=f"cli:{os.environ.get('USER', 'unknown')}", role="admin")
    # one file, then exit: joined with the stored records (no in-memory index to read
    # first); its commit stays in the WAL until that reaches [store].checkpoint_wal
    with (
        _ingest_store(cfg) as store,
        console.status(f"ingesting {file.name} ...", spinner="dots"),
    ):
        live = LiveIngest(store, cfg, in_memory=False)
        provisional = live.model_is_provisional
        if provisional:
            counts, quarantined = live.log_for_batch(source, by, file)
        else:
            report = live.ingest(source, by, path=file)
    if provisional:
        console.print(
            f"{counts.rows:,} rows from {file} ({source}): {counts.accepted:,} kept, {counts.quarantined:,} quarantined. "
            "The model is provisional (it was trained on records without duplicates), so a batch run now trains it "
            "on every record and matches them all:"
        )
        for row in quarantined:
            err_console.print(f"[yellow]quarantined[/] {source}:line {row['line']}: {row['reason']}", highlight=False)
        _run(config, retrain=False)
        return
    outcomes = ", ".join(f"{name.replace('_', ' ')} {n:,}" for name, n in report.counts().items() if n)
    console.print(
        f"{report.rows:,} rows from {file} ({source}): {outcomes or 'nothing to do'}; "
        f"{report.field_issues:,} unreadable values left out; {report.seconds:.2f}s "
        f"({report.rows / report.seconds if report.seconds else 0:,.0f} records/s)"
    )
    for record in report.records:
        if record.status == "quarantined":
            err_console.print(f"[yellow]quarantined[/] {record.record_key}: {record.problem}", highlight=False)


def _ingest_store(cfg: Config) -> Store:
    """The store for one ingested file: its commit goes into the WAL and stays there when
    the command exits, until the WAL reaches ``[store].checkpoint_wal`` or the server's
    idle checkpoint (a checkpoint rewrites every changed table's index, seconds at 1M
    records however few records changed; profiles.store.Store.open)."""
    return Store.open(cfg.store_path, compress=cfg.store.compress, checkpoint_wal=cfg.store.checkpoint_wal, checkpoint_on_close=False)


def _ingest_events(cfg: Config, name: str, file: Path) -> None:
    from pipelines.history.events import event_source, ingest_event_file, unlinked_count
    from profiles.store import ProfileQueries

    spec = event_source(cfg, name)
    with _ingest_store(cfg) as store:
        counts = ingest_event_file(store, cfg, spec, file)
        run = ProfileQueries(store).run_schema()
        unlinked = unlinked_count(store, run) if run else None
        quarantined = store.dicts(
            "SELECT line, event_id, reason FROM event_quarantine WHERE event_source = ? ORDER BY line LIMIT 20", [name]
        )
    linked = f"; {unlinked:,} events of the store are not linked to a profile yet" if unlinked is not None else ""
    console.print(f"{counts.rows:,} rows from {file}: {_event_counts(name, counts.as_dict())}{linked}")
    for row in quarantined:
        err_console.print(f"[yellow]quarantined[/] {name}:line {row['line']}: {row['reason']}", highlight=False)


@app.command()
@friendly_errors
@delegable
def review(
    config: ConfigOption = Path("unify.toml"),
    limit: Annotated[int, typer.Option("--limit", min=1, max=100, help="Rows of each list.")] = 10,
) -> None:
    """Summarize the review queue and the stewards' recent decisions."""
    from profiles.store import ProfileQueries, Stewardship, Store

    cfg = load_config(config)
    with Store.open(cfg.store_path, read_only=True) as store:
        pairs, total = ProfileQueries(store).review_queue(limit, None)
        recent = Stewardship(store, **cfg.stewardship_settings()).recent_actions(limit)
    queue = Table(title=f"review queue: {total:,} open pairs (closest to the decision boundary first)", title_justify="left")
    for column in ("pair", "probability", "left record", "right record", "profiles"):
        queue.add_column(column, justify="right" if column == "probability" else "left", overflow="fold")
    for p in pairs:
        queue.add_row(
            p["pair_id"],
            f"{p['match_probability']:.3f}",
            p["record_key_l"],
            p["record_key_r"],
            f"{p['profile_id_l']} / {p['profile_id_r']}",
        )
    console.print(queue)
    decisions = Table(title=f"recent steward actions ({len(recent)})", title_justify="left")
    for column in ("when", "action", "kind", "actor", "reason", "profiles after", "undone by"):
        decisions.add_column(column, overflow="fold")
    for a in recent:
        decisions.add_row(
            f"{a.created_at:%Y-%m-%d %H:%M}", a.action_id, a.kind, a.actor, a.reason, ", ".join(a.profiles_after), a.undone_by or "-"
        )
    console.print(decisions)
    console.print("[dim]decide in the API: decideCandidate(pairId, decision: SAME | DIFFERENT, reason)[/]")


def _identifier(text: str) -> tuple[str, str]:
    kind, sep, value = text.partition(":")
    if not sep or not kind.strip() or not value.strip():
        raise ConfigError(f"--identifier takes KIND:VALUE (email:jan@example.nl, record:crm:K1), not {text!r}")
    return kind.strip(), value.strip()


def _cli_steward() -> Any:
    from profiles.store import Steward

    return Steward(actor=f"cli:{os.environ.get('USER', 'unknown')}", role="admin")


audit_app = typer.Typer(no_args_is_help=True, help="The audit log (a hash chain: profiles.store.audit).")
app.add_typer(audit_app, name="audit")


@audit_app.command("verify")
@friendly_errors
@delegable
def audit_verify(config: ConfigOption = Path("unify.toml")) -> None:
    """Check the audit log's hash chain: exit 1 naming the first entry changed, removed, inserted or reordered."""
    from profiles.store import Store, verify_audit

    cfg = load_config(config)
    with Store.open(cfg.store_path) as store:  # not read-only: a store older than the chain is chained first
        verdict = verify_audit(store)
    if not verdict.ok:
        err_console.print(f"[bold red]{verdict}[/]", highlight=False, soft_wrap=True)
        raise typer.Exit(1)
    console.print(f"{verdict} (head seq {verdict.head_seq}, hash {verdict.head_hash})", highlight=False, soft_wrap=True)


@app.command()
@friendly_errors
@delegable
def erase(
    reason: Annotated[str, typer.Option("--reason", help="Why (kept in the audit log).")],
    profile: Annotated[str | None, typer.Option("--profile", help="Profile id of the person to erase.")] = None,
    identifier: Annotated[
        str | None, typer.Option("--identifier", help="KIND:VALUE of the person (email:..., phone:..., record:SOURCE:ID).")
    ] = None,
    config: ConfigOption = Path("unify.toml"),
    no_compact: Annotated[
        bool, typer.Option("--no-compact", help="Leave the store file's compaction to `unify compact` or the next `unify run`.")
    ] = False,
) -> None:
    """Erase a person: their records, identifiers, golden fields, events and steward actions go, their values
    leave the audit log, and their record keys and identifiers are suppressed in later runs and ingests. Then the
    store file is compacted, so that the deleted rows leave no bytes behind (a server pauses its requests for it)."""
    from pipelines.standardize.contacts import standardized_identifier
    from profiles.errors import NotFoundError
    from profiles.model import split_record_key
    from profiles.store import ProfileQueries
    from profiles.store.erasure import erase_profile

    if (profile is None) == (identifier is None):
        raise ConfigError("give --profile ID or --identifier KIND:VALUE")
    cfg = load_config(config)
    with Store.open(cfg.store_path, compress=cfg.store.compress) as store:
        if profile is None:
            assert identifier is not None
            kind, value = _identifier(identifier)
            queries = ProfileQueries(store)
            if kind == "record":
                source, record_id = split_record_key(value)
                found = [p for p in [queries.profile_of_record(source, record_id)] if p]
            else:
                lookup = standardized_identifier(kind, value, cfg.matching.default_country)
                found = queries.profiles_with_identifier(kind, lookup) if lookup else []
            if len(found) != 1:
                raise NotFoundError(
                    f"{len(found)} profiles hold that {kind}: erase by --profile ID" if found else f"no profile holds that {kind}"
                )
            profile = found[0]
        erasure = erase_profile(store, profile, _cli_steward(), reason)
    counts = ", ".join(f"{name} {n:,}" for name, n in erasure.counts.items() if n)
    console.print(
        f"erased profile {erasure.profile_id} ({erasure.erasure_id}): {counts}; {erasure.suppressed} keys and identifiers "
        f"suppressed; {len(erasure.redacted_events)} audit entries redacted"
    )
    if not no_compact:
        _compact_if_due(cfg)


@app.command()
@friendly_errors
@delegable
def backup(
    out: Annotated[Path, typer.Option("--out", help="File to write the copy of the store to (replaced atomically).", dir_okay=False)],
    config: ConfigOption = Path("unify.toml"),
) -> None:
    """Copy the whole store, consistently, to a file; while `unify serve` serves it, the server makes the copy."""
    from profiles.store import Store
    from profiles.store.backup import backup_store

    cfg = load_config(config)
    start = time.perf_counter()
    with Store.open(cfg.store_path, read_only=True) as store:
        written = backup_store(store, out)
    console.print(
        f"backup of {cfg.store_path} written to {written} ({written.stat().st_size:,} bytes, {time.perf_counter() - start:.1f}s)",
        highlight=False,
        soft_wrap=True,
    )


@app.command()
@friendly_errors
@delegable
def unsuppress(
    reason: Annotated[str, typer.Option("--reason", help="Why (kept in the audit log).")],
    identifier: Annotated[str | None, typer.Option("--identifier", help="KIND:VALUE to let in again.")] = None,
    record: Annotated[str | None, typer.Option("--record", help="Record key SOURCE:ID to let in again.")] = None,
    config: ConfigOption = Path("unify.toml"),
) -> None:
    """Lift the suppression of an erased person's identifier or record key (audited)."""
    from pipelines.standardize.contacts import standardized_identifier
    from profiles.store.erasure import unsuppress as lift

    if (identifier is None) == (record is None):
        raise ConfigError("give --identifier KIND:VALUE or --record SOURCE:ID")
    cfg = load_config(config)
    pair = None
    if identifier is not None:
        kind, value = _identifier(identifier)
        standardized = standardized_identifier(kind, value, cfg.matching.default_country)
        if standardized is None:
            raise ConfigError(f"not a readable {kind}: {value!r}")
        pair = (kind, standardized)
    with Store.open(cfg.store_path, compress=cfg.store.compress) as store:
        lifted = lift(store, _cli_steward(), reason, record_key=record, identifier=pair)
    console.print(f"lifted {lifted} suppression{'s' if lifted != 1 else ''}")


@app.command()
@friendly_errors
@delegable
def restore(
    source: Annotated[Path, typer.Option("--from", help="A backup written by `unify backup`.", dir_okay=False)],
    config: ConfigOption = Path("unify.toml"),
) -> None:
    """Make a backup the store (not while `unify serve` serves it); the replaced store is kept beside it."""
    from profiles.store.backup import restore_store

    cfg = load_config(config)
    aside = restore_store(cfg.store_path, source)
    kept = f"; the store it replaced is {aside}" if aside else ""
    console.print(f"restored {source} as {cfg.store_path}{kept}", highlight=False, soft_wrap=True)


@app.command()
@friendly_errors
@delegable
def compact(config: ConfigOption = Path("unify.toml")) -> None:
    """Rewrite the store into a fresh file so that deleted rows leave no bytes behind (after an erasure); a server pauses its requests for it."""
    from profiles.store.backup import compact_store

    cfg = load_config(config)
    done = compact_store(cfg.store_path)
    console.print(f"compacted {done.path}: {done.bytes_before:,} -> {done.bytes_after:,} bytes", highlight=False, soft_wrap=True)


def demo_query(phone: str) -> str:
    """The query `unify demo` prints: the caller's card, timeline across channels and effort."""
    return (
        f'{{ profileByIdentifier(kind: "phone", value: "{phone}") {{ id fullName email phone dateOfBirth '
        "address { street houseNumber postcode city } sources records { source recordId } "
        "timeline(first: 8) { nodes { occurredAt channel type topic department } } "
        "effort(days: 90) { contacts repeatContacts channelSwitches transfers openTopics } "
        "traits { name value } } }"
    )


@app.command()
@friendly_errors
def demo(
    records: Annotated[int, typer.Option("--records", min=100, help="Approximate number of source records.")] = 20_000,
    out: Annotated[Path, typer.Option("--out", help="Directory for the demo sources, config and store.", file_okay=False)] = Path("demo"),
    seed: Annotated[int, typer.Option("--seed", help="Seed of the generator.")] = 42,
    serve: Annotated[bool, typer.Option("--serve/--no-serve", help="Serve the API afterwards.")] = True,
) -> None:
    """Generate demo sources with ground truth, run the pipeline on them (and serve)."""
    from pipelines.demo import generate

    start = time.perf_counter()
    with console.status(f"generating {records:,} demo records", spinner="dots"):
        # events up to today: the windows of traits and effort (and life events' expiry) end now
        manifest = generate(out, records=records, seed=seed, events_until=date.today())
    console.print(
        f"generated {sum(manifest.records_per_source.values()):,} records of {manifest.persons:,} people "
        f"in {len(manifest.source_paths)} sources ({time.perf_counter() - start:.1f}s): {manifest.config_path}"
    )
    _run(manifest.config_path, retrain=False)
    from pipelines.demo.config import DEMO_API_KEYS

    phone, _person = manifest.demo_phone_lookup
    console.print(
        f"\nThe store is {manifest.out_dir / 'unify.duckdb'}; export it with "
        f"`unify export --config {manifest.config_path} --out {manifest.out_dir / 'export'}`."
    )
    if not serve:
        return
    host, port = "127.0.0.1", 8000
    body = json.dumps({"query": demo_query(phone)})
    console.print(
        f"\nA caller gives their number as [bold]{phone}[/], written as no source has it. Find them, "
        "with what they did in every channel and how hard it was for them:\n",
        highlight=False,
    )
    print(
        f"curl -s http://{host}:{port}/graphql -H 'Authorization: Bearer {DEMO_API_KEYS['agent']}' "
        f"-H 'Content-Type: application/json' -d '{body}'\n"
    )
    console.print(
        f"[bold]Open the console: http://{host}:{port}/[/]\n"
        f"  sign in with the agent key {DEMO_API_KEYS['agent']}, type {phone} into the search box and press Enter: the customer card;\n"
        f"  sign in with the steward key {DEMO_API_KEYS['steward']}: the review queue (j/k next and previous pair, s same, d different).\n"
        f"Demo keys: {', '.join(f'{r} {k}' for r, k in DEMO_API_KEYS.items())}. "
        f"GraphiQL (development mode): http://{host}:{port}/graphiql. Ctrl+C stops the server.",
        highlight=False,
    )
    _serve(manifest.config_path, host, port, dev=True)


if __name__ == "__main__":  # pragma: no cover
    sys.exit(app())

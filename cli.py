"""``trial-ledger``: the command line of SPEC section 6.

Thin: it parses options into records, calls the application and prints.  The
write commands are made from the record types themselves (one option per field,
``_`` spelt ``-``), so the command line and the import format cannot drift apart.
Heavy modules are imported inside the commands that need them: an append pays
only for what it uses.
"""

from __future__ import annotations

import datetime as dt
import json
import os
import sys
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, NoReturn

import click

from ledger.domain.events import WRITE_COMMANDS
from ledger.domain.text import printable

if TYPE_CHECKING:
    from ledger.application.trial_ledger import Receipt, TrialLedger
    from ledger.application.verification import Finding, Verdict


# The global options read from the environment when not given on the line (SPEC section 6).
ENVIRONMENT = {
    "store": "TRIAL_LEDGER_STORE",
    "user": "TRIAL_LEDGER_USER",
    "protocol": "TRIAL_LEDGER_PROTOCOL",
}


class Settings:
    """The global options (SPEC section 6), settable before or after the command name.

    An option given anywhere on the line beats its environment variable
    (issue 11); the environment counts only when the option is given nowhere.
    """

    def __init__(self) -> None:
        self.given: dict[str, Any] = {}

    def value(self, name: str) -> Any:
        if name in self.given:
            return self.given[name]
        variable = ENVIRONMENT.get(name)
        return (os.environ.get(variable) or None) if variable else None

    @property
    def store(self) -> str | None:
        return self.value("store")

    @property
    def user(self) -> str | None:
        return self.value("user")

    @property
    def protocol(self) -> str | None:
        return self.value("protocol")

    @property
    def json(self) -> bool:
        return bool(self.value("json"))


def _remember(name: str) -> Callable[[click.Context, click.Parameter, Any], Any]:
    """Keep an option's value when it was given on the line (not its default)."""

    def callback(ctx: click.Context, param: click.Parameter, value: Any) -> Any:
        source = ctx.get_parameter_source(param.name or "")
        if source is click.core.ParameterSource.COMMANDLINE:
            ctx.ensure_object(Settings).given[name] = value
        return value

    return callback


GLOBAL_OPTIONS = [
    click.option(
        "--store",
        expose_value=False,
        callback=_remember("store"),
        help="SQLite file (default trial-ledger.db) or postgresql://... [env TRIAL_LEDGER_STORE]",
    ),
    click.option(
        "--user",
        expose_value=False,
        callback=_remember("user"),
        help="Who is acting [env TRIAL_LEDGER_USER].",
    ),
    click.option(
        "--json",
        "json_",
        is_flag=True,
        expose_value=False,
        callback=_remember("json"),
        help="Machine-readable output on stdout.",
    ),
    click.option(
        "--protocol",
        expose_value=False,
        callback=_remember("protocol"),
        help="Protocol definition file (default: NFH-MSC-CMV-2014) [env TRIAL_LEDGER_PROTOCOL].",
    ),
]


def global_options(command: Callable[..., Any]) -> Callable[..., Any]:
    for option in reversed(GLOBAL_OPTIONS):
        command = option(command)
    return command


def settings() -> Settings:
    return click.get_current_context().ensure_object(Settings)


def open_ledger(*, create: bool = False) -> TrialLedger:
    """The ledger of ``--store``; ``create`` only for the commands that write (issue 11).

    Reading commands never create a store: a mistyped path is exit 2, not an
    empty ledger reported ok.
    """
    from ledger.application.protocols import read_protocol_file
    from ledger.application.trial_ledger import TrialLedger
    from ledger.domain.errors import InvalidInput

    s = settings()
    if s.store is not None and not s.store.strip():
        raise InvalidInput("store: must not be empty")
    if s.user is not None and not s.user.strip():  # not "anyone": the operating-system user would act
        raise InvalidInput("user: must not be empty")
    text = protocol = None
    if s.protocol is not None:
        text, protocol = read_protocol_file(s.protocol, "protocol")
    return TrialLedger(s.store, protocol=protocol, protocol_text=text, create=create)


def emit(data: Any, text: str | Callable[[], None]) -> None:
    """Print ``data`` as JSON with ``--json``, else the human text (or call the renderer)."""
    if settings().json:
        click.echo(json_text(data))
    elif callable(text):
        text()
    else:
        click.echo(printable(text))


def json_text(data: Any) -> str:
    """``data`` as ``json.dumps(data, indent=2, default=str)`` writes it, in C.

    The standard library's encoder is in C only without ``indent``: the compact
    text is indented again by msgspec's formatter, which keeps every token as
    written (escapes, number forms), so the output is the same character for
    character, at a tenth of the time for a million-event ``status``.  What is
    not JSON at all (an infinite float) is left to the standard encoder.
    """
    import msgspec

    compact = json.dumps(data, default=str)
    try:
        return msgspec.json.format(compact.encode(), indent=2).decode()
    except msgspec.DecodeError:
        return json.dumps(data, indent=2, default=str)


# The most characters of a problem said on the terminal: enough for any field's name and value.
LONGEST = 1_000


def _one_line(text: str) -> str:
    lines = [line.strip() for line in text.strip().splitlines() if line.strip()]
    return (lines[0] if lines else "")[:300]


def fail(ctx: click.Context, exc: Exception) -> NoReturn:
    """Exit with the code the failure means (SPEC section 6), one line per problem, never a traceback.

    The ledger's own errors carry their code and problems; a busy or
    unavailable database is exit 3; anything else is exit 2 (issue 11: exit 1
    means only that verification failed).
    """
    from eventsourcing.persistence import InterfaceError, OperationalError

    from ledger.domain.errors import LedgerError

    if isinstance(exc, LedgerError):
        code, message, problems = exc.exit_code, str(exc), exc.problems
    elif isinstance(exc, OperationalError | InterfaceError):
        code, message = 3, f"store: the database is busy or unavailable: {_one_line(str(exc))}"
        problems = [message]
    else:
        detail = _one_line(str(exc))
        code, message = 2, f"{type(exc).__name__}" + (f": {detail}" if detail else "")
        problems = [message]
    message, problems = _clipped(message), [_clipped(problem) for problem in problems]
    obj = ctx.find_object(Settings)
    if obj is not None and obj.json:
        click.echo(json.dumps({"error": message, "problems": problems}, indent=2))
    for problem in problems:
        click.echo(f"error: {printable(problem)}", err=True)
    ctx.exit(code)


def _clipped(text: str) -> str:
    """``text`` cut at :data:`LONGEST` characters, saying how many more there were (a value can be huge)."""
    if len(text) <= LONGEST:
        return text
    return f"{text[:LONGEST]}... ({len(text) - LONGEST} more characters)"


def _is_utf8(text: str) -> bool:
    try:
        text.encode()
    except UnicodeEncodeError:
        return False
    return True


class UsageLine(click.UsageError):
    """A mistyped command line, said in one line (exit 2) instead of click's usage, hint and error."""

    def show(self, file: Any = None) -> None:
        click.echo(f"error: {printable(_clipped(self.format_message()))}", err=True)


class TrialLedgerGroup(click.Group):
    """The command group, with the one guard that maps every failure to its exit code (issue 11)."""

    def make_context(
        self, info_name: str | None, args: list[str], parent: click.Context | None = None, **extra: Any
    ) -> click.Context:
        for number, arg in enumerate(args):  # bytes the terminal's encoding cannot read, kept as surrogates
            if not arg.isascii() and not _is_utf8(arg):
                named = number > 0 and args[number - 1].startswith("-")
                where = args[number - 1] if named else f"argument {number + 1}"
                raise UsageLine(f"{where}: not valid UTF-8 text")
        try:
            return super().make_context(info_name, args, parent, **extra)
        except click.exceptions.NoArgsIsHelpError:
            raise
        except click.UsageError as exc:  # the global options, before there is a context to fail in
            raise UsageLine(exc.format_message()) from None

    def invoke(self, ctx: click.Context) -> Any:
        from ledger.domain.errors import InvalidInput

        try:
            return super().invoke(ctx)
        except click.exceptions.NoArgsIsHelpError:
            raise
        except click.UsageError as exc:  # a command's arguments and options: one line, JSON with --json
            fail(ctx, InvalidInput(exc.format_message()))
        except (click.exceptions.ClickException, click.exceptions.Exit):
            raise
        except click.exceptions.Abort:
            fail(ctx, InvalidInput("input: aborted before an answer was given"))
        except Exception as exc:
            fail(ctx, exc)


@click.group(
    cls=TrialLedgerGroup,
    context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 100},
)
@global_options
def main() -> None:
    """Event-sourced, tamper-evident ledger of the trial NFH-MSC-CMV-2014 (NCT02083731)."""


# -- writing -------------------------------------------------------------------------------

# Options of every write command that are not fields of the record (SPEC section 6).
_NOT_FIELDS = {"site"}


def _receipt(receipt: Receipt) -> None:
    emit(
        {"stored": receipt.stored, "skipped": receipt.skipped},
        "\n".join(
            [f"stored {i}" for i in receipt.stored]
            + [f"skipped {i} (already stored)" for i in receipt.skipped]
        )
        or "nothing to store",
    )


def _field_options(type_name: str) -> list[tuple[str, str, bool, bool]]:
    """(field, help, required, is_list) for each field of a record type, read from the schema."""
    import msgspec

    from ledger.domain.events import RECORD_TYPES

    options = []
    for f in msgspec.structs.fields(RECORD_TYPES[type_name]):
        if f.name in ("user", "source_user"):  # the acting user; an imported line's own attribution
            continue
        info = msgspec.inspect.type_info(f.type)
        options.append((f.name, _describe(info), f.required, _is_list(info)))
    return options


def _describe(info: Any) -> str:
    import msgspec.inspect as mi

    if isinstance(info, mi.Metadata):
        return _describe(info.type)
    if isinstance(info, mi.UnionType):
        kinds = [_describe(t) for t in info.types if not isinstance(t, mi.NoneType)]
        return " or ".join(kinds) + (", optional" if len(kinds) < len(info.types) else "")
    if isinstance(info, mi.LiteralType):
        return "one of " + ", ".join(map(str, info.values))
    if isinstance(info, mi.ListType):
        return "list of " + _describe(info.item_type) + " (repeat the option or separate with commas)"
    return {
        mi.DateType: "date YYYY-MM-DD",
        mi.DateTimeType: "date-time ISO 8601 with offset",
        mi.BoolType: "true or false",
        mi.IntType: "integer",
        mi.FloatType: "number",
        mi.DictType: "JSON object",
        mi.StrType: "text",
    }.get(type(info), "value")


def _is_list(info: Any) -> bool:
    import msgspec.inspect as mi

    if isinstance(info, mi.UnionType):
        return any(isinstance(t, mi.ListType) for t in info.types)
    return isinstance(info, mi.ListType)


class WriteCommand(click.Command):
    """A write command whose options are built from its record type on first use."""

    def __init__(self, name: str, type_name: str) -> None:
        self.type_name = type_name
        self._built = False
        super().__init__(
            name,
            callback=self._run,
            help=f"Append a {type_name} event (SPEC section 6; options are its fields).",
            short_help=f"Append {type_name}.",
        )
        for option in GLOBAL_OPTIONS:
            option(self)  # type: ignore[arg-type]

    def get_params(self, ctx: click.Context) -> list[click.Parameter]:
        if not self._built:
            self._built = True
            for name, help_text, required, is_list in _field_options(self.type_name):
                if name in _NOT_FIELDS:
                    continue
                # A required list given no value is the empty list (e.g. the
                # criteria of a non-serious AE); an optional one stays unset.
                self.params.append(
                    click.Option(
                        [f"--{name.replace('_', '-')}", name],
                        multiple=is_list,
                        default=(("",) if is_list and required else None),
                        help=help_text + (" [required]" if required and not is_list else ""),
                    )
                )
            self.params.append(
                click.Option(["--site"], help="Site entering the event (default: the participant's).")
            )
        return super().get_params(ctx)

    def _run(self, **values: Any) -> None:
        self._append(**values)

    def _append(self, site: str | None = None, **values: Any) -> None:
        from ledger.domain.errors import InvalidInput
        from ledger.domain.events import RECORD_TYPES, InvalidRecord, convert

        fields: dict[str, Any] = {"type": self.type_name}
        for name, value in values.items():
            if value is None or value == ():
                continue
            if isinstance(value, tuple):
                value = [item.strip() for part in value for item in part.split(",") if item.strip()]
            elif name == "changes":
                try:
                    value = json.loads(value)
                except (ValueError, RecursionError) as exc:
                    raise InvalidInput(f"changes: not a JSON object: {exc!s:.200}") from None
            fields[name] = value
        if site is not None:
            fields["site"] = site
        try:
            record = convert(fields, RECORD_TYPES[self.type_name])
        except InvalidRecord as exc:
            raise InvalidInput(str(exc)) from None
        from ledger.application.access import acting

        ledger = open_ledger(create=True)
        receipt = ledger.record(
            [record],
            user=acting(ledger, settings().user, self.name or "write"),
            record_refusal=self.type_name == "ParticipantEnrolled",
        )
        _receipt(receipt)


# One command per import type, named by the type itself (ledger.domain.events.Record.command).
for _command, _type_name in WRITE_COMMANDS.items():
    main.add_command(WriteCommand(_command, _type_name))


@main.command()
@global_options
def init() -> None:
    """Create the store (tables, indexes) if it does not exist yet, and adopt the protocol file.

    The file (``--protocol``, else the shipped NFH-MSC-CMV-2014 one) is adopted as the
    first protocol version from its own ``effective`` date; run again, init adopts
    nothing more (SPEC section 2, protocol versions).
    """
    from ledger.application.access import secure
    from ledger.application.protocols import adopt_at_init

    ledger = open_ledger(create=True)
    secure(ledger)
    adoption = adopt_at_init(ledger, settings().user)
    where, study = _safe_url(ledger.store), ledger.protocol.study
    adopted = f"; adopted protocol {adoption.version} ({adoption.event_id})" if adoption else ""
    data = {"store": where, "protocol": study, "adopted": adoption.to_json() if adoption else None}
    emit(data, f"ready: {where} ({study}){adopted}")


@main.command(name="import")
@click.argument("source", type=click.File("rb"))
@click.option("--site", help="Site for lines that do not name one (default: the participant's).")
@global_options
def import_(source: Any, site: str | None) -> None:
    """Import events from a JSON Lines FILE (or - for stdin), all or nothing (SPEC section 6)."""
    from ledger.application.access import acting
    from ledger.application.importer import import_lines

    ledger = open_ledger(create=True)
    user = acting(ledger, settings().user, "import")
    receipt = import_lines(ledger, source, user=user, site=site, progress=not settings().json)
    _receipt(receipt) if settings().json else click.echo(
        f"imported {len(receipt.stored)} events, skipped {len(receipt.skipped)} already stored"
    )


# -- reading -------------------------------------------------------------------------------


class KnownAt(click.ParamType):
    """``--known-at``: an ISO 8601 date-time with an offset, or a date meaning the end of that day (UTC)."""

    name = "DATETIME"

    def convert(self, value: Any, param: click.Parameter | None, ctx: click.Context | None) -> Any:
        if isinstance(value, dt.datetime):
            return value
        text = str(value).strip().replace("Z", "+00:00")
        try:
            if len(text) == 10:
                day = dt.date.fromisoformat(text)
                return dt.datetime.combine(day, dt.time.max, tzinfo=dt.UTC)
            moment = dt.datetime.fromisoformat(text)
        except ValueError:
            self.fail(f"{value!r} is not an ISO 8601 date-time (e.g. 2015-03-01T12:00:00+08:00)", param, ctx)
        if moment.tzinfo is None:
            self.fail(f"{value!r} needs an offset (e.g. +08:00 or Z)", param, ctx)
        try:
            return moment.astimezone(dt.UTC)
        except OverflowError:
            self.fail(f"{value!r} is outside the calendar once converted to UTC", param, ctx)


class AsOf(click.ParamType):
    """``--as-of``: a clinical date, ISO 8601 ``YYYY-MM-DD``."""

    name = "DATE"

    def convert(self, value: Any, param: click.Parameter | None, ctx: click.Context | None) -> Any:
        if isinstance(value, dt.date):
            return value
        try:
            return dt.date.fromisoformat(str(value).strip())
        except ValueError:
            self.fail(f"{value!r} is not a date YYYY-MM-DD", param, ctx)


def time_options(command: Callable[..., Any]) -> Callable[..., Any]:
    """``--as-of`` and ``--known-at`` (SPEC section 4); defaults: today and now."""
    command = click.option(
        "--known-at",
        type=KnownAt(),
        default=None,
        help="Only what the ledger had recorded by then (date-time with offset; a date = end of day UTC).",
    )(command)
    return click.option(
        "--as-of",
        type=AsOf(),
        default=lambda: dt.date.today(),
        show_default="today",
        help="Clinical date: only events effective on or before it count.",
    )(command)


def render(renderable: Any) -> None:
    from rich.console import Console

    Console().print(renderable)


@main.command()
@click.argument("participant", required=False)
@time_options
@global_options
def status(participant: str | None, as_of: dt.date, known_at: dt.datetime | None) -> None:
    """Participants' status, courses, day 1, CR date and flags (SPEC sections 2 and 6)."""
    from projections.readmodel.queries import Monitor

    data = Monitor(open_ledger()).status(as_of, known_at, participant)
    if participant is not None and not data["participants"]:
        from ledger.domain.errors import InvalidInput

        raise InvalidInput(f"participant: {participant} was not screened on or before {as_of}")

    def show() -> None:
        from projections.presentation.render import status_view

        render(status_view(data))

    emit(data, show)


@main.command()
@time_options
@global_options
def endpoints(as_of: dt.date, known_at: dt.datetime | None) -> None:
    """Primary (mITT and ITT, exact 95% CI) and secondary endpoints (SPEC section 3)."""
    from projections.readmodel.queries import Monitor

    data = Monitor(open_ledger()).endpoints(as_of, known_at)

    def show() -> None:
        from projections.presentation.render import endpoints_view

        render(endpoints_view(data))

    emit(data, show)


@main.command()
@global_options
def rebuild() -> None:
    """Recompute the read models from the first event, with a progress bar (SPEC section 4)."""
    from projections.readmodel.timeline import rebuild as replay

    ledger = open_ledger()
    total = ledger.recorder.max_notification_id() or 0
    if settings().json:
        emit({"events": replay(ledger)}, "")
        return
    from rich.progress import Progress

    with Progress(transient=False) as bar:
        task = bar.add_task("rebuilding participant timelines", total=total)
        summaries = bar.add_task("summarising participants", total=total)
        count = replay(ledger, lambda n: bar.advance(task, n), lambda n: bar.advance(summaries, n))
        bar.update(summaries, completed=total)
    click.echo(f"rebuilt from {count} events")


# The largest simulated trial `demo` runs (a bigger one is a job for `import`).
DEMO_MAX_PARTICIPANTS = 100_000

# -- the main job --------------------------------------------------------------------------


@main.command()
@click.option(
    "--participants",
    type=click.IntRange(1, DEMO_MAX_PARTICIPANTS),
    help="Participants to enroll [default: the protocol's planned participants].",
)
@click.option("--seed", default=2014, show_default=True, help="Random seed of the simulation.")
@click.option("--jsonl", type=click.Path(dir_okay=False), help="Also write the events in the import format.")
@global_options
def demo(participants: int | None, seed: int, jsonl: str | None) -> None:
    """Simulate NFH-MSC-CMV-2014 from January 2014 and import it like site data, then report.

    The events go through the same validated, all-or-nothing import as any
    file; running the same demo twice stores nothing the second time.
    """
    from rich.progress import Progress

    from ledger.simulation.workflow import STEPS, run_demo
    from ledger.storage.outputs import check_output_file
    from ledger.storage.stores import store_url

    if jsonl:
        check_output_file(jsonl, "jsonl", store_url(settings().store))
    ledger = open_ledger(create=True)
    with Progress(transient=True, disable=settings().json) as bar:
        task = bar.add_task("simulating the trial", total=STEPS)
        run = run_demo(
            ledger,
            participants or ledger.protocol.planned_participants,
            seed,
            user=settings().user,
            jsonl=jsonl,
            step=lambda description: bar.update(task, advance=1, description=description),
        )

    def show() -> None:
        from projections.presentation.render import endpoints_view, status_summary

        click.echo(
            f"{_safe_url(ledger.store)}: stored {len(run.receipt.stored)} events"
            f" ({len(run.receipt.skipped)} already there)" + (f", also written to {jsonl}" if jsonl else "")
        )
        if run.coded:
            click.echo(f"coded {run.coded} adverse events with the fictitious demo dictionary (not MedDRA)")
        render(status_summary(run.status))
        render(endpoints_view(run.endpoints))
        click.echo("Next: trial-ledger status | audit NFH-001 | verify | report --out report")

    emit(run.to_json(), show)


# -- reports -------------------------------------------------------------------------------


@main.command()
@click.option(
    "--out",
    required=True,
    type=click.Path(file_okay=False, writable=True),
    help="Folder for index.html and the PNG figures (created if missing; files overwritten).",
)
@time_options
@global_options
def report(out: str, as_of: dt.date, known_at: dt.datetime | None) -> None:
    """Figures and one self-contained HTML page: status, endpoints, follow-up, remission, safety.

    Built from the same projections as the status and endpoints commands (SPEC
    sections 3 and 6).  Needs matplotlib: pip install 'trial-ledger[report]'.
    """
    from pathlib import Path

    from ledger.storage.outputs import output_folder
    from projections.presentation.report import write_report

    ledger = open_ledger()
    with output_folder(out, "out", ledger.store) as temporary:
        written = write_report(ledger, temporary, as_of, known_at, _safe_url(ledger.store))
    files = [str(Path(out) / path.name) for path in written]
    emit({"out": out, "files": files}, "\n".join(f"wrote {path}" for path in files))


def _safe_url(url: str) -> str:
    """The store as a person reads it: a PostgreSQL URL without its password, or the SQLite file's path."""
    from ledger.storage.stores import is_postgres, sqlite_path

    if is_postgres(url):
        if "@" not in url:
            return url
        scheme, rest = url.split("://", 1)
        credentials, host = rest.rsplit("@", 1)
        return f"{scheme}://{credentials.split(':')[0]}@{host}"
    return os.path.abspath(sqlite_path(url))


# -- audit and tamper evidence -------------------------------------------------------------


class Since(KnownAt):
    """``--since``: like ``--known-at``, but a date means the start of that day (UTC)."""

    def convert(self, value: Any, param: click.Parameter | None, ctx: click.Context | None) -> Any:
        text = str(value).strip()
        if len(text) == 10:
            try:
                return dt.datetime.combine(dt.date.fromisoformat(text), dt.time.min, tzinfo=dt.UTC)
            except ValueError:
                self.fail(f"{value!r} is not a date YYYY-MM-DD", param, ctx)
        return super().convert(value, param, ctx)


@main.command()
@click.argument("participant", required=False)
@click.option("--site", help="Only rows of this site's participants or entered by this site.")
@click.option("--since", type=Since(), help="Only rows recorded at or after (a date = start of day UTC).")
@click.option("--until", type=KnownAt(), help="Only rows recorded at or before (a date = end of day UTC).")
@click.option(
    "--known-at",
    type=KnownAt(),
    help="The trail as the ledger knew it then (date-time with offset; a date = end of day UTC).",
)
@click.option("--entered-by", help="Only rows entered by this user (--user stays the acting user).")
@global_options
def audit(
    participant: str | None,
    site: str | None,
    since: dt.datetime | None,
    until: dt.datetime | None,
    known_at: dt.datetime | None,
    entered_by: str | None,
) -> None:
    """Every event and correction in recorded order, with old and new values (SPEC section 5)."""
    from ledger.application import audit as trail

    filters = trail.Filters(participant, site, entered_by, since, until, known_at)
    rows = trail.ledger_trail(open_ledger(), filters)
    emit(trail.to_json(rows, filters), lambda: render(trail.table(rows, filters)))


@main.command()
@click.option("--out", type=click.Path(dir_okay=False), help="Also save the digest to FILE (JSON).")
@global_options
def digest(out: str | None) -> None:
    """The ledger's size and Merkle root, to publish (SPEC section 5; JSON: {"size", "root"})."""
    from ledger.application.verification import current_digest
    from ledger.storage.outputs import check_output_file, output_file

    ledger = open_ledger()
    if out:
        check_output_file(out, "out", ledger.store)
    head = current_digest(ledger)
    if out:
        with output_file(out, "out", ledger.store) as temporary:
            head.save(temporary)
    emit(head.to_json(), f"size {head.size}\nroot {head.root.hex()}" + (f"\nsaved to {out}" if out else ""))


@main.command()
@click.option(
    "--digest",
    "digest_file",
    type=click.Path(exists=True, dir_okay=False),
    help="A digest published earlier: it must be a prefix of today's ledger.",
)
@global_options
def verify(digest_file: str | None) -> None:
    """Recompute chain and Merkle tree from the stored events; exit 1 naming the first mismatch."""
    from ledger.application.verification import Digest, verify_ledger

    published = Digest.load(digest_file) if digest_file else None
    ledger = open_ledger()
    if settings().json:
        verdict = verify_ledger(ledger, published, [_read_model_finding])
    else:
        from rich.console import Console

        with Console(stderr=True).status("recomputing the hash chain and the Merkle tree..."):
            verdict = verify_ledger(ledger, published, [_read_model_finding])
    emit(verdict.to_json(), _verdict_text(verdict))
    if not verdict.ok:
        sys.exit(1)


def _read_model_finding(ledger: TrialLedger) -> Finding | None:
    """The read model compared with the events (issue 11), as one more check of ``verify``."""
    from ledger.application.verification import Finding, Mismatch
    from projections.readmodel.check import check_read_model

    read_model = check_read_model(ledger)
    if read_model.ok:
        return None
    first_bad = Mismatch(read_model.position, None, read_model.text)
    return Finding("read_model", first_bad, read_model.to_json(), (read_model.text,))


def _verdict_text(verdict: Verdict) -> str:
    """``verify``'s verdict in words: ok with the root, the seal's first mismatch, or the findings."""
    if verdict.ok:
        root = verdict.root.hex() if verdict.root else ""
        text = f"ok: {verdict.size} events match their seal; root {root}"
        if verdict.published is not None:
            text += f"\nthe published digest of {verdict.published.size} events is a prefix of today's ledger"
        return text
    bad = verdict.first_bad
    if bad is None:
        return "\n".join(line for finding in verdict.findings for line in finding.lines)
    where = f"position {bad.position}" if bad.position is not None else "the ledger's seal"
    text = f"TAMPERED at {where}" + (f" (event {bad.event_id})" if bad.event_id else "")
    return text + f": {bad.problem}"


@main.command()
@click.argument("event_id", required=False)
@click.option("--from-size", type=click.IntRange(min=0), help="Consistency proof from the tree of N events.")
@click.option("--size", type=click.IntRange(min=0), help="Prove in the tree of N events (default: all).")
@click.option("--out", type=click.Path(dir_okay=False), help="Also save the proof to FILE.")
@global_options
def prove(event_id: str | None, from_size: int | None, size: int | None, out: str | None) -> None:
    """Print an inclusion proof of EVENT_ID, or a consistency proof --from-size N (JSON)."""
    from ledger.application.proofs import consistency, inclusion
    from ledger.domain.errors import InvalidInput
    from ledger.storage.outputs import check_output_file, output_file

    if (event_id is None) == (from_size is None):
        raise InvalidInput("give EVENT_ID (inclusion proof) or --from-size N (consistency proof), not both")
    ledger = open_ledger()
    if out:
        check_output_file(out, "out", ledger.store)
    doc = inclusion(ledger, event_id, size) if event_id is not None else consistency(ledger, from_size, size)  # type: ignore[arg-type]
    text = json.dumps(doc, indent=2)
    if out:
        with output_file(out, "out", ledger.store) as temporary:
            temporary.write_text(text + "\n", encoding="utf-8")
    click.echo(text)


@main.command(name="verify-proof")
@click.argument("proof", type=click.File("r"))
@click.option(
    "--digest",
    "digests",
    multiple=True,
    type=click.File("r"),
    help="A published digest the proof must match (repeat: old and new digests of a consistency proof).",
)
@global_options
def verify_proof(proof: Any, digests: tuple[Any, ...]) -> None:
    """Check a proof from `prove` against published digests, without the database."""
    from ledger.application.proofs import check
    from ledger.domain.errors import InvalidInput

    def load(file: Any, what: str) -> Any:
        try:
            return json.load(file)
        except (ValueError, RecursionError) as exc:
            raise InvalidInput(f"{what}: {file.name} is not JSON: {exc}") from None

    result = check(load(proof, "proof"), [load(d, "digest") for d in digests])
    text = ("VALID: " if result.ok else "INVALID: ") + "\n".join(result.messages)
    emit(result.to_json(), text)
    if not result.ok:
        sys.exit(1)


# -- regulatory exchange and control -------------------------------------------------------


def _lock_text(lock: dict[str, Any]) -> str:
    if not lock["locked"]:
        return "data not locked"
    return f"data locked since {lock['since']} by {lock['by']} ({lock['reason']})"


@main.group()
@global_options
def export() -> None:
    """Regulatory exchange: CDISC ODM 1.3.2 and SDTM datasets."""


@export.command(name="odm")
@click.argument("file", type=click.Path(dir_okay=False, writable=True))
@click.option(
    "--known-at",
    type=KnownAt(),
    help="The ledger as it stood then (date-time with offset; a date = end of day UTC).",
)
@global_options
def export_odm(file: str, known_at: dt.datetime | None) -> None:
    """Every event as a Transactional CDISC ODM 1.3.2 FILE with study metadata and audit records."""
    from ledger.application.access import user_logins
    from ledger.exchange.odm import export_odm as write
    from ledger.storage.outputs import output_file

    ledger = open_ledger()
    with output_file(file, "file", ledger.store) as temporary:
        entries = list(ledger.entries(known_at=known_at))
        logins = user_logins(ledger)  # after the entries: every row read is sealed by then
        summary = write(
            entries, ledger.protocol, temporary, known_at=known_at, created=ledger.clock(), logins=logins
        )
    summary["file"] = file
    emit(
        summary,
        f"wrote {file}: {summary['events']} events, {summary['subjects']} participants, as known at "
        f"{summary['known_at']}; {_lock_text(summary['lock'])}",
    )


@export.command(name="sdtm")
@click.argument("directory", type=click.Path(file_okay=False, writable=True))
@click.option(
    "--format",
    "format_",
    type=click.Choice(["xpt", "csv", "both"]),
    default="xpt",
    show_default=True,
    help="SAS XPORT v5 transport files (a submission), CSV with define.csv, or both.",
)
@time_options
@global_options
def export_sdtm(directory: str, format_: str, as_of: dt.date, known_at: dt.datetime | None) -> None:
    """SDTMIG 3.4 datasets in DIRECTORY with define.xml, export.json and the CDISC conformance checks."""
    from ledger.application.protocols import protocol_versions
    from ledger.exchange.sdtm import export_sdtm as write
    from ledger.storage.outputs import output_folder
    from projections.presentation.submission import submission_view

    ledger = open_ledger()
    with output_folder(directory, "directory", ledger.store) as temporary:
        entries = ledger.entries(known_at=known_at)
        summary = write(
            entries,
            ledger.protocol,
            temporary,
            as_of=as_of,
            known_at=known_at,
            created=ledger.clock(),
            format=format_,
            shown_as=directory,
            versions=protocol_versions(ledger, known_at),
        )

    def show() -> None:
        render(submission_view(summary))
        click.echo(_lock_text(summary["lock"]))

    emit(summary, show)


@main.group()
@global_options
def protocol() -> None:
    """Protocol versions: adopt an amendment, list the versions adopted (SPEC section 2)."""


@protocol.command(name="adopt")
@click.argument("file", type=click.Path(dir_okay=False))
@click.option("--effective", required=True, type=AsOf(), help="First date the version is in force.")
@click.option("--reason", required=True, help="Why the version is adopted (e.g. amendment 1 approved).")
@global_options
def protocol_adopt(file: str, effective: dt.date, reason: str) -> None:
    """Adopt the protocol version in FILE from --effective on. Data managers only.

    Participants enrolled (or, never enrolled, screened) from that date on are
    judged under it; those before keep the version they were judged under.
    """
    from ledger.application.protocols import adopt, read_protocol_file

    text, parsed = read_protocol_file(file, "file")
    adoption = adopt(open_ledger(create=True), settings().user, text, parsed, effective, reason)
    said = "already adopted as" if adoption.already else "adopted as"
    emit(
        adoption.to_json(),
        f"protocol {adoption.version} effective {adoption.effective} {said} {adoption.event_id}"
        f" (sha256 {adoption.sha256})",
    )


@protocol.command(name="show")
@click.option("--known-at", type=KnownAt(), help="Only versions recorded by then.")
@global_options
def protocol_show(known_at: dt.datetime | None) -> None:
    """The protocol versions adopted, in recorded order, with hash, effective date, who and why."""
    from ledger.application.protocols import adopted_versions

    rows = [entry.to_json() for entry in adopted_versions(open_ledger(), known_at)]

    def show() -> None:
        from projections.presentation.render import protocol_versions_table

        render(protocol_versions_table(rows))

    from ledger.domain.events import utc_text

    emit({"known_at": None if known_at is None else utc_text(known_at), "versions": rows}, show)


@main.command()
@click.option("--reason", required=True, help="Why the data are locked (e.g. interim analysis).")
@global_options
def lock(reason: str) -> None:
    """Lock the database: every append is refused (exit 3) until `unlock`. Data managers only."""
    from ledger.application import access

    event = access.lock(open_ledger(create=True), settings().user, reason)
    emit({"locked": True, "event": event, "reason": reason}, f"locked ({event}): {reason}")


@main.command()
@click.option("--reason", required=True, help="Why the lock ends.")
@global_options
def unlock(reason: str) -> None:
    """End the database lock. Data managers only."""
    from ledger.application import access

    event = access.unlock(open_ledger(create=True), settings().user, reason)
    emit({"locked": False, "event": event, "reason": reason}, f"unlocked ({event}): {reason}")


def _passphrase(file: str | None, variable: str | None, *, confirm: bool) -> str:
    """The key's passphrase: the first line of ``file``, environment variable ``variable``, else asked for.

    Asked for on the terminal, it is never echoed (issue 12, item 6).
    """
    from ledger.domain.errors import InvalidInput

    if file is not None and variable is not None:
        raise InvalidInput("passphrase-file: give --passphrase-file or --passphrase-env, not both")
    if file is not None:
        try:
            with open(file, encoding="utf-8") as source:
                return source.readline(4096).rstrip("\r\n")
        except (OSError, UnicodeDecodeError) as exc:
            raise InvalidInput(f"passphrase-file: cannot read {file}: {exc}") from None
    if variable is None:
        return str(click.prompt("Passphrase", hide_input=True, confirmation_prompt=confirm))
    value = os.environ.get(variable)
    if value is None:
        raise InvalidInput(f"passphrase-env: environment variable {variable} is not set")
    return value


_KEY_FILE_HELP = "Your private key (PEM, passphrase-protected) [default: ~/.trial-ledger/NAME.pem]."
_PASSPHRASE_ENV_HELP = "Read the key's passphrase from environment variable VAR (default: ask, not echoed)."
_PASSPHRASE_FILE_HELP = "Read the key's passphrase from the first line of FILE (default: ask, not echoed)."


def passphrase_options(command: Callable[..., Any]) -> Callable[..., Any]:
    """``--key-file``, ``--passphrase-file`` and ``--passphrase-env``: how a command reaches your key."""
    for option in reversed(
        [
            click.option("--key-file", type=click.Path(dir_okay=False), help=_KEY_FILE_HELP),
            click.option("--passphrase-file", type=click.Path(dir_okay=False), help=_PASSPHRASE_FILE_HELP),
            click.option("--passphrase-env", metavar="VAR", help=_PASSPHRASE_ENV_HELP),
        ]
    ):
        command = option(command)
    return command


@main.group()
@global_options
def user() -> None:
    """Users of the ledger: roles and sites (data managers)."""


@user.command(name="add")
@click.argument("name")
@click.option(
    "--role", required=True, help="site_staff, investigator, monitor, data_manager, auditor or coder."
)
@click.option("--site", help="The site of a site_staff or investigator.")
@click.option("--full-name", required=True, help="Printed name shown with the user's signatures.")
@global_options
def user_add(name: str, role: str, site: str | None, full_name: str) -> None:
    """Register user NAME with a role and site (the first user: a data_manager).

    The user then makes their own signing key under their own login: `key new`.
    """
    from ledger.application import access

    ledger = open_ledger(create=True)
    event = access.register(
        ledger, settings().user, name=name, full_name=full_name, role=role, user_site=site
    )
    data = {"user": name, "role": role, "site": site, "event": event}
    where = f" of {site}" if site else ""
    emit(data, f"registered {name} ({role}{where}) as {event}; they make their own key with `key new`")


@main.group()
@global_options
def key() -> None:
    """Your own signing key: made and registered under your own login."""


@key.command(name="new")
@passphrase_options
@global_options
def key_new(key_file: str | None, passphrase_file: str | None, passphrase_env: str | None) -> None:
    """Make your own Ed25519 key pair and register its public key (21 CFR 11.100, 11.300).

    The private key is written to --key-file (created, never overwritten),
    encrypted with a passphrase only you know; a new key replaces your previous
    one for signatures made from now on.
    """
    from pathlib import Path

    from ledger.application import signatures

    passphrase = _passphrase(passphrase_file, passphrase_env, confirm=True)
    made = signatures.make_key(
        open_ledger(), settings().user, Path(key_file) if key_file else None, passphrase
    )
    emit(made.to_json(), f"registered {made.user}'s key as {made.event_id}; private key in {made.key_file}")


@user.command(name="update")
@click.argument("name")
@click.option("--role", help="The new role (default: unchanged).")
@click.option("--site", help="The new site of a site_staff or investigator (default: unchanged).")
@click.option("--reason", required=True, help="Why the role or site changes.")
@global_options
def user_update(name: str, role: str | None, site: str | None, reason: str) -> None:
    """Change user NAME's role or site, recorded as an event. Data managers only."""
    from ledger.application import access

    record = access.update_user(
        open_ledger(create=True), settings().user, name=name, role=role, user_site=site, reason=reason
    )
    where = f" of {record.user_site}" if record.user_site else ""
    emit(
        {"user": name, "role": record.role, "site": record.user_site, "event": record.id},
        f"updated {name}: now {record.role}{where} ({record.id})",
    )


@user.command(name="deactivate")
@click.argument("name")
@click.option("--reason", required=True, help="Why the user's access ends.")
@global_options
def user_deactivate(name: str, reason: str) -> None:
    """End user NAME's access for good, recorded as an event. Data managers only."""
    from ledger.application import access

    event = access.deactivate_user(open_ledger(create=True), settings().user, name=name, reason=reason)
    emit({"user": name, "deactivated": True, "event": event}, f"deactivated {name} as {event}")


@main.command()
@click.argument("participant")
@click.option("--meaning", required=True, help="reviewed, approved or investigator_attestation.")
@passphrase_options
@global_options
def sign(
    participant: str,
    meaning: str,
    key_file: str | None,
    passphrase_file: str | None,
    passphrase_env: str | None,
) -> None:
    """Sign PARTICIPANT's record with your own key (21 CFR 11.50): it covers every event so far."""
    from pathlib import Path

    from ledger.application import access, signatures
    from ledger.domain.events import utc_text

    ledger = open_ledger()
    signer = access.acting(ledger, settings().user, f"sign {meaning}")
    path = Path(key_file) if key_file else signatures.default_key_file(signer)
    record = signatures.sign(
        ledger,
        signer,
        participant,
        meaning,
        path,
        _passphrase(passphrase_file, passphrase_env, confirm=False),
    )
    signed_at = utc_text(record.signed_at)
    covers = [event_id for event_id, _ in record.covers]
    data = {"signature": record.id, "participant": participant, "meaning": meaning, "signer": signer}
    emit(
        {**data, "signed_at": signed_at, "covers": covers},
        f"signed {participant} as {meaning} ({record.id}) by {signer} at {signed_at},"
        f" covering {len(covers)} events",
    )


@main.command(name="signatures")
@click.argument("participant", required=False)
@click.option(
    "--known-at",
    type=KnownAt(),
    help="As the ledger stood then (date-time with offset; a date = end of day UTC).",
)
@global_options
def signatures_(participant: str | None, known_at: dt.datetime | None) -> None:
    """Check every electronic signature: valid, superseded (data changed since) or invalid (exit 1)."""
    from ledger.application.signatures import check

    checks = check(open_ledger(), known_at, participant)
    ok = all(c.status != "invalid" for c in checks)
    rows = [c.to_json() for c in checks]
    lines = []
    for row in rows:
        state = {"invalid": f"INVALID: {row['problem']}", "valid": "valid"}.get(
            row["status"], f"superseded: not covering {', '.join(row['not_covered'])}"
        )
        lines.append(
            f"{row['signature']}  {row['participant']}  {row['meaning']} by {row['signer']}"
            f" ({row['full_name']}) at {row['signed_at']}  {state}"
        )
    emit({"ok": ok, "signatures": rows}, "\n".join(lines) or "no signatures")
    if not ok:
        sys.exit(1)


# -- adverse-event coding (issue 15) ---------------------------------------------------------


@main.command(name="code-ae")
@click.option("--participant", required=True, help="The participant whose adverse event is coded.")
@click.option("--ae-id", required=True, help="The site's AE number.")
@click.option("--dictionary", required=True, help='The dictionary and its version, e.g. "MedDRA 27.0".')
@click.option("--llt-code", type=int, required=True, help="Lowest level term code.")
@click.option("--llt", required=True, help="Lowest level term.")
@click.option("--pt-code", type=int, required=True, help="Preferred term code.")
@click.option("--pt", required=True, help="Preferred term (SDTM AEDECOD).")
@click.option("--hlt-code", type=int, required=True, help="High level term code.")
@click.option("--hlt", required=True, help="High level term.")
@click.option("--hlgt-code", type=int, required=True, help="High level group term code.")
@click.option("--hlgt", required=True, help="High level group term.")
@click.option("--soc-code", type=int, required=True, help="Primary system organ class code.")
@click.option("--soc", required=True, help="Primary system organ class (SDTM AEBODSYS).")
@global_options
def code_ae(**chosen: Any) -> None:
    """Code an adverse event's verbatim term (coders and data managers); recoding is a new event."""
    from ledger.application.coding import Coding, code_adverse_events

    [coded] = code_adverse_events(open_ledger(), settings().user, [Coding(**chosen)])
    record = coded.record
    verb = "coded" if coded.replaced is None else "recoded"
    emit(
        coded.to_json(),
        f"{verb} {record.participant} {record.ae_id} ({record.verbatim}) in {record.dictionary}:"
        f" PT {record.pt} ({record.pt_code}), SOC {record.soc} ({record.soc_code}) as {record.id}",
    )


@main.command()
@click.option(
    "--known-at",
    type=KnownAt(),
    help="As the ledger stood then (date-time with offset; a date = end of day UTC).",
)
@global_options
def coding(known_at: dt.datetime | None) -> None:
    """The adverse events still to code: participant, AE id, verbatim term, onset (and why)."""
    from ledger.application.coding import uncoded
    from ledger.domain.events import utc_text
    from projections.presentation.submission import coding_table

    ledger = open_ledger()
    terms = uncoded(ledger.entries(known_at=known_at))
    data = {"known_at": utc_text(known_at or ledger.clock()), "uncoded": [t.to_json() for t in terms]}
    emit(data, lambda: render(coding_table(data)))


if __name__ == "__main__":
    main()

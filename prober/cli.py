"""`prober` command line: run, agent, validate, check, report, import-results, export-static,
push-urls, notify-test, prune, backup."""

from __future__ import annotations

import argparse
import asyncio
import datetime as dt
import difflib
import json
import logging
import os
import pathlib
import sys
import time
from collections.abc import Sequence
from zoneinfo import ZoneInfo

from prober import __version__, logs
from prober.alerts import channels
from prober.alerts.channels import NotifyError, SendContext
from prober.alerts.message import notify_test_message
from prober.canaries import Canaries
from prober.checks.runner import run_check
from prober.checks.session import open_shared
from prober.config import Config, ConfigError, load_config
from prober.config.monitors import Monitor, ProbeMonitor, ProbingMonitor, PushMonitor
from prober.config.settings import Notifier
from prober.errors import UserError
from prober.filemodes import write_text
from prober.notices import ComponentStatus, Impact, Progress
from prober.redact import Redactor
from prober.results import CheckResult, Outcome


class UsageError(Exception):
    pass


def _config_path(args: argparse.Namespace) -> str:
    return str(args.config or os.environ.get("PROBER_CONFIG") or "monitors.toml")


def _load(args: argparse.Namespace) -> Config:
    config = load_config(_config_path(args))
    for warning in config.warnings:
        print(f"warning: {warning}", file=sys.stderr)
    return config


def counted(count: int, noun: str) -> str:
    """`1 monitor`, `0 monitors`, `1,024 rows`: a count and its noun, agreeing."""
    return f"{count:,} {noun}" if count == 1 else f"{count:,} {noun}s"


def cmd_validate(args: argparse.Namespace) -> int:
    config = _load(args)  # incident files too: their errors are the config's
    incidents = f", {counted(len(config.notices), 'incident')}" if config.notices else ""
    print(
        f"{config.path}: ok ({counted(len(config.monitors), 'monitor')}, "
        f"{counted(len(config.notifiers), 'notifier')}, "
        f"{counted(len(config.maintenance), 'maintenance window')}{incidents})"
    )
    return 0


def cmd_incident(args: argparse.Namespace) -> int:
    """`prober incident new|update|resolve`: write a file, check it, have it re-read."""
    from prober import notice_files as files
    from prober import notices

    config = load_config(_config_path(args))  # its warnings are for `validate` and `run`
    for value in (args.title if args.action == "new" else "", args.body):
        try:
            value.encode("utf-8")
        except UnicodeEncodeError:
            raise UsageError(f"{value!r} is not valid UTF-8 text") from None
    ids = {m.id for m in config.monitors}
    folder = config.incidents_path
    now = dt.datetime.now(ZoneInfo(config.settings.timezone)).replace(microsecond=0)
    status = "resolved" if args.action == "resolve" else args.status
    update = files.update_text(now, status, args.body)
    components: list[tuple[str, str]] = args.component if args.action == "new" else []
    try:
        with files.locked(folder):
            if args.action == "new":
                head = files.head_text(args.title, args.impact, components, args.detected)
                stem = f"{now:%Y-%m-%d}-{files.slug(args.title)}"
                text = files.appended(head, update)
                notices.parse_notice(folder / f"{stem}.toml", text, ids)
                path = files.create(folder, stem, text)
            else:
                path = _incident_file(config, args.file)
                was = notices.read_text(path)
                if args.action == "resolve" and notices.parse_notice(path, was, ids).resolved:
                    raise UserError(f"{path}: resolved already; nothing written")
                text = files.appended(was, update)
                notices.parse_notice(path, text, ids)
                files.replace(path, text)
    except notices.NoticeError as exc:
        for line in exc.errors:
            print(line, file=sys.stderr)
        print("prober: nothing written", file=sys.stderr)
        return 1
    except OSError as exc:
        raise UserError(f"cannot write in {folder}: {(exc.strerror or str(exc)).lower()}") from None
    print(path)
    _reread(config)
    return 0


def _component(value: str) -> tuple[str, str]:
    """--component ID=STATUS (its status is checked with the file, as the file's would be)."""
    monitor_id, sep, status = value.partition("=")
    if not sep or not monitor_id or not status:
        raise argparse.ArgumentTypeError(f"{value!r}: write ID=STATUS, as in api=partial_outage")
    return monitor_id, status


def _incident_file(config: Config, name: str) -> pathlib.Path:
    """FILE as given, or a name in settings.incidents_dir (the `.toml` may be left out)."""
    path = pathlib.Path(name)
    if not path.exists() and path.parent == pathlib.Path():
        path = config.incidents_path / (name if name.endswith(".toml") else f"{name}.toml")
    if not path.is_file():
        raise UserError(f"{name}: no such incident file (they are in {config.incidents_path})")
    if path.resolve().parent != config.incidents_path.resolve():
        raise UserError(f"{name} is not in settings.incidents_dir ({config.incidents_path})")
    return path


def _reread(config: Config) -> None:
    """Have a running prober re-read the config (and so the incidents), as `prober reload`."""
    from prober import reload

    try:
        pid = reload.send_reload(config)
    except ProcessLookupError as exc:
        print(f"prober: {_no_prober(config, exc)}; the page shows it from the next start",
              file=sys.stderr)  # fmt: skip
        return
    except PermissionError:
        print("prober: the running prober is not ours to signal: run `prober reload` as its user",
              file=sys.stderr)  # fmt: skip
        return
    print(f"reload requested (pid {pid})", file=sys.stderr)


def _no_prober(config: Config, exc: ProcessLookupError) -> str:
    """Why no prober was signalled. With PostgreSQL there is no database file for the pid
    file to sit beside: Config.database_path says where it goes instead."""
    if config.database.path is not None:
        return str(exc)
    return (
        f"{exc}: with PostgreSQL, `prober run` writes its pid file in $STATE_DIRECTORY, or "
        "else in data/ beside its config; reload on the hub's machine, with its config and "
        "environment"
    )


def cmd_run(args: argparse.Namespace) -> int:
    from prober.runtime.signals import EarlyStop

    early = EarlyStop()  # first: a SIGTERM from here on ends in exit 0
    from prober.runtime import probe  # the web stack loads only for `run`

    config = _load(args)
    level = logging.DEBUG if args.verbose else logging.INFO
    logs.setup(Redactor(config.secret_values()), level, log_format=args.log_format)
    probe.run(config, log_level=level, log_format=args.log_format, early=early)
    return 0


def cmd_agent(args: argparse.Namespace) -> int:
    from prober.runtime.signals import EarlyStop

    early = EarlyStop()  # first: a SIGTERM from here on ends in exit 0
    from prober.agent import run as agent
    from prober.config.agent import load_agent_config

    config = load_agent_config(_config_path(args))
    for warning in config.warnings:
        print(f"warning: {warning}", file=sys.stderr)
    redact = Redactor(config.secret_values())
    logs.setup(redact, logging.DEBUG if args.verbose else logging.INFO, args.log_format)
    agent.run(config, redact, early=early)
    return 0


# What `check --all` says of a push monitor, listed with outcome unknown (exit status unaffected).
PUSH_NOT_CHECKED = "push monitor: it reports in to /push/TOKEN, so it cannot be checked from here"


def cmd_check(args: argparse.Namespace) -> int:
    config = _load(args)
    monitors = _select(config, args.ids, args.all)
    probing = [m for m in monitors if not isinstance(m, PushMonitor)]
    redact = Redactor(config.secret_values())
    logs.setup(redact, logging.WARNING)
    if args.all and config.agents:  # a hub with agents: say where these checks run from
        where = (
            f"checking {len(monitors)} monitors from {config.settings.location} (this hub; "
            "agents' locations are not probed by check)"
        )
        print(where, file=sys.stderr if args.json else sys.stdout)  # --json: lines stay JSON
    results = asyncio.run(
        _check_all(probing, config.settings.canaries, redact, config.settings.location)
    )
    checked = dict(zip((m.id for m in probing), results, strict=True))
    for monitor in monitors:
        result = checked.get(monitor.id)
        if args.json:
            line = _as_json(monitor.id, result) if result else _push_json(monitor.id)
            print(json.dumps(line, ensure_ascii=False))
        else:
            print(_as_text(monitor.id, result) if result else _push_text(monitor.id))
    return 1 if any(r.outcome is Outcome.DOWN for r in results) else 0


def _unknown_monitor(config: Config, monitor_id: str) -> str:
    close = difflib.get_close_matches(monitor_id, [m.id for m in config.monitors], n=1)
    hint = f" (did you mean {close[0]!r}?)" if close else ""
    return f"no monitor has id {monitor_id!r}{hint}"


def _select(config: Config, ids: Sequence[str], everything: bool) -> list[Monitor]:
    """The named probing monitors, or every monitor (push ones too, to be listed)."""
    if everything == bool(ids):
        raise UsageError("name monitor ids, or --all (not both)")
    if everything:
        return list(config.monitors)
    chosen: list[Monitor] = []
    for monitor_id in ids:
        monitor = config.monitor(monitor_id)
        if monitor is None:
            raise UsageError(_unknown_monitor(config, monitor_id))
        if not isinstance(monitor, ProbeMonitor):
            raise UsageError(
                f"{monitor_id!r} is a push monitor: it reports in, it cannot be checked"
            )
        chosen.append(monitor)
    return chosen


async def _check_all(
    monitors: Sequence[ProbingMonitor], canaries: Sequence[str], redact: Redactor, location: str
) -> list[CheckResult]:
    """Judged as `run` judges them: a failure while every canary fails is unknown."""
    async with open_shared(redact=redact, location=location) as shared:
        network = Canaries(canaries, shared)
        results = await asyncio.gather(*(run_check(m, shared) for m in monitors))
        return list(await asyncio.gather(*(network.judge(r) for r in results)))


def _as_json(monitor_id: str, result: CheckResult) -> dict[str, object]:
    return {
        "id": monitor_id,
        "outcome": result.outcome.value,
        "latency_ms": round(result.latency_ms, 3),
        "error": result.error,
        "details": result.details_json(),
    }


def _push_json(monitor_id: str) -> dict[str, object]:
    return {
        "id": monitor_id,
        "outcome": Outcome.UNKNOWN.value,
        "latency_ms": None,
        "error": PUSH_NOT_CHECKED,
        "details": {},
    }


def _push_text(monitor_id: str) -> str:
    return f"{monitor_id:<20} {Outcome.UNKNOWN.value:<9} {'-':>8}     {PUSH_NOT_CHECKED}"


def _as_text(monitor_id: str, result: CheckResult) -> str:
    summary = result.error or (f"HTTP {result.status_code}" if result.status_code else "ok")
    lines = [f"{monitor_id:<20} {result.outcome.value:<9} {result.latency_ms:>8.1f} ms  {summary}"]
    phases = result.phases.as_dict()
    if phases:
        lines.append(
            " " * 21
            + "phases: "
            + ", ".join(f"{k.removesuffix('_ms')} {v:.1f} ms" for k, v in phases.items())
        )
    if result.certificate is not None:
        cert = result.certificate
        lines.append(
            " " * 21
            + f"certificate: {cert.subject} by {cert.issuer}, expires {cert.not_after:%Y-%m-%d}"
        )
    return "\n".join(lines)


def cmd_report(args: argparse.Namespace) -> int:
    from zoneinfo import ZoneInfo

    from prober import timeline
    from prober.report import monthly

    config = _load(args)
    month: str = args.month
    if month is None:  # last month, the one an SLA is billed for
        month = monthly.previous_month(dt.datetime.now(dt.UTC), ZoneInfo(config.settings.timezone))
    try:
        timeline.month_bounds(month, dt.UTC)
    except ValueError as exc:
        raise UsageError(f"--month: {exc}") from None
    for monitor_id in args.monitor:
        if config.monitor(monitor_id) is None:
            raise UsageError(_unknown_monitor(config, monitor_id))
    # the operator's report: remediation attempts too, unless --public (for a customer:
    # what /reports/ serves; command output may name internal hosts)
    text = monthly.report(
        config, month, args.format, monitors=args.monitor, operator=not args.public
    )
    if args.output:
        out = pathlib.Path(args.output)
        try:
            out.parent.mkdir(parents=True, exist_ok=True)
            write_text(out, text, private=monthly.names_private(config, args.monitor))
        except OSError as exc:
            raise UserError(f"cannot write {out}: {(exc.strerror or str(exc)).lower()}") from None
        print(f"wrote {out} ({len(text.encode()):,} bytes)", file=sys.stderr)
    else:
        sys.stdout.write(text)
    return 0


def cmd_import(args: argparse.Namespace) -> int:
    from prober import history

    config = _load(args)
    path = pathlib.Path(args.file)
    if not path.is_file():
        raise UsageError(f"{path}: no such file")
    size = path.stat().st_size
    shown = time.monotonic()

    def progress(rows: int, done: int) -> None:
        nonlocal shown
        if time.monotonic() - shown >= 1.0:
            shown = time.monotonic()
            print(
                f"read {counted(rows, 'row')} ({100 * done / max(size, 1):.0f}%)", file=sys.stderr
            )

    try:
        summary = history.import_results(config, path, progress=progress)
    except history.ImportFailed as exc:
        for error in exc.parsed.errors:
            print(f"{path}:{error.line}: {error.message}", file=sys.stderr)
        more = exc.parsed.unlisted_errors
        if more:
            print(f"... and {counted(more, 'more error')}", file=sys.stderr)
        bad = exc.parsed.error_count
        have = "has" if bad == 1 else "have"
        print(f"nothing imported: {counted(bad, 'row')} {have} errors", file=sys.stderr)
        return 1
    print(
        f"imported {counted(summary.added, 'new result')} of {counted(summary.rows, 'row')} for "
        f"{counted(summary.monitors, 'monitor')} in {summary.seconds:.1f}s "
        f"({summary.rows / max(summary.seconds, 1e-9):,.0f} rows/s)"
    )
    return 0


def cmd_prune(args: argparse.Namespace) -> int:
    from prober import history

    config = _load(args)
    deleted = history.prune(config)
    print(
        f"pruned {counted(deleted, 'raw result')} older than "
        f"{counted(config.settings.retention_days, 'day')} "
        "(rollups, incidents and transitions are kept)"
    )
    return 0


def cmd_backup(args: argparse.Namespace) -> int:
    from prober.backup import backup

    config = _load(args)
    stats = backup(config, pathlib.Path(args.file), force=args.force)
    print(stats.summary())
    return 0


def cmd_export_static(args: argparse.Namespace) -> int:
    from statuspage.export import export

    config = _load(args)
    out = pathlib.Path(args.dir)
    written = export(config, out)
    print(f"wrote {counted(len(written), 'file')} to {out}")
    return 0


def cmd_push_urls(args: argparse.Namespace) -> int:
    from prober import push
    from prober.store.db import open_database
    from prober.store.engine import connect

    config = _load(args)
    monitors = [m for m in config.monitors if isinstance(m, PushMonitor)]
    if not monitors:
        print("no push monitors in the config")
        return 0
    open_database(config.database)
    conn = connect(config.database)
    try:
        conn.execute("BEGIN IMMEDIATE")
        tokens = push.ensure_tokens(conn, monitors)
        conn.execute("COMMIT")
    finally:
        conn.close()
    settings = config.settings
    host, port = settings.listen_host_port
    base = settings.public_url or f"http://{host}:{port}"
    for monitor_id, url in push.urls(base, tokens).items():
        print(f"{monitor_id}  {url}")
    if not settings.public_url:
        print("(set settings.public_url to print the address your jobs reach)", file=sys.stderr)
    return 0


def cmd_reload(args: argparse.Namespace) -> int:
    from prober import reload

    config = _load(args)  # a config that does not validate is not sent: errors, exit 1
    try:
        pid = reload.send_reload(config)
    except ProcessLookupError as exc:
        raise UserError(_no_prober(config, exc)) from None
    print(f"reload requested (pid {pid}); the running prober logs what changed")
    return 0


def cmd_notify_test(args: argparse.Namespace) -> int:
    config = _load(args)
    notifier = next((n for n in config.notifiers if n.id == args.id), None)
    if notifier is None:
        known = ", ".join(n.id for n in config.notifiers) or "none configured"
        raise UserError(f"no notifier {args.id!r} (known: {known})")
    ok, answer = asyncio.run(_notify_test(config, notifier))
    print(f"{notifier.id} ({notifier.type}): {'sent' if ok else 'FAILED'}: {answer}")
    return 0 if ok else 1


async def _notify_test(config: Config, notifier: Notifier) -> tuple[bool, str]:
    redact = Redactor(config.secret_values())
    settings = config.settings
    message = notify_test_message(
        notifier.id,
        dt.datetime.now(dt.UTC),
        title_prefix=settings.title,
        link=settings.public_url + "/" if settings.public_url else "",
        zone=ZoneInfo(settings.timezone),
    )
    async with open_shared(redact=redact) as shared:
        try:
            answer = await channels.send(message, notifier, SendContext(shared.session))
        except NotifyError as exc:
            kind = "permanent" if exc.permanent else "temporary, would be retried"
            return False, redact(f"{exc} ({kind})")
    return True, redact(answer)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="prober", description="External uptime prober.")
    parser.add_argument("--version", action="version", version=f"prober {__version__}")
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument(
        "-c", "--config", help="config file (default $PROBER_CONFIG, then ./monitors.toml)"
    )
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    run = sub.add_parser("run", parents=[common], help="scheduler + status page in one process")
    run.add_argument("-v", "--verbose", action="store_true", help="log every result")
    run.add_argument("--log-format", choices=logs.FORMATS, default="text", help="default: text")
    run.set_defaults(func=cmd_run)

    agent = sub.add_parser("agent", parents=[common], help="probe for a hub from another location")
    agent.add_argument("-v", "--verbose", action="store_true", help="log every result")
    agent.add_argument("--log-format", choices=logs.FORMATS, default="text", help="default: text")
    agent.set_defaults(func=cmd_agent)

    validate = sub.add_parser("validate", parents=[common], help="check the config")
    validate.set_defaults(func=cmd_validate)

    check = sub.add_parser("check", parents=[common], help="run checks now and print the outcome")
    check.add_argument("ids", nargs="*", metavar="ID")
    check.add_argument("--all", action="store_true", help="every probing monitor")
    check.add_argument("--json", action="store_true", help="one JSON object per line")
    check.set_defaults(func=cmd_check)

    report = sub.add_parser("report", parents=[common], help="monthly SLA report")
    report.add_argument(
        "--month", help="YYYY-MM, in settings.timezone (default: last month, there)"
    )
    report.add_argument("--format", choices=("json", "csv", "html"), default="json")
    report.add_argument("--output", "-o", help="write to this file instead of stdout")
    report.add_argument(
        "--monitor", action="append", default=[], metavar="ID", help="only these (repeatable)"
    )
    report.add_argument(
        "--public",
        action="store_true",
        help="the report as /reports/ serves it: no remediation attempts (to send a customer)",
    )
    report.set_defaults(func=cmd_report)

    imports = sub.add_parser(
        "import-results", parents=[common], help="import history from a CSV file"
    )
    imports.add_argument("file", metavar="FILE.csv")
    imports.set_defaults(func=cmd_import)

    static = sub.add_parser(
        "export-static", parents=[common], help="write the status page as static files"
    )
    static.add_argument("dir", metavar="DIR")
    static.set_defaults(func=cmd_export_static)

    urls = sub.add_parser("push-urls", parents=[common], help="print each push monitor's URL")
    urls.set_defaults(func=cmd_push_urls)

    incident = sub.add_parser("incident", help="write an incident for the status page")
    actions = incident.add_subparsers(dest="action", required=True, metavar="ACTION")
    new = actions.add_parser("new", parents=[common], help="start an incident (a new file)")
    new.add_argument("--title", required=True)
    new.add_argument("--impact", required=True, choices=[str(i) for i in Impact])
    new.add_argument(
        "--component",
        action="append",
        default=[],
        type=_component,
        metavar="ID=STATUS",
        help="an affected monitor and its status (repeatable): "
        + ", ".join(str(s) for s in ComponentStatus),
    )
    new.add_argument("--detected", metavar="ID", help="attach to this monitor's incident")
    new.add_argument("--status", required=True, choices=[str(p) for p in Progress])
    new.add_argument("--body", required=True, help="Markdown")
    update = actions.add_parser("update", parents=[common], help="add an update to an incident")
    update.add_argument("file", metavar="FILE")
    update.add_argument("--status", required=True, choices=[str(p) for p in Progress])
    update.add_argument("--body", required=True, help="Markdown")
    resolve = actions.add_parser("resolve", parents=[common], help="add the resolving update")
    resolve.add_argument("file", metavar="FILE")
    resolve.add_argument("--body", required=True, help="Markdown")
    incident.set_defaults(func=cmd_incident)

    reloading = sub.add_parser(
        "reload", parents=[common], help="make the running prober re-read its config"
    )
    reloading.set_defaults(func=cmd_reload)

    notify = sub.add_parser(
        "notify-test", parents=[common], help="send a test alert through one notifier"
    )
    notify.add_argument("id", metavar="ID", help="a [[notifiers]] id")
    notify.set_defaults(func=cmd_notify_test)

    prune = sub.add_parser("prune", parents=[common], help="delete raw results past retention")
    prune.set_defaults(func=cmd_prune)

    backups = sub.add_parser(
        "backup", parents=[common], help="copy the database safely, even while `run` writes"
    )
    backups.add_argument("file", metavar="FILE")
    backups.add_argument("--force", action="store_true", help="overwrite FILE if it exists")
    backups.set_defaults(func=cmd_backup)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        code: int = args.func(args)
    except ConfigError as exc:
        for line in exc.errors:
            print(line, file=sys.stderr)
        return 1
    except UsageError as exc:
        parser.error(str(exc))  # exits 2
    except UserError as exc:
        print(f"prober: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 130
    return code

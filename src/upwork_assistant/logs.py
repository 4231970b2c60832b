"""One logging configuration for every line the process writes.

The app's structlog lines and the standard-library records of uvicorn (startup and
access log), Alembic, SQLAlchemy, httpx and Python's warnings all reach a single handler
on the root logger, whose structlog ``ProcessorFormatter`` renders them alike: one JSON
object per line (``timestamp``, ``level``, ``logger``, ``event``, then the fields) in
production, structlog's console format in development.
"""

from __future__ import annotations

import json
import logging
import sys
from typing import TYPE_CHECKING, Any, Literal, TextIO

import structlog
from structlog.typing import EventDict, Processor, WrappedLogger

from .security.redact import AccessLogRedactor, install_access_log_redaction, redact_url

if TYPE_CHECKING:
    from .config import Settings

LogFormat = Literal["json", "console"]

#: Loggers that may have been given handlers of their own (uvicorn's default dictConfig
#: does so): they lose them and propagate to the root handler instead.
ROUTED_LOGGERS = ("uvicorn", "uvicorn.error", "uvicorn.access", "uvicorn.asgi", "alembic")

_FIRST_KEYS = ("timestamp", "level", "logger", "event")


class _StderrHandler(logging.StreamHandler):  # type: ignore[type-arg]
    """Writes to whatever ``sys.stderr`` is at the time of the record (as logging's
    last-resort handler does), so a replaced or captured stderr never holds a stale one."""

    def __init__(self) -> None:
        logging.Handler.__init__(self)

    @property
    def stream(self) -> TextIO:
        return sys.stderr

    @stream.setter
    def stream(self, _value: TextIO) -> None:  # StreamHandler.setStream; ignored
        pass


class _JSONEventDict(dict[str, Any]):
    """The event dict handed to logging: ``ProcessorFormatter`` renders it, and a record's
    ``getMessage()`` (for other handlers, e.g. pytest's) is its JSON."""

    def __str__(self) -> str:
        return json.dumps(self, default=repr)


def _wrap_for_formatter(
    logger: WrappedLogger, name: str, event_dict: EventDict
) -> tuple[tuple[EventDict], dict[str, dict[str, Any]]]:
    """As ``ProcessorFormatter.wrap_for_formatter``, with a message that prints as JSON."""
    return (_JSONEventDict(event_dict),), {"extra": {"_logger": logger, "_name": name}}


def _foreign_fields(_logger: WrappedLogger, _name: str, event_dict: EventDict) -> EventDict:
    """Fields of a standard-library record: uvicorn's access line as fields of its own
    (its path redacted: no code, state or token of a URL reaches a line)."""
    args = event_dict.pop("positional_args", None)
    record = event_dict.get("_record")
    if (
        record is not None
        and record.name == "uvicorn.access"
        and isinstance(args, tuple)
        and len(args) == 5
    ):
        client, method, path, http_version, status = args
        event_dict.update(
            client_addr=client,
            method=method,
            path=redact_url(path) if isinstance(path, str) else path,
            http_version=http_version,
            status_code=status,
        )
    return event_dict


def _first_keys(_logger: WrappedLogger, _name: str, event_dict: EventDict) -> EventDict:
    ordered = {key: event_dict.pop(key) for key in _FIRST_KEYS if key in event_dict}
    ordered.update(event_dict)
    return ordered


def _shared_processors() -> list[Processor]:
    """Run on every line: structlog's before handing over, logging's in the formatter."""
    return [
        structlog.contextvars.merge_contextvars,
        structlog.processors.add_log_level,
        structlog.stdlib.add_logger_name,
        structlog.processors.TimeStamper(fmt="iso", utc=True),
    ]


def _formatter(fmt: LogFormat, stream: TextIO) -> structlog.stdlib.ProcessorFormatter:
    renderer: list[Processor]
    if fmt == "json":
        renderer = [
            structlog.processors.format_exc_info,
            _first_keys,
            structlog.processors.JSONRenderer(),
        ]
    else:
        isatty = getattr(stream, "isatty", None)
        # A plain traceback: structlog's default (rich's, when rich is installed) prints
        # every frame's local variables, where tokens and keys live; and renders them so
        # slowly that a server's shutdown waited seconds for one cancelled request's lines.
        renderer = [
            structlog.dev.ConsoleRenderer(
                colors=bool(isatty and isatty()),
                exception_formatter=structlog.dev.plain_traceback,
            )
        ]
    return structlog.stdlib.ProcessorFormatter(
        foreign_pre_chain=[*_shared_processors(), _foreign_fields],
        pass_foreign_args=True,
        processors=[structlog.stdlib.ProcessorFormatter.remove_processors_meta, *renderer],
    )


def log_format(settings: Settings) -> LogFormat:
    """JSON in production; readable lines in development."""
    return "json" if settings.is_production else "console"


def configure_logging(level: str, fmt: LogFormat = "json") -> None:
    """Route every logger of the process through one root handler on stderr.

    Safe to call again (the command line does before uvicorn loads the app, which does
    too): the handler is replaced, never added twice."""
    if fmt not in ("json", "console"):
        raise ValueError(f"log format must be 'json' or 'console', not {fmt!r}")
    numeric = logging.getLevelName(level.upper())
    if not isinstance(numeric, int):
        raise ValueError(f"unknown log level {level!r}")

    structlog.configure(
        processors=[
            *_shared_processors(),
            structlog.processors.StackInfoRenderer(),
            _wrap_for_formatter,
        ],
        wrapper_class=structlog.make_filtering_bound_logger(numeric),
        logger_factory=structlog.stdlib.LoggerFactory(),
        cache_logger_on_first_use=True,
    )

    handler = _StderrHandler()
    handler.set_name("upwork_assistant")
    handler.setLevel(numeric)
    handler.setFormatter(_formatter(fmt, sys.stderr))
    # Also on the handler: a uvicorn.access record is redacted whichever way it came.
    handler.addFilter(AccessLogRedactor())
    root = logging.getLogger()
    for old in [h for h in root.handlers if h.get_name() == "upwork_assistant"]:
        root.removeHandler(old)
    root.addHandler(handler)
    # Lower the root's level when needed, never raise it (a test may have lowered it).
    if root.level > numeric:  # (NOTSET, 0, already lets every record through)
        root.setLevel(numeric)
    for name in ROUTED_LOGGERS:
        logger = logging.getLogger(name)
        logger.handlers.clear()
        logger.propagate = True
    # httpx logs every request URL at INFO; keep our own lines the only ones about Upwork.
    logging.getLogger("httpx").setLevel(logging.WARNING)
    # SQLAlchemy's and everyone's warnings become log lines too.
    logging.captureWarnings(True)
    install_access_log_redaction()


def configure_logging_for(settings: Settings) -> None:
    configure_logging(settings.log_level, log_format(settings))

"""Keep secrets out of logs: the callback's ``code`` and ``state`` never reach a log line."""

from __future__ import annotations

import logging
import re

from ..config import CALLBACK_PATH

REDACTED_PATHS = (CALLBACK_PATH,)
_SECRET_PARAMS = re.compile(
    r"(?i)\b(code|state|access_token|refresh_token|client_secret|code_verifier)=[^&\s\"]*"
)


def redact_url(path_with_query: str) -> str:
    path, sep, _query = path_with_query.partition("?")
    if sep and path.rstrip("/").endswith(REDACTED_PATHS):
        return f"{path}?[redacted]"
    return _SECRET_PARAMS.sub(lambda m: f"{m.group(1)}=[redacted]", path_with_query)


class AccessLogRedactor(logging.Filter):
    """For uvicorn's access logger, whose args are
    (client_addr, method, full_path, http_version, status_code). Also set on the root
    handler (upwork_assistant.logs), where it leaves other loggers' records alone."""

    def filter(self, record: logging.LogRecord) -> bool:
        args = record.args
        if (
            record.name == "uvicorn.access"
            and isinstance(args, tuple)
            and len(args) >= 3
            and isinstance(args[2], str)
        ):
            record.args = (*args[:2], redact_url(args[2]), *args[3:])
        return True


def install_access_log_redaction() -> None:
    logger = logging.getLogger("uvicorn.access")
    if not any(isinstance(f, AccessLogRedactor) for f in logger.filters):
        logger.addFilter(AccessLogRedactor())

"""Log lines that carry the request id and never a secret."""

import json
import logging

from audit.context import current
from audit.redaction import redact_string


class RequestContextFilter(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        ctx = current()
        record.request_id = ctx.request_id if ctx else "-"
        # Mask secrets once, here, so every handler and formatter gets the safe text.
        if isinstance(record.msg, str) or record.args:
            record.msg = redact_string(record.getMessage())
            record.args = None
        return True


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        payload = {
            "time": self.formatTime(record, "%Y-%m-%dT%H:%M:%S"),
            "level": record.levelname,
            "logger": record.name,
            "request_id": getattr(record, "request_id", "-"),
            "message": redact_string(record.getMessage()),
        }
        if record.exc_info:
            payload["exception"] = redact_string(self.formatException(record.exc_info))
        return json.dumps(payload, ensure_ascii=False)

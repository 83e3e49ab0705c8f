"""Reading the JSON log lines (``LOG_FORMAT=json``) the project's programs write on stderr."""

from __future__ import annotations

import datetime as dt
import json
from typing import Any

FIELDS = {"time", "level", "logger", "message"}


def json_records(stderr: str) -> list[dict[str, Any]]:
    """Every line of ``stderr`` as a JSON log record; fails on any line that is not one."""
    records = []
    for line in stderr.splitlines():
        try:
            record = json.loads(line)
        except ValueError:
            raise AssertionError(f"not a JSON line: {line!r}\nin:\n{stderr}") from None
        assert isinstance(record, dict), line
        assert record.keys() >= FIELDS, line
        stamp = dt.datetime.fromisoformat(record["time"])
        assert stamp.utcoffset() == dt.timedelta(0), line
        records.append(record)
    return records

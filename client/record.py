"""One measured request and its CSV row, the format the original client wrote."""

from __future__ import annotations

import csv
import math
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime

# The original client's header; kept so old measurement files stay comparable.
CSV_HEADER = ("time", "response_time", "version", "model_date")

# The original's --changes-only heuristic: a row is printed when the response
# time moves by more than 20 % from the previous request's.
_CHANGE_RATIO_LOW = 0.8
_CHANGE_RATIO_HIGH = 1.2


class CsvFormatError(ValueError):
    """A measurement CSV that does not follow the client's format."""


@dataclass(frozen=True, slots=True)
class Sample:
    """One request: when it was sent, how long it took, and what the server said."""

    time: datetime
    response_time_ms: float
    # None when the request failed; a CSV row then has empty version and model_date.
    version: str | None
    model_date: str | None
    # Why the request failed; live only, the CSV keeps its four columns.
    error: str | None = None

    @property
    def failed(self) -> bool:
        """True when the request got no valid recommendation reply."""
        return self.version is None


def format_time(moment: datetime) -> str:
    """ISO 8601 in UTC with milliseconds and an explicit offset."""
    return moment.astimezone(UTC).isoformat(timespec="milliseconds")


def format_row(sample: Sample) -> tuple[str, str, str, str]:
    """The CSV fields of a sample; response time in ms with microsecond precision."""
    return (
        format_time(sample.time),
        f"{sample.response_time_ms:.3f}",
        sample.version or "",
        sample.model_date or "",
    )


def read_samples(lines: Iterable[str]) -> Iterator[Sample]:
    """Parse a measurement CSV (header first), naming the line of any malformed row."""
    reader = csv.reader(lines)
    header = next(reader, None)
    if header is None:
        raise CsvFormatError("line 1: empty file, expected the header " + ",".join(CSV_HEADER))
    if tuple(header) != CSV_HEADER:
        raise CsvFormatError(
            f"line 1: header is {','.join(header)!r}, expected {','.join(CSV_HEADER)!r}"
        )
    for row in reader:
        if not row:
            continue
        try:
            yield _parse_row(row)
        except ValueError as err:
            raise CsvFormatError(f"line {reader.line_num}: {err}") from None


def _parse_row(row: list[str]) -> Sample:
    if len(row) != len(CSV_HEADER):
        raise ValueError(f"{len(row)} fields, expected {len(CSV_HEADER)}")
    time_text, response_text, version, model_date = row
    try:
        moment = datetime.fromisoformat(time_text)
    except ValueError:
        raise ValueError(f"time {time_text!r} is not ISO 8601") from None
    if moment.utcoffset() is None:
        raise ValueError(f"time {time_text!r} has no UTC offset")
    try:
        response_time_ms = float(response_text)
    except ValueError:
        raise ValueError(f"response_time {response_text!r} is not a number") from None
    if not math.isfinite(response_time_ms) or response_time_ms < 0:
        raise ValueError(f"response_time {response_text!r} is not a duration")
    if bool(version) != bool(model_date):
        raise ValueError("version and model_date must be both set or both empty")
    return Sample(moment, response_time_ms, version or None, model_date or None)


class ChangesOnlyFilter:
    """The original client's row filter: keep a row when anything moved since the last request."""

    def __init__(self) -> None:
        # The original started from a zero response time and empty fields, so
        # the first row is always kept.
        self._previous_ms = 0.0
        self._previous_fields = ("", "")

    def keep(self, sample: Sample) -> bool:
        """Whether to write this sample, comparing it with the previous request (kept or not)."""
        fields = (sample.version or "", sample.model_date or "")
        keep = (
            sample.response_time_ms > _CHANGE_RATIO_HIGH * self._previous_ms
            or sample.response_time_ms < _CHANGE_RATIO_LOW * self._previous_ms
            or fields != self._previous_fields
        )
        self._previous_ms = sample.response_time_ms
        self._previous_fields = fields
        return keep

"""The CSV row format, its parser, and the original client's --changes-only filter."""

from __future__ import annotations

import csv
import io
from datetime import UTC, datetime, timedelta, timezone

import pytest
from hypothesis import given
from hypothesis import strategies as st

from client.record import (
    CSV_HEADER,
    ChangesOnlyFilter,
    CsvFormatError,
    Sample,
    format_row,
    format_time,
    read_samples,
)

T0 = datetime(2026, 11, 28, 19, 45, 1, 123456, tzinfo=UTC)


def write_csv(samples: list[Sample]) -> str:
    buffer = io.StringIO(newline="")
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(CSV_HEADER)
    writer.writerows(format_row(sample) for sample in samples)
    return buffer.getvalue()


def test_rows_have_milliseconds_utc_offset_and_microsecond_ms() -> None:
    ok = Sample(T0, 12.3456789, "0.1.0", "2026-11-28 19:00:00.000001")
    failed = Sample(T0 + timedelta(seconds=1), 1000.5, None, None, "timed out")
    assert write_csv([ok, failed]) == (
        "time,response_time,version,model_date\n"
        "2026-11-28T19:45:01.123+00:00,12.346,0.1.0,2026-11-28 19:00:00.000001\n"
        "2026-11-28T19:45:02.123+00:00,1000.500,,\n"
    )


def test_times_in_other_zones_are_written_in_utc() -> None:
    paris = timezone(timedelta(hours=1))
    assert format_time(datetime(2026, 11, 28, 20, 0, 0, 999999, tzinfo=paris)) == (
        "2026-11-28T19:00:00.999+00:00"
    )


texts = st.text(alphabet=st.characters(codec="utf-8", exclude_characters="\r\n"), min_size=1)
samples = st.builds(
    Sample,
    time=st.datetimes(
        min_value=datetime(2000, 1, 1), max_value=datetime(2100, 1, 1), timezones=st.just(UTC)
    ),
    response_time_ms=st.floats(min_value=0, max_value=1e6),
    version=texts,
    model_date=texts,
) | st.builds(
    Sample,
    time=st.datetimes(timezones=st.just(UTC), min_value=datetime(2000, 1, 1)),
    response_time_ms=st.floats(min_value=0, max_value=1e6),
    version=st.none(),
    model_date=st.none(),
)


@given(st.lists(samples, max_size=20))
def test_read_samples_reads_back_what_was_written(written: list[Sample]) -> None:
    read = list(read_samples(io.StringIO(write_csv(written), newline="")))
    assert len(read) == len(written)
    for back, sample in zip(read, written, strict=True):
        assert back.time == sample.time.replace(microsecond=sample.time.microsecond // 1000 * 1000)
        assert back.response_time_ms == pytest.approx(sample.response_time_ms, abs=0.0005)
        assert (back.version, back.model_date) == (sample.version, sample.model_date)
        assert back.failed == sample.failed


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("", "line 1: empty file"),
        (
            "time,latency,version,model_date\n",
            "line 1: header is 'time,latency,version,model_date'",
        ),
        (
            "time,response_time,version,model_date\n2026-11-28T19:45:01.123+00:00,1.0,0.1.0\n",
            "line 2: 3 fields, expected 4",
        ),
        (
            "time,response_time,version,model_date\n\n19:45:01,1.0,0.1.0,d\n",
            "line 3: time '19:45:01' is not ISO 8601",
        ),
        (
            "time,response_time,version,model_date\n2026-11-28T19:45:01.123,1.0,0.1.0,d\n",
            "line 2: time '2026-11-28T19:45:01.123' has no UTC offset",
        ),
        (
            "time,response_time,version,model_date\n2026-11-28T19:45:01.123Z,fast,0.1.0,d\n",
            "line 2: response_time 'fast' is not a number",
        ),
        (
            "time,response_time,version,model_date\n2026-11-28T19:45:01.123Z,-1,0.1.0,d\n",
            "line 2: response_time '-1' is not a duration",
        ),
        (
            "time,response_time,version,model_date\n2026-11-28T19:45:01.123Z,1.5,0.1.0,\n",
            "line 2: version and model_date must be both set or both empty",
        ),
    ],
)
def test_malformed_csv_names_the_line(text: str, message: str) -> None:
    with pytest.raises(CsvFormatError) as caught:
        list(read_samples(io.StringIO(text, newline="")))
    assert str(caught.value).startswith(message)


def sample_at(second: int, ms: float, version: str | None = "1", model: str | None = "m") -> Sample:
    return Sample(T0 + timedelta(seconds=second), ms, version, model)


def test_changes_only_keeps_what_the_original_client_printed() -> None:
    # The original compared each request with the previous one (printed or
    # not): >20 % latency moves and any version/model_date difference.
    run = [
        sample_at(0, 10.0),  # first row: always printed
        sample_at(1, 11.9),  # +19 %: dropped
        sample_at(2, 14.5),  # +22 % over 11.9: printed
        sample_at(3, 14.0),
        sample_at(4, 14.0, None, None),  # failure: fields changed
        sample_at(5, 14.0, None, None),  # still failing, same time: dropped
        sample_at(6, 14.0, "2", "m"),  # new version
        sample_at(7, 14.0, "2", "n"),  # new model
        sample_at(8, 11.1),  # -21 % and back to version 1
        sample_at(9, 11.0, "1", "m"),
    ]
    keep = ChangesOnlyFilter()
    assert [sample.time.second - T0.second for sample in run if keep.keep(sample)] == [
        0,
        2,
        4,
        6,
        7,
        8,
    ]

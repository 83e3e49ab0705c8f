"""The log format every entry point shares: text or one JSON object per line."""

from __future__ import annotations

import datetime as dt
import io
import json
import logging
import subprocess
import sys
from collections.abc import Iterator

import pytest

from mining.logsetup import (
    JsonFormatter,
    configure_logging,
    log_format_for_errors,
    parse_log_format,
    report_error,
)
from tests.helpers.logs import json_records
from tests.helpers.processes import REPO


@pytest.fixture
def logger() -> Iterator[logging.Logger]:
    """A logger of its own, restored afterwards (the root logger belongs to pytest)."""
    named = logging.getLogger("tests.logsetup")
    yield named
    named.handlers.clear()
    named.propagate = True
    named.setLevel(logging.NOTSET)


def test_log_format_is_text_by_default_and_json_on_request() -> None:
    assert parse_log_format(None) == "text"
    assert parse_log_format("  ") == "text"
    assert parse_log_format(" JSON ") == "json"
    with pytest.raises(ValueError, match=r"LOG_FORMAT='xml' must be one of text, json"):
        parse_log_format("xml")
    assert log_format_for_errors({"LOG_FORMAT": "json"}) == "json"
    assert log_format_for_errors({"LOG_FORMAT": "xml"}) == "text"


def test_json_records_are_one_line_with_time_level_logger_message_and_extras(
    logger: logging.Logger,
) -> None:
    stream = io.StringIO()
    configure_logging("json", "DEBUG", stream=stream, logger=logger.name)
    before = dt.datetime.now(dt.UTC)
    logger.info('two\nlines, \u2028 and "quotes" for %s', "Ünïcödé", extra={"status": 200})
    logger.debug("quiet")
    (first, second) = json_records(stream.getvalue())
    assert stream.getvalue().count("\n") == 2
    assert first["message"] == 'two\nlines, \u2028 and "quotes" for Ünïcödé'
    assert (first["level"], first["logger"], first["status"]) == ("INFO", logger.name, 200)
    assert before <= dt.datetime.fromisoformat(first["time"]) <= dt.datetime.now(dt.UTC)
    assert "exception" not in first
    assert second["level"] == "DEBUG"
    # ASCII only: no line reader can split a record at U+2028.
    assert stream.getvalue().isascii()


def test_an_exception_is_one_field_holding_the_whole_traceback(logger: logging.Logger) -> None:
    stream = io.StringIO()
    configure_logging("json", stream=stream, logger=logger.name)
    empty: dict[str, int] = {}
    try:
        empty["missing"]
    except KeyError:
        logger.exception("lookup failed")
    (record,) = json_records(stream.getvalue())
    assert record["message"] == "lookup failed"
    assert record["level"] == "ERROR"
    assert record["exception"].startswith("Traceback (most recent call last):")
    assert record["exception"].endswith("KeyError: 'missing'")


def test_text_keeps_the_servers_format_and_levels_filter(logger: logging.Logger) -> None:
    stream = io.StringIO()
    configure_logging("text", "WARNING", stream=stream, logger=logger.name)
    logger.info("hidden")
    logger.warning("shown %d", 1)
    line = stream.getvalue()
    assert line.endswith(f" WARNING {logger.name}: shown 1\n")
    dt.datetime.strptime(line[:23], "%Y-%m-%d %H:%M:%S,%f")
    assert not logger.propagate


def test_a_record_that_cannot_be_serialised_still_gives_a_line() -> None:
    record = logging.LogRecord("x", logging.INFO, "", 0, "odd", None, None)
    record.payload = {1, 2}
    assert json.loads(JsonFormatter().format(record))["payload"] == "{1, 2}"


def test_a_fatal_error_is_one_line_in_either_format(capsys: pytest.CaptureFixture[str]) -> None:
    report_error("mining", "MIN_SUPPORT='x' is not a number", "text")
    assert capsys.readouterr().err == "mining: error: MIN_SUPPORT='x' is not a number\n"
    report_error("mining", "MIN_SUPPORT='x' is not a number", "json")
    (record,) = json_records(capsys.readouterr().err)
    assert (record["level"], record["logger"]) == ("ERROR", "mining")
    assert record["message"] == "MIN_SUPPORT='x' is not a number"


def test_with_json_on_the_root_warnings_and_uncaught_exceptions_are_records_too() -> None:
    code = (
        "import threading, warnings\n"
        "from mining.logsetup import configure_logging\n"
        "configure_logging('json')\n"
        "warnings.warn('old API')\n"
        "worker = threading.Thread(target=lambda: 1 / 0, name='worker')\n"
        "worker.start(); worker.join()\n"
        "raise KeyError('main')\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", code],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 1
    warned, in_thread, in_main = json_records(result.stderr)
    assert (warned["level"], warned["logger"]) == ("WARNING", "py.warnings")
    assert "old API" in warned["message"]
    assert in_thread["message"] == "uncaught exception in thread worker"
    assert in_thread["exception"].endswith("ZeroDivisionError: division by zero")
    assert (in_main["level"], in_main["message"]) == ("CRITICAL", "uncaught exception")
    assert in_main["exception"].endswith("KeyError: 'main'")

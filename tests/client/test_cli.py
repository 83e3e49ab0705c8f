"""`python -m client` one-shot, run as a real subprocess against servers on loopback."""

from __future__ import annotations

import asyncio
import json
import signal
from pathlib import Path
from typing import TYPE_CHECKING

import pytest

from client.args import ExitCode, parse_request_command
from client.cli import main
from client.continuous import ContinuousOptions
from tests.helpers.logs import json_records

if TYPE_CHECKING:
    from conftest import FakeServer, RunClient, StartClient


async def test_help_documents_usage_formats_and_exit_codes(run_client: RunClient) -> None:
    result = await run_client("--help")
    assert result.returncode == 0
    assert "HOST PORT SONG [SONG ...]" in result.stdout
    assert "--url URL SONG" in result.stdout
    assert "plot FILE.csv" in result.stdout
    assert "time,response_time,version,model_date" in result.stdout
    for code in ExitCode:
        assert f"{code.value} " in result.stdout.split("exit status:")[1]


async def test_one_shot_prints_version_model_date_and_indented_songs(
    fake_server: FakeServer, run_client: RunClient
) -> None:
    result = await run_client("127.0.0.1", str(fake_server.port), "Yellow", "--limit", "2")
    assert result.returncode == 0, result.stderr
    assert result.stdout == (
        "Recommendation server v1.2.3 with model from 2026-11-28 19:45:01.123456.\n"
        "Song recommendations:\n"
        "    Yellow (remix 0)\n"
        "    Yellow (remix 1)\n"
    )
    assert result.stderr == ""
    assert fake_server.bodies == [{"songs": ["Yellow"], "limit": 2}]


@pytest.mark.parametrize(
    ("extra", "notes"),
    [
        # A server that says nothing about where songs come from (older ones): no note.
        ({}, ""),
        ({"from_rules": 1, "unknown": []}, ""),
        ({"from_rules": 2, "unknown": []}, ""),
        (
            {"from_rules": 0, "unknown": ["Nope", 'Say "Ñ"']},
            'note: not in the model, ignored: "Nope", "Say \\"Ñ\\""\n'
            "note: no rule matched these songs: the recommendations are just the most popular "
            "songs\n",
        ),
        ({"from_rules": 1, "unknown": ["Nope"]}, 'note: not in the model, ignored: "Nope"\n'),
    ],
)
async def test_one_shot_notes_unknown_songs_and_answers_without_rules(
    fake_server: FakeServer, run_client: RunClient, extra: dict[str, object], notes: str
) -> None:
    fake_server.extra = extra
    result = await run_client("127.0.0.1", str(fake_server.port), "Yellow", "--limit", "2")
    assert result.returncode == 0, result.stderr
    # The original client's output, unchanged; the notes go to stderr.
    assert result.stdout.splitlines()[1:] == [
        "Song recommendations:",
        "    Yellow (remix 0)",
        "    Yellow (remix 1)",
    ]
    assert result.stderr == notes


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        ({"from_rules": 3}, "error: reply's 'from_rules' is not a count of its 2 songs\n"),
        ({"from_rules": True}, "error: reply's 'from_rules' is not a count of its 2 songs\n"),
        ({"from_rules": -1}, "error: reply's 'from_rules' is not a count of its 2 songs\n"),
        ({"unknown": "Nope"}, "error: reply's 'unknown' is not a list of song names\n"),
        ({"unknown": [1]}, "error: reply's 'unknown' is not a list of song names\n"),
    ],
)
async def test_malformed_origin_fields_are_a_bad_reply(
    fake_server: FakeServer, run_client: RunClient, extra: dict[str, object], message: str
) -> None:
    fake_server.extra = extra
    result = await run_client("127.0.0.1", str(fake_server.port), "Yellow", "--limit", "2")
    assert (result.returncode, result.stdout, result.stderr) == (ExitCode.BAD_REPLY, "", message)


async def test_json_prints_the_reply_and_url_keeps_a_path_prefix(
    fake_server: FakeServer, run_client: RunClient
) -> None:
    result = await run_client(
        "--url", f"{fake_server.url}/prefix/", "--json", "Señorita", "Yellow", "--limit", "1"
    )
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout) == {
        "songs": ["Señorita (remix 0)"],
        "version": "1.2.3",
        "model_date": "2026-11-28 19:45:01.123456",
    }
    assert fake_server.bodies == [{"songs": ["Señorita", "Yellow"], "limit": 1}]


@pytest.mark.slow
async def test_connection_refused(run_client: RunClient, closed_port: int) -> None:
    result = await run_client("127.0.0.1", str(closed_port), "Yellow")
    assert result.returncode == ExitCode.CONNECTION
    assert result.stdout == ""
    assert (
        result.stderr
        == f"error: cannot connect to http://127.0.0.1:{closed_port}: Connection refused\n"
    )


async def test_timeout_is_reported_after_the_given_time(
    fake_server: FakeServer, run_client: RunClient
) -> None:
    fake_server.delay = 5
    result = await run_client(
        "127.0.0.1", str(fake_server.port), "Yellow", "--timeout", "0.3", timeout=4
    )
    assert result.returncode == ExitCode.TIMEOUT
    assert result.stderr == f"error: no reply from {fake_server.url} within 0.3 s\n"


@pytest.mark.parametrize(
    ("behaviour", "code", "message"),
    [
        (
            "reject",
            ExitCode.REJECTED,
            "server rejected the request (400 Bad Request): songs must not be empty",
        ),
        (
            "crash",
            ExitCode.SERVER_ERROR,
            "server error (500 Internal Server Error): 'Internal Server Error'",
        ),
        (
            "unavailable",
            ExitCode.SERVER_ERROR,
            "server error (503 Service Unavailable): no rules loaded yet (retry after 5 s)",
        ),
        (
            "html",
            ExitCode.BAD_REPLY,
            "reply is not a JSON object (text/html; charset=utf-8): "
            "'<html><body>proxy says hi</body></html>'",
        ),
    ],
)
async def test_error_replies_give_one_line_and_their_exit_code(
    fake_server: FakeServer, run_client: RunClient, behaviour: str, code: ExitCode, message: str
) -> None:
    fake_server.behaviour = behaviour
    result = await run_client("127.0.0.1", str(fake_server.port), "Yellow")
    assert result.returncode == code
    assert result.stdout == ""
    assert result.stderr == f"error: {message}\n"


@pytest.mark.parametrize(
    ("args", "complaint"),
    [
        (["127.0.0.1", "52004"], "expected HOST PORT SONG"),
        (["127.0.0.1", "http", "Yellow"], "PORT 'http' is not a number"),
        (["127.0.0.1", "70000", "Yellow"], "PORT 70000 is not between 1 and 65535"),
        (["--url", "ftp://example.org", "Yellow"], "--url: 'ftp://example.org' is not an http"),
        (["--timeout", "0", "h", "1", "Yellow"], "'0' is not a positive number of seconds"),
        (["--limit", "two", "h", "1", "Yellow"], "'two' is not a positive integer"),
        (["--count", "3", "h", "1", "Yellow"], "--count only apply with -c/--continuous"),
        (["-c", "--json", "h", "1", "Yellow"], "--json applies to one-shot requests"),
    ],
)
def test_usage_errors_exit_2_naming_the_problem(
    capsys: pytest.CaptureFixture[str], args: list[str], complaint: str
) -> None:
    with pytest.raises(SystemExit) as exited:
        main(args)
    assert exited.value.code == ExitCode.USAGE
    captured = capsys.readouterr()
    assert complaint in captured.err
    assert captured.out == ""


def test_options_after_songs_and_defaults_are_understood() -> None:
    command = parse_request_command(["h", "52004", "A", "--limit", "5", "B", "-c", "--count", "2"])
    assert command.query.songs == ("A", "B")
    assert (command.query.limit, command.query.timeout) == (5, 10.0)
    assert str(command.query.url) == "http://h:52004/api/recommend"
    assert command.continuous == ContinuousOptions(
        interval=1.0, count=2, duration=None, changes_only=False
    )
    ipv6 = parse_request_command(["::1", "8080", "A"])
    assert str(ipv6.query.url) == "http://[::1]:8080/api/recommend"
    endpoint = parse_request_command(["--url", "https://x.example/api/recommend", "A"])
    assert str(endpoint.query.url) == "https://x.example/api/recommend"


async def test_ctrl_c_during_a_one_shot_request_is_one_line_not_a_traceback(
    fake_server: FakeServer, start_client: StartClient
) -> None:
    fake_server.delay = 10
    process = await start_client("--timeout", "20", "127.0.0.1", str(fake_server.port), "Yellow")
    async with asyncio.timeout(10):
        while not fake_server.bodies:
            await asyncio.sleep(0.01)
    process.send_signal(signal.SIGINT)
    stdout, stderr = await asyncio.wait_for(process.communicate(), 10)
    assert process.returncode == ExitCode.INTERRUPTED
    assert (stdout, stderr) == (b"", b"error: interrupted\n")


@pytest.mark.slow
async def test_json_logs_turn_every_stderr_line_into_a_record(
    fake_server: FakeServer, run_client: RunClient, closed_port: int, tmp_path: Path
) -> None:
    refused = await run_client("127.0.0.1", str(closed_port), "Yellow", LOG_FORMAT="json")
    assert (refused.returncode, refused.stdout) == (ExitCode.CONNECTION, "")
    (record,) = json_records(refused.stderr)
    assert (record["level"], record["logger"]) == ("ERROR", "client")
    assert record["message"] == (
        f"cannot connect to http://127.0.0.1:{closed_port}: Connection refused"
    )

    usage = await run_client("127.0.0.1", "52004", LOG_FORMAT="json")
    assert usage.returncode == ExitCode.USAGE
    (record,) = json_records(usage.stderr)
    assert record["level"] == "ERROR"
    assert record["message"].startswith("expected HOST PORT SONG")
    assert record["message"].endswith("(see python -m client --help)")

    csv_path = tmp_path / "run.csv"
    measured = await run_client(
        "-c", "--interval", "0.05", "--count", "3", "--output", str(csv_path),
        "127.0.0.1", str(fake_server.port), "Yellow", LOG_FORMAT="json",
    )  # fmt: skip
    assert measured.returncode == ExitCode.OK, measured.stderr
    *events, summary = json_records(measured.stderr)
    assert [event["message"].split(" ")[:2] for event in events] == [["first", "reply"]]
    assert summary["message"].startswith("--- summary ---\nrequests: 3, failed: 0")
    assert csv_path.read_text().startswith("time,response_time,version,model_date\n")


async def test_a_bad_log_format_is_a_usage_error(run_client: RunClient) -> None:
    result = await run_client("127.0.0.1", "52004", "Yellow", LOG_FORMAT="xml")
    assert result.returncode == ExitCode.USAGE
    assert result.stderr == "error: LOG_FORMAT='xml' must be one of text, json\n"

"""Command line of `python -m client`: one-shot, continuous, and `plot`."""

from __future__ import annotations

import asyncio
import json
import logging
import os
import sys
from collections.abc import Sequence
from contextlib import ExitStack
from pathlib import Path
from typing import TextIO

from client.args import (
    SONG_INDENT,
    ExitCode,
    RequestCommand,
    log,
    parse_request_command,
    plot_parser,
)
from client.continuous import ContinuousOptions, run_until_signalled
from client.plot import PlotUnavailableError, plot_run
from client.recommend import (
    FailureKind,
    Recommendation,
    RequestError,
    new_session,
    recommend,
    reply_as_json,
)
from client.record import CsvFormatError, read_samples
from client.summary import format_summary
from mining.logsetup import configure_logging, parse_log_format

_EXIT_FOR_FAILURE = {
    FailureKind.CONNECTION: ExitCode.CONNECTION,
    FailureKind.TIMEOUT: ExitCode.TIMEOUT,
    FailureKind.REJECTED: ExitCode.REJECTED,
    FailureKind.SERVER_ERROR: ExitCode.SERVER_ERROR,
    FailureKind.BAD_REPLY: ExitCode.BAD_REPLY,
}


class _TextFormatter(logging.Formatter):
    """stderr as the client has always written it: an error as ``error: ...``, the rest bare."""

    def format(self, record: logging.LogRecord) -> str:
        """The message (and traceback, if any), ``error: `` in front from ERROR on."""
        text = super().format(record)
        return f"error: {text}" if record.levelno >= logging.ERROR else text


def main(argv: Sequence[str] | None = None) -> int:
    """Run the client and return its exit status."""
    args = list(sys.argv[1:] if argv is None else argv)
    try:
        log_format = parse_log_format(os.environ.get("LOG_FORMAT"))
    except ValueError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return ExitCode.USAGE
    # Only the client's own logger: main() also runs inside other programs (and tests).
    configure_logging(log_format, text_formatter=_TextFormatter(), logger=log.name)
    if args and args[0] == "plot":
        return _plot_main(args[1:])
    command = parse_request_command(args)
    if command.continuous is None:
        return _one_shot(command)
    return _continuous(command, command.continuous)


def _fail(message: str, code: ExitCode) -> int:
    log.error("%s", message)
    return code


def _one_shot(command: RequestCommand) -> int:
    async def ask() -> Recommendation:
        async with new_session() as session:
            return await recommend(session, command.query)

    try:
        reply = asyncio.run(ask())
    except RequestError as failure:
        return _fail(str(failure), _EXIT_FOR_FAILURE[failure.kind])
    except KeyboardInterrupt:
        return _fail("interrupted", ExitCode.INTERRUPTED)
    if command.as_json:
        print(reply_as_json(reply.reply))
    else:
        print(f"Recommendation server v{reply.version} with model from {reply.model_date}.")
        print("Song recommendations:")
        for song in reply.songs:
            print(SONG_INDENT + song)
        for note in answer_notes(reply):
            print(f"note: {note}", file=sys.stderr)
    return ExitCode.OK


def answer_notes(reply: Recommendation) -> list[str]:
    """What a user should know about an answer: query songs the model does not know, and no
    rule matching (every song is merely popular). Empty when the server does not say."""
    notes = []
    if reply.unknown:
        listed = ", ".join(json.dumps(song, ensure_ascii=False) for song in reply.unknown)
        notes.append(f"not in the model, ignored: {listed}")
    if reply.from_rules == 0 and reply.songs:
        notes.append(
            "no rule matched these songs: the recommendations are just the most popular songs"
        )
    return notes


def _continuous(command: RequestCommand, options: ContinuousOptions) -> int:
    with ExitStack() as stack:
        out: TextIO = sys.stdout
        if command.output is not None:
            try:
                out = stack.enter_context(command.output.open("w", newline="", encoding="utf-8"))
            except OSError as err:
                return _fail(f"cannot write {command.output}: {err.strerror}", ExitCode.FILE_ERROR)
        summary = asyncio.run(run_until_signalled(command.query, options, out, log))
        try:
            out.flush()
        except BrokenPipeError:
            # The reader is gone; point the descriptor at /dev/null so the
            # interpreter's own flush at exit does not print a traceback.
            os.dup2(os.open(os.devnull, os.O_WRONLY), out.fileno())
    log.info("--- summary ---\n%s", format_summary(summary))
    return ExitCode.OK


def _plot_main(args: Sequence[str]) -> int:
    ns = plot_parser().parse_args(args)
    source: Path = ns.csv
    output: Path = ns.output or source.with_suffix(".png")
    try:
        with source.open(newline="", encoding="utf-8") as lines:
            samples = list(read_samples(lines))
    except OSError as err:
        return _fail(f"cannot read {source}: {err.strerror}", ExitCode.FILE_ERROR)
    except (CsvFormatError, UnicodeDecodeError) as err:
        return _fail(f"{source}: {err}", ExitCode.FILE_ERROR)
    if not samples:
        return _fail(f"{source} has a header but no rows to plot", ExitCode.FILE_ERROR)
    try:
        contents = plot_run(samples, output, ns.title or source.name)
    except PlotUnavailableError as err:
        return _fail(str(err), ExitCode.PLOT_UNAVAILABLE)
    except OSError as err:
        return _fail(f"cannot write {output}: {err.strerror}", ExitCode.FILE_ERROR)
    log.info("%s", format_summary(contents.summary))
    shaded = f", {len(contents.mixed_spans)} mixed spans shaded" if contents.mixed_spans else ""
    print(
        f"wrote {output}: {len(samples)} samples, "
        f"{len(contents.annotations)} changes marked{shaded}"
    )
    return ExitCode.OK

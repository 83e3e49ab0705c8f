"""`python -m client plot`: a PNG with the run's failures and changes, from a recorded CSV."""

from __future__ import annotations

import csv
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING

import pytest

from client.args import ExitCode
from client.cli import main
from client.plot import (
    Annotation,
    FailureBin,
    Lane,
    Point,
    Segment,
    Shading,
    Timeline,
    bin_seconds,
    failure_bins,
    plot_contents,
    plot_run,
)
from client.record import CSV_HEADER, Sample, format_row
from client.summary import FailureRun

if TYPE_CHECKING:
    from conftest import RunClient

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
T0 = datetime(2026, 11, 28, 19, 45, 1, 0, tzinfo=UTC)


def at(second: float) -> datetime:
    return T0 + timedelta(seconds=second)


def rollout() -> list[Sample]:
    """v0.1.0, four failed requests while it is replaced, v0.2.0, then a new model."""
    samples = [Sample(at(s), 3.0 + s % 3, "0.1.0", "2026-11-28 18:00:00.000000") for s in range(5)]
    samples += [Sample(at(s), 0.4, None, None) for s in range(5, 9)]
    samples += [Sample(at(s), 4.0, "0.2.0", "2026-11-28 18:00:00.000000") for s in range(9, 12)]
    samples += [Sample(at(s), 2.5, "0.2.0", "2026-11-28 19:45:11.500000") for s in range(12, 15)]
    return samples


def write_csv(path: Path, samples: list[Sample]) -> None:
    with path.open("w", newline="", encoding="utf-8") as out:
        writer = csv.writer(out, lineterminator="\n")
        writer.writerow(CSV_HEADER)
        writer.writerows(format_row(sample) for sample in samples)


def png_size(path: Path) -> tuple[int, int]:
    data = path.read_bytes()
    assert data.startswith(PNG_SIGNATURE)
    # The first chunk is IHDR: width and height.
    assert data[12:16] == b"IHDR"
    return int.from_bytes(data[16:20], "big"), int.from_bytes(data[20:24], "big")


def assert_png(path: Path) -> None:
    # A figure 12 in wide at 100 dpi, the latency and failure panels and the legend.
    assert png_size(path) == (1200, 650)


@pytest.mark.slow
def test_plot_marks_failures_downtime_and_changes(tmp_path: Path) -> None:
    output = tmp_path / "rollout.png"
    contents = plot_run(rollout(), output, "rollout")
    assert_png(output)
    assert contents.annotations == (
        Annotation(at(9), "v0.1.0 -> v0.2.0"),
        Annotation(at(12), "model 2026-11-28 19:45:11.500000"),
    )
    assert contents.mixed_spans == ()
    assert contents.failure_times == (at(5), at(6), at(7), at(8))
    assert contents.downtime == FailureRun(4, at(5), at(8), at(9))
    assert contents.summary.requests == 15
    # The failure track: one request a second, so bins of 5 s hold 5 requests each.
    assert contents.bin_seconds == 5
    assert contents.failure_bins == (
        FailureBin(at(0), 5, 0),
        FailureBin(at(5), 5, 4),
        FailureBin(at(10), 5, 0),
    )


@pytest.mark.parametrize(
    ("interval", "seconds", "width"),
    [(0.01, 10, 0.1), (0.01, 60, 0.5), (1.0, 20, 5), (1.0, 3600, 30), (0.01, 0, 0.05)],
)
def test_failure_bins_hold_a_few_requests_and_at_most_150_over_the_run(
    interval: float, seconds: float, width: float
) -> None:
    count = int(seconds / interval) + 1
    samples = [Sample(at(i * interval), 1.0, "0.1.0", "m") for i in range(count)]
    assert bin_seconds(samples) == width
    bins = failure_bins(samples, width)
    assert sum(b.requests for b in bins) == count
    assert len(bins) <= 151


def test_empty_bins_of_a_pause_are_kept_so_the_track_is_a_time_axis() -> None:
    samples = [Sample(at(0), 1.0, None, None), Sample(at(2.5), 1.0, "0.1.0", "m")]
    assert failure_bins(samples, 1) == (
        FailureBin(at(0), 1, 1),
        FailureBin(at(1), 0, 0),
        FailureBin(at(2), 1, 0),
    )


@pytest.mark.slow
def test_a_timeline_adds_its_lanes_under_the_failure_track(tmp_path: Path) -> None:
    samples = rollout()
    plain, with_lanes = tmp_path / "plain.png", tmp_path / "lanes.png"
    plot_run(samples, plain, "rollout")
    lanes = tuple(
        Lane(
            f"pod{i}",
            (Segment(at(0), at(5 + i), "in the Service", "tab:green"),),
            (Point(at(5 + i), "SIGTERM", "X", "black"),),
        )
        for i in range(4)
    )
    timeline = Timeline(
        lanes=lanes,
        spans=(Shading(at(2), at(4), "job running"),),
        guides=(at(5),),
        origin=at(5),
        origin_label="the first SIGTERM",
    )
    contents = plot_run(samples, with_lanes, "rollout", subtitle="4 failed", timeline=timeline)
    # The same annotations; a taller figure, 0.45 in per lane.
    assert contents == plot_contents(samples)
    (width, height), (_, plain_height) = png_size(with_lanes), png_size(plain)
    assert width == 1200
    assert height - plain_height >= 4 * 45


def rolling_update() -> list[Sample]:
    """Two pods behind a round-robin balancer: 700 replies alternating v0.1.0+v2 / v0.1.0."""
    model = "2026-11-28 18:00:00.000000"
    samples = [Sample(at(s / 100), 2.0, "0.1.0", model) for s in range(100)]
    samples += [
        Sample(at(s / 100), 2.0, "0.1.0+v2" if s % 2 == 0 else "0.1.0", model)
        for s in range(100, 800)
    ]
    samples += [Sample(at(s / 100), 2.0, "0.1.0+v2", model) for s in range(800, 900)]
    return samples


def test_plot_of_alternating_replies_marks_the_first_new_reply_and_shades_the_mix(
    tmp_path: Path,
) -> None:
    output = tmp_path / "rolling.png"
    contents = plot_run(rolling_update(), output, "rolling update")
    assert_png(output)
    # One line, not one per flip: 699 flips used to draw 699 lines.
    assert contents.annotations == (Annotation(at(1), "v0.1.0 -> v0.1.0+v2"),)
    assert contents.mixed_spans == (
        Shading(at(1), at(7.99), "mixed: 350 replies with v0.1.0 after v0.1.0+v2"),
    )


def test_plot_refuses_an_empty_run(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="no samples"):
        plot_run([], tmp_path / "empty.png", "empty")


@pytest.mark.slow
async def test_plot_command_writes_the_png_and_prints_the_summary(
    run_client: RunClient, tmp_path: Path
) -> None:
    source = tmp_path / "rollout.csv"
    write_csv(source, rollout())
    result = await run_client("plot", str(source))
    assert result.returncode == 0, result.stderr
    assert_png(tmp_path / "rollout.png")
    assert result.stdout == f"wrote {tmp_path / 'rollout.png'}: 15 samples, 2 changes marked\n"
    assert "longest failure run: 4 failed requests from 2026-11-28T19:45:06.000+00:00" in (
        result.stderr
    )
    assert (
        "version 0.2.0 first seen at 2026-11-28T19:45:10.000+00:00 (the reply before had 0.1.0)"
        in result.stderr
    )


def test_plot_command_counts_the_mixed_span_and_prints_it_in_the_summary(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    source = tmp_path / "rolling.csv"
    write_csv(source, rolling_update())
    assert main(["plot", str(source)]) == ExitCode.OK
    out, err = capsys.readouterr()
    assert out == (
        f"wrote {tmp_path / 'rolling.png'}: 900 samples, 1 changes marked, 1 mixed spans shaded\n"
    )
    assert err.splitlines()[-2:] == [
        "version 0.1.0+v2 first seen at 2026-11-28T19:45:02.000+00:00 (the reply before had 0.1.0)",
        "version mixed from 2026-11-28T19:45:02.000+00:00 to 2026-11-28T19:45:08.990+00:00 "
        "(6.990 s): 350 replies with 0.1.0 after 0.1.0+v2 was first seen",
    ]


@pytest.mark.parametrize(
    ("content", "message"),
    [
        (None, "cannot read {source}: No such file or directory"),
        (
            "time,latency\n",
            "{source}: line 1: header is 'time,latency', "
            "expected 'time,response_time,version,model_date'",
        ),
        ("time,response_time,version,model_date\n", "{source} has a header but no rows to plot"),
    ],
)
def test_plot_command_rejects_unusable_input(
    capsys: pytest.CaptureFixture[str], tmp_path: Path, content: str | None, message: str
) -> None:
    source = tmp_path / "run.csv"
    if content is not None:
        source.write_text(content)
    assert main(["plot", str(source), "-o", str(tmp_path / "out.png")]) == ExitCode.FILE_ERROR
    assert capsys.readouterr().err == "error: " + message.format(source=source) + "\n"
    assert not (tmp_path / "out.png").exists()


async def test_plot_without_matplotlib_says_which_extra_to_install(
    run_client: RunClient, tmp_path: Path
) -> None:
    # A matplotlib that cannot be imported, first on the path: as if not installed.
    blocker = tmp_path / "blocker" / "matplotlib"
    blocker.mkdir(parents=True)
    (blocker / "__init__.py").write_text("raise ImportError('No module named matplotlib')\n")
    source = tmp_path / "rollout.csv"
    write_csv(source, rollout())
    result = await run_client("plot", str(source), PYTHONPATH=str(blocker.parent))
    assert result.returncode == 9
    assert result.stderr == (
        "error: plotting needs matplotlib (No module named matplotlib); "
        "install the extra: pip install 'playlist-recommender[plot]'\n"
    )

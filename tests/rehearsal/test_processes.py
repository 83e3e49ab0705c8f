"""The processes a scenario drives: a pod from a copied source tree, its drain, its reloads."""

from __future__ import annotations

import http.client
import json
from pathlib import Path

import pytest

from mining.checkpoint import format_model_date
from rehearsal.processes import (
    ModelDateWatch,
    Pod,
    RehearsalError,
    bump_version_source,
    copy_source_tree,
)
from tests.helpers.processes import free_port
from tests.helpers.rules import FIRST_NS, small_ruleset, write_model

VERSION_PY = '"""The version."""\n\n__version__ = "0.1.0"\n'


def test_the_version_line_is_replaced_and_nothing_else() -> None:
    assert bump_version_source(VERSION_PY, "0.1.0+v2") == (
        '"""The version."""\n\n__version__ = "0.1.0+v2"\n'
    )


@pytest.mark.parametrize("text", ['"""No version here."""\n', VERSION_PY + VERSION_PY])
def test_a_version_file_without_exactly_one_version_line_is_refused(text: str) -> None:
    with pytest.raises(RehearsalError, match="expected one __version__ line"):
        bump_version_source(text, "2")


def recommend_version(port: int) -> str:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=5)
    try:
        conn.request(
            "POST",
            "/api/recommend",
            body=json.dumps({"songs": ["Hey Jude"]}),
            headers={"Content-Type": "application/json"},
        )
        reply = json.loads(conn.getresponse().read())
    finally:
        conn.close()
    version: str = reply["version"]
    return version


def test_a_pod_from_the_copied_tree_serves_the_new_version_reloads_and_drains(
    tmp_path: Path,
) -> None:
    source = copy_source_tree(tmp_path / "source", "7.7.7+v2")
    data = tmp_path / "data"
    write_model(data, small_ruleset())
    pod = Pod.start(
        "pod0",
        free_port(),
        label="v2",
        source_root=source,
        data_dir=data,
        env={"DRAIN_SECONDS": "0.5"},
        log_dir=tmp_path,
    )
    try:
        pod.wait_ready(30)
        # The copy wins over the editable install of the checkout.
        version = recommend_version(pod.port)
        watch = ModelDateWatch({"pod0": pod.port})
        watch.start()
        try:
            write_model(data, small_ruleset(generated_ns=FIRST_NS + 1_000_000))
            watch.wait_all(timeout=10)
        finally:
            watch.stop()
        pod.terminate()
        code = pod.wait_exit(30)
    finally:
        pod.stop_quickly()
    assert version == "7.7.7+v2"
    assert watch.initial == {"pod0": format_model_date(FIRST_NS)}
    assert watch.switched["pod0"][1] == format_model_date(FIRST_NS + 1_000_000)
    assert code == 0
    assert pod.terminated_at is not None and pod.exited_at is not None
    assert pod.exited_at >= pod.terminated_at

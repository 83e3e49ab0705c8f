"""HAProxy as the Service: the rendered config, its parsers, and the real process's behaviour."""

from __future__ import annotations

import http.client
import http.server
import shutil
import subprocess
import threading
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import pytest

from rehearsal.deployment import ReadinessProbe
from rehearsal.haproxy import (
    Haproxy,
    HaproxyConfig,
    HaproxyError,
    Slot,
    is_up,
    parse_log,
    parse_stats,
    render_config,
)
from tests.helpers.processes import free_port

PROBE = ReadinessProbe(
    "/readyz", period_seconds=2, failure_threshold=2, success_threshold=1, timeout_seconds=1
)
needs_haproxy = pytest.mark.skipif(
    shutil.which("haproxy") is None, reason="haproxy is not installed (make rehearse installs it)"
)


def config(
    tmp_path: Path,
    probe: ReadinessProbe = PROBE,
    ports: tuple[int, ...] = (41001, 41002),
    bind_port: int = 41000,
) -> HaproxyConfig:
    return HaproxyConfig(
        bind_port=bind_port,
        slots=tuple(Slot(f"pod{i}", port) for i, port in enumerate(ports)),
        stats_socket=tmp_path / "admin.sock",
        readiness=probe,
    )


def directives(text: str) -> list[str]:
    return [line.split("#")[0].strip() for line in text.splitlines() if line.split("#")[0].strip()]


def test_the_config_mirrors_the_readiness_probe_and_kube_proxy(tmp_path: Path) -> None:
    lines = directives(render_config(config(tmp_path)))
    assert "option httpchk GET /readyz" in lines
    assert "default-server check inter 2s fall 2 rise 1" in lines
    assert "timeout check 1s" in lines
    assert "bind 127.0.0.1:41000" in lines
    assert lines[-2:] == ["server pod0 127.0.0.1:41001", "server pod1 127.0.0.1:41002"]
    # Layer 4 and no second chance, as kube-proxy: a refused connection is a failed request.
    assert "mode tcp" in lines
    assert "retries 0" in lines
    assert not [line for line in lines if "redispatch" in line]


def test_other_probe_settings_reach_the_check_line(tmp_path: Path) -> None:
    probe = ReadinessProbe(
        "/ready", period_seconds=5, failure_threshold=3, success_threshold=2, timeout_seconds=4
    )
    lines = directives(render_config(config(tmp_path, probe)))
    assert "default-server check inter 5s fall 3 rise 2" in lines
    assert "option httpchk GET /ready" in lines
    assert "timeout check 4s" in lines


@needs_haproxy
def test_haproxy_accepts_the_rendered_config(tmp_path: Path) -> None:
    path = tmp_path / "haproxy.cfg"
    path.write_text(render_config(config(tmp_path)), encoding="utf-8")
    result = subprocess.run(
        ["haproxy", "-c", "-f", str(path)], capture_output=True, text=True, check=False
    )
    assert result.returncode == 0, result.stdout + result.stderr


def test_stats_rows_are_keyed_by_the_header() -> None:
    text = (
        "# pxname,svname,status,stot,econ,\nservice,FRONTEND,OPEN,12,,\npods,pod0,UP 1/2,7,0,\n\n"
    )
    rows = parse_stats(text)
    assert rows[1]["svname"] == "pod0"
    assert rows[1]["status"] == "UP 1/2"
    assert rows[0]["stot"] == "12"
    with pytest.raises(HaproxyError, match="not a 'show stat' answer"):
        parse_stats("Unknown command\n")


@pytest.mark.parametrize(
    ("status", "up"),
    [
        ("UP", True),
        ("UP 1/2", True),
        ("DOWN", False),
        ("DOWN 1/2", False),
        ("MAINT", False),
        ("no check", False),
    ],
)
def test_only_up_states_take_traffic(status: str, up: bool) -> None:
    assert is_up(status) is up


# Lines as HAProxy 2.6 writes them with `log stdout format iso`, `option tcplog` and
# `option log-health-checks`.
LOG = """\
2026-11-28T19:42:15.292964+00:00 Health check for server pods/pod2 failed, reason: Layer7 wrong \
status, code: 503, info: "Service Unavailable", check duration: 4ms, status: 1/2 UP.
[WARNING]  (9163) : Server pods/pod2 is DOWN. 2 active and 0 backup servers left.
2026-11-28T19:42:17.303994+00:00 Server pods/pod2 is DOWN. 2 active and 0 backup servers left. \
0 sessions active, 0 requeued, 0 remaining in queue.
2026-11-28T19:41:24.017667+00:00 127.0.0.1:52442 [28/Nov/2026:19:41:24.005] service pods/pod0 \
1/0/11 465 -- 2/2/0/0/0 0/0
2026-11-28T19:41:29.435000+00:00 127.0.0.1:52502 [28/Nov/2026:19:41:29.435] service pods/pod0 \
1/-1/0 0 SC 1/1/0/0/0 0/0
2026-11-28T19:41:29.455000+00:00 127.0.0.1:52510 [28/Nov/2026:19:41:29.455] service pods/pod1 \
1/0/3 465 -- 1/1/0/0/0 0/0
2026-11-28T19:42:29.150308+00:00 Server pods/pod3 is UP, reason: Layer7 check passed, code: 200, \
check duration: 2ms. 3 active and 0 backup servers online. 0 sessions requeued, 0 total in queue.
"""


def test_the_log_gives_health_events_and_connection_endings() -> None:
    facts = parse_log(LOG.splitlines(keepends=True))
    assert [(e.slot, e.text) for e in facts.events] == [
        ("pod2", "HAProxy: check of pod2 failed (Layer7 wrong status), health 1/2 UP"),
        ("pod2", "HAProxy: pod2 is DOWN"),
        ("pod3", "HAProxy: pod3 is UP"),
    ]
    assert facts.events[1].time == datetime(2026, 11, 28, 19, 42, 17, 303994, tzinfo=UTC)
    assert [e.state for e in facts.events] == [None, "DOWN", "UP"]
    assert [(e.check, e.health) for e in facts.events] == [
        ("failed", "1/2 UP"),
        (None, None),
        (None, None),
    ]
    assert facts.terminations == {("pod0", "--"): 1, ("pod0", "SC"): 1, ("pod1", "--"): 1}


class _Pod(http.server.BaseHTTPRequestHandler):
    """A stand-in pod: /readyz answers as ``server.ready`` says, anything else 200."""

    def do_GET(self) -> None:
        ready = getattr(self.server, "ready", True)
        status = 200 if self.path != "/readyz" or ready else 503
        body = b"pong"
        self.send_response(status)
        self.send_header("Content-Length", str(len(body)))
        self.send_header("Connection", "close")
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: object) -> None:
        return


@pytest.fixture
def pods() -> Iterator[list[http.server.ThreadingHTTPServer]]:
    servers = [http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Pod) for _ in range(2)]
    threads = [threading.Thread(target=s.serve_forever, daemon=True) for s in servers]
    for thread in threads:
        thread.start()
    yield servers
    for server in servers:
        server.shutdown()
        server.server_close()


def get(port: int) -> int | None:
    """GET / through the Service: the status, or None when the connection failed."""
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=2)
    try:
        conn.request("GET", "/")
        return conn.getresponse().status
    except (OSError, http.client.HTTPException):
        return None
    finally:
        conn.close()


@needs_haproxy
def test_an_unready_pod_leaves_the_service_after_its_failed_checks(
    tmp_path: Path, pods: list[http.server.ThreadingHTTPServer]
) -> None:
    fast = ReadinessProbe(
        "/readyz", period_seconds=1, failure_threshold=1, success_threshold=1, timeout_seconds=1
    )
    ports = (*tuple(s.server_address[1] for s in pods), free_port())
    with Haproxy(config(tmp_path, fast, ports, free_port()), tmp_path) as haproxy:
        haproxy.wait_for({"pod0": True, "pod1": True, "pod2": False}, timeout=5)
        pods[1].ready = False  # type: ignore[attr-defined]
        haproxy.wait_for({"pod0": True, "pod1": False}, timeout=5)
        statuses = [get(haproxy.config.bind_port) for _ in range(6)]
        events = [e.text for e in haproxy.log().events]
    assert statuses == [200] * 6
    assert "HAProxy: pod1 is DOWN" in events
    assert "HAProxy: pod2 is DOWN" in events


@needs_haproxy
def test_a_refused_connection_fails_the_request_and_is_not_retried_elsewhere(
    tmp_path: Path, pods: list[http.server.ThreadingHTTPServer]
) -> None:
    # Checks far apart: pod1 stays UP for HAProxy after it stops listening, as a pod that
    # exits before its readiness flip was noticed.
    slow = ReadinessProbe(
        "/readyz", period_seconds=60, failure_threshold=3, success_threshold=1, timeout_seconds=1
    )
    ports = tuple(s.server_address[1] for s in pods)
    with Haproxy(config(tmp_path, slow, ports, free_port()), tmp_path) as haproxy:
        haproxy.wait_for({"pod0": True, "pod1": True}, timeout=5)
        pods[1].shutdown()
        pods[1].server_close()
        statuses = [get(haproxy.config.bind_port) for _ in range(6)]
        assert is_up(haproxy.server_states()["pod1"])
        facts = haproxy.log()
        stats = {row["svname"]: row for row in haproxy.stats()}
    # Round robin: every other request went to the gone pod and failed.
    assert statuses.count(None) == 3
    assert statuses.count(200) == 3
    assert facts.terminations[("pod1", "SC")] == 3
    assert stats["BACKEND"]["econ"] == "3"
    assert stats["BACKEND"]["wredis"] in ("", "0")

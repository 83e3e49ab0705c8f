"""The three rollouts and the control run, each with its own HAProxy, pods and client."""

from __future__ import annotations

import shutil
import socket
import tempfile
import time
from collections.abc import Callable, Mapping, Sequence
from contextlib import ExitStack
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from pathlib import Path

from client.plot import plot_run
from client.record import Sample, read_samples
from mining.checkpoint import CHECKPOINT_FILENAME, read_checkpoint
from mining.rulesfile import RULES_FILENAME, read_rules
from mining.version import __version__
from rehearsal.deployment import ManifestError, RolloutSettings
from rehearsal.haproxy import LOOPBACK, Haproxy, HaproxyConfig, LogEvent, Slot, is_up
from rehearsal.processes import (
    REPO_ROOT,
    ContinuousClient,
    ModelDateWatch,
    Pod,
    RehearsalError,
    copy_source_tree,
    now,
    run_mining,
)
from rehearsal.report import (
    MAX_MODEL_SWITCH_SECONDS,
    Check,
    EventKind,
    ExpectedChange,
    Marker,
    Measurement,
    ScenarioRecord,
    arrival,
    checks,
    measure,
    plot_subtitle,
    scenario_markdown,
)
from rehearsal.timeline import build_timeline

INITIAL_DATASET = REPO_ROOT / "mining" / "data" / "sample_playlists.csv.gz"
SECOND_DATASET = REPO_ROOT / "tests" / "data" / "synth_ds1.csv.xz"
# The "new code" of the code update: the same source with another version.
NEW_VERSION = f"{__version__}+v2"
# How many of the initial dataset's most popular songs the client asks about.
QUERY_SONGS = 3
MINING_TIMEOUT_SECONDS = 120.0
# The client stops by itself after this long even if the rehearsal is stuck.
CLIENT_MAX_SECONDS = 180.0
# The plot's lane of the mining job in the dataset update.
MINING_LANE = "mining job"


@dataclass(frozen=True)
class Options:
    """How the rehearsal runs."""

    output: Path
    rollout: RolloutSettings
    # Seconds between the client's requests.
    interval: float = 0.01
    # Traffic measured before and after each change.
    lead_seconds: float = 3.0
    second_dataset: Path = SECOND_DATASET
    mining_engine: str = "pyfim"


@dataclass(frozen=True)
class Outcome:
    """A finished scenario: what it did, what the client saw, and the targets."""

    record: ScenarioRecord
    samples: tuple[Sample, ...]
    measurement: Measurement
    checks: tuple[Check, ...]
    directory: Path


def free_ports(count: int) -> list[int]:
    """``count`` distinct free loopback ports (bound together, then released)."""
    with ExitStack() as stack:
        sockets = [stack.enter_context(socket.socket()) for _ in range(count)]
        for sock in sockets:
            sock.bind((LOOPBACK, 0))
        return [sock.getsockname()[1] for sock in sockets]


@dataclass(frozen=True)
class Shared:
    """Prepared once for every scenario: the first model, the songs to ask, the v2 source."""

    initial_data: Path
    songs: tuple[str, ...]
    new_source: Path


def prepare(options: Options) -> Shared:
    """Mine the initial dataset once and copy the source tree for the code update."""
    if options.rollout.max_surge != 1 or options.rollout.max_unavailable != 0:
        raise ManifestError(
            "the rehearsal implements maxSurge 1 / maxUnavailable 0, the Deployment has "
            f"{options.rollout.max_surge} / {options.rollout.max_unavailable}"
        )
    options.output.mkdir(parents=True, exist_ok=True)
    initial = options.output / "initial-data"
    shutil.rmtree(initial, ignore_errors=True)
    initial.mkdir()
    run_mining(
        initial,
        INITIAL_DATASET,
        options.output / "initial-mining.log",
        {"MINING_ENGINE": options.mining_engine},
        MINING_TIMEOUT_SECONDS,
    )
    rules = read_rules(initial / RULES_FILENAME)
    by_popularity = sorted(
        range(len(rules.song_names)), key=lambda i: (-int(rules.song_counts[i]), i)
    )
    songs = tuple(rules.song_names[i] for i in by_popularity[:QUERY_SONGS])
    new_source = options.output / "source-v2"
    shutil.rmtree(new_source, ignore_errors=True)
    copy_source_tree(new_source, NEW_VERSION)
    return Shared(initial, songs, new_source)


class Stage:
    """One scenario's processes and files; everything it started is stopped by ``close``."""

    def __init__(self, options: Options, shared: Shared, key: str, slots: Sequence[str]) -> None:
        self.options = options
        self.shared = shared
        self.key = key
        self.directory = options.output / key
        shutil.rmtree(self.directory, ignore_errors=True)
        self.logs = self.directory / "logs"
        self.logs.mkdir(parents=True)
        self.data_dir = self.directory / "data"
        self.data_dir.mkdir()
        for name in (RULES_FILENAME, CHECKPOINT_FILENAME):
            shutil.copy2(shared.initial_data / name, self.data_dir / name)
        service_port, *slot_ports = free_ports(1 + len(slots))
        self.service_port = service_port
        self.slots = {name: Slot(name, port) for name, port in zip(slots, slot_ports, strict=True)}
        self.pods: dict[str, Pod] = {}
        self.markers: list[Marker] = []
        self.haproxy: Haproxy | None = None
        self.client: ContinuousClient | None = None
        self.in_service_at_start: tuple[str, ...] = ()
        self._stack = ExitStack()
        # A short path of its own: a unix socket's path is limited to about 100 bytes.
        self._socket_dir = Path(tempfile.mkdtemp(prefix="rehearsal-"))
        self._stack.callback(shutil.rmtree, self._socket_dir, ignore_errors=True)

    @property
    def csv_path(self) -> Path:
        """The client's CSV."""
        return self.directory / "client.csv"

    def mark(
        self,
        label: str,
        *,
        lane: str = "",
        kind: EventKind = EventKind.NOTE,
        at: datetime | None = None,
    ) -> None:
        """Put an event on the timeline, at ``at`` or now."""
        self.markers.append(Marker(at or now(), label, lane=lane, kind=kind))

    def start_pod(self, name: str, *, new_code: bool, env: Mapping[str, str]) -> Pod:
        """Start a server in slot ``name``, from the checkout or from the v2 copy."""
        label = f"v{NEW_VERSION}" if new_code else f"v{__version__}"
        pod = Pod.start(
            name,
            self.slots[name].port,
            label=label,
            source_root=self.shared.new_source if new_code else REPO_ROOT,
            data_dir=self.data_dir,
            env=env,
            log_dir=self.logs,
        )
        self.pods[name] = pod
        self._stack.callback(pod.stop_quickly)
        self.mark(f"{name} ({label}) started", lane=name, kind=EventKind.POD_STARTED)
        return pod

    def start_service(self, ready: Sequence[str]) -> Haproxy:
        """Start HAProxy; wait until the ``ready`` pods are UP and every other slot DOWN."""
        readiness = self.options.rollout.readiness
        config = HaproxyConfig(
            bind_port=self.service_port,
            slots=tuple(self.slots.values()),
            stats_socket=self._socket_dir / "haproxy.sock",
            readiness=readiness,
        )
        haproxy = self._stack.enter_context(Haproxy(config, self.directory))
        self.haproxy = haproxy
        # At start HAProxy counts every server as up until its first check fails.
        budget = 2 * readiness.worst_detection_seconds + 5
        haproxy.wait_for({slot: slot in ready for slot in self.slots}, budget)
        return haproxy

    def start_client(self) -> None:
        """Start the continuous client through the Service and let it run the lead-in."""
        client = ContinuousClient(
            self.service_port,
            self.shared.songs,
            interval=self.options.interval,
            max_seconds=CLIENT_MAX_SECONDS,
            csv_path=self.csv_path,
            log_path=self.directory / "client.log",
        )
        self.client = client
        self._stack.callback(client.stop)
        client.wait_for_rows(1, 10)
        self.client_started = now()
        if self.haproxy is not None:
            states = self.haproxy.server_states()
            self.in_service_at_start = tuple(slot for slot in self.slots if is_up(states[slot]))
        time.sleep(self.options.lead_seconds)

    def retire(self, pod: Pod) -> int:
        """SIGTERM a pod and wait for its exit within the grace period."""
        pod.terminate()
        assert pod.terminated_at is not None
        label = f"{pod.name} ({pod.label}) SIGTERM"
        self.mark(label, lane=pod.name, kind=EventKind.SIGTERM, at=pod.terminated_at)
        code = pod.wait_exit(self.options.rollout.termination_grace_seconds)
        assert pod.exited_at is not None
        label = f"{pod.name} exited with status {code}"
        self.mark(label, lane=pod.name, kind=EventKind.POD_EXITED, at=pod.exited_at)
        return code

    def wait_out_of_service(self, pods: Sequence[Pod]) -> None:
        """Wait until HAProxy has taken the pods out: until then it may route requests to them."""
        assert self.haproxy is not None
        detection = self.options.rollout.readiness.worst_detection_seconds
        self.haproxy.wait_for({pod.name: False for pod in pods}, detection + 5)

    def stop_client(self) -> list[Sample]:
        """Measure the lead-out, stop the client and read its samples."""
        time.sleep(self.options.lead_seconds)
        assert self.client is not None
        self.client.stop()
        with self.csv_path.open(newline="", encoding="utf-8") as lines:
            return list(read_samples(lines))

    def haproxy_facts(self) -> tuple[tuple[Marker, ...], tuple[str, ...]]:
        """HAProxy's health events while the client ran, and its counters and log totals."""
        assert self.haproxy is not None
        log = self.haproxy.log()
        markers = tuple(
            Marker(event.time, event.text, "haproxy", event.slot, _event_kind(event))
            for event in log.events
            if event.time >= self.client_started
        )
        notes = []
        for row in self.haproxy.stats():
            if row["svname"] == "FRONTEND":
                notes.append(f"frontend: {row['stot']} client connections accepted")
            elif row["svname"] == "BACKEND":
                notes.append(
                    f"backend: {row['econ'] or 0} failed connections to pods, "
                    f"{row['wretr'] or 0} retries, {row['wredis'] or 0} redispatches"
                )
            else:
                notes.append(
                    f"{row['svname']}: {row['stot']} connections, went DOWN "
                    f"{row['chkdown'] or 0} times (an empty slot's at start included)"
                )
        endings = ", ".join(
            f"{slot} {state}: {count}" for (slot, state), count in sorted(log.terminations.items())
        )
        notes.append(f"log, connections by pod and termination state: {endings or 'none'}")
        for pod in self.pods.values():
            if pod.terminated_at is None:
                continue
            notes.append(_retirement_note(pod, log.events))
        return markers, tuple(notes)

    def close(self) -> None:
        """Stop the client, HAProxy and the pods, newest first."""
        self._stack.close()


def _event_kind(event: LogEvent) -> EventKind:
    if event.state is not None:
        return EventKind.SERVICE_UP if event.state == "UP" else EventKind.SERVICE_DOWN
    if event.check == "succeeded":
        return EventKind.CHECK_PASSED
    # The failed check that takes a pod out is logged again at once as "is DOWN".
    if event.health is not None and event.health.endswith("DOWN"):
        return EventKind.NOTE
    return EventKind.CHECK_FAILED


def _retirement_note(pod: Pod, events: Sequence[LogEvent]) -> str:
    """How long after its SIGTERM a pod left the Service, and how long until it exited."""
    assert pod.terminated_at is not None
    terminated = pod.terminated_at
    down = next(
        (
            e.time
            for e in events
            if e.slot == pod.name and e.state == "DOWN" and e.time >= terminated
        ),
        None,
    )
    out = (
        "never taken out"
        if down is None
        else f"out of the Service after {(down - terminated).total_seconds():.2f} s"
    )
    exited = (
        "did not exit"
        if pod.exited_at is None
        else f"exited after {(pod.exited_at - terminated).total_seconds():.2f} s"
    )
    return f"{pod.name} after its SIGTERM: {out}, {exited}"


def scale_down(options: Options, stage: Stage) -> ScenarioRecord:
    """Scenario 1: three pods, one SIGTERMed and waited for."""
    env = options.rollout.env
    pods = [stage.start_pod(name, new_code=False, env=env) for name in stage.slots]
    for pod in pods:
        pod.wait_ready(30)
    stage.start_service(ready=list(stage.slots))
    stage.start_client()
    code = stage.retire(pods[-1])
    assert pods[-1].terminated_at is not None
    start = pods[-1].terminated_at
    stage.wait_out_of_service([pods[-1]])
    end = now()
    return ScenarioRecord(
        key=stage.key,
        title="Scenario 1: scale 3 → 2",
        description=(
            f"Three pods behind HAProxy; `{pods[-1].name}` gets SIGTERM (as when the Deployment "
            "is scaled down) and the rehearsal waits for its exit. The change window runs from "
            "the SIGTERM until the pod has exited and is out of HAProxy."
        ),
        window_start=start,
        window_end=end,
        markers=(),
        expect_failures=False,
        change=None,
        pod_switches=(),
        pod_exits=((pods[-1].name, code),),
        haproxy_notes=(),
        start_label=f"{pods[-1].name} gets SIGTERM",
    )


def _roll(options: Options, stage: Stage, env: Mapping[str, str]) -> tuple[list[Pod], datetime]:
    """maxSurge 1 / maxUnavailable 0: per old pod, start a new one, wait UP, retire the old."""
    replicas = options.rollout.replicas
    names = list(stage.slots)
    old = [stage.start_pod(name, new_code=False, env=env) for name in names[:replicas]]
    for pod in old:
        pod.wait_ready(30)
    haproxy = stage.start_service(ready=names[:replicas])
    stage.start_client()
    start = now()
    stage.mark("rollout started", at=start)
    readiness = options.rollout.readiness
    # The Deployment's startupProbe allows 30 s; then one readiness period to be seen.
    ready_budget = 30 + readiness.period_seconds * readiness.success_threshold + 5
    for index, pod in enumerate(old):
        new = stage.start_pod(names[replicas + index], new_code=True, env=env)
        haproxy.wait_for({new.name: True}, ready_budget)
        stage.retire(pod)
    stage.wait_out_of_service(old)
    return old, start


def code_update(options: Options, stage: Stage) -> ScenarioRecord:
    """Scenario 2: v1 → v2 one pod at a time, with the Deployment's drain."""
    return _code_update(options, stage, options.rollout.env, control=False)


def control(options: Options, stage: Stage) -> ScenarioRecord:
    """The control: scenario 2 with DRAIN_SECONDS=0, which must show failures."""
    return _code_update(options, stage, {**options.rollout.env, "DRAIN_SECONDS": "0"}, control=True)


def _code_update(
    options: Options, stage: Stage, env: Mapping[str, str], *, control: bool
) -> ScenarioRecord:
    old, start = _roll(options, stage, env)
    end = now()
    replicas = options.rollout.replicas
    if control:
        title = "Control run: scenario 2 without the drain (DRAIN_SECONDS=0), failures expected"
        what = (
            "The same rolling update with the drain turned off (`DRAIN_SECONDS=0`): a SIGTERMed "
            "pod stops listening at once while HAProxy still routes to it until its checks fail. "
            "This run must show failed requests, or the rehearsal could not see them. The change "
            "window runs from the first new pod's start until the last old pod is out of HAProxy."
        )
    else:
        title = f"Scenario 2: code update v{__version__} → v{NEW_VERSION}"
        what = (
            f"{replicas} pods of v{__version__}; for each, a v{NEW_VERSION} pod is started, the "
            "rehearsal waits until HAProxy's readiness check has it UP, then SIGTERMs the old pod "
            "and waits for its exit (maxSurge 1, maxUnavailable 0). The change window runs from "
            "the first new pod's start until the last old pod has exited and is out of HAProxy."
        )
    return ScenarioRecord(
        key=stage.key,
        title=title,
        description=what,
        window_start=start,
        window_end=end,
        markers=(),
        expect_failures=control,
        change=ExpectedChange("version", NEW_VERSION, start, "the rollout started"),
        pod_switches=(),
        pod_exits=tuple(
            (pod.name, pod.process.returncode) for pod in old if pod.process.returncode is not None
        ),
        haproxy_notes=(),
        start_label="the rollout starts its first new pod",
    )


def dataset_update(options: Options, stage: Stage) -> ScenarioRecord:
    """Scenario 3: the mining job writes new rules into the shared DATA_DIR under traffic."""
    replicas = options.rollout.replicas
    env = options.rollout.env
    pods = [stage.start_pod(name, new_code=False, env=env) for name in stage.slots]
    for pod in pods:
        pod.wait_ready(30)
    stage.start_service(ready=list(stage.slots))
    watch = ModelDateWatch({pod.name: pod.port for pod in pods})
    watch.start()
    try:
        stage.start_client()
        start = now()
        stage.mark("mining job started", lane=MINING_LANE, kind=EventKind.JOB_STARTED, at=start)
        run_mining(
            stage.data_dir,
            options.second_dataset,
            stage.logs / "mining.log",
            {"MINING_ENGINE": options.mining_engine},
            MINING_TIMEOUT_SECONDS,
        )
        stage.mark("mining job exited with status 0", lane=MINING_LANE, kind=EventKind.JOB_EXITED)
        checkpoint_path = stage.data_dir / CHECKPOINT_FILENAME
        checkpoint = read_checkpoint(checkpoint_path)
        written_ns = checkpoint_path.stat().st_mtime_ns
        generated = _from_ns(checkpoint.generated_ns)
        stage.mark("checkpoint's generation time (generated_ns)", at=generated)
        stage.mark(
            "checkpoint file written (its mtime)",
            lane=MINING_LANE,
            kind=EventKind.JOB_COMMITTED,
            at=_from_ns(written_ns),
        )
        watch.wait_all(timeout=10)
    finally:
        watch.stop()
    wrong = {
        pod: date for pod, (_, date) in watch.switched.items() if date != checkpoint.model_date
    }
    if wrong:
        raise RehearsalError(f"pods switched to another model than the checkpoint's: {wrong}")
    end = max([now(), *(when for when, _ in watch.switched.values())])
    return ScenarioRecord(
        key=stage.key,
        title="Scenario 3: dataset update",
        description=(
            f"{replicas} pods serving the rules of `{INITIAL_DATASET.name}`; `python -m mining` "
            f"(engine {options.mining_engine}) mines `{options.second_dataset.name}` into the "
            "pods' shared DATA_DIR while the client runs; each pod reloads by itself. The "
            "rehearsal also polls every pod's `/readyz` directly (every 20 ms) to see when each "
            "one switched. The change window runs from the mining job's start to the last pod's "
            "switch."
        ),
        window_start=start,
        window_end=end,
        markers=(),
        expect_failures=False,
        change=ExpectedChange(
            "model_date",
            checkpoint.model_date,
            generated,
            "the checkpoint's generation time",
            MAX_MODEL_SWITCH_SECONDS,
        ),
        pod_switches=tuple(sorted((pod, when) for pod, (when, _) in watch.switched.items())),
        pod_exits=(),
        haproxy_notes=(),
        start_label="the mining job starts",
    )


def _from_ns(ns: int) -> datetime:
    return datetime.fromtimestamp(ns / 1e9, UTC)


@dataclass(frozen=True)
class Scenario:
    """A scenario's directory name, its pod slots, and what it does."""

    key: str
    slots: Callable[[RolloutSettings], int]
    run: Callable[[Options, Stage], ScenarioRecord]


SCENARIOS = (
    Scenario("1-scale-down", lambda _rollout: 3, scale_down),
    # Every pod of a rollout gets its own slot: the old ones, then the new ones.
    Scenario("2-code-update", lambda rollout: 2 * rollout.replicas, code_update),
    Scenario("3-dataset-update", lambda rollout: rollout.replicas, dataset_update),
    Scenario("4-control-no-drain", lambda rollout: 2 * rollout.replicas, control),
)


def run_scenario(options: Options, shared: Shared, scenario: Scenario) -> Outcome:
    """Run one scenario, then write its plot and summary.md next to the client's CSV."""
    slots = [f"pod{i}" for i in range(scenario.slots(options.rollout))]
    stage = Stage(options, shared, scenario.key, slots)
    try:
        record = scenario.run(options, stage)
        samples = stage.stop_client()
        haproxy_markers, notes = stage.haproxy_facts()
    finally:
        stage.close()
    record = replace(
        record,
        markers=(*stage.markers, *haproxy_markers),
        haproxy_notes=notes,
        in_service_at_start=stage.in_service_at_start,
    )
    measurement = measure(samples, record)
    results = tuple(checks(samples, record, measurement))
    plot_run(
        samples,
        stage.directory / "client.png",
        record.title,
        subtitle=plot_subtitle(record, measurement),
        timeline=build_timeline(
            record, samples[0].time, arrival(samples[-1]), origin_label=record.start_label
        ),
    )
    (stage.directory / "summary.md").write_text(
        scenario_markdown(samples, record, measurement, results), encoding="utf-8"
    )
    return Outcome(record, tuple(samples), measurement, results, stage.directory)

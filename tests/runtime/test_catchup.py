"""Catch-up: job transitions a stream gap hid are recovered from the REST job list.

Every test drives real jobs through the emulator (its job list and its stream agree,
as on the server) and counts, per job, how often the listener delivered its
transition: exactly once, whether it arrived live or was recovered.
"""

from __future__ import annotations

import json
import logging
import time
from collections import Counter
from collections.abc import Iterator
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import pytest

from spooled_integrations.client import (
    ConnectionOptions,
    ConnectionState,
    JobsClient,
    TokenProvider,
)
from spooled_integrations.protocol import Event
from spooled_integrations.runtime import RecordingPublisher, SpooledRuntime
from spooled_integrations.runtime.signals import caught_up, spooled_signal
from spooled_integrations.runtime.sweep import Interest, sweep
from spooled_integrations.testing import Emulator

from ..conftest import RuntimeFactory, wait_until
from .conftest import Recorder

ROUTE = [{"events": ["job.completed"], "queue": "emails", "task": "t"}]


@pytest.fixture(params=[False, True], ids=["default", "strict"])
def emu(request: pytest.FixtureRequest) -> Iterator[Emulator]:
    with Emulator(strict=request.param) as emulator:
        yield emulator


@pytest.fixture
def emu_default() -> Iterator[Emulator]:
    with Emulator() as emulator:
        yield emulator


def complete_jobs(emu: Emulator, count: int, queue: str = "emails") -> list[str]:
    return [emu.run_job(queue) for _ in range(count)]


def swept(sweeps: Recorder, kind: str, timeout: float = 15.0) -> dict[str, Any]:
    """The first ``caught_up`` of ``kind`` (a start's sweep comes first of all)."""
    assert sweeps.wait_for(lambda calls: any(kw["kind"] == kind for _, kw in calls), timeout)
    return next(kw for _, kw in sweeps.calls if kw["kind"] == kind)


def runs(publisher: RecordingPublisher) -> Counter[str]:
    return Counter(call.event.job_id or "" for call in publisher.calls)


def start(
    make_runtime: RuntimeFactory, emu: Emulator, **config: Any
) -> tuple[SpooledRuntime, RecordingPublisher]:
    publisher = RecordingPublisher()
    config.setdefault("subscriptions", ROUTE)
    config.setdefault("catch_up_poll", "off")
    runtime = make_runtime(emu, publisher, **config)
    runtime.start()
    assert wait_until(lambda: runtime.state == ConnectionState.CONNECTED)
    # The start's sweep (or a restart's) is done: what follows is live or a later gap's.
    assert wait_until(lambda: runtime.status()["catch_up"]["last_sweep"] is not None)
    return runtime, publisher


# -- the sweep on its own ---------------------------------------------------------------


def test_a_sweep_finds_exactly_the_transitions_inside_the_interval(
    emu: Emulator, jobs: JobsClient
) -> None:
    now = datetime.now(timezone.utc)
    ago = [now - timedelta(seconds=s) for s in (300, 200, 100, 60, 10, 55, 50)]
    old = emu.create_job("emails", at=ago[0])  # created, started and finished before
    emu.set_job_status(old, "processing", at=ago[0])
    emu.set_job_status(old, "completed", at=ago[1])
    long_job = emu.create_job("emails", at=ago[0])  # created before, finished inside
    emu.set_job_status(long_job, "processing", at=ago[1])
    emu.set_job_status(long_job, "completed", at=ago[3])
    failed = emu.create_job("emails", at=ago[2])
    emu.set_job_status(failed, "processing", at=ago[2])
    emu.set_job_status(failed, "deadletter", at=ago[5])
    other_queue = emu.create_job("sms", at=ago[2])
    emu.set_job_status(other_queue, "completed", at=ago[3])
    running = emu.create_job("emails", at=ago[6])
    emu.set_job_status(running, "processing", at=ago[4])

    interest = Interest(
        frozenset({"job.created", "job.started", "job.completed", "job.failed"}),
        frozenset({"emails"}),
    )
    result = sweep(
        jobs,
        interest,
        ago[2] - timedelta(seconds=1),
        now,
        horizon=now - timedelta(hours=1),
        max_requests=10,
        open_after=(ago[2], ago[5] + timedelta(seconds=1), now),
    )
    got = [(e.type, e.job_id) for e in result.events]
    assert got == [
        ("job.created", failed),
        ("job.started", failed),
        ("job.completed", long_job),
        ("job.failed", failed),
        ("job.created", running),
        ("job.started", running),
    ]
    assert all(e.replayed and e.derived_from == "catch_up" for e in result.events)
    assert all("retry_count" not in e.data for e in result.events)
    assert result.events[2].data["duration_ms"] == 140_000  # started 200 s ago, done 60 s ago
    failed_event = result.events[3]
    assert failed_event.data["status"] == "deadletter"
    assert failed_event.timestamp == ago[5]
    assert result.complete
    # Open at a moment: not finished, or finished at or after it.
    assert result.oldest_open == {
        ago[2]: ago[0],  # the long job finished 60 s ago
        ago[5] + timedelta(seconds=1): ago[6],  # then only the running job is left
        now: ago[6],
    }


def test_a_sweep_pages_until_created_at_falls_below_the_horizon(
    emu: Emulator, jobs: JobsClient
) -> None:
    now = datetime.now(timezone.utc)
    for index in range(250):
        job = emu.create_job("emails", at=now - timedelta(seconds=500 - index))
        emu.set_job_status(job, "completed", at=now - timedelta(seconds=10))
    interest = Interest(frozenset({"job.completed"}))
    everything = sweep(
        jobs, interest, now - timedelta(60), now, horizon=now - timedelta(hours=1), max_requests=10
    )
    assert len(everything.events) == 250
    assert everything.requests == 3  # 100 + 100 + 50
    recent = sweep(
        jobs,
        interest,
        now - timedelta(seconds=60),
        now,
        horizon=now - timedelta(seconds=300),
        max_requests=10,
    )
    assert len(recent.events) == 50
    assert recent.requests in (1, 2)  # the hosted service cuts by created_after


def test_the_request_cap_makes_a_sweep_incomplete(emu: Emulator, jobs: JobsClient) -> None:
    now = datetime.now(timezone.utc)
    for index in range(150):
        job = emu.create_job("emails", at=now - timedelta(seconds=100 - index / 10))
        emu.set_job_status(job, "completed", at=now - timedelta(seconds=5))
    result = sweep(
        jobs,
        Interest(frozenset({"job.completed"})),
        now - timedelta(seconds=60),
        now,
        horizon=now - timedelta(hours=1),
        max_requests=1,
    )
    assert not result.complete and result.reason == "request_cap"
    assert len(result.events) == 100


def test_a_cancel_is_dated_by_the_full_jobs_updated_at(emu: Emulator, jobs: JobsClient) -> None:
    now = datetime.now(timezone.utc)
    job = emu.create_job("emails", at=now - timedelta(seconds=30))
    emu.set_job_status(job, "cancelled", at=now - timedelta(seconds=20))
    result = sweep(
        jobs,
        Interest(frozenset({"job.cancelled"})),
        now - timedelta(seconds=25),
        now,
        horizon=now - timedelta(hours=1),
        max_requests=10,
    )
    assert [(e.type, e.job_id) for e in result.events] == [("job.cancelled", job)]
    assert abs((result.events[0].timestamp or now) - (now - timedelta(seconds=20))) < timedelta(
        seconds=1
    )


@pytest.fixture
def jobs(emu: Emulator) -> Iterator[JobsClient]:
    options = ConnectionOptions(base_url=emu.base_url, api_key=emu.api_key)
    with JobsClient(options, TokenProvider(options)) as client:
        yield client


# -- the runtime: gaps, restarts, polling ---------------------------------------------------


def test_jobs_finished_while_reconnecting_run_once_each(
    emu_default: Emulator, make_runtime: RuntimeFactory, record: Any
) -> None:
    emu = emu_default
    sweeps: Recorder = record(caught_up)
    runtime, publisher = start(make_runtime, emu)
    live = complete_jobs(emu, 5)
    assert wait_until(lambda: len(publisher.calls) == 5)
    emu.reject_next(30, 503)  # the reconnect takes a while: these finish unheard
    emu.drop_connections()
    assert wait_until(lambda: runtime.state != ConnectionState.CONNECTED)
    missed = complete_jobs(emu, 7)
    assert wait_until(lambda: runtime.state == ConnectionState.CONNECTED, 15)
    info = swept(sweeps, "gap")
    after = complete_jobs(emu, 3)
    assert wait_until(lambda: len(publisher.calls) >= 15)
    time.sleep(0.3)
    assert runs(publisher) == Counter(live + missed + after)
    replayed = {c.event.job_id for c in publisher.calls if c.event.replayed}
    assert replayed == set(missed)
    assert info["recovered"] == 7 and info["complete"]
    status = runtime.status()
    assert status["counters"]["caught_up"] == 7
    assert status["catch_up"]["last_sweep"]["recovered"] == 7


def test_a_stalled_socket_is_swept_from_its_last_frame(
    emu_default: Emulator, make_runtime: RuntimeFactory, record: Any
) -> None:
    emu = emu_default
    sweeps: Recorder = record(caught_up)
    runtime, publisher = start(make_runtime, emu, connection={"liveness_timeout": 1.0})
    emu.stall(True)
    missed = complete_jobs(emu, 6)
    assert wait_until(lambda: runtime.state != ConnectionState.CONNECTED, 5)
    emu.stall(False)
    assert swept(sweeps, "gap")["recovered"] == 6
    assert wait_until(lambda: len(publisher.calls) >= 6)
    time.sleep(0.3)
    assert runs(publisher) == Counter(missed)


def test_a_restart_with_a_checkpoint_sweeps_its_downtime_once(
    emu_default: Emulator, make_runtime: RuntimeFactory, tmp_path: Path, record: Any
) -> None:
    emu = emu_default
    checkpoint = tmp_path / "spooled.checkpoint"
    first, first_runs = start(make_runtime, emu, checkpoint=str(checkpoint))
    before = complete_jobs(emu, 4)
    assert wait_until(lambda: len(first_runs.calls) == 4)
    time.sleep(1.5)  # at least one checkpoint write after the last event
    first.stop(timeout=5)
    saved = json.loads(checkpoint.read_text())
    assert saved["position"] > time.time() - 10
    assert {f"job.completed:{job}" for job in before} <= set(saved["recent"])
    down = complete_jobs(emu, 5)

    sweeps: Recorder = record(caught_up)
    _second, second_runs = start(make_runtime, emu, checkpoint=str(checkpoint))
    assert sweeps.wait_count(1, 10)
    assert wait_until(lambda: len(second_runs.calls) >= 5)
    time.sleep(0.3)
    assert runs(second_runs) == Counter(down)  # nothing of the first life again
    assert sweeps.calls[0][1]["kind"] == "restart"


def test_without_a_checkpoint_only_what_follows_start_is_swept(
    emu_default: Emulator, make_runtime: RuntimeFactory, record: Any
) -> None:
    emu = emu_default
    before = complete_jobs(emu, 3)  # before start(): not owed without a checkpoint
    sweeps: Recorder = record(caught_up)
    emu.reject_next(3, 503)  # the first connection takes a while
    publisher = RecordingPublisher()
    runtime = make_runtime(emu, publisher, subscriptions=ROUTE, catch_up_poll="off")
    runtime.start()
    meanwhile = complete_jobs(emu, 2)  # after start(), before the first connection
    assert sweeps.wait_count(1, 15)
    assert wait_until(lambda: len(publisher.calls) >= 2)
    time.sleep(0.3)
    assert runs(publisher) == Counter(meanwhile)
    assert not set(before) & set(runs(publisher))
    assert sweeps.calls[0][1]["kind"] == "start"
    assert runtime.status()["catch_up"]["last_sweep"]["recovered"] == 2


def test_rest_429_and_5xx_are_retried_until_the_sweep_succeeds(
    emu_default: Emulator, make_runtime: RuntimeFactory, record: Any
) -> None:
    emu = emu_default
    sweeps: Recorder = record(caught_up)
    runtime, publisher = start(make_runtime, emu)
    emu.reject_next(20, 503)
    emu.drop_connections()
    assert wait_until(lambda: runtime.state != ConnectionState.CONNECTED)
    missed = complete_jobs(emu, 4)
    emu.reject_rest(2, 429, retry_after=0.2)
    emu.reject_rest(1, 500)  # queued after the 429s
    assert swept(sweeps, "gap", 20)["complete"]
    assert wait_until(lambda: len(publisher.calls) >= 4)
    assert runs(publisher) == Counter(missed)
    assert emu.counters["rest_rejected"] == 3


def test_strict_server_stream_without_job_events_is_polled(
    make_runtime: RuntimeFactory, record: Any
) -> None:
    with Emulator(strict=True) as emu:
        runtime, publisher = start(make_runtime, emu, catch_up_poll="always", catch_up_interval=0.5)
        done = complete_jobs(emu, 4)
        assert wait_until(lambda: len(publisher.calls) >= 4, 15)
        more = complete_jobs(emu, 3)
        assert wait_until(lambda: len(publisher.calls) >= 7, 15)
        time.sleep(1.5)  # a few more polls: nothing twice
        assert runs(publisher) == Counter(done + more)
        assert runtime.status()["catch_up"]["polling"] is True


def test_auto_polling_starts_when_the_stream_misses_jobs_and_not_when_it_carries_them(
    make_runtime: RuntimeFactory, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr("spooled_integrations.runtime.catchup.PROBE_EVERY", 0.5)
    with Emulator(strict=True) as strict, Emulator() as default:
        silent, silent_runs = start(
            make_runtime, strict, catch_up_poll="auto", catch_up_interval=0.3
        )
        talking, talking_runs = start(
            make_runtime, default, catch_up_poll="auto", catch_up_interval=0.3
        )
        quiet = complete_jobs(strict, 3)
        loud = complete_jobs(default, 3)
        assert wait_until(lambda: len(silent_runs.calls) >= 3, 15)
        assert wait_until(lambda: silent.status()["catch_up"]["polling"], 5)
        assert wait_until(lambda: len(talking_runs.calls) >= 3, 5)
        time.sleep(2.0)  # probes see only duplicates
        assert runs(silent_runs) == Counter(quiet)
        assert runs(talking_runs) == Counter(loud)
        assert talking.status()["catch_up"]["polling"] is False
        # Polls overlap: refinding what an earlier poll recovered does not stop polling.
        assert silent.status()["catch_up"]["polling"] is True
        assert not any(c.event.replayed for c in talking_runs.calls)


def test_nothing_is_swept_when_nothing_listens_to_job_events(
    emu_default: Emulator, make_runtime: RuntimeFactory, record: Any
) -> None:
    emu = emu_default
    sweeps: Recorder = record(caught_up)
    with spooled_signal.isolated():  # receivers left connected elsewhere would listen
        runtime, _publisher = start(
            make_runtime, emu, subscriptions=[{"events": ["queue.paused"], "task": "t"}]
        )
        emu.reject_next(5, 503)
        emu.drop_connections()
        assert wait_until(lambda: runtime.state != ConnectionState.CONNECTED)
        complete_jobs(emu, 2)
        assert swept(sweeps, "gap")["requests"] == 0
        assert emu.counters["rest_list"] == 0  # the start's sweep made none either


def test_a_receiver_gets_recovered_events_with_the_live_shape(
    emu_default: Emulator, make_runtime: RuntimeFactory, record: Any
) -> None:
    emu = emu_default
    got: Recorder = record(spooled_signal, "job.completed")
    sweeps: Recorder = record(caught_up)
    runtime, _ = start(make_runtime, emu, subscriptions=[])
    emu.reject_next(10, 503)
    emu.drop_connections()
    assert wait_until(lambda: runtime.state != ConnectionState.CONNECTED)
    (job,) = complete_jobs(emu, 1, queue="anything")
    assert swept(sweeps, "gap")["recovered"] == 1
    assert got.wait_count(1)
    event: Event = got.kwarg("event")[0]
    assert event.job_id == job and event.queue_name == "anything" and event.replayed
    assert event.job().status == "completed"
    assert event.to_dict()["derived_from"] == "catch_up"


def test_polls_move_the_checkpoint_on_a_stream_of_pings_only(
    make_runtime: RuntimeFactory, tmp_path: Path
) -> None:
    checkpoint = tmp_path / "spooled.checkpoint"
    with Emulator(strict=True, ping_interval=30.0) as emu:
        _runtime, publisher = start(
            make_runtime,
            emu,
            catch_up_poll="always",
            catch_up_interval=0.3,
            checkpoint=str(checkpoint),
        )
        complete_jobs(emu, 2)
        done_at = time.time()
        assert wait_until(lambda: len(publisher.calls) == 2)

        def position() -> float:
            try:
                return float(json.loads(checkpoint.read_text())["position"])
            except (OSError, ValueError):
                return 0.0

        # No frame since the connect: only the polls can say how far it has seen.
        assert wait_until(lambda: position() > done_at, 10)


def test_polls_page_back_only_to_the_oldest_open_job(
    make_runtime: RuntimeFactory, record: Any
) -> None:
    """Thousands of long-finished jobs: the start's sweep pages through them, the polls
    stop at the oldest job still open (or finished since the sweep before)."""
    sweeps: Recorder = record(caught_up)
    with Emulator(strict=True) as emu:
        old = datetime.now(timezone.utc) - timedelta(minutes=10)
        for _ in range(1500):
            job = emu.create_job("emails", at=old)
            emu.set_job_status(job, "completed", at=old)
        runtime, publisher = start(make_runtime, emu, catch_up_poll="always", catch_up_interval=0.3)
        assert sweeps.wait_for(lambda calls: len(calls) >= 5, 15)
        done = complete_jobs(emu, 3)
        assert wait_until(lambda: len(publisher.calls) >= 3)
        assert sweeps.wait_for(lambda calls: len(calls) >= 8, 15)
        first = sweeps.calls[0][1]
        assert first["kind"] == "start" and first["requests"] >= 15  # no horizon: 1,500 jobs
        requests = [kw["requests"] for _, kw in sweeps.calls if kw["kind"] == "poll"]
        assert max(requests) <= 2, requests
        assert runs(publisher) == Counter(done)
        assert runtime.status()["catch_up"]["last_sweep"]["complete"]


@pytest.mark.slow
def test_a_restart_between_polls_loses_nothing_on_a_stream_of_pings(
    make_runtime: RuntimeFactory, tmp_path: Path, record: Any
) -> None:
    """The position must follow the polls, not the pings, or the restart's sweep would
    begin after jobs the last poll had not reached."""
    sweeps: Recorder = record(caught_up)
    checkpoint = str(tmp_path / "spooled.checkpoint")
    config = {"catch_up_poll": "always", "catch_up_interval": 15.0, "checkpoint": checkpoint}
    with Emulator(strict=True, ping_interval=0.2) as emu:
        first, publisher = start(make_runtime, emu, **config)
        assert sweeps.wait_count(1)  # the start's sweep
        done = complete_jobs(emu, 10)
        # Longer than the 5 s a restart sweeps before its position, shorter than the
        # poll interval: only the polls' position makes the restart sweep reach them.
        time.sleep(7.0)
        assert publisher.calls == []
        first.stop(timeout=5)
        second = make_runtime(emu, publisher, subscriptions=ROUTE, **config)
        second.start()
        assert wait_until(lambda: len(publisher.calls) >= 10, 15)
        time.sleep(0.5)
        assert runs(publisher) == Counter(done)


def test_a_refused_job_list_is_an_error_naming_the_url_and_not_hammered(
    emu_default: Emulator, make_runtime: RuntimeFactory, caplog: pytest.LogCaptureFixture
) -> None:
    emu = emu_default
    emu.reject_rest(1, 404)  # the start's sweep: a wrong base path, say
    publisher = RecordingPublisher()
    runtime = make_runtime(emu, publisher, subscriptions=ROUTE, catch_up_poll="off")
    with caplog.at_level(logging.ERROR, logger="spooled_integrations.runtime.catchup"):
        runtime.start()
        assert wait_until(lambda: runtime.status()["catch_up"]["last_error"] is not None)
        time.sleep(1.5)  # no retry storm: the next try is minutes away
    assert emu.counters["rest_rejected"] == 1 and emu.counters["rest_list"] == 0
    errors = [r.getMessage() for r in caplog.records if r.levelno == logging.ERROR]
    assert len(errors) == 1 and f"{emu.base_url}/api/v1/jobs" in errors[0], errors
    assert "404" in errors[0] and emu.api_key not in errors[0]

"""The job queue: deduplicated submission (also under a race), claims with leases, takeover;
workers: handler middleware and start/stop hooks."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from app.jobs import FINISHED, PENDING, JobContext, JobLost, JobQueue, Workers, utcnow


def queue(app: Any) -> JobQueue:
    return app.extensions["termsync.jobs"].queue


def test_same_key_joins_the_active_job_and_a_new_one_follows_a_finished_one(app: Any) -> None:
    jobs = queue(app)
    first = jobs.submit("build", {}, key="k")
    assert jobs.submit("build", {}, key="k").id == first.id
    claimed = jobs.claim(["build"], "w1", 60)
    assert claimed is not None and claimed.id == first.id
    assert jobs.finish(first.id, "w1", {"ok": True})
    second = jobs.submit("build", {}, key="k")
    assert second.id != first.id and second.state == PENDING
    assert jobs.get(first.id).state == FINISHED


def test_racing_submitters_get_one_job(app: Any) -> None:
    jobs = queue(app)
    original = jobs.jobs
    first = jobs.submit("build", {}, key="race")

    class StaleRead:
        """The second submitter read 'no job yet' just before the first inserted its own."""

        def __init__(self) -> None:
            self.stale = True

        def __getattr__(self, name: str) -> Any:
            return getattr(original, name)

        def latest(self, *args: Any, **kwargs: Any) -> Any:
            if self.stale:
                self.stale = False
                return None
            return original.latest(*args, **kwargs)

    jobs.jobs = StaleRead()  # type: ignore[assignment]
    try:
        second = jobs.submit("build", {}, key="race")
    finally:
        jobs.jobs = original
    assert second.id == first.id
    assert [job.key for job in jobs.list(kind="build")[0]] == ["race"]


def test_expired_lease_is_taken_over_and_the_old_worker_stops(app: Any) -> None:
    jobs = queue(app)
    job = jobs.submit("build", {}, key="lease")
    assert jobs.claim(["build"], "dead", 10).id == job.id
    assert jobs.claim(["build"], "other", 10) is None
    jobs.clock = lambda: utcnow() + timedelta(seconds=11)
    taken = jobs.claim(["build"], "other", 10)
    assert taken is not None and taken.id == job.id and taken.attempts == 2
    try:
        jobs.heartbeat(job.id, "dead", 10)
        raise AssertionError("the dead worker's heartbeat must fail")
    except JobLost:
        pass
    assert not jobs.finish(job.id, "dead", {})
    assert jobs.finish(job.id, "other", {"by": "other"})


def test_cancel_stops_a_running_job_at_its_next_heartbeat(app: Any) -> None:
    workers = app.extensions["termsync.jobs"]
    seen: list[str] = []

    def handler(context: Any) -> dict[str, Any]:
        seen.append("started")
        workers.queue.cancel(context.job.id)
        context.heartbeat({"done": 1})
        seen.append("not reached")
        return {}

    workers.register("cancellable", handler)
    job = workers.queue.submit("cancellable", {}, key="c")
    workers.run_once()
    assert seen == ["started"] and workers.queue.get(job.id).state == "CANCELLED"


def test_middleware_wraps_every_handler_and_hooks_follow_the_threads(app: Any) -> None:
    workers = Workers(app, queue(app), lease_seconds=60, poll_seconds=0.05)
    seen: list[str] = []

    def middleware(name: str) -> Any:
        def wrap(kind: str, handler: Any) -> Any:
            def run(context: JobContext) -> Any:
                seen.append(f"{name}:{kind}")
                return handler(context)
            return run
        return wrap

    workers.use(middleware("outer"))
    workers.register("echo", lambda context: {"echo": context.job.payload["x"]})
    workers.use(middleware("inner"))  # added after the handler: still wraps it
    started: list[int] = []
    stopped: list[bool] = []
    workers.on_start(started.append)
    workers.on_stop(lambda: stopped.append(True))
    job = workers.queue.submit("echo", {"x": 1})
    assert workers.run_until_idle() == 1
    assert workers.queue.get(job.id).result == {"echo": 1}
    assert seen == ["outer:echo", "inner:echo"]
    workers.start(0)  # no threads: nothing to follow
    assert started == []
    workers.start(2)
    workers.stop()
    assert started == [2] and stopped == [True]


def test_a_job_cut_off_from_its_database_keeps_its_lease_for_a_takeover(app: Any) -> None:
    """A database outage mid-job (the store says "unavailable") is not the job's failure: the job
    stays RUNNING under its lease, and the next worker to claim it after expiry resumes it."""
    workers: Workers = app.extensions["termsync.jobs"]
    store = app.extensions["termsync.store"]
    outage = RuntimeError("database unreachable")
    attempts: list[str] = []

    def handler(context: JobContext) -> dict[str, Any]:
        attempts.append(context.worker_id)
        if len(attempts) == 1:
            raise outage
        return {"done": True}

    workers.register("flaky", handler)
    original = store.is_unavailable
    store.is_unavailable = lambda error: error is outage or original(error)
    try:
        job = workers.queue.submit("flaky", {}, key="outage")
        assert workers.run_once("first") is None
        assert workers.queue.get(job.id).state == "RUNNING"
        assert workers.run_once("second") is None  # its lease has not expired yet
        workers.queue.clock = lambda: utcnow() + timedelta(seconds=workers.lease_seconds + 1)
        assert workers.run_once("second").state == FINISHED
    finally:
        store.is_unavailable = original
    assert attempts == ["first", "second"]

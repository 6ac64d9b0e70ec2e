"""Admission control: bounded concurrency, FIFO queue, clean refusals."""

from __future__ import annotations

import threading

import anyio
import pytest

from clinvk.domain.admission import Admission, AdmittingBackendRunner
from clinvk.domain.config import BackendConfig, Config, ServerConfig
from clinvk.domain.errors import Overloaded
from clinvk.domain.models import RunSpec
from tests.fakes import FakeBackendRunner

pytestmark = pytest.mark.anyio


async def _until(condition) -> None:
    """Let the other tasks run until `condition()` holds (a guard stops a hang)."""
    with anyio.fail_after(30):
        while not condition():
            await anyio.sleep(0.001)


def _runner(**server) -> tuple[AdmittingBackendRunner, FakeBackendRunner]:
    fake = FakeBackendRunner()
    config = Config(
        server=ServerConfig(**server),
        backends={"gemini": BackendConfig(max_concurrent=1)},
    )
    return AdmittingBackendRunner(fake, Admission(config)), fake


def _spec(backend: str = "claude") -> RunSpec:
    return RunSpec(backend=backend, prompt="p", workdir="/tmp")


async def test_never_more_than_the_limit_and_all_finish():
    """32 runs with a limit of 4 never run more than 4 at once and all complete."""
    runner, fake = _runner(max_concurrent_runs=4, queue_max_length=64, queue_max_wait_secs=30)
    fake.rendezvous = 4  # no run finishes before four of them overlapped
    done = []

    async def one() -> None:
        done.append(await runner.run(_spec()))

    async with anyio.create_task_group() as tg:
        for _ in range(32):
            tg.start_soon(one)
    assert len(done) == 32
    assert fake.max_live == 4


async def test_per_backend_limit():
    """A backend's own limit holds even when the global limit is higher."""
    runner, fake = _runner(max_concurrent_runs=8)
    fake.delay = 0.01
    async with anyio.create_task_group() as tg:
        for _ in range(5):
            tg.start_soon(runner.run, _spec("gemini"))
    assert fake.max_live == 1


async def test_full_queue_is_refused_at_once():
    """When the queue is full, a new run is refused at once with a retry hint."""
    runner, fake = _runner(max_concurrent_runs=1, queue_max_length=1, queue_max_wait_secs=30)
    fake.hang = True
    refused: list[Overloaded] = []

    async def one() -> None:
        try:
            await runner.run(_spec())
        except Overloaded as exc:
            refused.append(exc)

    stats = runner.admission.stats
    async with anyio.create_task_group() as tg:
        tg.start_soon(one)  # runs (hangs)
        await _until(lambda: stats.running == 1)
        tg.start_soon(one)  # waits in the queue
        await _until(lambda: stats.queued == 1)
        await one()  # queue full: refused
        assert len(refused) == 1 and refused[0].retry_after >= 1
        assert runner.admission.stats.rejected == 1
        tg.cancel_scope.cancel()


async def test_wait_is_bounded():
    """A queued run that gets no slot within the wait limit is refused."""
    runner, fake = _runner(max_concurrent_runs=1, queue_max_length=5, queue_max_wait_secs=0.1)
    fake.hang = True
    async with anyio.create_task_group() as tg:
        tg.start_soon(runner.run, _spec())
        await _until(lambda: runner.admission.stats.running == 1)
        with pytest.raises(Overloaded):
            await runner.run(_spec())
        tg.cancel_scope.cancel()
    assert runner.admission.stats.queued == 0 and runner.admission.stats.running == 0


async def test_fifo_order():
    """Queued runs start in arrival order."""
    runner, fake = _runner(max_concurrent_runs=1)
    fake.hold = threading.Event()  # the first run holds its slot until every run arrived
    stats = runner.admission.stats
    order: list[int] = []

    async def one(i: int) -> None:
        await runner.run(RunSpec(backend="claude", prompt=str(i), workdir="/tmp"))
        order.append(i)

    async with anyio.create_task_group() as tg:
        for i in range(6):
            tg.start_soon(one, i)
            await _until(lambda i=i: stats.running + stats.queued == i + 1)  # i has arrived
        fake.hold.set()
    assert order == list(range(6))

"""The warm pool's bookkeeping, with `cat` standing in for a CLI."""

from __future__ import annotations

import os
import shutil
import signal

import anyio
import pytest

from clinvk.adapters.backends.pool import WarmPool, pool_key
from clinvk.adapters.backends.process import drive

pytestmark = pytest.mark.anyio
CAT = [shutil.which("cat") or "/bin/cat"]
ENV = {"PATH": os.environ["PATH"]}


async def test_take_gives_a_ready_process_that_reads_its_input_later(tmp_path):
    """A taken process is already running and answers what is written to it afterwards."""
    pool = WarmPool(pace_secs=0)
    await pool.add("cat", CAT, str(tmp_path), ENV, 2)
    assert pool.ready() == 2
    cli = await pool.take(pool_key(CAT, str(tmp_path), ENV))
    assert cli is not None and cli.alive
    lines: list[bytes] = []

    async def on_line(line: bytes) -> None:
        lines.append(line)

    outcome = await drive(cli, on_line=on_line, timeout=5, idle_timeout=None, input=b"hello\n")
    assert lines == [b"hello"] and outcome.exit_code == 0
    assert pool.stats.hits == 1 and pool.ready() == 1
    await pool.refill(pool_key(CAT, str(tmp_path), ENV))
    assert pool.ready() == 2
    await pool.aclose()


async def test_dead_and_expired_processes_are_never_handed_out(tmp_path):
    """A pooled process that died while waiting, or waited too long, is replaced, not used."""
    pool = WarmPool(idle_secs=3600, pace_secs=0)
    key = pool_key(CAT, str(tmp_path), ENV)
    await pool.add("cat", CAT, str(tmp_path), ENV, 1)
    victim = pool._slots[key].ready[0].cli
    os.killpg(victim.process.pid, signal.SIGKILL)
    with anyio.fail_after(30):  # a hang guard: SIGKILL ends `cat` at once
        await victim.process.wait()
    assert await pool.take(key) is None
    assert pool.stats.died == 1 and pool.stats.misses == 1
    await pool.aclose()
    expiring = WarmPool(idle_secs=0, pace_secs=0)
    await expiring.add("cat", CAT, str(tmp_path), ENV, 1)
    await anyio.sleep(0.01)
    assert await expiring.take(key) is None
    assert expiring.stats.expired == 1
    await expiring.aclose()


async def test_other_signatures_and_closed_pools_get_nothing(tmp_path):
    """A different signature never matches, and a closed pool starts nothing."""
    pool = WarmPool()
    await pool.add("cat", CAT, str(tmp_path), ENV, 1)
    assert await pool.take(pool_key(CAT + ["-n"], str(tmp_path), ENV)) is None
    pids = [w.cli.process.pid for s in pool._slots.values() for w in s.ready]
    await pool.aclose()
    assert pool.ready() == 0
    await pool.refill(pool_key(CAT, str(tmp_path), ENV))
    assert pool.ready() == 0
    for pid in pids:
        with pytest.raises(ProcessLookupError):
            os.kill(pid, 0)


async def test_missed_signatures_are_learnt_up_to_a_limit(tmp_path):
    """A signature that missed is kept (and filled) so the next such request is warm; the
    least recently used one goes when a backend has too many."""
    pool = WarmPool(pace_secs=0)
    cwd = str(tmp_path)
    await pool.add("cat", CAT, cwd, ENV, 1)
    other = CAT + ["-n"]
    assert await pool.take(pool_key(other, cwd, ENV)) is None
    await pool.adopt("cat", other, cwd, ENV, size=1, limit=2)
    await pool.refill(pool_key(other, cwd, ENV))
    learnt = await pool.take(pool_key(other, cwd, ENV))
    assert learnt is not None
    await learnt.discard()
    third = CAT + ["-u"]
    await anyio.sleep(0.01)
    default = await pool.take(pool_key(CAT, cwd, ENV))  # now the most recently used
    assert default is not None
    await default.discard()
    await pool.adopt("cat", third, cwd, ENV, size=1, limit=2)
    keys = set(pool._slots)
    assert pool_key(CAT, cwd, ENV) in keys and pool_key(third, cwd, ENV) in keys
    assert pool_key(other, cwd, ENV) not in keys
    await pool.aclose()

"""Who is dead, and what a late 250 means: worker identity across pid namespaces, and a send
that finishes after a reaper took its touch (real SQLite, fake sender, no sockets)."""

from __future__ import annotations

import asyncio
import os
import socket
from datetime import timedelta
from pathlib import Path

import pytest

from engine.daemon.heartbeat import boot_id, dead_here
from engine.domain.touch import Claim, Delivered
from engine.store.tables import Touch
from tests.servers.engine_env import Env, make_env, sequence

T = Touch.__table__
LEASE = timedelta(seconds=60)


@pytest.fixture
def env(tmp_path: Path) -> Env:
    return make_env(tmp_path)


def register(env: Env, name: str, pid: int, boot: str) -> None:
    env.store.workers.register(name, socket.gethostname(), pid, env.clock.now(), boot)


def test_a_worker_in_another_pid_namespace_is_never_dead_by_pid(env: Env) -> None:
    """Same hostname, same pid (replicas all run as pid 1), another boot id: alive until its
    heartbeat is stale, whatever our process table says."""
    register(env, "replica", os.getpid(), "other-boot/pid:[4026532999]")
    register(env, "gone", 2**22 + 1, "other-boot/pid:[4026532999]")  # no such pid here
    assert dead_here(env.store.workers.workers(), "me") == []


def test_in_our_own_pid_namespace_a_gone_pid_is_dead_at_once(env: Env) -> None:
    """Same host and boot id: a pid that is gone, or ours (we are its restart), is dead."""
    register(env, "gone", 2**22 + 1, boot_id())
    register(env, "reborn", os.getpid(), boot_id())
    register(env, "unknown-boot", 2**22 + 1, "")  # a row from before boot ids: not compared
    assert dead_here(env.store.workers.workers(), "me") == ["gone", "reborn"]


def test_the_boot_id_names_the_kernel_boot_and_pid_namespace() -> None:
    """On Linux: '<boot uuid>/pid:[inode]', the same for every call in one process."""
    assert boot_id() == boot_id()
    if Path("/proc/self/ns/pid").exists():
        assert boot_id().endswith(os.readlink("/proc/self/ns/pid"))


def _sending(env: Env) -> Claim:
    """Our touch in `sending`, as a live worker holds it during SMTP."""
    [claim] = env.store.queue.claim_due(env.worker, ["welcome"], env.clock.now(), 10, LEASE,
                                        env.send._planner("sales"))
    now = env.clock.now()
    env.store.queue.begin_send(claim, env.worker, now, LEASE,
                               lambda ctx: env.send._decide(env.catalog.sequences["welcome"],
                                                            now, ctx))
    return claim


def _delivered(env: Env, claim: Claim) -> bool:
    nxt = env.send.plan.advance(env.catalog.sequences["welcome"],
                                env.store.workers.load(claim.touch_id)[1].lead,
                                claim.step_index, claim.occurrence, env.clock.now())
    return env.store.queue.finish(claim, Delivered(250, "2.0.0 queued", env.clock.now()), nxt,
                                  env.clock.now())


def test_a_250_after_the_reaper_held_the_touch_records_it_sent(env: Env) -> None:
    """Declared dead mid-send (held `unknown`), the worker then gets its 250: recorded sent
    and the enrollment advances, so no operator resends it."""
    env.enroll("ada@example.com")
    claim = _sending(env)
    assert asyncio.run(env.recovery.reap(dead=[env.worker])).held == [claim.touch_id]
    assert _delivered(env, claim)
    [touch] = env.touches()
    assert touch.state == "sent" and env.store.reports.in_doubt() == []
    assert env.store.reports.enrollments()[0]["step_index"] == 1


def test_a_250_before_a_resend_is_claimed_prevents_the_resend(tmp_path: Path) -> None:
    """`in_doubt: resend` handed the touch back; the 250 lands before anyone retook it:
    recorded sent, and the next pass sends nothing (no duplicate)."""
    env = make_env(tmp_path, [sequence(in_doubt="resend")])
    env.enroll("ada@example.com")
    claim = _sending(env)
    assert asyncio.run(env.recovery.reap(dead=[env.worker])).resent == [claim.touch_id]
    assert _delivered(env, claim)
    env.run_once()
    assert env.sender.attempts == [] and [t.state for t in env.touches()] == ["sent"]


def test_a_250_after_the_touch_was_retaken_is_not_recorded(tmp_path: Path) -> None:
    """Once another worker retook the touch (a new fence), the old worker's result is not
    written: the newer attempt owns the row."""
    env = make_env(tmp_path, [sequence(in_doubt="resend")])
    env.enroll("ada@example.com")
    claim = _sending(env)
    asyncio.run(env.recovery.reap(dead=[env.worker]))
    env.store.queue.claim_retries("w2", ["welcome"], env.clock.now(), 10, LEASE)
    assert not _delivered(env, claim)
    [touch] = env.touches()
    assert touch.state == "claimed"

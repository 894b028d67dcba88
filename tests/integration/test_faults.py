"""1,000 touches through a faulty relay, and the one case where SMTP itself duplicates.

The engine runs in this process (tests/servers/engine_env.py, a frozen clock moved past each
backoff) against the fault-injecting aiosmtpd sink: 451s, 550 5.1.1 for chosen recipients,
connections dropped before the relay accepts, 250s withheld after it accepted (RFC 1047),
and a slow relay. The sink's record of accepted Message-IDs is compared with the touches table.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass
from pathlib import Path

import pytest

from engine.domain.states import TouchState
from engine.store.reports import TouchRow
from tests.servers.engine_env import Env, make_env, sequence, smtp_sender
from tests.servers.smtp_sink import Faults, SmtpSink

LEADS, BOUNCING = 520, 40  # 520 first touches + 480 second ones (bounced leads stop) = 1,000
BOUNCE_DOMAIN = "bounce.example.com"
MAX_ROUNDS = 40  # 30-minute clock steps; 8 attempts with capped backoff need about 12

TWO_STEPS = sequence(steps=[
    {"name": "first", "after": "0m", "send_window": "any", "email": {"template": "hello.md.j2"}},
    {"name": "second", "after": "1 hour", "send_window": "any",
     "email": {"template": "again.md.j2", "thread": "previous"}},
])


def _address(i: int) -> str:
    return f"lead{i}@{BOUNCE_DOMAIN if i % (LEADS // BOUNCING) == 0 else 'example.com'}"


def _run_until_settled(env: Env) -> int:
    """Passes, then the clock moves 30 minutes, until no touch is in flight and nothing is due."""
    for rounds in range(1, MAX_ROUNDS + 1):
        env.run_once()
        states = Counter(t.state for t in env.touches())
        in_flight = states[TouchState.claimed.value] + states[TouchState.sending.value]
        if not in_flight and env.store.queue.next_wakeup(["welcome"]) is None:
            return rounds
        env.clock.advance(minutes=30)
    raise AssertionError(f"still in flight after {MAX_ROUNDS} rounds: {states}")


@dataclass(frozen=True)
class FaultyRun:
    touches: list[TouchRow]
    received: Counter[str]  # accepted copies per Message-ID, from the sink's record
    ack_lost: Counter[str]  # accepted copies whose 250 the sink withheld
    refused: Counter[str]  # what each fault did
    suppressed: dict[str, str | None]  # the bouncing addresses' suppression reasons


@pytest.fixture(scope="module")
def faulty_run(tmp_path_factory: pytest.TempPathFactory) -> FaultyRun:
    """1,000 touches through 451s (15%), drops before acceptance (10%), lost 250s (1%), a
    1 ms pause before each reply, and 550 5.1.1 for every address at bounce.example.com."""
    faults = Faults(tempfail_rate=0.15, drop_rate=0.1, ack_loss_rate=0.01, slow=0.001,
                    reject=(f"@{BOUNCE_DOMAIN}",), seed=1047)
    with SmtpSink(faults) as sink:
        env = make_env(tmp_path_factory.mktemp("faults"), [TWO_STEPS],
                       sender=smtp_sender(sink.port))
        for i in range(LEADS):
            env.enroll(_address(i), first_name=f"L{i}")
        _run_until_settled(env)
        received = Counter(m.message_id for m in sink.received)
        handler = sink.handler
    bouncing = [_address(i) for i in range(LEADS) if BOUNCE_DOMAIN in _address(i)]
    return FaultyRun(env.touches(), received, handler.ack_lost, handler.refused,
                     {e: env.store.leads.suppression(e) for e in bouncing})


@pytest.mark.slow
def test_every_touch_is_delivered_once_or_failed(faulty_run: FaultyRun) -> None:
    """1,000 touches end sent or failed, none in flight; a sent touch's Message-ID was
    accepted once, plus once for every 250 the relay withheld."""
    run = faulty_run
    assert len(run.touches) == 1000
    assert {t.state for t in run.touches} == {TouchState.sent.value, TouchState.failed.value}
    for t in run.touches:
        assert run.received[t.message_id] == run.ack_lost[t.message_id] + (t.state == "sent"), t
    assert min(run.refused[k] for k in ("tempfail", "drop", "ack_loss", "reject")) > 0


@pytest.mark.slow
def test_only_a_lost_250_puts_a_message_id_twice_at_the_relay(faulty_run: FaultyRun) -> None:
    """Duplicates are exactly the RFC 1047 window: Message-IDs the relay accepted without
    its 250 reaching us. Drops before acceptance and 451s never duplicate; the relay never
    sees a Message-ID that is not a touch's."""
    run = faulty_run
    twice = {mid for mid, n in run.received.items() if n > 1}
    assert twice and twice == set(run.ack_lost)
    assert set(run.received) <= {t.message_id for t in run.touches}


@pytest.mark.slow
def test_rejected_recipients_fail_with_their_reason_and_are_suppressed(
    faulty_run: FaultyRun,
) -> None:
    """The 5xx recipients' first touches fail with the relay's words, the addresses are
    suppressed as hard bounces and their second step never exists; every failure says why."""
    run = faulty_run
    rejected = [t for t in run.touches if t.email in run.suppressed]
    assert len(rejected) == BOUNCING and {t.step for t in rejected} == {"first"}
    assert all(t.state == "failed" and "550 5.1.1" in t.error for t in rejected)
    assert set(run.suppressed.values()) == {"hard_bounce"}
    failed = [t for t in run.touches if t.state == "failed"]
    assert all(t.error for t in failed)
    assert all(t.error.startswith("gave up after") for t in failed if t not in rejected)


def test_a_250_lost_after_the_relay_accepted_means_two_identical_copies(tmp_path: Path) -> None:
    """RFC 1047: the relay keeps the message, then the connection dies before its 250. The
    engine cannot tell this from a drop before acceptance, so it retries after the backoff
    with the same Message-ID and the same bytes: the recipient holds two identical copies
    (the documented at-least-once window) and the touch is recorded sent once."""
    with SmtpSink(Faults(ack_loss=1)) as sink:
        env = make_env(tmp_path, sender=smtp_sender(sink.port))
        env.enroll("ada@example.com")
        env.run_once()
        [touch] = env.touches()
        assert touch.state == "claimed" and "connection" in touch.error
        assert len(sink.received) == 1
        env.clock.advance(minutes=1)
        env.run_once()
        first, second = sink.wait_for(2)
    [touch] = env.touches()
    assert touch.state == "sent" and touch.attempts == 2
    assert first.message_id == second.message_id == touch.message_id
    assert first.raw == second.raw
    assert sink.handler.ack_lost == Counter({touch.message_id: 1})

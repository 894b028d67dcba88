"""A touch that failed and stopped its enrollment (a lead lacking a field its template uses)
is listed for the operator and can be retried once the cause is fixed; bounces, and leads
something else happened to since, cannot."""

from __future__ import annotations

from pathlib import Path

import pytest

from engine.errors import InvalidTransition, RecipientRejected
from tests.servers.engine_env import Env, make_env

PLAN = {"hello.md.j2": "---\nsubject: Your {{ lead.plan }} plan\n---\nHi {{ lead.first_name }}"
                       ", about {{ lead.plan }}.\n\n<{{ unsubscribe_url }}>\n"}


@pytest.fixture
def env(tmp_path: Path) -> Env:
    """ada lacks `plan`: her first touch failed (render error), her enrollment stopped."""
    env = make_env(tmp_path, templates=PLAN)
    env.enroll("ada@example.com", first_name="Ada")
    env.run_once()
    assert [t.state for t in env.touches()] == ["failed"]
    return env


def test_the_failed_touch_is_listed_for_the_operator(env: Env) -> None:
    """`nurture touches --failed` lists it with the render error."""
    [row] = env.store.reports.failed()
    assert row.email == "ada@example.com" and "plan" in row.error


def test_retry_with_the_missing_field_sends_it_and_the_sequence_goes_on(env: Env) -> None:
    """retry --set plan=pro: the field is merged, the touch is rendered and sent with the
    Message-ID it was given at the claim, and the enrollment moves to the next step."""
    [failed] = env.touches()
    env.recovery.retry(failed.id, "ops", {"plan": "pro"})
    assert env.store.reports.failed() == []
    env.run_once()
    [msg] = env.sender.sent
    assert msg.message_id == failed.message_id and b"about pro" in msg.raw
    [enrollment] = env.store.reports.enrollments()
    assert (enrollment["state"], enrollment["step_index"]) == ("active", 1)
    lead = env.store.leads.get("ada@example.com")
    assert lead is not None and lead.fields == {"plan": "pro"}


def test_a_retry_that_fails_again_is_held_again(env: Env) -> None:
    """Nothing fixed: the touch fails again and is listed again, the enrollment stopped."""
    [failed] = env.touches()
    env.recovery.retry(failed.id, "ops")
    env.run_once()
    assert [t.id for t in env.store.reports.failed()] == [failed.id]
    assert env.store.reports.enrollments()[0]["stop_reason"] == "touch_failed"


def test_a_touch_that_did_not_fail_cannot_be_retried(env: Env) -> None:
    """Only a failed touch: a sent one is refused with its state."""
    env.enroll("bob@example.com", first_name="Bob", plan="pro")
    env.run_once()
    sent = next(t for t in env.touches() if t.state == "sent")
    with pytest.raises(InvalidTransition, match="is sent; only a failed touch"):
        env.recovery.retry(sent.id, "ops")


def test_a_bounce_cannot_be_retried(tmp_path: Path) -> None:
    """550 5.1.1: the address refused mail and is suppressed; not listed, retry refused."""
    env = make_env(tmp_path)
    env.sender.fail = lambda _m: RecipientRejected("550 5.1.1 user unknown", 550)
    env.enroll("ada@example.com")
    env.run_once()
    [bounced] = env.touches()
    assert env.store.reports.failed() == []
    with pytest.raises(InvalidTransition, match=r"enrollment is stopped \(bounced\)"):
        env.recovery.retry(bounced.id, "ops")


def test_a_lead_enrolled_again_meanwhile_is_not_retried(env: Env) -> None:
    """Enrolled again in the sequence since: one live enrollment only, the retry is refused
    and nothing changes."""
    [failed] = env.touches()
    env.enroll("ada@example.com", plan="pro")
    with pytest.raises(InvalidTransition, match="enrolled in welcome again"):
        env.recovery.retry(failed.id, "ops", {"plan": "max"})
    assert [e["state"] for e in env.store.reports.enrollments()].count("active") == 1
    lead = env.store.leads.get("ada@example.com")
    assert lead is not None and lead.fields == {"plan": "pro"}

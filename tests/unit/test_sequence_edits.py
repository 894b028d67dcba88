"""Editing a sequence while leads are in it (what a reload does): no step twice, none skipped.

Each test sends the first step, swaps in an edited version of the sequence (as SIGHUP or
--reload-sequences does: the catalog's mapping changes between passes) and runs on.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from sqlalchemy import select
from structlog.testing import capture_logs

from engine.store.tables import Enrollment, Event
from tests.servers.engine_env import Env, make_env, sequence

E, EV = Enrollment.__table__, Event.__table__
TEMPLATE = {f"{n}.md.j2": f'---\nsubject: "{n}"\n---\nStep {n}.\n' for n in "abcdnx"}


def step(name: str, after: str = "1 day") -> dict[str, Any]:
    return {"name": name, "after": after, "send_window": "any",
            "email": {"template": f"{name}.md.j2"}}


def steps(*names: str) -> list[dict[str, Any]]:
    return [step(n, "0m" if i == 0 else "1 day") for i, n in enumerate(names)]


def start(tmp_path: Path, *names: str) -> Env:
    """A lead enrolled in a sequence of these steps; the first one sent."""
    env = make_env(tmp_path, [sequence(steps=steps(*names))], templates=TEMPLATE)
    env.enroll("ada@example.com")
    assert env.run_once()["sent"] == 1
    return env


def edit(env: Env, *names: str, first_after: str = "1 day") -> None:
    """Swap in the edited sequence, as a reload does."""
    env.catalog.sequences["welcome"] = sequence(
        steps=[step(n, first_after if i == 0 else "1 day") for i, n in enumerate(names)])


def run_days(env: Env, days: int = 5) -> None:
    for _ in range(days):
        env.clock.advance(days=1)
        env.run_once()


def subjects(env: Env) -> list[str]:
    return [m.message["Subject"] for m in env.sender.sent]


def events(env: Env, kind: str) -> list[dict[str, Any]]:
    with env.store.db.read() as conn:
        return [r.data for r in conn.execute(select(EV.c.data).where(EV.c.kind == kind))]


def test_a_step_inserted_above_is_not_sent_and_nothing_is_sent_twice(tmp_path: Path) -> None:
    """a, b -> n, a, b while the lead waits for b: b goes out once, a is not re-sent."""
    env = start(tmp_path, "a", "b")
    edit(env, "n", "a", "b")
    run_days(env)
    assert subjects(env) == ["a", "b"]
    [e] = env.store.reports.enrollments()
    assert e["state"] == "finished"


def test_a_deleted_step_moves_the_lead_to_the_step_after_it(tmp_path: Path) -> None:
    """a, b, c -> a, c while the lead waits for b: it gets c, and is finished."""
    env = start(tmp_path, "a", "b", "c")
    edit(env, "a", "c")
    run_days(env)
    assert subjects(env) == ["a", "c"]
    [moved] = events(env, "enrollment_moved")
    assert (moved["from_step"], moved["to_step"]) == ("b", "c")


def test_a_reorder_keeps_the_lead_after_the_steps_it_had(tmp_path: Path) -> None:
    """a, b, c -> a, c, b while the lead waits for b: c then b, each once, in the new order."""
    env = start(tmp_path, "a", "b", "c")
    edit(env, "a", "c", "b")
    run_days(env)
    assert subjects(env) == ["a", "c", "b"]


def test_a_step_moved_above_the_lead_is_passed_over(tmp_path: Path) -> None:
    """a, b, c -> c, a, b while the lead waits for b: b, then finished; c sits above it."""
    env = start(tmp_path, "a", "b", "c")
    edit(env, "c", "a", "b")
    run_days(env)
    assert subjects(env) == ["a", "b"]
    assert env.store.reports.enrollments()[0]["state"] == "finished"


def test_a_renamed_step_is_sent_under_its_new_name(tmp_path: Path) -> None:
    """a, b -> a, x (b renamed): the lead gets x once, never a again."""
    env = start(tmp_path, "a", "b")
    edit(env, "a", "x")
    run_days(env)
    assert subjects(env) == ["a", "x"]
    assert [t.step for t in env.touches()] == ["a", "x"]


def test_deleting_every_step_it_had_and_the_next_finishes_it(tmp_path: Path) -> None:
    """a, b -> c (a and b gone): nothing to place the lead after, so it is finished, with
    an event that says why, and c (new) is not sent to someone mid-sequence."""
    env = start(tmp_path, "a", "b")
    edit(env, "c")
    run_days(env)
    assert subjects(env) == ["a"]
    [e] = env.store.reports.enrollments()
    assert e["state"] == "finished"
    assert any("every step" in d.get("reason", "") for d in events(env, "enrollment_finished"))


def test_the_enrollment_remembers_its_next_step_by_name(tmp_path: Path) -> None:
    """After a send, the enrollment row names the step it waits for."""
    env = start(tmp_path, "a", "b")
    with env.store.db.read() as conn:
        assert conn.execute(select(E.c.step_name, E.c.step_index)).one() == ("b", 1)


def test_an_open_task_whose_step_was_removed_moves_the_lead_on_when_done(
        tmp_path: Path) -> None:
    """a task open while its step is deleted: completing it gives the lead the next step."""
    task = {"name": "call", "after": "0m", "send_window": "any", "task": {"kind": "call"}}
    env = make_env(tmp_path, [sequence(steps=[task, step("b"), step("c")])],
                   templates=TEMPLATE)
    env.enroll("ada@example.com")
    env.run_once()
    [open_task] = env.store.reports.open_tasks()
    env.catalog.sequences["welcome"] = sequence(steps=[step("b", "0m"), step("c")])
    env.tasks.complete(open_task.id, "sam")
    run_days(env)
    assert subjects(env) == ["b", "c"]


def test_on_finish_waits_for_a_target_that_is_not_loaded(tmp_path: Path) -> None:
    """on_finish names a sequence broken mid-edit: the lead is not dropped. The event names
    both sequences, and the lead is enrolled there once a reload brings it back."""
    welcome = sequence(steps=steps("a"), on_finish={"enroll": "ripen"})
    env = make_env(tmp_path, [welcome], templates=TEMPLATE)
    env.enroll("ada@example.com")
    with capture_logs() as logs:
        env.run_once()
        env.clock.advance(hours=1)
        env.run_once()
    assert [(e["sequence"], e["state"]) for e in env.store.reports.enrollments()] == [
        ("welcome", "active")]
    [waiting] = events(env, "on_finish_unavailable")
    assert (waiting["sequence"], waiting["on_finish"]) == ("welcome", "ripen")
    assert any(x["event"] == "on_finish_unavailable" and x["on_finish"] == "ripen"
               for x in logs)
    env.catalog.sequences["ripen"] = sequence("ripen", steps=steps("b"))  # the reload
    env.clock.advance(minutes=15)
    env.run_once()  # welcome finishes and ripen begins
    env.run_once()  # ripen's first step
    assert sorted((e["sequence"], e["state"]) for e in env.store.reports.enrollments()) == [
        ("ripen", "finished"), ("welcome", "finished")]
    assert subjects(env) == ["a", "b"]


def test_a_step_it_had_put_back_ahead_of_it_is_not_sent_again(tmp_path: Path) -> None:
    """a, call, c -> call, a, c while the call task is open: when it is done the sequence
    says `a` comes next, but the lead had it; it gets c instead (never a second copy, and
    the enrollment is not stopped)."""
    call = {"name": "call", "after": "1 day", "send_window": "any", "task": {"kind": "call"}}
    env = make_env(tmp_path, [sequence(steps=[step("a", "0m"), call, step("c")])],
                   templates=TEMPLATE)
    env.enroll("ada@example.com")
    env.run_once()
    env.clock.advance(days=1)
    env.run_once()
    [open_task] = env.store.reports.open_tasks()
    env.catalog.sequences["welcome"] = sequence(
        steps=[{**call, "after": "0m"}, step("a"), step("c")])
    env.tasks.complete(open_task.id, "sam")
    run_days(env)
    assert subjects(env) == ["a", "c"]
    assert env.store.reports.enrollments()[0]["state"] == "finished"

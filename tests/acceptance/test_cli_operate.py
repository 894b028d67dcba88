"""The operator's CLI end to end against the repo's sequences and a real SMTP sink: db upgrade,
enroll, import, run --once, run (the daemon, as a process) with SIGTERM, status, lead,
touches, send-test, and clear errors. Most commands run in-process (Typer's runner) to keep
the suite fast; the daemon and the error paths run the real entry point as a subprocess."""

from __future__ import annotations

import os
import re
import signal
import socket
import subprocess
import sys
from pathlib import Path

import pytest
from typer.testing import CliRunner

from engine.cli.main import app
from tests.servers.smtp_sink import SmtpSink

ROOT = Path(__file__).resolve().parent.parent.parent


@pytest.fixture
def project(tmp_path: Path, sink: SmtpSink) -> Path:
    """A nurture.yaml using the repo's example sequences, mailbox `sales` -> the sink."""
    (tmp_path / "nurture.yaml").write_text(f"""\
database_url: sqlite:///nurture.db
sequences_dir: {ROOT / 'sequences'}
templates_dir: {ROOT / 'templates'}
base_url: https://nurture.example.com
postal_address: Example Inc., 1 Main Street, Springfield
heartbeat_seconds: 1
http_port: 0  # the daemon serves HTTP: any free port, so parallel runs never collide
mailboxes:
  sales:
    address: sales@example.com
    from_name: Sam Rivera
    smtp: {{host: 127.0.0.1, port: {sink.port}, tls: none, timeout: 5}}
""")
    return tmp_path


@pytest.fixture
def cli(project: Path, monkeypatch: pytest.MonkeyPatch):  # noqa: ANN201 - a runner function
    """Run a command in-process in the project directory; returns its output (exit 0)."""
    monkeypatch.chdir(project)
    monkeypatch.setenv("NURTURE_SECRET_KEY", "acceptance-secret")
    monkeypatch.setenv("COLUMNS", "200")
    runner = CliRunner()

    def run(*args: str) -> str:
        result = runner.invoke(app, list(args))
        assert result.exit_code == 0, f"{result.output}\n{result.exception!r}"
        return result.output
    return run


def nurture(*args: str, cwd: Path, secret: bool = True) -> subprocess.CompletedProcess[str]:
    """The real entry point in a process of its own."""
    return subprocess.run(_cmd(*args), cwd=cwd, capture_output=True, text=True, timeout=120,
                          env=_env(secret), check=False)


def _cmd(*args: str) -> list[str]:
    return [sys.executable, "-c", "from engine.cli.main import main; main()", *args]


def _env(secret: bool = True) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("NURTURE_")}
    env.update(COLUMNS="200", PYTHONPATH=str(ROOT))
    if secret:
        env["NURTURE_SECRET_KEY"] = "acceptance-secret"
    return env


def ok(result: subprocess.CompletedProcess[str]) -> str:
    assert result.returncode == 0, result.stderr + result.stdout
    assert "Traceback" not in result.stderr
    return result.stdout


def test_enroll_then_run_once_delivers_the_first_touch(cli, sink: SmtpSink) -> None:  # noqa: ANN001
    """db upgrade, enroll, run --once: the sink has the first email; status and lead show it."""
    cli("db", "upgrade")
    out = cli("enroll", "demo-request", "--email", "ada@example.com",
              "--set", "first_name=Ada", "--set", "use_case=reporting")
    assert "enrolled ada@example.com in demo-request" in out
    assert "\nclaimed 1, sent 1\n" in cli("run", "--once")  # after the JSON logs
    [got] = sink.received
    assert got.rcpt == ("ada@example.com",) and b"Your demo request, Ada" in got.raw
    assert cli("run", "--once").endswith("\nnothing was due\n")
    assert "touches: sent 1" in cli("status")
    timeline = cli("lead", "ada@example.com")
    assert "enrolled" in timeline and "touch_sent" in timeline
    assert "no touches in doubt" in cli("touches", "--in-doubt")
    assert "demo-request" in cli("leads")


def test_a_relay_that_cannot_be_reached_is_said_by_run_once_and_status(
        cli, project: Path) -> None:  # noqa: ANN001
    """The SMTP port is closed: run --once says the touch waits to retry and where the
    relay's answer is; status gives that answer (it used to say only `retry 1`)."""
    with socket.socket() as s:  # a loopback port nobody listens on
        s.bind(("127.0.0.1", 0))
        closed = s.getsockname()[1]
    config = project / "nurture.yaml"
    config.write_text(re.sub(r"port: \d+, tls", f"port: {closed}, tls", config.read_text()))
    cli("db", "upgrade")
    cli("enroll", "demo-request", "--email", "ada@example.com", "--set", "first_name=Ada",
        "--set", "use_case=reporting")
    out = cli("run", "--once")
    assert "\nclaimed 1, waiting to retry 1\n" in out and "`touch_retry`" in out
    status = cli("status")
    assert "waiting to retry: 1" in status
    assert re.search(r"latest retry reason: connection problem: .*Connect", status), status


def test_enrolling_twice_does_not_duplicate(cli) -> None:  # noqa: ANN001
    """The second enroll says the lead is already active; one enrollment remains."""
    cli("db", "upgrade")
    cli("enroll", "demo-request", "--email", "ada@example.com")
    assert "already active" in cli("enroll", "demo-request", "--email", "ADA@example.com")


def test_import_reports_rejected_rows_by_line(cli, project: Path) -> None:  # noqa: ANN001
    """A CSV with a bad address and a duplicate: counts, and the bad line named."""
    cli("db", "upgrade")
    (project / "leads.csv").write_text(
        "Email,First Name,Company\nada@example.com,Ada,Engines\nnot-an-address,X,Y\n"
        "grace@example.com,Grace,Navy\nADA@example.com,Ada,Engines Ltd\n")
    out = cli("import", "demo-request", "leads.csv")
    assert "2 enrolled" in out and "1 duplicate rows merged" in out and "1 rejected" in out
    assert "not-an-address" in out


TRIAL = """\
name: trial
mailbox: sales
timezone: UTC
sample_lead: {first_name: Ada, plan: pro}
steps:
  - {name: welcome, after: 0m, send_window: any, email: {template: welcome.md.j2}}
  - {name: later, after: 2 days, send_window: any, email: {template: welcome.md.j2}}
"""


def _trial_project(project: Path) -> None:
    """The project's sequences become `trial` alone, whose subject needs `lead.plan`."""
    (project / "seq").mkdir()
    (project / "seq" / "trial.yaml").write_text(TRIAL)
    (project / "tpl").mkdir()
    (project / "tpl" / "welcome.md.j2").write_text(
        "---\nsubject: Your {{ lead.plan }} trial\n---\nHi.\n\n{{ unsubscribe_url }} "
        "{{ sender.postal_address }}\n")
    config = (project / "nurture.yaml").read_text()
    (project / "nurture.yaml").write_text(config.replace(
        f"sequences_dir: {ROOT / 'sequences'}", "sequences_dir: seq").replace(
        f"templates_dir: {ROOT / 'templates'}", "templates_dir: tpl"))


def test_a_touch_failed_for_a_missing_field_is_retried_with_it(cli, project: Path,  # noqa: ANN001
                                                               sink: SmtpSink) -> None:
    """A lead without `plan`: run --once fails the touch; `touches --failed` lists it;
    `touches retry ID --set plan=pro` and the next run send it; the sequence goes on."""
    _trial_project(project)
    cli("db", "upgrade")
    warned = cli("enroll", "trial", "--email", "ada@example.com")
    assert "warning: its emails will fail at send time: welcome:" in warned
    assert "'plan' is undefined" in warned
    assert "could not be made 1" in cli("run", "--once")
    listed = cli("touches", "--failed")
    assert "ada@example.com" in listed and "'plan' is undefined" in listed
    found = re.search(r"(\d+)\s*│\s*ada@example\.com", listed)
    assert found, listed
    touch_id = found.group(1)
    assert "will be made and sent again" in cli("touches", "retry", touch_id, "--set", "plan=pro")
    assert "sent 1" in cli("run", "--once")
    assert "Subject: Your pro trial" in sink.received[0].raw.decode()
    assert "active" in cli("leads") and "no failed touches" in cli("touches", "--failed")


def test_import_warns_about_rows_lacking_a_field_the_emails_use(cli, project: Path) -> None:  # noqa: ANN001, E501
    """demo-request's templates guard their custom fields: no warning. A sequence whose
    subject needs `plan`: the rows without it are counted, with the first line."""
    cli("db", "upgrade")
    (project / "leads.csv").write_text("email,plan\nada@example.com,pro\nbob@example.com,\n"
                                       "cy@example.com,\nnot-an-address,\n")
    assert "warning" not in cli("import", "demo-request", "leads.csv")
    _trial_project(project)
    out = cli("import", "trial", "leads.csv")
    assert "2 row(s) (first on line 3) lack a field their emails use" in out
    assert "welcome:" in out and "'plan' is undefined" in out


def test_the_import_progress_bar_ends_at_the_number_of_rows(cli, project: Path) -> None:  # noqa: ANN001, E501
    """Five rows and a blank line on eight lines (a quoted cell spans two), three rejected and
    one repeat: the bar ends at 5/5, not at the accepted rows nor at the line count; the
    blank line is skipped, not a row."""
    cli("db", "upgrade")
    (project / "leads.csv").write_text(
        'email,first_name\nada@example.com,Ada\nbad,B\n\ngrace@example.com,"Grace\nH"\n'
        "ADA@example.com,Ada\nnope,C\n")
    done = nurture("import", "demo-request", "leads.csv", cwd=project)
    assert done.returncode == 0, done.stderr
    assert "1 enrolled" in done.stdout and "3 rejected" in done.stdout
    assert "1 empty row(s) were skipped" in done.stdout
    assert "5/5" in done.stderr and "/8" not in done.stderr


def test_line_breaks_in_lead_data_are_refused_by_enroll_and_import(cli, project: Path) -> None:  # noqa: ANN001, E501
    """`--set first_name=$'A\\nB'` exits 1 naming the field; a CSV row whose quoted company
    holds a line break is rejected by line, the other rows are enrolled."""
    cli("db", "upgrade")
    bad = nurture("enroll", "demo-request", "--email", "ada@example.com",
                  "--set", "first_name=A\nB", cwd=project)
    assert bad.returncode == 1 and "first_name:" in bad.stderr and "line feed" in bad.stderr
    assert "Traceback" not in bad.stderr
    (project / "leads.csv").write_text('email,company\nada@example.com,"Engines\nLtd"\n'
                                       "grace@example.com,Navy\n")
    out = cli("import", "demo-request", "leads.csv")
    assert "1 enrolled" in out and "1 rejected" in out and "company:" in out


def test_bad_input_is_a_clear_error_not_a_traceback(cli, project: Path) -> None:  # noqa: ANN001
    """An invalid address, an unknown sequence, a missing schema: exit 1, one clear line."""
    missing = nurture("enroll", "demo-request", "--email", "ada@example.com", cwd=project)
    assert missing.returncode == 1 and "nurture db upgrade" in missing.stderr
    cli("db", "upgrade")
    bad = nurture("enroll", "demo-request", "--email", "ada@@example", cwd=project)
    assert bad.returncode == 1 and "not a valid email address" in bad.stderr
    unknown = nurture("enroll", "demo-requets", "--email", "ada@example.com", cwd=project)
    assert unknown.returncode == 1 and "did you mean 'demo-request'" in unknown.stderr
    for result in (missing, bad, unknown):
        assert "Traceback" not in result.stderr


def test_a_directory_without_a_project_is_said_not_run_quietly(tmp_path: Path) -> None:
    """In a directory with no nurture.yaml (a cron job in the wrong place): status says no
    config file was found with where to look, and run --once exits 1 because there are no
    sequences to send (it used to print `claimed 0` and exit 0, forever)."""
    status = nurture("status", cwd=tmp_path)
    assert status.returncode == 1 and "no config file was found" in status.stderr
    assert nurture("db", "upgrade", cwd=tmp_path).returncode == 0
    run = nurture("run", "--once", cwd=tmp_path)
    assert run.returncode == 1 and "Traceback" not in run.stderr
    assert "the sequences directory sequences does not exist" in run.stderr
    assert "no config file was found" in run.stderr


def test_run_refuses_to_start_without_a_secret_key(cli, project: Path) -> None:  # noqa: ANN001
    """No NURTURE_SECRET_KEY: the daemon says how to set it instead of failing later."""
    cli("db", "upgrade")
    result = nurture("run", "--once", cwd=project, secret=False)
    assert result.returncode == 1 and "NURTURE_SECRET_KEY" in result.stderr


def test_the_daemon_sends_a_new_enrollment_and_stops_cleanly(
    cli, project: Path, sink: SmtpSink,  # noqa: ANN001
) -> None:
    """`nurture run` picks up an enrollment made by another process, then SIGTERM: exit 0."""
    cli("db", "upgrade")
    daemon = subprocess.Popen(_cmd("run"), cwd=project, env=_env(), text=True,
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    try:
        cli("enroll", "demo-request", "--email", "ada@example.com")
        assert sink.wait_for(1, timeout=30), "the running daemon did not send the touch"
    finally:
        daemon.send_signal(signal.SIGTERM)
        _, err = daemon.communicate(timeout=30)
    assert daemon.returncode == 0, err
    assert "daemon_stopped" in err and "Traceback" not in err
    assert "workers: none running" in cli("status")


def test_send_test_sends_one_message_and_records_nothing(cli, sink: SmtpSink) -> None:  # noqa: ANN001
    """send-test renders for the sample lead, sends to the given address, stores nothing."""
    cli("db", "upgrade")
    out = cli("send-test", "demo-request", "first-touch", "--to", "me@example.com")
    assert "sent demo-request/first-touch to me@example.com" in out
    [got] = sink.wait_for(1)
    assert got.rcpt == ("me@example.com",) and b"Ada" in got.raw
    assert "no enrollments" in cli("leads")


def test_status_shows_the_backlog(cli) -> None:  # noqa: ANN001
    """Enrolled but not yet run: one touch due now."""
    cli("db", "upgrade")
    cli("enroll", "demo-request", "--email", "ada@example.com")
    assert "due now: 1" in cli("status")


def test_status_shows_enrollments_stuck_on_a_sequence_that_is_not_loaded(  # noqa: ANN001
        cli, project: Path) -> None:
    """A sequence file that fails validation and one that is gone: a line each, with how many
    enrollments wait and why; a loaded sequence gets no such line."""
    import shutil

    sequences = project / "sequences"
    shutil.copytree(ROOT / "sequences", sequences)
    config = project / "nurture.yaml"
    config.write_text(config.read_text().replace(str(ROOT / "sequences"), str(sequences)))
    cli("db", "upgrade")
    for email in ("ada@example.com", "bob@example.com"):
        cli("enroll", "demo-request", "--email", email)
    cli("enroll", "webinar-followup", "--email", "cy@example.com")
    cli("enroll", "ripen", "--email", "di@example.com")
    broken = (sequences / "demo-request.yaml").read_text().replace("steps:", "stepz:", 1)
    (sequences / "demo-request.yaml").write_text(broken)
    (sequences / "webinar-followup.yaml").unlink()
    lines = cli("status").splitlines()
    [demo] = [line for line in lines if "demo-request" in line]
    assert "sequence demo-request is not loaded: 2 enrollments waiting" in demo
    assert f"fails validation: {sequences / 'demo-request.yaml'}:" in demo
    [webinar] = [line for line in lines if "webinar-followup" in line]
    assert "sequence webinar-followup is not loaded: 1 enrollment waiting" in webinar
    assert "no valid sequence file defines it" in webinar
    assert not [line for line in lines if "ripen" in line]

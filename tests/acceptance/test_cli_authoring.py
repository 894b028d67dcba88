"""The marketer's CLI end to end: init, validate, preview and simulate."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from typer.testing import CliRunner

from engine.cli.main import app
from engine.errors import InvalidLead, NotFound
from tests.servers.smtp_sink import SmtpSink

ROOT = Path(__file__).resolve().parent.parent.parent
BROKEN = ROOT / "tests" / "fixtures" / "broken"
REPO = ["--sequences", str(ROOT / "sequences"), "--templates", str(ROOT / "templates")]


@pytest.fixture
def cli(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> CliRunner:
    """A runner in an empty directory (no nurture.yaml) with a wide terminal."""
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("COLUMNS", "250")
    return CliRunner()


def nurture(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    """The real entry point, as a marketer runs it (errors printed by cli/main.py)."""
    code = "from engine.cli.main import main; main()"
    return subprocess.run([sys.executable, "-c", code, *args], cwd=cwd, capture_output=True,
                          text=True, timeout=60, check=False)


def test_init_creates_a_project_that_validates(cli: CliRunner, tmp_path: Path) -> None:
    """`nurture init DIR` then `nurture validate` in it: exit 0, one sequence OK."""
    assert cli.invoke(app, ["init", "proj"]).exit_code == 0
    result = cli.invoke(app, ["validate", "--config", str(tmp_path / "proj" / "nurture.yaml")])
    assert result.exit_code == 0, result.output
    assert "1 sequence OK" in result.output


def test_the_starter_project_sends_as_its_comments_say(
        cli: CliRunner, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The commands in the starter nurture.yaml (SMTP sink on the port it names, no IMAP
    server) deliver the welcome email; it also configures a rep, so a reply has an owner."""
    assert cli.invoke(app, ["init", "proj"]).exit_code == 0
    config = tmp_path / "proj" / "nurture.yaml"
    text = config.read_text()
    assert "python -m aiosmtpd -n -l 127.0.0.1:1025" in text and "  - name: sam" in text
    with SmtpSink() as sink:
        config.write_text(text.replace("port: 1025", f"port: {sink.port}"))
        monkeypatch.chdir(tmp_path / "proj")
        monkeypatch.setenv("NURTURE_SECRET_KEY", "starter-secret")
        for command in (["db", "upgrade"], ["enroll", "welcome", "--email", "ada@example.com",
                                            "--set", "first_name=Ada"], ["run", "--once"]):
            result = cli.invoke(app, command)
            assert result.exit_code == 0, result.output
        assert [m.rcpt for m in sink.received] == [("ada@example.com",)]
        assert b"Subject: Welcome, Ada" in sink.received[0].raw


def test_init_refuses_to_overwrite(tmp_path: Path) -> None:
    """A second init in the same place stops with a clear error and exit 1."""
    assert nurture("init", "proj", cwd=tmp_path).returncode == 0
    again = nurture("init", "proj", cwd=tmp_path)
    assert again.returncode == 1
    assert "already exist" in again.stderr and "--force" in again.stderr
    assert "Traceback" not in again.stderr


def test_validate_prints_every_problem_as_file_line_message(cli: CliRunner) -> None:
    """Broken files: one `file:line: message` each, a summary, exit 1."""
    files = [str(BROKEN / "bad-cron.yaml"), str(BROKEN / "unknown-key-typo.yaml")]
    result = cli.invoke(app, ["validate", *files, "--templates", str(BROKEN / "templates")])
    assert result.exit_code == 1
    assert f"{BROKEN}/unknown-key-typo.yaml:7: unknown key 'tempalte'; did you mean 'template'?" \
        in result.output
    assert f"{BROKEN}/bad-cron.yaml:5: '0 10 * * someday' is not a cron expression" in result.output
    assert "2 problems in 2 of 2 files; 0 sequences OK" in result.output


def test_validate_checks_owners_against_the_configs_reps(cli: CliRunner,
                                                         tmp_path: Path) -> None:
    """With a nurture.yaml, an owner who is not one of its reps is a problem; with no reps
    at all, validate also warns that handoffs will wait unassigned."""
    config = tmp_path / "nurture.yaml"
    config.write_text("mailboxes:\n  sales: {address: sales@example.com}\n")
    result = cli.invoke(app, ["validate", str(BROKEN / "unknown-owner.yaml"), "--templates",
                              str(BROKEN / "templates"), "--config", str(config)])
    assert result.exit_code == 1
    assert "unknown-owner.yaml:3: owner 'sma' is not a configured rep; the owner is a rep's " \
           "name, 'lead' (the lead's owner) or 'round-robin' (configured reps: none; " \
           "nurture.yaml, reps:)" in result.output
    valid = cli.invoke(app, ["validate", str(BROKEN / "_valid.yaml"), "--templates",
                             str(BROKEN / "templates"), "--config", str(config)])
    assert valid.exit_code == 0, valid.output
    assert "no reps configured; a reply is handed off unassigned" in valid.output


def test_validate_the_examples_passes(cli: CliRunner) -> None:
    """The repository's example sequences validate: exit 0."""
    result = cli.invoke(app, ["validate", str(ROOT / "sequences"), REPO[2], REPO[3]])
    assert result.exit_code == 0, result.output
    assert "3 sequences OK" in result.output


def test_preview_shows_subject_and_text_and_writes_html(cli: CliRunner, tmp_path: Path) -> None:
    """preview STEP --set: the rendered subject and body; --html writes a page to open."""
    page = tmp_path / "out.html"
    result = cli.invoke(app, ["preview", "demo-request", "first-touch", "--set",
                              "first_name=Grace", "--html", str(page), *REPO])
    assert result.exit_code == 0, result.output
    assert "Subject: Your demo request, Grace" in result.output
    assert "Hi Grace," in result.output
    html = page.read_text()
    assert "Your demo request, Grace" in html and "<iframe sandbox srcdoc=" in html


def test_preview_without_step_shows_every_step_once(cli: CliRunner) -> None:
    """Without STEP, each step of the sequence appears once, tasks included."""
    result = cli.invoke(app, ["preview", "ripen", *REPO])
    assert result.exit_code == 0, result.output
    assert result.output.count("monthly-note · email") == 1


def test_preview_reads_a_lead_file(cli: CliRunner, tmp_path: Path) -> None:
    """--lead FILE.json: the email is written for that lead and its stage."""
    lead = tmp_path / "lead.json"
    lead.write_text(json.dumps({"email": "grace@example.com", "first_name": "Grace",
                                "company": "Hopper & Co", "stage": "decision"}))
    result = cli.invoke(app, ["preview", "demo-request", "proof", "--lead", str(lead), *REPO])
    assert result.exit_code == 0, result.output
    assert "Subject: The business case for Hopper & Co" in result.output


def test_preview_with_a_broken_lead_file_names_its_line(cli: CliRunner, tmp_path: Path) -> None:
    """An invalid JSON lead file is an InvalidLead error naming file and line."""
    lead = tmp_path / "lead.json"
    lead.write_text('{\n  "first_name": "Grace",\n}\n')
    result = cli.invoke(app, ["preview", "demo-request", "--lead", str(lead), *REPO])
    assert isinstance(result.exception, InvalidLead)
    assert f"{lead}:3: not valid JSON" in str(result.exception)


def test_preview_of_an_unknown_step_lists_the_steps(cli: CliRunner) -> None:
    """A misspelt step name is an error that lists the real ones."""
    result = cli.invoke(app, ["preview", "ripen", "monthly", *REPO])
    assert isinstance(result.exception, NotFound)
    assert "its steps are: monthly-note" in str(result.exception)


def test_simulate_prints_the_dated_timeline(cli: CliRunner) -> None:
    """simulate --start: every touch with local time, UTC, step, channel and subject."""
    result = cli.invoke(app, ["simulate", "demo-request", "--start", "2025-03-03 09:00",
                              "--set", "timezone=America/New_York", "--limit", "7", *REPO])
    assert result.exit_code == 0, result.output
    assert "Mon 2025-03-03 09:00 EST" in result.output
    assert "2025-03-03 14:00" in result.output  # the same moment in UTC
    assert "Should I close your demo request?" in result.output
    assert "7 touches (6 emails, 1 task)" in result.output


def test_simulate_a_reply_stops_the_timeline(cli: CliRunner) -> None:
    """--reply-at: the touches after the reply are gone and a stopped row says why."""
    result = cli.invoke(app, ["simulate", "demo-request", "--start", "2025-03-03 09:00",
                              "--reply-at", "2025-03-06 10:00", *REPO])
    assert result.exit_code == 0, result.output
    assert "stopped: reply on Thu 2025-03-06 10:00" in result.output
    assert "3 touches (2 emails, 1 task)" in result.output


def test_simulate_piped_keeps_every_column(tmp_path: Path) -> None:
    """Piped to a file or a CI log (no terminal, no COLUMNS), the table is not cut at 80
    columns: the Status column with the reply's stop is there (it used to vanish)."""
    env = {k: v for k, v in os.environ.items() if k != "COLUMNS"}
    code = "from engine.cli.main import main; main()"
    result = subprocess.run(
        [sys.executable, "-c", code, "simulate", "demo-request", "--start", "2025-03-03 09:00",
         "--reply-at", "2025-03-06 10:00", *REPO], cwd=tmp_path, capture_output=True,
        text=True, timeout=60, check=False, env=env)
    assert result.returncode == 0, result.stderr
    assert "Status" in result.stdout and "stopped: reply on Thu 2025-03-06" in result.stdout


def test_simulate_a_stage_change_switches_the_template(cli: CliRunner) -> None:
    """--stage decision@...: the proof email becomes the decision-stage variant."""
    base = ["simulate", "demo-request", "--start", "2025-03-03 09:00", "--limit", "7", *REPO]
    before = cli.invoke(app, base)
    after = cli.invoke(app, [*base, "--stage", "decision@2025-03-04 12:00"])
    assert "How one team got two days a month back" in before.output
    assert "The business case for Analytical Engines Ltd" in after.output


def test_simulate_a_given_lead_gets_what_the_daemon_gives_it(
        cli: CliRunner, tmp_path: Path) -> None:
    """--set without a time zone: the config's default_timezone (not the sample's London),
    and none of the sample's fields (the call note has no name or company)."""
    config = tmp_path / "nurture.yaml"
    config.write_text(f"default_timezone: America/New_York\nsequences_dir: {ROOT / 'sequences'}"
                      f"\ntemplates_dir: {ROOT / 'templates'}\n")
    result = cli.invoke(app, ["simulate", "demo-request", "--set", "email=eve@example.com",
                              "--start", "2026-03-06 16:30", "--limit", "3",
                              "--config", str(config)])
    assert result.exit_code == 0, result.output
    assert "Fri 2026-03-06 16:30 EST" in result.output and "2026-03-06 21:30" in result.output
    assert "Analytical" not in result.output and "Ada" not in result.output
    assert "GMT" not in result.output


def test_a_threaded_follow_up_shows_the_subject_it_is_sent_with(cli: CliRunner) -> None:
    """`thread: previous`: preview and simulate show "Re: <the previous email's subject>"."""
    preview = cli.invoke(app, ["preview", "demo-request", "follow-up", "--set",
                               "first_name=Eve", *REPO])
    assert "Subject: Re: Your demo request, Eve" in preview.output
    simulated = cli.invoke(app, ["simulate", "demo-request", "--limit", "2", *REPO])
    assert "Re: Your demo request, Ada" in simulated.output


def test_simulate_with_a_bad_date_is_a_usage_error(cli: CliRunner) -> None:
    """An unreadable --start exits 2 with an example of what to write."""
    result = cli.invoke(app, ["simulate", "ripen", "--start", "tomorrow", *REPO])
    assert result.exit_code == 2
    assert "is not a date and time" in result.output


def test_simulate_with_a_reply_before_the_start_is_a_usage_error(cli: CliRunner) -> None:
    """--reply-at before --start: exit 2 saying so (it printed 'no touches')."""
    result = cli.invoke(app, ["simulate", "demo-request", "--start", "2025-03-03 09:00",
                              "--reply-at", "2025-03-01 09:00", *REPO])
    assert result.exit_code == 2
    assert "is before the enrollment" in result.output


def test_preview_refuses_an_address_enroll_would_refuse(tmp_path: Path) -> None:
    """--set email=notanemail: exit 1 with enroll's reason (it rendered `To: notanemail`)."""
    result = nurture("preview", "demo-request", "--set", "email=notanemail", *REPO, cwd=tmp_path)
    assert result.returncode == 1 and "Traceback" not in result.stderr
    assert "'notanemail' is not a valid email address" in result.stderr


def test_unknown_sequence_is_a_clear_error(tmp_path: Path) -> None:
    """The real entry point prints `error: ...` with a suggestion, exit 1, no traceback."""
    result = nurture("preview", "demo-requst", *REPO, cwd=tmp_path)
    assert result.returncode == 1
    assert "no sequence named 'demo-requst'; did you mean 'demo-request'?" in result.stderr
    assert "Traceback" not in result.stderr


@pytest.mark.parametrize("command", ["init", "validate", "preview", "simulate"])
def test_every_command_has_help(cli: CliRunner, command: str) -> None:
    """--help works for each authoring command."""
    result = cli.invoke(app, [command, "--help"])
    assert result.exit_code == 0 and "Usage" in result.output


def test_preview_of_a_lead_whose_email_cannot_be_made_exits_1(cli: CliRunner,
                                                               tmp_path: Path) -> None:
    """The lead lacks a field the template reads: the error is shown in the step's box and
    the exit code is 1, as validate's (it was 0, so a script could not tell)."""
    seqs, templates = tmp_path / "seqs", tmp_path / "tpl"
    seqs.mkdir()
    templates.mkdir()
    (seqs / "p.yaml").write_text("name: p\nmailbox: sales\nsample_lead: {plan: pro}\nsteps:\n"
                                 "  - {name: hello, after: 0m, email: {template: p.md.j2}}\n")
    (templates / "p.md.j2").write_text("---\nsubject: Your {{ lead.fields.plan }} trial\n---\n"
                                       "Hi.\n\n{{ sender.postal_address }} {{ unsubscribe_url }}\n")
    args = ["preview", "p", "--sequences", str(seqs), "--templates", str(templates)]
    assert cli.invoke(app, args).exit_code == 0  # the sample lead has `plan`
    result = cli.invoke(app, [*args, "--set", "email=g@example.com", "--set", "first_name=G"])
    assert result.exit_code == 1
    assert "'plan' is undefined" in result.output
    assert "1 of 1 touch(es) cannot be made for this lead" in result.output

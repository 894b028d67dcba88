"""Bad input on the command line gives one clear message and an exit code, never a traceback:
CSV files that are not UTF-8 or have odd headers, impossible dates and schedules, odd leads,
environment variables of the wrong shape, a database that does not exist yet, is not
reachable or is not a database at all."""

from __future__ import annotations

import os
import subprocess
import sys
from datetime import UTC, datetime
from pathlib import Path

import pytest

from engine.app import App
from engine.authoring.starter import write_project
from engine.cli.main import main
from engine.settings import Settings

ROOT = Path(__file__).resolve().parent.parent.parent
OVERFLOW = """\
name: far
mailbox: sales
steps:
  - name: hello
    after: 99999999 days
    email: {template: welcome/hello.md.j2}
"""


@pytest.fixture
def project(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """`nurture init`'s project (sequence `welcome`, mailbox `sales`), as the working dir."""
    write_project(tmp_path)
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("COLUMNS", "250")
    return tmp_path


def nurture(*args: str, capsys: pytest.CaptureFixture[str]) -> tuple[int, str, str]:
    """The entry point in this process (errors printed by cli/main.py): code, out, err.
    An exception other than a clean exit fails the test, as a traceback would."""
    sys.argv = ["nurture", *args]
    with pytest.raises(SystemExit) as done:
        main()
    out, err = capsys.readouterr()
    code = done.value.code
    return (code if isinstance(code, int) else 0 if code is None else 1), out, err


def nurture_process(*args: str, cwd: Path, **env: str) -> subprocess.CompletedProcess[str]:
    """The real entry point in a process of its own, with these NURTURE_* variables."""
    clean = {k: v for k, v in os.environ.items() if not k.startswith("NURTURE_")}
    clean.update(COLUMNS="250", PYTHONPATH=str(ROOT), **env)
    return subprocess.run([sys.executable, "-c", "from engine.cli.main import main; main()",
                           *args], cwd=cwd, env=clean, capture_output=True, text=True,
                          timeout=60, check=False)


def upgraded(capsys: pytest.CaptureFixture[str]) -> None:
    assert nurture("db", "upgrade", capsys=capsys)[0] == 0


# --- CSV import ------------------------------------------------------------------------------

def test_a_latin1_csv_names_the_line_and_byte_and_asks_for_utf8(project: Path) -> None:
    """An Excel Latin-1 export: exit 1, file, line, byte and "save it as UTF-8"."""
    assert nurture_process("db", "upgrade", cwd=project).returncode == 0
    (project / "leads.csv").write_bytes(b"email,first_name\nada@example.com,Ren\xe9e\n")
    result = nurture_process("import", "welcome", "leads.csv", cwd=project)
    assert result.returncode == 1 and "Traceback" not in result.stderr
    assert "leads.csv: line 2, byte 36: the file is not UTF-8 text (byte 0xe9); save it as " \
           "UTF-8" in result.stderr


def test_a_utf16_csv_with_a_bom_is_imported(project: Path,
                                            capsys: pytest.CaptureFixture[str]) -> None:
    """Excel's "Unicode text" (UTF-16 with a BOM) is read as such: names stay intact."""
    upgraded(capsys)
    (project / "leads.csv").write_text("email,first_name\nada@example.com,Renée\n",
                                       encoding="utf-16")
    code, out, _ = nurture("import", "welcome", "leads.csv", capsys=capsys)
    assert code == 0 and "1 enrolled" in out
    assert "Renée" in nurture("lead", "ada@example.com", capsys=capsys)[1]


def test_a_csv_with_two_email_columns_is_refused(project: Path,
                                                 capsys: pytest.CaptureFixture[str]) -> None:
    """Two columns named email (any case): exit 1 naming both; nobody is enrolled."""
    upgraded(capsys)
    (project / "leads.csv").write_text("Email,first_name,email\na@example.com,A,b@example.com\n")
    code, _, err = nurture("import", "welcome", "leads.csv", capsys=capsys)
    assert code == 1
    assert "leads.csv: line 1: columns 1 and 3 are both named 'email'" in err


def test_unnamed_csv_cells_are_ignored_with_a_warning(project: Path,
                                                      capsys: pytest.CaptureFixture[str]) -> None:
    """A header cell without a name and a row longer than the header: warned, not a field."""
    upgraded(capsys)
    (project / "leads.csv").write_text("email,first_name,\na@example.com,Ada,x\n"
                                       "b@example.com,Bo,,y\n")
    code, out, _ = nurture("import", "welcome", "leads.csv", capsys=capsys)
    assert code == 0 and "2 enrolled" in out
    assert "warning: leads.csv: column 3 has no name in the header (line 1); its cells were " \
           "ignored" in out
    assert "1 row(s) have more cells than the header (first on line 3)" in out
    assert "fields:" not in nurture("lead", "a@example.com", capsys=capsys)[1]



def test_empty_csv_rows_are_skipped_and_rejections_come_in_file_order(
        project: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """A spreadsheet's trailing `,,` rows are skipped with a warning (they were rejected as
    'no email address'); a suppressed address on line 2 is listed before a bad one on line 3
    (the store's refusals came after the reader's)."""
    upgraded(capsys)
    app = App(Settings.load(project / "nurture.yaml"))
    app.store.leads.suppress("gone@example.com", "unsubscribe", "test", datetime.now(UTC))
    app.close()
    (project / "leads.csv").write_text("email,first_name\ngone@example.com,G\n"
                                       "not-an-email,N\nada@example.com,Ada\n,,\n , \n")
    code, out, _ = nurture("import", "welcome", "leads.csv", capsys=capsys)
    assert code == 0 and "1 enrolled" in out and "2 rejected" in out
    assert "warning: leads.csv: 2 empty row(s) were skipped" in out
    assert out.index("gone@example.com") < out.index("not-an-email")


def test_an_empty_csv_says_so(project: Path, capsys: pytest.CaptureFixture[str]) -> None:
    upgraded(capsys)
    (project / "leads.csv").write_text("")
    code, _, err = nurture("import", "welcome", "leads.csv", capsys=capsys)
    assert (code, err) == (1, "error: leads.csv: the file is empty or its first line is; the "
                              "first line must name the columns, one of them 'email'\n")

# --- validate, and the commands that use a sequence --------------------------------------------

def test_an_impossible_holiday_is_a_file_line_problem_and_other_files_are_checked(
        project: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """`holidays: [2026-13-45]`: its line is reported, and so is another file's problem."""
    welcome = project / "sequences" / "welcome.yaml"
    welcome.write_text(welcome.read_text().replace(
        'hours: "09:00-17:00"}', 'hours: "09:00-17:00", holidays: [2026-13-45]}'))
    (project / "sequences" / "far.yaml").write_text(OVERFLOW)
    code, out, err = nurture("validate", capsys=capsys)
    assert code == 1 and not err
    assert "sequences/welcome.yaml:8: holidays item 1: '2026-13-45' is not a date" in out
    assert "sequences/far.yaml:5: step 'hello' is too far in the future" in out


@pytest.mark.parametrize("command", [
    ["simulate", "far"], ["preview", "far"], ["enroll", "far", "--email", "a@example.com"],
    ["send-test", "far", "hello", "--to", "a@example.com"]])
def test_a_step_never_due_is_a_clear_error_for_every_command(
        project: Path, capsys: pytest.CaptureFixture[str], command: list[str]) -> None:
    """`after: 99999999 days`: simulate, preview, enroll and send-test name the file:line."""
    upgraded(capsys)
    (project / "sequences" / "far.yaml").write_text(OVERFLOW)
    code, _, err = nurture(*command, capsys=capsys)
    assert code == 1
    assert "error: sequences/far.yaml:5: step 'hello' is too far in the future" in err


def test_simulate_from_the_end_of_the_calendar_is_a_clear_error(
        project: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """`--start 9999-12-31`: exit 1, the timeline runs past the year 9999."""
    code, _, err = nurture("simulate", "welcome", "--start", "9999-12-31", capsys=capsys)
    assert code == 1 and "the timeline runs past the year 9999" in err


def test_a_lead_file_with_a_number_for_a_time_zone_is_a_clear_error(
        project: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """`"timezone": 7` in --lead: exit 1 saying what a time zone looks like."""
    (project / "lead.json").write_text('{"email": "ada@example.com", "timezone": 7}')
    for command in ("preview", "simulate"):
        code, _, err = nurture(command, "welcome", "--lead", "lead.json", capsys=capsys)
        assert code == 1
        assert "timezone: a time zone is a name such as 'Europe/Berlin', not 7" in err


def test_simulate_refuses_an_unknown_zone_as_enroll_does(
        project: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """`--set timezone=Nowhere/X`: simulate and enroll give the same error."""
    upgraded(capsys)
    _, _, simulated = nurture("simulate", "welcome", "--set", "timezone=Nowhere/X",
                              capsys=capsys)
    _, _, enrolled = nurture("enroll", "welcome", "--email", "a@example.com", "--set",
                             "timezone=Nowhere/X", capsys=capsys)
    assert "error: timezone: unknown time zone 'Nowhere/X'" in simulated
    assert simulated == enrolled


def test_preview_html_into_a_new_folder_creates_it(
        project: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """`--html out/pages/welcome.html`: the folders are made and the page written."""
    code, out, _ = nurture("preview", "welcome", "--html", "out/pages/welcome.html",
                           capsys=capsys)
    assert code == 0 and "wrote out/pages/welcome.html" in out
    assert "Welcome, Ada" in (project / "out" / "pages" / "welcome.html").read_text()


# --- settings from the environment -------------------------------------------------------------

@pytest.mark.parametrize(("name", "shape"), [("MAILBOXES", "a JSON object of mailboxes"),
                                             ("REPS", "a JSON list of reps")])
def test_an_env_variable_that_is_not_json_names_itself_and_its_shape(
        project: Path, name: str, shape: str) -> None:
    """NURTURE_MAILBOXES=notjson: exit 1, the variable, the shape, the file as the better way."""
    result = nurture_process("status", cwd=project, **{f"NURTURE_{name}": "notjson"})
    assert result.returncode == 1 and "Traceback" not in result.stderr
    assert f"error: NURTURE_{name}: the environment variable is not valid JSON; it must be " \
           f"{shape}" in result.stderr
    assert f"nurture.yaml, {name.lower()}:" in result.stderr


def test_a_bad_env_value_is_blamed_on_the_variable_not_the_file(
        project: Path, capsys: pytest.CaptureFixture[str],
        monkeypatch: pytest.MonkeyPatch) -> None:
    """NURTURE_HTTP_PORT=abc: the message names the variable, not nurture.yaml."""
    monkeypatch.setenv("NURTURE_HTTP_PORT", "abc")
    code, _, err = nurture("status", capsys=capsys)
    assert code == 1
    assert "error: NURTURE_HTTP_PORT (environment): http_port: " in err
    assert "nurture.yaml" not in err


@pytest.mark.parametrize("command", [["enroll", "welcome", "--email", "ada@example.com"],
                                     ["preview", "welcome"], ["simulate", "welcome"]])
def test_a_set_without_a_value_is_the_same_error_everywhere(
        project: Path, capsys: pytest.CaptureFixture[str], command: list[str]) -> None:
    """`--set stage` (no `=`): exit 1 and one message, whichever command takes it."""
    upgraded(capsys)
    code, _, err = nurture(*command, "--set", "stage", capsys=capsys)
    assert (code, err) == (1, "error: --set needs key=value (e.g. --set first_name=Ada), not "
                              "'stage'\n")


def test_a_mailbox_with_a_bad_address_or_port_is_refused_with_every_reason(
        project: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """address: notanemail, port: 99999, a rep's email with no @: validate exits 1 and names
    each setting with why, one line each."""
    config = project / "nurture.yaml"
    text = config.read_text().replace("address: sales@example.com", "address: notanemail")
    text = text.replace("port: 1025", "port: 99999")
    text = text.replace("email: sam@example.com", "email: sam.example.com")
    config.write_text(text)
    line = {w: text[:text.index(w)].count("\n") + 1 for w in ("notanemail", "99999", "sam.ex")}
    code, _, err = nurture("validate", capsys=capsys)
    assert code == 1 and "Traceback" not in err
    assert err.splitlines() == [
        f"error: nurture.yaml:{line['notanemail']}: mailboxes.sales.address: 'notanemail' is "
        "not an email address; write it like sales@example.com (ASCII only: an "
        "internationalised domain in its xn-- form)",
        f"nurture.yaml:{line['99999']}: mailboxes.sales.smtp.port: 99999 is not a port; a "
        "port is a number from 1 to 65535",
        f"nurture.yaml:{line['sam.ex']}: reps.0.email: 'sam.example.com' is not an email "
        "address; write it like sales@example.com (ASCII only: an internationalised domain in "
        "its xn-- form)",
    ]



@pytest.mark.parametrize(("edit", "said"), [
    (("\nbase_url:", "\nbase_ur:"), "base_ur: unknown setting; did you mean 'base_url'?"),
    (("port: 1025", "port: smtp"), "mailboxes.sales.smtp.port: must be a whole number, e.g. 587"),
    (("from_name: Sam", "from_name: [Sam"), "a '[' list opened here is not closed; add the ']'"),
])
def test_a_config_mistake_names_its_line_and_the_fix(
        project: Path, capsys: pytest.CaptureFixture[str], edit: tuple[str, str],
        said: str) -> None:
    """A misspelled setting (did you mean), a word where a number goes, an unclosed list:
    `nurture.yaml:LINE: ...` (the file's errors had no line; the YAML one was PyYAML's)."""
    config = project / "nurture.yaml"
    text = config.read_text()
    line = text[:text.index(edit[0]) + edit[0].startswith("\n")].count("\n") + 1
    config.write_text(text.replace(edit[0], edit[1], 1))
    code, _, err = nurture("status", capsys=capsys)
    assert (code, err) == (1, f"error: nurture.yaml:{line}: {said}\n")

# --- reports -------------------------------------------------------------------------------------

def test_leads_with_an_unknown_state_lists_the_states(
        project: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """`leads --state bogus`: a usage error (exit 2) listing every state."""
    upgraded(capsys)
    code, _, err = nurture("leads", "--state", "bogus", capsys=capsys)
    assert code == 2
    assert "'bogus' is not one of 'active', 'paused', 'finished', 'stopped', 'handed_off'" in err


@pytest.mark.parametrize("command", [["status"], ["leads"], ["lead", "a@example.com"],
                                     ["stats"], ["handoffs"]])
def test_read_only_commands_do_not_create_a_missing_database(
        project: Path, capsys: pytest.CaptureFixture[str],
        monkeypatch: pytest.MonkeyPatch, command: list[str]) -> None:
    """A sqlite URL into a folder that does not exist: a clear error; nothing is created."""
    missing = project / "no-such-dir" / "nurture.db"
    monkeypatch.setenv("NURTURE_DATABASE_URL", f"sqlite:///{missing}")
    code, _, err = nurture(*command, capsys=capsys)
    assert code == 1
    assert f"error: no database at {missing}; run `nurture db upgrade`" in err
    assert not missing.parent.exists()


DATABASE_COMMANDS = [["db", "upgrade"], ["enroll", "welcome", "--email", "a@example.com"],
                     ["import", "welcome", "leads.csv"], ["run", "--once"], ["status"],
                     ["leads"], ["lead", "a@example.com"], ["tasks"], ["tasks", "done", "1"],
                     ["touches"], ["touches", "resend", "1"], ["handoffs"],
                     ["handoff", "show", "1"], ["stats"]]


@pytest.mark.parametrize("command", DATABASE_COMMANDS, ids=" ".join)
def test_an_unreachable_postgresql_is_one_line_for_every_command(
        project: Path, capsys: pytest.CaptureFixture[str],
        monkeypatch: pytest.MonkeyPatch, command: list[str]) -> None:
    """Nothing listens on port 1: one `error: cannot open the database` line, password
    masked, exit 1, for `db upgrade` (the operator's first command) as for the rest."""
    (project / "leads.csv").write_text("email\na@example.com\n")
    monkeypatch.setenv("NURTURE_DATABASE_URL", "postgresql://ops:hunter2@127.0.0.1:1/nurture")
    code, out, err = nurture(*command, capsys=capsys)
    assert code == 1
    assert err.startswith("error: cannot open the database "
                          "postgresql+psycopg://ops:***@127.0.0.1:1/nurture: ")
    assert err.count("\n") == 1 and "hunter2" not in out + err


@pytest.mark.parametrize("command", DATABASE_COMMANDS, ids=" ".join)
def test_a_file_that_is_not_a_database_is_one_line_for_every_command(
        project: Path, capsys: pytest.CaptureFixture[str],
        monkeypatch: pytest.MonkeyPatch, command: list[str]) -> None:
    """database_url points at a file of garbage: one line naming it; the file is untouched."""
    (project / "leads.csv").write_text("email\na@example.com\n")
    garbage = b"not a database\n" * 500
    (project / "junk.db").write_bytes(garbage)
    monkeypatch.setenv("NURTURE_DATABASE_URL", "sqlite:///junk.db")
    code, _, err = nurture(*command, capsys=capsys)
    assert code == 1
    assert err == "error: cannot open the database sqlite:///junk.db: file is not a database\n"
    assert (project / "junk.db").read_bytes() == garbage


def test_db_upgrade_of_an_unreachable_database_is_one_line_in_a_real_process(
        project: Path) -> None:
    """The real entry point, as the operator runs it: no traceback on stderr."""
    done = nurture_process("db", "upgrade", cwd=project,
                           NURTURE_DATABASE_URL="postgresql://ops:hunter2@127.0.0.1:1/x")
    assert done.returncode == 1
    assert done.stderr.startswith("error: cannot open the database ")
    assert "Traceback" not in done.stderr and done.stderr.count("\n") == 1

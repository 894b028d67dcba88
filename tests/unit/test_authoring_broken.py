"""Every broken sequence file in tests/fixtures/broken gives exactly its `file:line: message`."""

from __future__ import annotations

from pathlib import Path

import pytest

from engine.authoring.validate import validate_paths

BROKEN = Path(__file__).resolve().parent.parent / "fixtures" / "broken"
TOGETHER_WITH = {"duplicate-name.yaml": ["_valid.yaml"]}  # cross-file checks need the other file

# (file, the exact problems it gives); the comment says what the file gets wrong.
CASES = [
    pytest.param(
        'after-and-cron.yaml',  # a step is timed by 'after' or by 'cron', never both
        [
            "after-and-cron.yaml:4: step 'hello' has both 'after' and 'cron'; keep "
            'one',
        ],
        id='after-and-cron',
    ),
    pytest.param(
        'bad-cron.yaml',  # a cron expression croniter cannot parse
        [
            "bad-cron.yaml:5: '0 10 * * someday' is not a cron expression: its "
            "day-of-week field 'someday' is not valid (write 0-6 or sun-sat); e.g. "
            "'0 10 * * tue#1' is 10:00 on the first Tuesday of each month",
        ],
        id='bad-cron',
    ),
    pytest.param(
        'bad-days.yaml',  # send_window days must name weekdays
        [
            "bad-days.yaml:4: 'weekdays' is not a day or a range of days; write e.g. "
            "'mon-fri' or 'mon,wed,fri'",
        ],
        id='bad-days',
    ),
    pytest.param(
        'bad-duration.yaml',  # a duration with an unknown unit, on the second step
        [
            "bad-duration.yaml:8: '2 fortnights' is not a duration; write a number "
            "and a unit, e.g. '0m', '4h', '3 days', '2 business days' or '1 week'",
        ],
        id='bad-duration',
    ),
    pytest.param(
        'bad-hours.yaml',  # send_window hours need HH:MM-HH:MM
        [
            "bad-hours.yaml:3: '9-5' is not a range of hours; write e.g. "
            "'08:30-17:30'",
        ],
        id='bad-hours',
    ),
    pytest.param(
        'bad-send-window-word.yaml',  # send_window fits none of its three shapes
        [
            "bad-send-window-word.yaml:6: send_window must be 'any', 'inherit', or a "
            'mapping like {days: mon-fri, hours: "08:30-17:30"}; found \'sometimes\'',
        ],
        id='bad-send-window-word',
    ),
    pytest.param(
        'bad-step-name.yaml',  # step names are slugs
        [
            "bad-step-name.yaml:4: step name 'First Touch' must be lower-case "
            "letters, digits, '-' or '_'",
        ],
        id='bad-step-name',
    ),
    pytest.param(
        'bad-task-kind.yaml',  # a task kind that does not exist
        [
            "bad-task-kind.yaml:6: kind must be 'call', 'voicemail', 'linkedin', "
            "'handwritten_note' or 'other'; found 'sms'",
        ],
        id='bad-task-kind',
    ),
    pytest.param(
        'bad-thread.yaml',  # thread is 'new' or 'previous'
        [
            "bad-thread.yaml:9: thread must be 'new' or 'previous'; found 'previus'",
        ],
        id='bad-thread',
    ),
    pytest.param(
        'custom-field-not-in-sample.yaml',  # a custom field the sample lead does not have
        [
            "templates/custom-field.md.j2:2: 'industry' is undefined (for a lead's "
            "custom field, add it to the sequence's sample_lead, or write | "
            'default("...")) (used by step \'hello\' at '
            'custom-field-not-in-sample.yaml:7)',
        ],
        id='custom-field-not-in-sample',
    ),
    pytest.param(
        'duplicate-key.yaml',  # a key given twice is an error, not last-one-wins
        [
            "duplicate-key.yaml:6: duplicate key 'after' (already on line 5); keep "
            'one of them',
        ],
        id='duplicate-key',
    ),
    pytest.param(
        'duplicate-name.yaml',  # two files with one sequence name: the second is reported
        [
            "duplicate-name.yaml:2: the sequence name 'valid' is already used by "
            '_valid.yaml; names must be unique',
        ],
        id='duplicate-name',
    ),
    pytest.param(
        'duplicate-step-name.yaml',  # step names are unique; the second one is blamed
        [
            "duplicate-step-name.yaml:7: two steps are named 'hello'; step names must"
            ' be unique',
        ],
        id='duplicate-step-name',
    ),
    pytest.param(
        'email-and-task.yaml',  # a step is an email or a task, not both
        [
            "email-and-task.yaml:4: step 'hello' needs exactly one of 'email' or "
            "'task'",
        ],
        id='email-and-task',
    ),
    pytest.param(
        'empty-file.yaml',  # an empty file says so
        [
            'empty-file.yaml:1: the file is empty; a sequence file holds keys like '
            'name, mailbox and steps',
        ],
        id='empty-file',
    ),
    pytest.param(
        'empty-steps.yaml',  # a sequence without steps
        [
            "empty-steps.yaml:3: 'steps' is empty; a sequence needs at least one step",
        ],
        id='empty-steps',
    ),
    pytest.param(
        'front-matter-typo.yaml',  # a misspelt front-matter key in the template
        [
            "templates/front-matter-typo.md.j2:2: unknown front-matter key 'subjct'; "
            "did you mean 'subject'?",
        ],
        id='front-matter-typo',
    ),
    pytest.param(
        'many-problems.yaml',  # every problem of a file at once, in line order
        [
            "many-problems.yaml:3: unknown time zone 'Mars/Olympus'; use an IANA name"
            " such as 'Europe/Berlin' or 'America/New_York'",
            "many-problems.yaml:6: 'soon' is not a duration; write a number and a "
            "unit, e.g. '0m', '4h', '3 days', '2 business days' or '1 week'",
            "many-problems.yaml:10: unknown key 'nte'; did you mean 'note'?",
        ],
        id='many-problems',
    ),
    pytest.param(
        'missing-name.yaml',  # the sequence name is required
        [
            "missing-name.yaml:2: missing 'name': every sequence needs one, e.g. "
            "'name: demo-request'",
        ],
        id='missing-name',
    ),
    pytest.param(
        'missing-step-name.yaml',  # a step without a name, pointed at by its list item
        [
            "missing-step-name.yaml:7: step 2 is missing 'name'",
        ],
        id='missing-step-name',
    ),
    pytest.param(
        'missing-template-file.yaml',  # a template file that does not exist, with a did-you-mean
        [
            "missing-template-file.yaml:6: template 'god.md.j2' does not exist in "
            "templates/; did you mean 'good.md.j2'?",
        ],
        id='missing-template-file',
    ),
    pytest.param(
        'neither-email-nor-task.yaml',  # a step that does nothing
        [
            "neither-email-nor-task.yaml:4: step 'hello' needs exactly one of 'email'"
            " or 'task'",
        ],
        id='neither-email-nor-task',
    ),
    pytest.param(
        'next-touch-on-last-step.yaml',  # next_touch_at is empty on the last touch
        [
            "templates/subject-filter.md.j2:2: 'weekday' needs a date but got nothing"
            ' (next_touch_at is empty on the last touch; guard it with {% if '
            "next_touch_at %}...{% endif %}) (used by step 'primes-nothing' at "
            'next-touch-on-last-step.yaml:9)',
        ],
        id='next-touch-on-last-step',
    ),
    pytest.param(
        'no-footer.yaml',  # every email carries an unsubscribe link and a postal address
        [
            'templates/no-footer.md.j2: the email has no unsubscribe link; end it '
            'with {% include "_footer.md.j2" %} or write {{ unsubscribe_url }}',
            'templates/no-footer.md.j2: the email has no postal address (the law asks'
            ' for one); end it with {% include "_footer.md.j2" %} or write {{ '
            'sender.postal_address }}',
        ],
        id='no-footer',
    ),
    pytest.param(
        'no-subject.yaml',  # an email template without a subject
        [
            'templates/no-subject.md.j2:1: no subject; start the file with a '
            'front-matter block: \'---\', \'subject: "..."\', \'---\' (used by step \'hello\''
            ' at no-subject.yaml:6)',
        ],
        id='no-subject',
    ),
    pytest.param(
        'not-a-mapping.yaml',  # a file that is a list
        [
            'not-a-mapping.yaml:1: the file is a list, not a mapping; a sequence file'
            ' holds keys like name, mailbox and steps',
        ],
        id='not-a-mapping',
    ),
    pytest.param(
        'on-finish-itself.yaml',  # on_finish back into the same sequence would never end
        [
            'on-finish-itself.yaml:4: on_finish enrolls the lead in this same '
            'sequence, so it would never end; enroll in another sequence or remove '
            'on_finish',
        ],
        id='on-finish-itself',
    ),
    pytest.param(
        'repeat-not-a-number.yaml',  # repeat is a whole number
        [
            'repeat-not-a-number.yaml:6: repeat must be a whole number; found '
            "'twelve'",
        ],
        id='repeat-not-a-number',
    ),
    pytest.param(
        'repeat-without-cron.yaml',  # repeat only goes with cron
        [
            "repeat-without-cron.yaml:4: step 'hello': 'repeat' only goes with 'cron'",
        ],
        id='repeat-without-cron',
    ),
    pytest.param(
        'schema-error-hides-nothing.yaml',  # a schema error does not hide the config checks
        [
            "schema-error-hides-nothing.yaml:2: mailbox 'nosuch' is not configured; "
            "configured mailboxes: sales (nurture.yaml, mailboxes:)",
            "schema-error-hides-nothing.yaml:3: owner 'zed' is not a configured rep; the "
            "owner is a rep's name, 'lead' (the lead's owner) or 'round-robin' (configured "
            "reps: sam; nurture.yaml, reps:)",
            "schema-error-hides-nothing.yaml:4: on_finish enrolls in 'nowhere', but no "
            "sequence has that name",
            "schema-error-hides-nothing.yaml:9: two steps are named 'hello'; step names "
            "must be unique",
            "schema-error-hides-nothing.yaml:11: template 'god.md.j2' does not exist in "
            "templates/; did you mean 'good.md.j2'?",
        ],
        id='schema-error-hides-nothing',
    ),
    pytest.param(
        'stage-variant-missing.yaml',  # a stage variant's missing template, at its own line
        [
            "stage-variant-missing.yaml:9: template 'decison.md.j2' does not exist in"
            ' templates/; create it, or fix the name',
        ],
        id='stage-variant-missing',
    ),
    pytest.param(
        'step-not-a-mapping.yaml',  # a step written as a bare word
        [
            'step-not-a-mapping.yaml:4: each step must be a mapping (name, after, '
            "email or task); found 'first-touch'",
        ],
        id='step-not-a-mapping',
    ),
    pytest.param(
        'template-not-text.yaml',  # template is a file name or stage mapping, not a number
        [
            'template-not-text.yaml:6: template must be a template file name, or '
            'stage: file lines (e.g. awareness: demo/intro.md.j2); found 5',
        ],
        id='template-not-text',
    ),
    pytest.param(
        'template-syntax-error.yaml',  # a Jinja syntax error at the template's own line
        [
            "templates/syntax-error.md.j2:9: template syntax error: the template ends"
            " inside a `{% if %}` block; close it with `{% endif %}`",
        ],
        id='template-syntax-error',
    ),
    pytest.param(
        'undefined-in-note.yaml',  # an undefined name in a task note, at the note's line
        [
            "undefined-in-note.yaml:8: note: 'compnay' is undefined; did you mean "
            "'company'?",
        ],
        id='undefined-in-note',
    ),
    pytest.param(
        'undefined-variable.yaml',  # an undefined name: template line plus the step's line
        [
            "templates/undefined.md.j2:4: 'frist_name' is undefined; did you mean "
            "'first_name'? (used by step 'typo' at undefined-variable.yaml:10)",
        ],
        id='undefined-variable',
    ),
    pytest.param(
        'unknown-key-top.yaml',  # an unknown top-level key with did-you-mean
        [
            "unknown-key-top.yaml:2: unknown key 'mailbx'; did you mean 'mailbox'?",
        ],
        id='unknown-key-top',
    ),
    pytest.param(
        'unknown-key-typo.yaml',  # a misspelt key is one problem, not also a missing key
        [
            "unknown-key-typo.yaml:7: unknown key 'tempalte'; did you mean "
            "'template'?",
        ],
        id='unknown-key-typo',
    ),
    pytest.param(
        'unknown-key-unlike.yaml',  # an unknown key with no close match lists the allowed keys
        [
            "unknown-key-unlike.yaml:6: unknown key 'colour'; the keys allowed here "
            'are: name, after, cron, repeat, send_window, when, email, task',
        ],
        id='unknown-key-unlike',
    ),
    pytest.param(
        'unknown-mailbox.yaml',  # a mailbox that is not configured
        [
            "unknown-mailbox.yaml:2: mailbox 'sale' is not configured; did you mean "
            "'sales'? configured mailboxes: sales (nurture.yaml, mailboxes:)",
        ],
        id='unknown-mailbox',
    ),
    pytest.param(
        'unknown-on-finish.yaml',  # on_finish enrolling in a sequence that does not exist
        [
            "unknown-on-finish.yaml:3: on_finish enrolls in 'vaild', but no sequence "
            "has that name; did you mean 'valid'?",
        ],
        id='unknown-on-finish',
    ),
    pytest.param(
        'unknown-owner.yaml',  # an owner who is not a configured rep, with did-you-mean
        [
            "unknown-owner.yaml:3: owner 'sma' is not a configured rep; did you mean 'sam'? "
            "the owner is a rep's name, 'lead' (the lead's owner) or 'round-robin' "
            "(configured reps: sam; nurture.yaml, reps:)",
        ],
        id='unknown-owner',
    ),
    pytest.param(
        'unknown-timezone.yaml',  # a time zone that is not in the IANA database
        [
            "unknown-timezone.yaml:3: unknown time zone 'Europe/Atlantis'; use an "
            "IANA name such as 'Europe/Berlin' or 'America/New_York'",
        ],
        id='unknown-timezone',
    ),
    pytest.param(
        'window-crosses-midnight.yaml',  # a step's own send window that ends before it starts
        [
            "window-crosses-midnight.yaml:7: '18:00-08:00' ends before it starts; "
            'windows cannot cross midnight',
        ],
        id='window-crosses-midnight',
    ),
    pytest.param(
        'yaml-colon-in-value.yaml',  # YAML syntax: an unquoted ': ' inside a value
        [
            "yaml-colon-in-value.yaml:2: unexpected ':' here; put a value that "
            "contains ': ' in quotes, or check the line above",
        ],
        id='yaml-colon-in-value',
    ),
    pytest.param(
        'yaml-tab-indent.yaml',  # YAML syntax: a tab used for indentation
        [
            'yaml-tab-indent.yaml:4: a tab character: YAML indents with spaces only',
        ],
        id='yaml-tab-indent',
    ),
    pytest.param(
        'yaml-unclosed-quote.yaml',  # YAML syntax: a quote never closed
        [
            'yaml-unclosed-quote.yaml:6: the file ends inside a quoted value; add the'
            ' closing quote',
        ],
        id='yaml-unclosed-quote',
    ),
]


@pytest.mark.parametrize(("name", "expected"), CASES)
def test_broken_file_reports_exact_problems(
    name: str, expected: list[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """A broken file gives exactly these `file:line: message` problems and no sequence."""
    monkeypatch.chdir(BROKEN)
    files = [*TOGETHER_WITH.get(name, []), name]
    good, problems = validate_paths(files, Path("templates"), mailboxes=["sales"],
                                   reps=["sam"])
    assert [str(p) for p in problems] == expected
    assert set(good) <= {"valid"}


def test_there_are_at_least_25_broken_files() -> None:
    """The fixture set stays broad: every broken file has a case here."""
    files = {p.name for p in BROKEN.glob("*.yaml") if not p.name.startswith("_")}
    assert len(files) >= 25
    assert files == {p.values[0] for p in CASES}

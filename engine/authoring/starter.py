"""`nurture init`: the files of a new project (config, one sequence, its templates)."""

from __future__ import annotations

from pathlib import Path

from engine.errors import ConfigError

CONFIG = """\
# nurture configuration. Environment variables NURTURE_<SETTING> override these values.
# Secrets never live here: each password is read from the environment variable named below.
#
# To send the welcome sequence to a test inbox from this directory:
#   python -m aiosmtpd -n -l 127.0.0.1:1025 &       # a local SMTP server that prints mail
#   export NURTURE_SECRET_KEY=$(python -c 'import secrets; print(secrets.token_hex(32))')
#   nurture db upgrade
#   nurture enroll welcome --email ada@example.com --set first_name=Ada
#   nurture run --once                               # sends what is due, then exits
database_url: sqlite:///nurture.db
sequences_dir: sequences
templates_dir: templates
default_timezone: UTC              # for leads without a time zone
base_url: http://127.0.0.1:8025    # public address of nurture's web server (unsubscribe links)
postal_address: "Example Inc., 100 Main Street, Springfield, IL 62701, USA"   # in every footer

mailboxes:
  sales:                           # sequences say `mailbox: sales`
    address: sales@example.com
    from_name: Sam Rivera
    signature: |-
      Sam Rivera
      Account Executive, Example Inc.
    smtp:                          # a local test server: python -m aiosmtpd -n -l 127.0.0.1:1025
      host: 127.0.0.1
      port: 1025
      tls: none
    # The inbox watched for replies: with it, a lead who answers leaves the sequence and goes
    # to a rep. Uncomment it once you have an IMAP server for this mailbox; while it is set,
    # `nurture run --once` reads new replies first and sends nothing if it cannot.
    # imap:
    #   host: imap.example.com
    #   port: 993
    #   tls: tls
    #   username: sales@example.com
    #   password_env: NURTURE_SALES_IMAP_PASSWORD

reps:                              # who a reply is handed to (a sequence's `owner:`)
  - name: sam
    email: sam@example.com         # told of each handoff by email
    password_env: NURTURE_SAM_PASSWORD   # signs in to the rep pages (/reps/)
"""

SEQUENCE = """\
# A first sequence: four touches over about a week and a half. Edit it, then run
#   nurture validate && nurture preview welcome && nurture simulate welcome
name: welcome
description: New sign-ups and contact-form leads
mailbox: sales
owner: round-robin                 # replies go to the reps in turn (nurture.yaml, reps:)
timezone: lead                     # each lead's own time zone, else default_timezone
send_window: {days: mon-fri, hours: "09:00-17:00"}

sample_lead:                       # what validate and preview render with
  first_name: Ada
  company: Analytical Engines Ltd

steps:
  - name: hello
    after: 0m                      # at once, even outside the send window
    send_window: any
    email:
      template: welcome/hello.md.j2

  - name: follow-up
    after: 2 business days
    email:
      thread: previous             # a reply under the first email
      template: welcome/follow-up.md.j2

  - name: call
    after: 1 business day
    task:
      kind: call
      note: >-
        Call {{ lead.first_name }}{% if lead.company %} at {{ lead.company }}{% endif %};
        ask what prompted the sign-up.

  - name: last-note
    after: 5 business days
    email:
      template: welcome/last-note.md.j2
"""

FOOTER = """\
{# The end of every email: signature, postal address and unsubscribe link. #}
{{ sender.signature | default(sender.name, true) }}

{{ sender.postal_address }}
Not interested? Unsubscribe here and I won't write again: <{{ unsubscribe_url }}>
"""

HELLO = """\
---
subject: "Welcome, {{ lead.first_name }}"
---
Hi {{ lead.first_name }},

Thanks for getting in touch{% if lead.company %} on behalf of {{ lead.company }}{% endif %}. \
I'm {{ sender.name }}, and I'll be your contact here.

What are you hoping to get done? A line or two is plenty, and I'll point you to the right place.

{% include "_footer.md.j2" %}
"""

FOLLOW_UP = """\
---
subject: "Welcome, {{ lead.first_name }}"
---
Hi {{ lead.first_name }},

Just making sure my last note reached you. If it's easier to talk, I'll try you by phone \
on {{ next_touch_at | weekday }}.

{% include "_footer.md.j2" %}
"""

LAST_NOTE = """\
---
subject: "Should I stop writing, {{ lead.first_name }}?"
---
Hi {{ lead.first_name }},

I haven't heard back, so I'll assume the timing isn't right and stop here. If that changes, \
reply to this email and it comes straight to me.

{% include "_footer.md.j2" %}
"""

FILES = {
    "nurture.yaml": CONFIG,
    "sequences/welcome.yaml": SEQUENCE,
    "templates/_footer.md.j2": FOOTER,
    "templates/welcome/hello.md.j2": HELLO,
    "templates/welcome/follow-up.md.j2": FOLLOW_UP,
    "templates/welcome/last-note.md.j2": LAST_NOTE,
}


def write_project(directory: Path, force: bool = False) -> list[Path]:
    """Write the starter files under `directory`; refuses to overwrite unless `force`."""
    directory = Path(directory)
    targets = {directory / rel: text for rel, text in FILES.items()}
    existing = [p for p in targets if p.exists()]
    if existing and not force:
        names = ", ".join(str(p) for p in existing)
        raise ConfigError(f"{names} already exist(s); nothing was written "
                          "(use --force to overwrite)")
    try:
        for path, text in targets.items():
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(text, encoding="utf-8")
    except OSError as exc:
        raise ConfigError(f"{exc.filename}: cannot write ({exc.strerror})") from None
    return list(targets)

"""Reply as a lead, for trying the loop: read the lead's newest email and answer it.

Usage (inside the compose stack):
    docker compose exec engine python /srv/nurture/reply.py ada@example.com "Sounds good, call me"

GreenMail accepts any password, so this logs in as the lead, fetches the newest message in
the lead's INBOX over IMAP and sends a reply with In-Reply-To/References through SMTP to the
address it came from: the engine's watcher sees it and hands the lead to a rep.
"""

from __future__ import annotations

import imaplib
import os
import smtplib
import sys
from email import message_from_bytes, policy
from email.message import EmailMessage
from email.utils import make_msgid

HOST = os.environ.get("DEMO_MAIL_HOST", "mail")
IMAP_PORT = int(os.environ.get("DEMO_IMAP_PORT", "3143"))
SMTP_PORT = int(os.environ.get("DEMO_SMTP_PORT", "3025"))
DEFAULT_TEXT = "Thanks, this looks useful. Can we talk on Thursday?"


def newest(lead: str) -> EmailMessage:
    with imaplib.IMAP4(HOST, IMAP_PORT) as imap:
        imap.login(lead, "any-password-works-on-greenmail")
        imap.select("INBOX", readonly=True)
        _, data = imap.search(None, "ALL")
        ids = data[0].split()
        if not ids:
            sys.exit(f"{lead} has no mail yet: enroll the lead first, then wait a second")
        _, parts = imap.fetch(ids[-1], "(RFC822)")
        raw = parts[0][1]
    return message_from_bytes(raw, policy=policy.default)


def answer(lead: str, original: EmailMessage, text: str) -> EmailMessage:
    reply = EmailMessage()
    reply["From"] = lead
    reply["To"] = original.get("Reply-To") or original["From"]
    subject = str(original["Subject"] or "")
    reply["Subject"] = subject if subject.lower().startswith("re:") else f"Re: {subject}"
    reply["Message-ID"] = make_msgid(domain=lead.rpartition("@")[2] or "example.test")
    reply["In-Reply-To"] = original["Message-ID"]
    refs = str(original.get("References") or "")
    reply["References"] = f"{refs} {original['Message-ID']}".strip()
    reply.set_content(f"{text}\n\nOn an earlier day, {original['From']} wrote:\n> ...\n")
    return reply


def main() -> None:
    if len(sys.argv) < 2:
        sys.exit(__doc__)
    lead = sys.argv[1]
    text = sys.argv[2] if len(sys.argv) > 2 else DEFAULT_TEXT
    reply = answer(lead, newest(lead), text)
    with smtplib.SMTP(HOST, SMTP_PORT) as smtp:
        smtp.send_message(reply)
    print(f"replied to {reply['To']}: {reply['Subject']}")


if __name__ == "__main__":
    main()

"""domain/inbound.py: each classification rule on small hand-written messages."""

from __future__ import annotations

from datetime import date

import pytest

from engine.domain.inbound import Classification, classify
from engine.domain.states import InboundKind
from engine.mail.parse import parse_inbound

LEAD = "From: Dana Lead <dana@lead.example>\nTo: sales@nurture.example\n"
THREADED = "In-Reply-To: <touch-1@nurture.example>\nDate: Mon, 02 Mar 2026 09:00:00 +0000\n"


def classify_raw(headers: str, body: str = "") -> Classification:
    raw = (headers.strip("\n") + "\n\n" + body).replace("\n", "\r\n").encode("utf-8")
    return classify(parse_inbound(raw))


def dsn(action: str, status: str, diagnostic: str, recipient: str = "dana@lead.example") -> str:
    return (
        "From: Mail Delivery System <MAILER-DAEMON@mx.lead.example>\nReturn-Path: <>\n"
        "Subject: Undelivered Mail Returned to Sender\nMIME-Version: 1.0\n"
        'Content-Type: multipart/report; report-type=delivery-status; boundary="R"\n\n'
        "--R\nContent-Type: text/plain\n\nYour message could not be delivered.\n"
        "--R\nContent-Type: message/delivery-status\n\nReporting-MTA: dns; mx.lead.example\n\n"
        f"Final-Recipient: rfc822; {recipient}\nAction: {action}\nStatus: {status}\n"
        f"Diagnostic-Code: smtp; {diagnostic}\n--R--\n"
    )


# --- bounces -----------------------------------------------------------------------------

def test_dsn_user_unknown_is_a_hard_bounce_naming_the_recipient() -> None:
    """RFC 3464 report, Action failed, 5.1.1: hard, with the failed address."""
    found = classify_raw(dsn("failed", "5.1.1", "550 5.1.1 User unknown"))
    assert found.kind is InboundKind.bounce_hard
    assert found.failed_recipients == ("dana@lead.example",)
    assert "delivery-status" in found.reason


@pytest.mark.parametrize(
    ("action", "status", "diagnostic"),
    [
        ("delayed", "4.4.7", "timeout connecting to mx.lead.example"),
        ("failed", "4.2.2", "452 4.2.2 Mailbox full"),
        ("failed", "5.2.2", "552 5.2.2 Over quota"),
        ("failed", "5.3.4", "552 5.3.4 Message too big"),
        ("failed", "5.7.1", "554 5.7.1 Message rejected as spam by content filter"),
    ],
)
def test_temporary_and_content_rejections_are_soft(
    action: str, status: str, diagnostic: str
) -> None:
    """4.x.x, delays, full mailboxes, size and spam/policy rejections: soft bounces."""
    found = classify_raw(dsn(action, status, diagnostic))
    assert found.kind is InboundKind.bounce_soft


def test_a_spam_like_domain_is_not_spam_wording() -> None:
    """'user@spammotel.com' in the notice is an address: the quota wording decides."""
    found = classify_raw(dsn("failed", "5.0.0", "<uio@spammotel.com>: disk quota exceeded"))
    assert found.kind is InboundKind.bounce_soft
    assert "quota" in found.reason


def test_policy_code_with_unknown_user_wording_is_hard() -> None:
    """Some servers say 5.7.1 for an unknown user: the wording decides, hard."""
    found = classify_raw(dsn("failed", "5.7.1", "550 5.7.1 No such user here"))
    assert found.kind is InboundKind.bounce_hard


def test_successful_delivery_notice_is_other() -> None:
    """A DSN whose recipients were delivered or relayed is not a bounce."""
    found = classify_raw(dsn("delivered", "2.0.0", "250 OK"))
    assert found.kind is InboundKind.other
    assert "delivery notice" in found.reason


def test_qmail_style_bounce_is_hard_with_recipient() -> None:
    """A non-standard qmail notice from MAILER-DAEMON: hard, recipient from the text."""
    found = classify_raw(
        "From: MAILER-DAEMON@mail.lead.example\nTo: sales@nurture.example\nSubject: failure notice",
        "Hi. This is the qmail-send program at mail.lead.example.\n"
        "I'm afraid I wasn't able to deliver your message to the following addresses.\n"
        "This is a permanent error; I've given up. Sorry it didn't work out.\n\n"
        "<dana@lead.example>:\nSorry, no mailbox here by that name. (#5.1.1)\n",
    )
    assert found.kind is InboundKind.bounce_hard
    assert found.failed_recipients == ("dana@lead.example",)


def test_exim_failure_with_auto_submitted_is_a_bounce_not_an_auto_reply() -> None:
    """Exim marks its bounces Auto-Submitted; X-Failed-Recipients makes them bounces."""
    found = classify_raw(
        "From: Mail Delivery System <Mailer-Daemon@mx.nurture.example>\n"
        "Subject: Mail delivery failed: returning message to sender\n"
        "Auto-Submitted: auto-replied\nX-Failed-Recipients: dana@lead.example\n",
        "This message was created automatically by mail delivery software.\n\n"
        "A message that you sent could not be delivered to one or more of its recipients.\n"
        "  dana@lead.example\n    550 5.1.1 user unknown\n",
    )
    assert found.kind is InboundKind.bounce_hard
    assert found.failed_recipients == ("dana@lead.example",)


def test_delay_warning_without_report_is_soft() -> None:
    """'Warning: message delayed' from a daemon is a soft bounce."""
    found = classify_raw(
        "From: postmaster@mx.lead.example\nSubject: Warning: message 1Xyz delayed 24 hours",
        "This message was created automatically by mail delivery software.\n"
        "A message that you sent has not yet been delivered to one or more of its recipients\n"
        "after more than 24 hours on the queue.\n\n  dana@lead.example\n\n"
        "No action is required on your part. Delivery attempts will continue.\n",
    )
    assert found.kind is InboundKind.bounce_soft
    assert found.failed_recipients == ("dana@lead.example",)


def test_person_writing_about_a_delivery_is_not_a_bounce() -> None:
    """A threaded human reply that mentions failed delivery stays a human reply."""
    found = classify_raw(
        LEAD + THREADED + "Subject: Re: Delivery failure on our side",
        "Our order could not be delivered last week, so we are looking at your product.\n",
    )
    assert found.kind is InboundKind.human_reply


# --- reports and other automated mail ----------------------------------------------------

def test_abuse_feedback_report_is_other() -> None:
    """ARF (RFC 5965) reports are other, never a reply."""
    found = classify_raw(
        'From: abuse@isp.example\nMIME-Version: 1.0\nContent-Type: multipart/report; '
        'report-type=feedback-report; boundary="F"',
        "--F\nContent-Type: text/plain\n\nThis is an email abuse report\n--F\n"
        "Content-Type: message/feedback-report\n\nFeedback-Type: abuse\nVersion: 1\n--F--\n",
    )
    assert found.kind is InboundKind.other
    assert "Feedback-Type: abuse" in found.reason


def test_mailing_list_traffic_is_other() -> None:
    """A list post that is not a reply to us is other."""
    found = classify_raw(
        "From: someone@list.example\nList-Id: <users.list.example>\nPrecedence: list\n"
        "Subject: [users] new release",
        "Version 2 is out.\n",
    )
    assert found.kind is InboundKind.other
    assert "List-Id" in found.reason


# --- auto-replies ------------------------------------------------------------------------

@pytest.mark.parametrize(
    "header",
    [
        "Auto-Submitted: auto-replied",
        "Auto-Submitted: auto-generated",
        "X-Autoreply: yes",
        "X-Autorespond: Out of office",
        "Precedence: auto_reply",
        "Precedence: bulk",
        "Precedence: junk",
    ],
)
def test_automatic_headers_make_an_auto_reply(header: str) -> None:
    """RFC 3834 Auto-Submitted != no, X-Autoreply/X-Autorespond, Precedence: auto-reply."""
    found = classify_raw(LEAD + THREADED + header + "\nSubject: Re: demo", "Thanks for writing.\n")
    assert found.kind is InboundKind.auto_reply


def test_auto_submitted_no_is_a_person() -> None:
    """Auto-Submitted: no explicitly says a person sent it."""
    found = classify_raw(LEAD + THREADED + "Auto-Submitted: no\nSubject: Re: demo", "Sure.\n")
    assert found.kind is InboundKind.human_reply


@pytest.mark.parametrize(
    "subject",
    [
        "Out of Office: Re: demo",
        "Automatic reply: demo",
        "AUTO: Dana Lead is out of the office (returning 16/03/2026)",
        "Abwesenheitsnotiz: demo",
        "Automatische Antwort: demo",
        "Absence: demo",
        "Réponse automatique : demo",
        "Respuesta automática: demo",
        "Fuera de la oficina: demo",
        "Afwezig: demo",
        "Automatisch antwoord: demo",
        "Ausência: demo",
        "Resposta automática: demo",
        "Re: demo (Automatic Response)",
        "[Auto-Reply] demo",
    ],
)
def test_out_of_office_subjects_in_six_languages(subject: str) -> None:
    """Out-of-office markers leading the subject (or in brackets), en/de/fr/es/nl/pt."""
    found = classify_raw(LEAD + f"Subject: {subject}", "I am away and will read mail later.\n")
    assert found.kind is InboundKind.auto_reply


def test_german_out_of_office_gives_the_return_date() -> None:
    """'bis einschließlich 13. März' (a Friday) names the last day away: back Monday 16th."""
    found = classify_raw(
        LEAD + "Date: Mon, 02 Mar 2026 09:00:00 +0100\nSubject: Abwesenheitsnotiz: Ihre Anfrage",
        "Guten Tag,\n\nich bin bis einschließlich 13. März nicht im Büro und ab Montag, "
        "16.03.2026 wieder erreichbar.\n\nDiese Nachricht wurde automatisch generiert.\n",
    )
    assert found.kind is InboundKind.auto_reply
    assert found.return_date == date(2026, 3, 16)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("I am out of the office and back on 14 March.", date(2026, 3, 14)),
        ("Returning Monday 3/16.", date(2026, 3, 16)),
        ("Je serai de retour le 16 mars.", date(2026, 3, 16)),
        ("Estaré fuera hasta el 16 de marzo.", date(2026, 3, 16)),
        ("Ik ben terug op 16 maart.", date(2026, 3, 16)),
        ("Retorno em 16 de março.", date(2026, 3, 16)),
        ("I'll be back soon.", None),
        ("Back on 04/05.", None),  # 4 May or 5 April: ambiguous, so no date
    ],
)
def test_return_date_from_out_of_office_text(text: str, expected: date | None) -> None:
    """A return date when the text gives one unambiguously, else None."""
    found = classify_raw(
        LEAD + "Date: Mon, 02 Mar 2026 09:00:00 +0000\nSubject: Out of Office", text + "\n"
    )
    assert found.kind is InboundKind.auto_reply
    assert found.return_date == expected


def test_challenge_response_request_is_an_auto_reply() -> None:
    """A challenge-response system's request to verify us is automatic, not an answer."""
    found = classify_raw(
        "From: Boxbe <noreply@boxbe.com>\nSubject: Re: demo (Action Required)",
        "Your message has been waitlisted. Please add yourself to my Guest List.\n",
    )
    assert found.kind is InboundKind.auto_reply
    assert "challenge" in found.reason


# --- never mistake a person -------------------------------------------------------------

def test_human_reply_quoting_an_out_of_office_stays_human() -> None:
    """Words in the quoted thread do not count: only the new text is read."""
    found = classify_raw(
        LEAD + THREADED + "Subject: Re: demo",
        "Thanks, I'm back now - Tuesday 10:00 works for a call.\n\n"
        "On Mon, 2 Mar 2026 at 09:00, Dana Lead <dana@lead.example> wrote:\n"
        "> Automatic reply: I am out of the office until 9 March.\n"
        "> This is an automatic reply.\n",
    )
    assert found.kind is InboundKind.human_reply
    assert found.written_by_person


def test_person_mentioning_being_away_is_a_human_reply() -> None:
    """'I'm out of office next week' written by a person is an answer, not an auto-reply."""
    found = classify_raw(
        LEAD + THREADED + "Subject: Re: demo",
        "I'm out of office next week, but let's talk on the 20th. Send me an invite?\n",
    )
    assert found.kind is InboundKind.human_reply


@pytest.mark.parametrize(
    "text",
    [
        "Please stop by our booth on Tuesday, we can talk there.",
        "Could you click the link below to confirm the meeting? Thanks!",
        "Please remove me from this thread - my colleague John (john@lead.example) handles it.",
        "How do we opt out of the auto-renewal in your standard contract?",
    ],
)
def test_short_human_replies_near_unsubscribe_or_challenge_wording_stay_human(text: str) -> None:
    """Words close to the automatic and unsubscribe rules do not catch a person's answer."""
    found = classify_raw(LEAD + THREADED + "Subject: Re: demo", text + "\n")
    assert found.kind is InboundKind.human_reply


def test_outlook_reply_with_auto_response_suppress_stays_human() -> None:
    """X-Auto-Response-Suppress on a person's Outlook reply that mentions being away."""
    found = classify_raw(
        LEAD + THREADED + "X-Auto-Response-Suppress: All\nSubject: RE: demo",
        "I'm out of the office until Monday; can we do the demo on Tuesday?\n",
    )
    assert found.kind is InboundKind.human_reply


def test_unthreaded_person_writing_about_a_failed_delivery_is_not_a_bounce() -> None:
    """Bounce wording from an ordinary sender, with no report and no daemon, is no bounce."""
    found = classify_raw(
        LEAD + "Subject: Delivery failure of our order",
        "Our parcel could not be delivered; the address was unknown to the courier.\n",
    )
    assert not found.is_bounce


def test_reply_to_a_thread_about_out_of_office_is_human() -> None:
    """A subject that merely contains OOF words after 'Re:' is not an OOF marker."""
    found = classify_raw(
        LEAD + THREADED + "Subject: Re: our out of office policy", "Yes, please send it.\n"
    )
    assert found.kind is InboundKind.human_reply


def test_human_reply_with_encoded_word_subject() -> None:
    """An encoded-word subject is decoded before the reply prefix is read."""
    found = classify_raw(
        LEAD + "Subject: =?utf-8?b?UmU6IEFuZ2Vib3QgZsO8ciBTaWU=?=", "Klingt gut, rufen Sie an.\n"
    )
    assert found.kind is InboundKind.human_reply


def test_malformed_message_is_classified_without_error() -> None:
    """No headers and broken bytes still classify (as other: nothing says it is a reply)."""
    found = classify(parse_inbound(b"\xff\xfe garbage \x00 bytes"))
    assert found.kind is InboundKind.other
    assert found.reason


# --- unsubscribe requests ----------------------------------------------------------------

@pytest.mark.parametrize(
    "text",
    [
        "unsubscribe",
        "Please remove me from your list.",
        "Stop emailing me.",
        "Take me off your list, thanks.",
        "Not interested, please stop.",
        "Bitte keine weiteren E-Mails.",
        "Merci de me désabonner.",
        "Por favor, darme de baja.",
        "Graag uitschrijven.",
        "Por favor, me remova da lista.",
    ],
)
def test_short_request_to_stop_is_an_unsubscribe(text: str) -> None:
    """A short new text asking to stop, in en/de/fr/es/nl/pt."""
    found = classify_raw(LEAD + THREADED + "Subject: Re: demo", text + "\n")
    assert found.kind is InboundKind.unsubscribe
    assert found.written_by_person


def test_unsubscribe_subject_is_an_unsubscribe() -> None:
    """Subject 'Unsubscribe' (e.g. from our List-Unsubscribe mailto) with an empty body."""
    found = classify_raw(LEAD + "Subject: UnSuBsCrIbE", "")
    assert found.kind is InboundKind.unsubscribe


def test_message_to_the_unsubscribe_address_is_an_unsubscribe() -> None:
    """Mail sent to an unsubscribe+token@ address is a request to stop."""
    found = classify_raw(
        "From: dana@lead.example\nTo: unsubscribe+abc123@nurture.example\nSubject: stop", ""
    )
    assert found.kind is InboundKind.unsubscribe


def test_quoted_unsubscribe_footer_is_not_a_request() -> None:
    """Our own footer quoted under a real answer does not make it an unsubscribe."""
    found = classify_raw(
        LEAD + THREADED + "Subject: Re: demo",
        "Great, let's do Thursday.\n\nOn Mon, 2 Mar 2026, Sales <sales@nurture.example> wrote:\n"
        "> Here is the case study.\n> To unsubscribe, reply 'unsubscribe' or click here.\n",
    )
    assert found.kind is InboundKind.human_reply


# --- not a reply -------------------------------------------------------------------------

def test_new_message_without_any_reply_signal_is_other_by_a_person() -> None:
    """No In-Reply-To, References, Re: or quote: other, but flagged as written by a person."""
    found = classify_raw(LEAD + "Subject: Pricing question", "What does the team plan cost?\n")
    assert found.kind is InboundKind.other
    assert found.written_by_person


def test_forwarded_message_is_other() -> None:
    """An unthreaded 'Fwd:' is not an answer to a touch."""
    found = classify_raw(
        LEAD + "Subject: Fwd: demo",
        "FYI\n\n---------- Forwarded message ---------\nFrom: Sales <sales@nurture.example>\n"
        "Date: Mon, 2 Mar 2026\nSubject: demo\nTo: dana@lead.example\n\nHi Dana\n",
    )
    assert found.kind is InboundKind.other


def test_every_decision_has_a_reason() -> None:
    """Human replies name the evidence that they are replies."""
    found = classify_raw(LEAD + THREADED + "Subject: Re: demo", "Yes please.\n")
    assert found.kind is InboundKind.human_reply
    assert "In-Reply-To" in found.reason

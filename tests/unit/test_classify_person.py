"""Issue 4: a person's answer is never an unsubscribe or an auto-reply; when in doubt, human.

A wrong unsubscribe stops and suppresses a lead for good with no handoff; a wrong
auto-reply pauses instead of handing off. A wrong handoff costs a rep a minute. So these
hand-made replies (threaded to our touch, en/de/fr/es/nl/pt) that only mention the words
must stay human replies, and the true requests and real out-of-office texts must not.
"""

from __future__ import annotations

from datetime import UTC, date, datetime

import pytest

from engine.domain.inbound import Classification, classify
from engine.domain.lead import LeadRecord
from engine.domain.returndate import find_return_date
from engine.domain.states import InboundKind
from engine.mail.parse import parse_inbound
from engine.services.inbound_actions import resume_at
from tests.servers.engine_env import sequence

LEAD = "From: Dana Lead <dana@lead.example>\nTo: sales@nurture.example\n"
THREADED = "In-Reply-To: <touch-1@nurture.example>\nDate: Mon, 02 Mar 2026 09:00:00 +0000\n"
SENT = date(2026, 3, 2)  # a Monday


def reply(body: str, subject: str = "Re: demo", headers: str = "") -> Classification:
    raw = LEAD + THREADED + headers + f"Subject: {subject}\n\n" + body + "\n"
    return classify(parse_inbound(raw.replace("\n", "\r\n").encode("utf-8")))


@pytest.mark.parametrize(
    "text",
    [
        # the audit's cases (F4)
        "Remove me from the CC and add my boss.",
        "Stop emailing me about the old plan and send me the enterprise one.",
        "Unsubscribe? No way, this is great. When can we meet?",
        # en: questions, second requests, topics, negations, referrals
        "Can I unsubscribe my team from the weekly digest but keep these?",
        "Please don't unsubscribe me, I still want the case studies.",
        "I nearly hit unsubscribe, but the last one convinced me. Do you have time Thursday?",
        "Please remove me and add jane@lead.example instead.",
        "Please remove me from this list and contact my colleague Tom.",
        "Remove me from the thread, my manager will take it from here.",
        "Stop sending these to my old address and use the new one please.",
        "Take me off the list for the webinar, but I want the demo.",
        "Stop emailing me. Call me instead on +44 20 7946 0000.",
        "Do not email me, ask my assistant to book a slot for next week.",
        "I'll unsubscribe later, for now send me the pricing.",
        "Don't email me, call me.",
        "Yes. Stop emailing me the PDF version.",
        "Please remove me from the invite, I can't make it.",
        "Stop sending me emails on weekends.",
        "How do I unsubscribe my whole team?",
        "Please take me off your mailing list. We already have a solution.",
        # de
        "Abmelden? Auf keinen Fall, wann können wir telefonieren?",
        "Bitte entfernen Sie mich aus dem Verteiler und nehmen Sie meinen Chef auf.",
        "Keine weiteren E-Mails zum alten Tarif, aber schicken Sie mir das Angebot.",
        "Bitte nicht abmelden, ich möchte das Angebot sehen.",
        # fr
        "Me désabonner ? Non, c'est très intéressant. Quand pouvons-nous parler ?",
        "Retirez-moi de la copie et ajoutez mon patron.",
        "Merci de me désabonner de la newsletter mais je veux bien une démo.",
        # es
        "¿Darme de baja? No, me interesa mucho. ¿Cuándo hablamos?",
        "No me envíen más correos sobre el plan antiguo, pero mándenme el nuevo.",
        "Por favor, eliminarme de la lista y escribir a mi compañero Luis.",
        # nl
        "Uitschrijven? Nee hoor, wanneer kunnen we bellen?",
        "Verwijder mij uit de cc en voeg mijn baas toe.",
        "Graag uitschrijven voor de nieuwsbrief maar stuur mij wel de offerte.",
        # pt
        "Descadastrar? Não, gostei muito. Quando podemos conversar?",
        "Me remova da cópia e inclua meu chefe.",
        "Parem de enviar sobre o plano antigo e me mandem o novo.",
    ],
)
def test_a_person_mentioning_stopping_is_not_an_unsubscribe(text: str) -> None:
    """A question, a second request, a topic, a negation or a referral: a rep reads it."""
    found = reply(text)
    assert found.kind is InboundKind.human_reply, found.reason
    assert found.written_by_person


@pytest.mark.parametrize(
    "text",
    [
        "unsubscribe",
        "UNSUBSCRIBE",
        "Please remove me from your list.",
        "please remove me from your mailing list",
        "Stop emailing me.",
        "Could you take me off your list?",
        "Hi Sam,\n\nPlease unsubscribe me.\n\nThanks,\nDana",
        "Not interested, please stop.",
        "Not interested. Please remove me.",
        "STOP",
        "Please stop emailing me, I'm not interested.",
        "Kindly remove my email from your database.",
        "No more emails please.",
        "Bitte austragen.",
        "Bitte keine weiteren E-Mails.",
        "Hallo,\nbitte nehmen Sie mich aus dem Verteiler.\nDanke",
        "Désabonnez-moi.",
        "Merci de me désabonner.",
        "Je ne veux plus recevoir vos emails.",
        "Merci de ne plus m'envoyer d'emails.",
        "Por favor, darme de baja.",
        "Dejen de enviarme correos.",
        "Graag uitschrijven.",
        "Geen mails meer aub.",
        "Gelieve mij uit te schrijven.",
        "Por favor, me remova da lista.",
        "Não quero mais receber.",
    ],
)
def test_a_plain_request_to_stop_is_an_unsubscribe(text: str) -> None:
    """The ask is the whole message (greetings, thanks and a name aside), six languages."""
    found = reply(text)
    assert found.kind is InboundKind.unsubscribe, found.reason
    assert found.written_by_person


def test_unsubscribe_subject_with_a_reason_is_an_unsubscribe() -> None:
    """Subject 'Unsubscribe' with a reason and no question or next step (discourse's case)."""
    found = reply("Not interested any more, we chose another vendor.", subject="Unsubscribe")
    assert found.kind is InboundKind.unsubscribe


def test_unsubscribe_subject_with_a_question_is_a_reply() -> None:
    """Subject 'Unsubscribe' but the text asks for a call: a person to answer."""
    found = reply("Actually, the new pricing looks good. Can we talk Friday?",
                  subject="Unsubscribe")
    assert found.kind is InboundKind.human_reply


@pytest.mark.parametrize(
    ("text", "quoted"),
    [
        ("Sounds good, Thursday at 10 works.",
         "> You received this because you asked for our guide. Unsubscribe | Preferences"),
        ("Gerne, Donnerstag passt.", "> Abmelden: antworten Sie mit 'abmelden'."),
        ("Parfait, jeudi me convient.", "> Pour vous désabonner, cliquez ici."),
        ("Perfecto, el jueves me va bien.", "> Para darse de baja, responda 'baja'."),
        ("Prima, donderdag is goed.", "> Afmelden? Klik hier om uit te schrijven."),
        ("Ótimo, quinta-feira está bom.", "> Para descadastrar, clique aqui."),
    ],
)
def test_our_quoted_footer_never_makes_an_unsubscribe(text: str, quoted: str) -> None:
    """Our own footer quoted under an answer, in each language: the answer is read."""
    body = (f"{text}\n\nOn Mon, 2 Mar 2026 at 09:00, Sales <sales@nurture.example> wrote:\n"
            f"> Here is the case study.\n{quoted}\n")
    assert reply(body).kind is InboundKind.human_reply


def test_an_unsubscribe_address_wins_over_a_clients_automatic_text() -> None:
    """A one-click mailto unsubscribe says 'automatically generated': still a request."""
    raw = ("From: dana@lead.example\nTo: unsubscribe+abc123@nurture.example\n"
           "Subject: unsubscribe\n\nThis message was automatically generated by Gmail.\n")
    found = classify(parse_inbound(raw.replace("\n", "\r\n").encode()))
    assert found.kind is InboundKind.unsubscribe


# --- auto-replies --------------------------------------------------------------------------

@pytest.mark.parametrize(
    ("subject", "text"),
    [
        ("Re: demo",
         "Thanks for the automated response earlier. Yes, I'm interested in a demo."),
        ("Automatic reply rules question", "How do your automatic reply rules work?"),
        ("Re: demo", "Is this an automatic reply? If not, Tuesday works for me."),
        ("Re: demo", "Your auto-reply said you were away; I'm out of office too next week. "
                     "Let's talk on the 20th."),
        ("Re: demo", "I set up an automatic response for my team, but I read this myself. "
                     "Send the proposal."),
        ("AW: Demo", "Danke für die automatische Antwort. Ja, Donnerstag passt."),
        ("RE: démo", "Merci pour la réponse automatique. Oui, jeudi me convient."),
        ("RE: demo", "Gracias por la respuesta automática. Sí, el jueves me va bien."),
        ("Re: demo", "Bedankt voor het automatisch antwoord. Ja, donderdag is goed."),
        ("RES: demo", "Obrigado pela resposta automática. Sim, quinta-feira está bom."),
        ("Re: demo", "Automatic reply: no, this is really me. Can we talk Tuesday?"),
        ("Re: demo", "I got an automatic response from your colleague. Who else should I ask?"),
    ],
)
def test_a_person_mentioning_automatic_replies_is_a_human_reply(subject: str, text: str) -> None:
    """Automatic-reply words in passing, in a question or in thanks: a person's answer."""
    found = reply(text, subject=subject)
    assert found.kind is InboundKind.human_reply, found.reason


@pytest.mark.parametrize(
    "text",
    [
        "This is an automatic reply. I am out of the office until 9 March.",
        "Hello,\n\nThis is an automated response: I am on leave with limited access to email.",
        "Thank you for your email.\nThis is an auto-reply. I will answer on my return.",
        "I am away until Monday with no access to email.\n\n"
        "This message was automatically generated.",
        "Dies ist eine automatische Antwort. Ich bin bis 13.03. nicht im Büro.",
        "Vielen Dank für Ihre Nachricht.\nIch bin nicht im Büro.\n"
        "Diese Nachricht wurde automatisch generiert.",
        "Ceci est une réponse automatique. Je suis absent jusqu'au 16 mars.",
        "Esta es una respuesta automática. Estaré fuera hasta el 16 de marzo.",
        "Dit is een automatisch antwoord. Ik ben afwezig tot en met 18 maart.",
        "Esta é uma resposta automática. Estou ausente até 16 de março.",
    ],
)
def test_an_automatic_statement_opening_or_closing_the_text_is_an_auto_reply(text: str) -> None:
    """A real out-of-office body without headers or subject marker, six languages."""
    found = reply(text, subject="Re: demo")
    assert found.kind is InboundKind.auto_reply, found.reason
    assert "automatic" in found.reason


def test_headers_stay_decisive() -> None:
    """RFC 3834 Auto-Submitted makes an auto-reply whatever the text says."""
    found = reply("Thanks for writing, I will reply soon.",
                  headers="Auto-Submitted: auto-replied\n")
    assert found.kind is InboundKind.auto_reply
    assert "RFC 3834" in found.reason


# --- return dates that name the last day away (F22) ---------------------------------------

@pytest.mark.parametrize(
    ("text", "back"),
    [
        ("Ich bin bis einschließlich 13.03.2026 nicht im Büro.", date(2026, 3, 16)),  # Fri
        ("Ich bin bis inkl. 10.03. nicht erreichbar.", date(2026, 3, 11)),
        ("Absent jusqu'au 16 mars inclus.", date(2026, 3, 17)),
        ("Ik ben afwezig tot en met 18 maart.", date(2026, 3, 19)),
        ("Afwezig t/m vrijdag 13 maart.", date(2026, 3, 16)),
        ("I am out of the office through March 15.", date(2026, 3, 16)),  # a Sunday
        ("Out of office until March 12 inclusive.", date(2026, 3, 13)),
        ("Estoy fuera hasta el 15 incluido.", date(2026, 3, 16)),
        ("Estou de férias até dia 15 inclusive.", date(2026, 3, 16)),
        # the first day back stays as written
        ("Back on 16 March.", date(2026, 3, 16)),
        ("Zurück am 16.03.2026.", date(2026, 3, 16)),
        ("Je serai de retour le 16 mars.", date(2026, 3, 16)),
        # a bare number is a day only where it cannot be an hour or a count
        ("Back in 2 weeks.", None),
        ("In meetings until 5 pm today.", None),
    ],
)
def test_a_last_day_away_gives_the_next_weekday(text: str, back: date | None) -> None:
    """'through/einschließlich/inclus/tot en met/incluido/inclusive': back the next weekday."""
    assert find_return_date(text, SENT) == back


def test_an_inclusive_out_of_office_resumes_after_the_last_day() -> None:
    """Classified end to end: the return date is the day after, not the last day away."""
    found = reply("Dit is een automatisch antwoord. Ik ben afwezig tot en met 18 maart.")
    assert found.kind is InboundKind.auto_reply
    assert found.return_date == date(2026, 3, 19)


def test_a_last_day_away_on_friday_resumes_monday_in_the_leads_window() -> None:
    """'t/m vrijdag 13 maart' (Amsterdam lead, mon-fri 09-17): the pause ends Monday 16
    March 09:00 local, not on the Friday the person is still away."""
    found = reply("Dit is een automatisch antwoord. Ik ben afwezig t/m vrijdag 13 maart.")
    seq = sequence(send_window={"days": "mon-fri", "hours": "09:00-17:00"},
                   timezone="Europe/Amsterdam")
    now = datetime(2026, 3, 2, 9, 0, tzinfo=UTC)
    until = resume_at(found.return_date, seq, LeadRecord(1, "dana@lead.example"), now, "UTC")
    assert until == datetime(2026, 3, 16, 8, 0, tzinfo=UTC)

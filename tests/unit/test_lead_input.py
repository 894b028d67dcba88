"""Lead data at the boundary (domain/lead_input.py, through services/enroll.parse_lead and
lead_changes.check_stage): one line of printable text in every column and field name, and
addresses that need no SMTPUTF8. The API, `enroll --set` and CSV rows all go through these."""

from __future__ import annotations

import pytest

from engine.errors import InvalidLead
from engine.services.enroll import normalise_email, parse_lead
from engine.services.lead_changes import check_stage

BREAKERS = {"CR": "\r", "LF": "\n", "CRLF": "\r\n", "NUL": "\x00", "TAB": "\t",
            "ESC": "\x1b", "DEL": "\x7f", "NEL": "\x85", "LS": "\u2028", "PS": "\u2029"}


@pytest.mark.parametrize("field", ["first_name", "last_name", "company", "owner", "stage"])
@pytest.mark.parametrize("char", list(BREAKERS.values()), ids=list(BREAKERS))
def test_a_control_character_inside_a_column_is_refused(field: str, char: str) -> None:
    """Each text column refuses line breaks, NUL, other controls and U+2028/2029, naming
    the field first (the API reports it as `field`)."""
    with pytest.raises(InvalidLead) as caught:
        parse_lead("ada@example.com", {field: f"Ada{char}Bcc: eve@example.com"})
    assert caught.value.message.startswith(f"{field}: ")
    assert "remove line breaks and control characters" in caught.value.message


def test_every_problem_is_reported_at_once() -> None:
    """Two bad columns and a bad field name: one error naming all three."""
    with pytest.raises(InvalidLead) as caught:
        parse_lead("ada@example.com", {"first_name": "A\nB", "company": "X\rY", "a\nb": "1"})
    message = caught.value.message
    assert message.startswith("first_name: ")
    assert "company: " in message and "the field name 'a\\nb'" in message


def test_a_custom_field_name_must_be_one_line_and_named() -> None:
    """Field names are checked (a column without a header is refused); values may hold
    line breaks, since templates put them in bodies."""
    with pytest.raises(InvalidLead, match="the field name 'use\\\\rcase' contains"):
        parse_lead("ada@example.com", {"use\rcase": "x"})
    with pytest.raises(InvalidLead, match="without a name"):
        parse_lead("ada@example.com", {"": "extra"})
    lead = parse_lead("ada@example.com", {"notes": "line one\nline two"})
    assert lead.custom == {"notes": "line one\nline two"}


def test_ordinary_names_pass_untouched() -> None:
    """Accents, apostrophes, non-Latin scripts and surrounding blanks are fine."""
    lead = parse_lead("ada@example.com", {"first_name": "  Zoë ", "last_name": "O'Brien",
                                          "company": "株式会社 Example", "owner": "bob"})
    assert dict(lead.columns) == {"first_name": "Zoë", "last_name": "O'Brien",
                                  "company": "株式会社 Example", "owner": "bob"}


def test_an_overlong_value_is_refused_everywhere() -> None:
    """The API's 200-character limit now holds for --set and CSV rows too."""
    with pytest.raises(InvalidLead, match="company: 201 characters is too long; at most 200"):
        parse_lead("ada@example.com", {"company": "x" * 201})


def test_a_stage_change_uses_the_same_rules() -> None:
    """PATCH /api/leads/{email} and the CLI stage change refuse what enroll refuses."""
    with pytest.raises(InvalidLead, match="stage: 'decision\\\\nX' contains a U\\+000A"):
        check_stage("decision\nX")
    assert check_stage(" decision ") == "decision"


def test_an_address_that_needs_smtputf8_is_refused() -> None:
    """A non-ASCII local part cannot be sent through our relays: refused with how to fix."""
    with pytest.raises(InvalidLead) as caught:
        normalise_email("ünï@exämple.com")
    assert "not a valid email address" in caught.value.message
    assert "SMTPUTF8" in caught.value.message


def test_an_internationalised_domain_is_kept_in_its_ascii_form() -> None:
    """ASCII local part, IDN domain: stored as IDNA (what SMTP sends), lower-case."""
    assert normalise_email("Ada@Exämple.com") == "ada@xn--exmple-cua.com"

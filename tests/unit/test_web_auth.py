"""Web auth helpers without a server: secrets compared safely, rep passwords from the
environment, local-only redirects after sign-in."""

from __future__ import annotations

import pytest

from engine.settings import RepConfig, Settings
from engine.web.auth import safe_next, same, verify


@pytest.fixture
def settings(monkeypatch: pytest.MonkeyPatch) -> Settings:
    monkeypatch.setenv("REP_ADA_PW", "correct horse")
    return Settings(reps=[RepConfig(name="ada", email="ada@x.com", password_env="REP_ADA_PW"),
                          RepConfig(name="nopw", email="n@x.com")])


def test_same_never_matches_an_empty_secret() -> None:
    """An unset token or password matches nothing, not even an empty guess."""
    assert not same("", "")
    assert not same("x", "")
    assert same("abc", "abc") and not same("abc", "abd")


def test_verify_accepts_only_the_reps_own_password(settings: Settings) -> None:
    """The right password signs the rep in; a wrong one, an unknown rep, or none, do not."""
    rep = verify(settings, "ada", "correct horse")
    assert rep is not None and rep.name == "ada"
    assert verify(settings, " ada ", "correct horse") is not None
    assert verify(settings, "ada", "wrong") is None
    assert verify(settings, "bob", "correct horse") is None
    assert verify(settings, "nopw", "") is None


@pytest.mark.parametrize(("given", "expected"), [
    ("/reps/handoffs/3", "/reps/handoffs/3"),
    ("/stats?x=1", "/stats?x=1"),
    ("//evil.example/", "/reps/"),
    ("https://evil.example/", "/reps/"),
    ("/\\evil.example", "/reps/"),
    ("", "/reps/"),
    (None, "/reps/"),
])
def test_safe_next_keeps_redirects_on_this_site(given: str | None, expected: str) -> None:
    """After sign-in only a local path is followed: no open redirect to another site."""
    assert safe_next(given) == expected

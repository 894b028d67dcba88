"""docker/ without a Docker engine: the compose file parses and wires the stack (services,
healthchecks, secrets only as ${VAR} references), the config loads, and the Dockerfile is
linted structurally (small base, non-root USER, a curl-less HEALTHCHECK, no ADD of URLs)."""

from __future__ import annotations

import re
import shlex
from pathlib import Path
from typing import Any

import pytest
import yaml

from engine.settings import Settings

ROOT = Path(__file__).resolve().parents[2]
DOCKER = ROOT / "docker"
SECRETISH = re.compile(r"PASSWORD|SECRET|TOKEN|KEY|DATABASE_URL", re.IGNORECASE)
REFERENCE = re.compile(r"\$\{[A-Z_][A-Z0-9_]*(?::?[-?][^}]*)?\}")


@pytest.fixture(scope="module")
def compose() -> dict[str, Any]:
    data = yaml.safe_load((DOCKER / "compose.yaml").read_text())
    assert isinstance(data, dict)
    return data


def services(compose: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return compose["services"]


def env(service: dict[str, Any]) -> dict[str, str]:
    raw = service.get("environment") or {}
    if isinstance(raw, list):
        raw = dict(item.split("=", 1) for item in raw)
    return {k: str(v) for k, v in raw.items()}


def instructions() -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) of the Dockerfile, continuation lines joined."""
    text = (DOCKER / "Dockerfile").read_text()
    text = re.sub(r"\\\n", " ", text)
    out = []
    for line in text.splitlines():
        line = line.strip()
        if line and not line.startswith("#"):
            word, _, rest = line.partition(" ")
            out.append((word.upper(), rest.strip()))
    return out


# --- compose.yaml ----------------------------------------------------------------------------

def test_compose_has_the_whole_loop(compose: dict[str, Any]) -> None:
    """PostgreSQL, a mail server with SMTP and IMAP, a migration step and the engine."""
    assert {"postgres", "mail", "migrate", "engine"} <= set(services(compose))
    mail_ports = " ".join(services(compose)["mail"]["ports"])
    assert "3025" in mail_ports and "3143" in mail_ports


def test_long_running_services_have_healthchecks(compose: dict[str, Any]) -> None:
    """postgres, mail and engine each declare a healthcheck command."""
    for name in ("postgres", "mail", "engine"):
        check = services(compose)[name].get("healthcheck", {})
        assert check.get("test"), f"{name} has no healthcheck"


def test_engine_waits_for_a_healthy_database_and_the_migration(compose: dict[str, Any]) -> None:
    """The engine starts after PostgreSQL is healthy and `db upgrade` completed."""
    deps = services(compose)["engine"]["depends_on"]
    assert deps["postgres"]["condition"] == "service_healthy"
    assert deps["migrate"]["condition"] == "service_completed_successfully"
    assert services(compose)["migrate"]["command"] == ["db", "upgrade"]


def test_the_engine_healthcheck_asks_healthz_without_curl(compose: dict[str, Any]) -> None:
    """The engine's healthcheck uses Python's urllib on /healthz (no curl in a slim image)."""
    test = " ".join(services(compose)["engine"]["healthcheck"]["test"])
    assert "urllib" in test and "/healthz" in test and "curl" not in test


def test_secrets_are_only_variable_references(compose: dict[str, Any]) -> None:
    """Every secret-looking value is a ${VAR} reference, never a literal in the file."""
    for name, service in services(compose).items():
        for key, value in env(service).items():
            if SECRETISH.search(key):
                assert REFERENCE.search(value), f"{name}.{key} holds a literal value"
            creds = re.search(r"://[^:/@]+:([^@]+)@", value)
            if creds:
                assert REFERENCE.fullmatch(creds.group(1)), f"{name}.{key}: password in URL"


def test_required_secrets_fail_loudly_when_unset(compose: dict[str, Any]) -> None:
    """The engine's secrets use ${VAR:?message}: compose refuses to start without them."""
    engine = env(services(compose)["engine"])
    for key in ("NURTURE_SECRET_KEY", "NURTURE_API_TOKEN"):
        assert re.fullmatch(r"\$\{" + key + r":\?[^}]+\}", engine[key]), key


def test_published_ports_are_loopback_only(compose: dict[str, Any]) -> None:
    """Nothing is published on every interface: a test mail server must stay private."""
    for name, service in services(compose).items():
        for port in service.get("ports", []):
            assert str(port).startswith("127.0.0.1:"), f"{name} publishes {port}"


def test_every_secret_the_config_names_is_passed_in(compose: dict[str, Any]) -> None:
    """Each password_env in docker/nurture.yaml is set in the engine's environment."""
    config = yaml.safe_load((DOCKER / "nurture.yaml").read_text())
    names = [m["imap"]["password_env"] for m in config["mailboxes"].values() if "imap" in m]
    names += [r["password_env"] for r in config.get("reps", [])]
    engine = env(services(compose)["engine"])
    assert names and all(n in engine for n in names)


def test_the_stack_config_is_valid_settings(monkeypatch: pytest.MonkeyPatch) -> None:
    """docker/nurture.yaml loads as Settings: no unknown or misspelt keys."""
    settings = Settings.load(DOCKER / "nurture.yaml")
    assert settings.mailboxes["sales"].imap is not None
    assert settings.http_host == "0.0.0.0" and settings.http_port == 8025


def test_the_config_mailbox_matches_the_example_sequences() -> None:
    """The image's example sequences send from `sales`, which the stack config defines."""
    config = yaml.safe_load((DOCKER / "nurture.yaml").read_text())
    for path in (ROOT / "sequences").glob("*.yaml"):
        mailbox = yaml.safe_load(path.read_text()).get("mailbox")
        assert mailbox in config["mailboxes"], f"{path.name} sends from {mailbox}"


# --- Dockerfile ------------------------------------------------------------------------------

def test_dockerfile_uses_a_slim_python_311_base() -> None:
    """Every stage starts from python:3.11-slim."""
    bases = [args.split()[0] for word, args in instructions() if word == "FROM"]
    assert bases and all(b == "python:3.11-slim" for b in bases)


def test_dockerfile_runs_as_a_non_root_user() -> None:
    """The final stage's last USER is a named, non-root user."""
    final = _final_stage()
    users = [args for word, args in final if word == "USER"]
    assert users, "no USER in the final stage: the engine would run as root"
    assert users[-1].split(":")[0] not in ("root", "0")


def test_dockerfile_has_a_curl_less_healthcheck_on_healthz() -> None:
    """HEALTHCHECK runs python's urllib against /healthz in exec form."""
    [check] = [args for word, args in _final_stage() if word == "HEALTHCHECK"]
    assert "CMD [" in check and "urllib" in check and "/healthz" in check
    assert "curl" not in check and "wget" not in check


def test_dockerfile_adds_no_remote_urls_and_installs_no_browser() -> None:
    """No ADD of a URL (unverified downloads); no `playwright install`; COPY instead of ADD."""
    for word, args in instructions():
        assert not (word == "ADD" and re.search(r"https?://", args)), args
        assert "playwright install" not in args
    assert not any(word == "ADD" for word, _ in instructions())


def test_dockerfile_copies_files_that_exist() -> None:
    """Every local COPY source exists in the repository (build context = repo root)."""
    for word, args in instructions():
        if word != "COPY" or "--from=" in args:
            continue
        parts = [p for p in shlex.split(args) if not p.startswith("--")]
        for source in parts[:-1]:
            assert (ROOT / source).exists(), f"COPY {source}: not in the repository"


def test_dockerignore_lets_every_copied_source_in() -> None:
    """Dockerfile.dockerignore excludes everything but what COPY needs: each source is let in."""
    allowed = {line.strip()[1:].removesuffix("/**") for line in
               (DOCKER / "Dockerfile.dockerignore").read_text().splitlines()
               if line.strip().startswith("!")}
    for word, args in instructions():
        if word == "COPY" and "--from=" not in args:
            parts = [p for p in shlex.split(args) if not p.startswith("--")]
            for source in parts[:-1]:
                assert source in allowed, f"COPY {source} is excluded from the build context"


def test_dockerfile_starts_the_daemon() -> None:
    """ENTRYPOINT is `nurture`, the default command `run`."""
    final = dict(_final_stage())
    assert final["ENTRYPOINT"] == '["nurture"]' and final["CMD"] == '["run"]'


def _final_stage() -> list[tuple[str, str]]:
    steps = instructions()
    start = max(i for i, (word, _) in enumerate(steps) if word == "FROM")
    return steps[start:]

"""One typed Settings object: a config file (nurture.yaml) plus NURTURE_* environment variables.

This is the only module that reads the environment. Secrets (passwords, the signing key,
API tokens) never live in the file: the file names the environment variable that holds each.
"""

from __future__ import annotations

import difflib
import os
from collections.abc import Collection, Mapping
from email.errors import HeaderParseError
from email.headerregistry import Address as ParsedAddress
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    Field,
    PrivateAttr,
    ValidationError,
    field_validator,
)
from pydantic_settings import BaseSettings, SettingsConfigDict, SettingsError

from engine.authoring.yamlload import Document, load_document
from engine.domain.correlation import sendable_address
from engine.domain.sequence import check_timezone
from engine.errors import ConfigError

CONFIG_FILE_NAMES = ("nurture.yaml", "nurture.yml")


def _address(value: str) -> str:
    """An address we send from or to, as RFC 5322 writes one (syntax only: test and local
    domains are fine here); empty where the setting is optional."""
    if not value:
        return value
    try:
        parsed = ParsedAddress(addr_spec=value)
        good = (bool(parsed.username and parsed.domain) and value.isascii()
                and sendable_address(value))  # what compose will accept in From/To
    except (ValueError, IndexError, HeaderParseError):
        good = False
    if not good:
        raise ValueError(f"'{value}' is not an email address; write it like sales@example.com "
                         "(ASCII only: an internationalised domain in its xn-- form)")
    return value


Address = Annotated[str, AfterValidator(_address)]


def _port(value: int, lowest: int = 1) -> int:
    if not lowest <= value <= 65535:
        raise ValueError(f"{value} is not a port; a port is a number from {lowest} to 65535")
    return value


Port = Annotated[int, AfterValidator(_port)]
ListenPort = Annotated[int, AfterValidator(lambda v: _port(v, lowest=0))]  # 0: any free port


class Section(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class SmtpConfig(Section):
    host: str = "127.0.0.1"
    port: Port = 587
    tls: Literal["starttls", "tls", "none"] = "starttls"
    username: str = ""
    password_env: str = ""  # name of the environment variable holding the password
    timeout: float = 30.0
    messages_per_connection: int = 100  # recycle connections, as relays advise
    connections: int = 2


class ImapConfig(Section):
    host: str = "127.0.0.1"
    port: Port = 993
    tls: Literal["tls", "starttls", "none"] = "tls"
    username: str = ""
    password_env: str = ""
    folders: list[str] = Field(default_factory=lambda: ["INBOX"])
    sent_folder: str = "Sent"  # empty: do not keep a copy of sent mail
    idle: bool = True  # IDLE when the server offers it, else poll
    # IDLE is re-issued well inside RFC 2177's 29 minutes; 0 would be a busy loop.
    idle_renew_seconds: int = Field(300, ge=1, le=1740)
    poll_seconds: int = Field(60, ge=1)


class MailboxConfig(Section):
    address: Address
    from_name: str = ""
    signature: str = ""
    reply_to: Address = ""
    smtp: SmtpConfig = SmtpConfig()
    imap: ImapConfig | None = None
    daily_limit: int = 400
    per_minute_limit: int = 20


class RepConfig(Section):
    name: str
    email: Address
    password_env: str = ""  # rep page sign-in; empty means the rep cannot sign in
    webhook: str = ""


class Settings(BaseSettings):
    """Everything the engine is configured with, read once at start-up."""

    model_config = SettingsConfigDict(env_prefix="NURTURE_", extra="forbid", frozen=True)

    config_path: Path | None = None
    database_url: str = "sqlite:///nurture.db"
    sequences_dir: Path = Path("sequences")
    templates_dir: Path = Path("templates")
    default_timezone: str = "UTC"
    base_url: str = "http://127.0.0.1:8025"  # public URL of the HTTP server (unsubscribe links)
    http_host: str = "127.0.0.1"
    http_port: ListenPort = 8025  # 0: any free port
    secret_key: str = ""  # signs unsubscribe links and rep sessions: set NURTURE_SECRET_KEY
    api_token: str = ""  # bearer token for the HTTP API: set NURTURE_API_TOKEN
    unsubscribe_mailto: Address = ""  # e.g. unsubscribe@example.com; default: the mailbox address
    postal_address: str = ""  # CAN-SPAM footer, available to templates as sender.postal_address
    notify_webhook: str = ""  # optional: JSON POST on every handoff (chat tools)
    mailboxes: dict[str, MailboxConfig] = Field(default_factory=dict)
    reps: list[RepConfig] = Field(default_factory=list)
    worker_name: str = ""  # default: host:pid
    batch_size: int = 100
    lease_seconds: int = 60
    heartbeat_seconds: int = 10
    log_format: Literal["json", "console"] = "console"
    # Secrets a caller hands over instead of the environment (the demo's generated passwords);
    # private, so never read from the file or the environment and never dumped.
    _secrets: Mapping[str, str] = PrivateAttr(default_factory=dict)

    @field_validator("default_timezone")
    @classmethod
    def _tz(cls, v: str) -> str:
        return check_timezone(v)

    @classmethod
    def load(cls, config_path: Path | str | None = None,
             secrets: Mapping[str, str] | None = None, **overrides: Any) -> Settings:
        """Read the config file (explicit, $NURTURE_CONFIG, or ./nurture.yaml) and the env.
        `secrets` answers `secret(name)` for the names it holds, before the environment."""
        path = _find_config(config_path)
        data: dict[str, Any] = {}
        doc: Document | None = None
        if path is not None:
            doc, problems = load_document(path)
            if problems or doc is None:
                raise ConfigError("\n".join(str(p) for p in problems))
            if not isinstance(doc.data or {}, dict):
                raise ConfigError(f"{path}: the config file must be a mapping of settings")
            data = dict(doc.data or {})
            base = path.parent
            for key in ("sequences_dir", "templates_dir"):
                if key in data and not Path(data[key]).is_absolute():
                    data[key] = str(base / data[key])
            for key in ("sequences_dir", "templates_dir"):
                data.setdefault(key, str(base / key.removesuffix("_dir")))
            url = data.get("database_url", "")
            if url.startswith("sqlite:///") and not url.startswith("sqlite:////"):
                data["database_url"] = f"sqlite:///{base / url.removeprefix('sqlite:///')}"
        # Environment wins over the file; explicit overrides win over both.
        env_keys = {k.lower().removeprefix("nurture_") for k in os.environ
                    if k.startswith("NURTURE_")}
        for key in env_keys & set(data):
            data.pop(key)
        data.update(overrides)
        try:
            settings = cls(config_path=path, **data)
        except ValidationError as exc:
            raise ConfigError(_explain(doc, exc, env_keys - set(overrides))) from None
        except SettingsError as exc:  # an env value that must be JSON is not
            raise ConfigError(_env_not_json(exc)) from None
        settings._secrets = dict(secrets or {})
        return settings

    def config_hint(self) -> str:
        """Said after an error that a missing config file may explain (a cron job started in
        the wrong directory)."""
        if self.config_path is not None:
            return ""
        return (" (no config file was found: run nurture in the project's directory, pass "
                "--config, or set NURTURE_CONFIG)")

    def secret(self, env_name: str) -> str:
        """The value of a secret named in the config (e.g. a mailbox password)."""
        if not env_name:
            return ""
        return self._secrets.get(env_name, os.environ.get(env_name, ""))

    def mailbox(self, name: str) -> MailboxConfig:
        try:
            return self.mailboxes[name]
        except KeyError:
            known = ", ".join(sorted(self.mailboxes)) or "none configured"
            raise ConfigError(f"no mailbox named '{name}' (mailboxes: {known})") from None

    def rep(self, name: str) -> RepConfig | None:
        return next((r for r in self.reps if r.name == name), None)


def _find_config(explicit: Path | str | None) -> Path | None:
    if explicit:
        path = Path(explicit)
        if not path.is_file():
            raise ConfigError(f"{path}: no such config file")
        return path
    env = os.environ.get("NURTURE_CONFIG")
    if env:
        return _find_config(env)
    return next((Path(n) for n in CONFIG_FILE_NAMES if Path(n).is_file()), None)


# What the settings read as JSON from the environment look like.
_ENV_JSON_SHAPES = {
    "mailboxes": 'a JSON object of mailboxes, e.g. {"sales": {"address": "sales@example.com"}}',
    "reps": 'a JSON list of reps, e.g. [{"name": "sam", "email": "sam@example.com"}]',
}


def _env_not_json(exc: SettingsError) -> str:
    field = str(exc).split('"')[1] if str(exc).count('"') >= 2 else ""
    shape = _ENV_JSON_SHAPES.get(field, "JSON")
    return (f"NURTURE_{field.upper()}: the environment variable is not valid JSON; it must be "
            f"{shape}. Settings like this are easier to keep in the config file "
            f"(nurture.yaml, {field}:)")


def _explain(doc: Document | None, exc: ValidationError, from_env: Collection[str] = ()) -> str:
    """Each error on a line, blamed on the environment variable or the file (and its line)
    it came from, with a did-you-mean for an unknown setting."""
    lines = []
    for err in exc.errors():
        loc = tuple(err["loc"])
        top = str(loc[0]) if loc else ""
        where = (f"NURTURE_{top.upper()} (environment)" if top in from_env
                 else f"{doc.path}:{doc.line(loc)}" if doc is not None else "settings")
        plain = _PLAIN_ERRORS.get(err["type"])  # our own words, with pydantic's bound
        msg = plain.format(**err.get("ctx", {})) if plain else err["msg"]
        if err["type"] == "extra_forbidden":
            close = difflib.get_close_matches(str(loc[-1]), _setting_names(), n=1)
            msg = "unknown setting" + (f"; did you mean '{close[0]}'?" if close else "")
        elif err["type"] == "value_error":
            msg = str(err.get("ctx", {}).get("error", msg))  # our own message, no prefix
        lines.append(f"{where}: {'.'.join(str(p) for p in loc)}: {msg}")
    return "\n".join(lines)


# pydantic's sentences for the mistakes made in a config file, said plainly.
_PLAIN_ERRORS = {
    "int_parsing": "must be a whole number, e.g. 587",
    "float_parsing": "must be a number, e.g. 30",
    "bool_parsing": "must be true or false",
    "missing": "is required",
    "greater_than_equal": "must be at least {ge}",
    "less_than_equal": "must be at most {le}",
}


def _setting_names() -> list[str]:
    """Every key a config file may use, at any level."""
    models: list[type[BaseModel]] = [Settings, SmtpConfig, ImapConfig, MailboxConfig,
                                     RepConfig]
    return sorted({name for m in models for name in m.model_fields})

"""config.yaml (+ MAILBEACON__SECTION__KEY environment overrides) -> typed, validated settings.

The only module that reads configuration. Each package declares the settings it needs as a
dataclass; this module builds them, and stops with one line naming the bad key, the value given
and what was expected.
"""

from __future__ import annotations

import base64
import contextlib
import dataclasses
import ipaddress
import os
import re
import secrets
import types
import typing
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import yaml
from cryptography.fernet import Fernet
from sqlalchemy.engine import make_url

from bot.users import UserSettings
from notifier.digests import is_time_zone
from notifier.quiet import is_quiet_range
from notifier.settings import NotifierSettings
from outreach.oauth import OAuthSettings
from outreach.settings import OutreachSettings
from store.engine import DatabaseSettings
from tracking.settings import TrackingSettings

ENV_PREFIX = "MAILBEACON__"


class ConfigError(Exception):
    """A configuration mistake a user can fix; the message names the key."""


@dataclass(frozen=True)
class ServerSettings:
    host: str = "127.0.0.1"
    port: int = 8025
    # Addresses whose X-Forwarded-For header is trusted (the load balancer).
    trusted_proxies: list[str] = field(default_factory=lambda: ["127.0.0.1"])


@dataclass(frozen=True)
class SlackSettings:
    # The Slack app's bot token (xoxb-…), with the scopes the README's Slack section lists:
    # alerts as direct messages, and with a signing secret or an app token, /beacon. Empty: off.
    bot_token: str = ""
    # Slack's Web API; change it only for a test double.
    api_url: str = "https://slack.com/api/"
    # The app's signing secret: requests to /slack/events are checked against it.
    signing_secret: str = ""
    # An app-level token (xapp-…, scope connections:write): Socket Mode, no public URL needed.
    app_token: str = ""
    # The slash command the app registers.
    command: str = "/beacon"


@dataclass(frozen=True)
class SecretsSettings:
    # Fernet keys for credentials at rest; the first encrypts, all decrypt.
    # Empty: one is generated into the data folder.
    encryption_keys: list[str] = field(default_factory=list)


@dataclass(frozen=True)
class Settings:
    # Relative paths are relative to the folder of the config file.
    data_dir: str = "var"
    # Mail from these domains (and from known users) is internal: never a reply, never an alert.
    internal_domains: list[str] = field(default_factory=list)
    users: list[UserSettings] = field(default_factory=list)
    server: ServerSettings = field(default_factory=ServerSettings)
    database: DatabaseSettings = field(default_factory=DatabaseSettings)
    tracking: TrackingSettings = field(default_factory=TrackingSettings)
    outreach: OutreachSettings = field(default_factory=OutreachSettings)
    oauth: OAuthSettings = field(default_factory=OAuthSettings)
    notifier: NotifierSettings = field(default_factory=NotifierSettings)
    slack: SlackSettings = field(default_factory=SlackSettings)
    secrets: SecretsSettings = field(default_factory=SecretsSettings)

    @property
    def data_path(self) -> Path:
        return Path(self.data_dir)


def load_settings(path: Path | None = None, environ: Mapping[str, str] | None = None) -> Settings:
    """Read config (if any), apply environment overrides, validate, and generate missing keys."""
    environ = os.environ if environ is None else environ
    raw: dict[str, Any] = {}
    base = Path.cwd()
    if path is not None:
        try:
            loaded = yaml.safe_load(path.read_text(encoding="utf-8"))
        except OSError as exc:
            raise ConfigError(f"cannot read config file {path}: {exc.strerror}") from None
        except yaml.YAMLError as exc:
            raise ConfigError(f"{path} is not valid YAML: {_yaml_problem(exc)}") from None
        if loaded is not None and not isinstance(loaded, dict):
            raise ConfigError(f"{path}: expected a mapping of sections at the top level")
        raw = loaded or {}
        base = path.resolve().parent
    _apply_environment(raw, environ)
    settings = build(Settings, raw, "")
    return _complete(settings, base)


def _yaml_problem(exc: yaml.YAMLError) -> str:
    problem = getattr(exc, "problem", None) or "cannot be parsed"
    mark = getattr(exc, "problem_mark", None)
    where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark else ""
    return f"{problem}{where}"


def _apply_environment(raw: dict[str, Any], environ: Mapping[str, str]) -> None:
    for name, value in environ.items():
        if not name.startswith(ENV_PREFIX):
            continue
        keys = [part.lower() for part in name[len(ENV_PREFIX) :].split("__")]
        target = raw
        for key in keys[:-1]:
            section = target.setdefault(key, {})
            if not isinstance(section, dict):
                raise ConfigError(f"{name}: '{key}' is not a section")
            target = section
        try:
            target[keys[-1]] = yaml.safe_load(value) if value != "" else ""
        except yaml.YAMLError:
            target[keys[-1]] = value


def build(cls: type[Any], raw: Any, where: str) -> Any:
    """Build dataclass `cls` from a mapping, checking every key and value against its type."""
    if not isinstance(raw, dict):
        raise ConfigError(f"{where or 'config'} = {_shown(cls, raw)}: expected a mapping of keys")
    hints = typing.get_type_hints(cls)
    known = {f.name for f in dataclasses.fields(cls)}
    for key in raw:
        if key not in known:
            raise ConfigError(
                f"{_join(where, str(key))}: unknown key (known keys: {', '.join(sorted(known))})"
            )
    values: dict[str, Any] = {}
    for f in dataclasses.fields(cls):
        key = _join(where, f.name)
        if f.name in raw:
            values[f.name] = _convert(hints[f.name], raw[f.name], key)
        elif f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING:
            raise ConfigError(f"{key}: missing (it is required)")
    return cls(**values)


def _convert(hint: Any, value: Any, key: str) -> Any:
    origin = typing.get_origin(hint)
    args = typing.get_args(hint)
    if dataclasses.is_dataclass(hint):
        return build(typing.cast(type[Any], hint), {} if value is None else value, key)
    if origin is Literal:
        if value not in args:
            raise _expected(key, value, "one of " + ", ".join(map(str, args)))
        return value
    if origin in (types.UnionType, typing.Union):
        if value is None and type(None) in args:
            return None
        (inner,) = [a for a in args if a is not type(None)]
        return _convert(inner, value, key)
    if origin is list:
        if value is None:
            return []
        if not isinstance(value, list):
            raise _expected(key, value, "a list")
        return [_convert(args[0], item, f"{key}[{i}]") for i, item in enumerate(value)]
    if origin is dict:
        if value is None:
            return {}
        if not isinstance(value, dict):
            raise _expected(key, value, "a mapping")
        return {str(k): _convert(args[1], v, f"{key}.{k}") for k, v in value.items()}
    if hint is bool:
        if not isinstance(value, bool):
            raise _expected(key, value, "true or false")
        return value
    if hint is int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise _expected(key, value, "a whole number")
        return value
    if hint is float:
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise _expected(key, value, "a number")
        return float(value)
    if hint is str:
        if value is None:
            return ""
        if not isinstance(value, str | int | float) or isinstance(value, bool):
            raise _expected(key, value, "a string")
        return str(value)
    raise TypeError(f"settings type {hint!r} at {key} is not supported")  # a bug, not a user error


def _expected(key: str, value: Any, what: str) -> ConfigError:
    shown = _HIDDEN if _is_secret(key) else _shown(None, value)
    return ConfigError(f"{key} = {shown}: expected {what}")


# Keys named like these hold secrets: an error names the key but never shows the value.
_SECRET_NAME = re.compile(r"(secret|token|password|_keys)(\[\d+\])?$")
_URL_PASSWORD = re.compile(r"(://[^/?#@:\s]*:)\S*@")
_HIDDEN = "(hidden)"


def _is_secret(key: str) -> bool:
    return bool(_SECRET_NAME.search(key))


def _holds_secret(hint: Any) -> bool:
    if dataclasses.is_dataclass(hint):
        hints = typing.get_type_hints(hint)
        return any(
            _is_secret(f.name) or _holds_secret(hints[f.name]) for f in dataclasses.fields(hint)
        )
    return any(_holds_secret(arg) for arg in typing.get_args(hint))


def _shown(section: type[Any] | None, value: Any) -> str:
    """The value as an error shows it: hidden where a section's secret may be in it, and any
    URL's password masked (a database.url with a password, say)."""
    if section is not None and _holds_secret(section):
        return _HIDDEN
    return _URL_PASSWORD.sub(r"\1***@", repr(value))


def _join(where: str, key: str) -> str:
    return f"{where}.{key}" if where else key


def _complete(settings: Settings, base: Path) -> Settings:
    """Resolve paths and defaults that depend on other keys, then check cross-key rules."""
    data = Path(settings.data_dir)
    data = data if data.is_absolute() else (base / data)
    database = settings.database
    if not database.url:
        database = dataclasses.replace(database, url=f"sqlite:///{data / 'mailbeacon.db'}")
    elif not database.url.startswith(("sqlite:", "postgresql:", "postgresql+psycopg:")):
        raise _expected("database.url", database.url, "a sqlite:/// or postgresql:// URL")
    for i, network in enumerate(settings.tracking.internal_networks):
        try:
            ipaddress.ip_network(network, strict=False)
        except ValueError:
            raise _expected(f"tracking.internal_networks[{i}]", network, "a CIDR network") from None
    for i, user in enumerate(settings.users):
        if not is_time_zone(user.timezone):
            raise _expected(
                f"users[{i}].timezone", user.timezone, "a time zone such as Europe/Berlin or UTC"
            )
        if user.quiet_hours and not is_quiet_range(user.quiet_hours):
            raise _expected(
                f"users[{i}].quiet_hours", user.quiet_hours, "a range of times such as 22:00-07:00"
            )
    tracking = settings.tracking
    if not tracking.base_url:
        host = "localhost" if settings.server.host in ("0.0.0.0", "::") else settings.server.host
        tracking = dataclasses.replace(tracking, base_url=f"http://{host}:{settings.server.port}")
    elif not tracking.base_url.startswith(("http://", "https://")):
        raise _expected("tracking.base_url", tracking.base_url, "an http:// or https:// URL")
    journal = Path(tracking.journal_dir) if tracking.journal_dir else data / "journal"
    tracking = dataclasses.replace(tracking, journal_dir=str(base / journal))
    if not re.fullmatch(r"/[a-z0-9_-]{1,31}", settings.slack.command):
        raise _expected(
            "slack.command",
            settings.slack.command,
            "a slash command such as /beacon (lower case, no spaces, at most 32 characters)",
        )
    outreach = settings.outreach
    outreach = dataclasses.replace(
        outreach,
        templates_dir=str(base / outreach.templates_dir),
        maildir=str(base / outreach.maildir) if outreach.maildir else str(data / "Maildir"),
    )
    return dataclasses.replace(
        settings,
        data_dir=str(data),
        database=database,
        tracking=tracking,
        outreach=outreach,
    )


def with_generated_keys(settings: Settings) -> Settings:
    """Make the data folder private, then fill in the signing and encryption keys, generating
    each once into it."""
    prepare_data_folder(settings)
    tracking = settings.tracking
    if not tracking.signing_keys:
        key = _key_file(
            settings.data_path / "tracking.key",
            lambda: base64.urlsafe_b64encode(secrets.token_bytes(32)).decode(),
        )
        tracking = dataclasses.replace(tracking, signing_keys=[key])
    for i, key in enumerate(tracking.signing_keys):
        if len(key) < 16:
            raise _expected(f"tracking.signing_keys[{i}]", key, "at least 16 characters")
    secrets_settings = settings.secrets
    if not secrets_settings.encryption_keys:
        key = _key_file(
            settings.data_path / "credentials.key", lambda: Fernet.generate_key().decode()
        )
        secrets_settings = SecretsSettings(encryption_keys=[key])
    for i, key in enumerate(secrets_settings.encryption_keys):
        try:
            Fernet(key)
        except ValueError:
            raise _expected(
                f"secrets.encryption_keys[{i}]", key, "a Fernet key (32 url-safe base64 bytes)"
            ) from None
    return dataclasses.replace(settings, tracking=tracking, secrets=secrets_settings)


def prepare_data_folder(settings: Settings) -> None:
    """Create the data folder (0700) and an SQLite database file (0600) if they are missing.

    The data folder holds the keys, the database and the Maildir: only its owner may read it.
    SQLite gives its -wal and -shm files the database file's mode, so creating the (empty, and
    so valid) database file 0600 here, before the engine opens it, keeps those private too.
    """
    _private_folder(settings.data_path)
    url = make_url(settings.database.url)
    if url.get_backend_name() != "sqlite" or url.database in (None, "", ":memory:"):
        return
    database = Path(url.database)
    _private_folder(database.parent)
    with contextlib.suppress(FileExistsError):
        os.close(os.open(database, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600))


def _private_folder(path: Path) -> None:
    if not path.exists():
        path.mkdir(mode=0o700, parents=True, exist_ok=True)


def _key_file(path: Path, generate: typing.Callable[[], str]) -> str:
    try:
        return path.read_text(encoding="ascii").strip()
    except FileNotFoundError:
        pass
    path.parent.mkdir(parents=True, exist_ok=True)
    key = generate()
    # Write aside, then link into place: if two processes start at once, exactly one key wins
    # and nobody ever reads a half-written file.
    temporary = path.with_name(f".{path.name}.{os.getpid()}")
    fd = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w", encoding="ascii") as f:
        f.write(key + "\n")
    try:
        os.link(temporary, path)
    except FileExistsError:
        key = path.read_text(encoding="ascii").strip()
    finally:
        temporary.unlink()
    return key

"""Secrets stay secret: the data folder, the database and the Maildir are the owner's only, and
no config error shows a secret."""

from __future__ import annotations

import os
import stat
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import pytest
from sqlalchemy import Engine, delete, text

from mailbeacon.cli import main
from mailbeacon.settings import ConfigError, load_settings, with_generated_keys
from outreach.maildir import MaildirMailbox, build_message
from outreach.oauth import OAuthError, create_sign_in, use_sign_in
from store.engine import make_engine
from store.schema import users


def mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


@pytest.fixture
def loose_umask() -> Iterator[None]:
    """The usual umask (0022): what we create is private because we make it so."""
    before = os.umask(0o022)
    yield
    os.umask(before)


def test_init_makes_the_data_folder_the_database_and_the_maildir_private(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, loose_umask: None
) -> None:
    data = tmp_path / "var"
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("MAILBEACON_CONFIG", raising=False)
    monkeypatch.setenv("MAILBEACON__DATA_DIR", str(data))
    monkeypatch.delenv("MAILBEACON__DATABASE__URL", raising=False)
    assert main(["init"]) == 0
    assert mode(data) == 0o700
    for name in ("mailbeacon.db", "tracking.key", "credentials.key"):
        assert mode(data / name) == 0o600, name

    settings = with_generated_keys(load_settings(None, {"MAILBEACON__DATA_DIR": str(data)}))
    engine = make_engine(settings.database)
    try:
        with engine.begin() as connection:  # the WAL and its index exist while it is open
            connection.execute(text("CREATE TABLE t (x INTEGER)"))
            for suffix in ("-wal", "-shm"):
                assert mode(data / f"mailbeacon.db{suffix}") == 0o600, suffix
    finally:
        engine.dispose()

    box = MaildirMailbox(Path(settings.outreach.maildir), "maria@us.example")
    box.send(
        build_message(
            sender="maria@us.example", to=["ann@c.example"], subject="Hi", html="<p>x</p>", text="x"
        )
    )
    maildir = data / "Maildir"
    folders = [maildir, *(p for p in maildir.rglob("*") if p.is_dir())]
    files = [p for p in maildir.rglob("*") if p.is_file()]
    assert len(folders) == 8 and len(files) == 1
    assert {p: mode(p) for p in folders} == {p: 0o700 for p in folders}
    assert {p: mode(p) for p in files} == {p: 0o600 for p in files}


@pytest.mark.parametrize(
    ("yaml_text", "environ", "key", "secret"),
    [
        ("database:\n  url: mysql://bob:hunter2@db/x\n", {}, "database.url", "hunter2"),
        ("database:\n  url: 'postgres://bob:h/u@n:t@db/x'\n", {}, "database.url", "h/u@n:t"),
        ("", {"MAILBEACON__SLACK__BOT_TOKEN": "{xoxb-1-secret: x}"}, "slack.bot_token", "xoxb"),
        ("slack:\n  signing_secret: [s3cr3t]\n", {}, "slack.signing_secret", "s3cr3t"),
        ("slack:\n  app_token: [xapp-1-secret]\n", {}, "slack.app_token", "xapp"),
        ("slack: xoxb-1-secret\n", {}, "slack", "xoxb"),
        (
            "oauth:\n  google_client_secret: [g-s3cr3t]\n",
            {},
            "oauth.google_client_secret",
            "s3cr3t",
        ),
        (
            "oauth:\n  microsoft_client_secret: {m: s3cr3t}\n",
            {},
            "oauth.microsoft_client_secret",
            "s3cr3t",
        ),
        ("secrets:\n  encryption_keys: s3cr3t\n", {}, "secrets.encryption_keys", "s3cr3t"),
        ("secrets:\n  encryption_keys: [s3cr3t]\n", {}, "secrets.encryption_keys[0]", "s3cr3t"),
        ("secrets:\n  encryption_keys: [[s3cr3t]]\n", {}, "secrets.encryption_keys[0]", "s3cr3t"),
        ("tracking:\n  signing_keys: [s3cr3t]\n", {}, "tracking.signing_keys[0]", "s3cr3t"),
        ("tracking:\n  signing_keys: s3cr3t\n", {}, "tracking.signing_keys", "s3cr3t"),
    ],
)
def test_a_config_error_names_the_key_but_never_shows_a_secret(
    tmp_path: Path, yaml_text: str, environ: dict[str, str], key: str, secret: str
) -> None:
    config = tmp_path / "config.yaml"
    config.write_text(yaml_text)
    with pytest.raises(ConfigError) as raised:
        with_generated_keys(
            load_settings(config, {"MAILBEACON__DATA_DIR": str(tmp_path), **environ})
        )
    message = str(raised.value)
    assert message.startswith(f"{key} = ") and secret not in message
    assert "(hidden)" in message or "://bob:***@db/x" in message


def test_a_sign_in_of_a_user_who_no_longer_exists_is_unknown(engine: Engine) -> None:
    now = datetime.now(UTC)
    with engine.begin() as connection:
        user = connection.execute(
            users.insert().values(email="gone@us.example").returning(users.c.id)
        ).scalar_one()
        sign_in = create_sign_in(connection, user, "gmail", "gone@us.example", now)
        connection.execute(delete(users).where(users.c.id == user))
    with engine.begin() as connection, pytest.raises(OAuthError) as refused:
        use_sign_in(connection, sign_in.id, "gmail", "cookie", now)
    assert refused.value.status == 404 and "there is no such sign-in link" in str(refused.value)

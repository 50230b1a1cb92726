from __future__ import annotations

import stat
from pathlib import Path

import pytest

from mailbeacon.settings import ConfigError, load_settings, with_generated_keys

SHIPPED = Path(__file__).resolve().parents[2] / "config.yaml"


def test_the_shipped_config_runs_with_no_accounts(tmp_path: Path) -> None:
    settings = load_settings(SHIPPED, {})
    assert settings.database.url == f"sqlite:///{SHIPPED.parent / 'var' / 'mailbeacon.db'}"
    assert settings.tracking.enabled
    assert settings.tracking.base_url == "http://127.0.0.1:8025"


def test_environment_variables_override_any_key() -> None:
    settings = load_settings(
        SHIPPED,
        {
            "MAILBEACON__DATABASE__URL": "postgresql://db.internal/mailbeacon",
            "MAILBEACON__TRACKING__ENABLED": "false",
            "MAILBEACON__TRACKING__UTM": "{utm_source: mailbeacon}",
            "MAILBEACON__SERVER__PORT": "9000",
            "MAILBEACON__INTERNAL_DOMAINS": "[us.example]",
            "UNRELATED": "ignored",
        },
    )
    assert settings.database.url == "postgresql://db.internal/mailbeacon"
    assert settings.tracking.enabled is False
    assert settings.tracking.utm == {"utm_source": "mailbeacon"}
    assert settings.server.port == 9000
    assert settings.tracking.base_url == "http://127.0.0.1:9000"
    assert settings.internal_domains == ["us.example"]


@pytest.mark.parametrize(
    ("yaml_text", "environ", "message"),
    [
        (
            "tracking:\n  enabeld: true\n",
            {},
            "tracking.enabeld: unknown key (known keys: anonymize_ip, base_url,",
        ),
        ("server:\n  port: eighty\n", {}, "server.port = 'eighty': expected a whole number"),
        ("tracking:\n  enabled: maybe\n", {}, "tracking.enabled = 'maybe': expected true or false"),
        ("", {"MAILBEACON__SERVER__PORT": "x"}, "server.port = 'x': expected a whole number"),
        ("", {"MAILBEACON__NOPE": "1"}, "nope: unknown key"),
        (
            "database:\n  sqlite_synchronous: off\n",
            {},
            "database.sqlite_synchronous = False: expected one of full, normal",
        ),
        ("database:\n  url: mysql://x\n", {}, "database.url = 'mysql://x': expected a sqlite:///"),
        (
            "slack:\n  command: beacon\n",
            {},
            "slack.command = 'beacon': expected a slash command such as /beacon",
        ),
        ("users:\n  - name: Bob\n", {}, "users[0].email: missing (it is required)"),
        (
            "users:\n  - email: a@b.example\n    role: boss\n",
            {},
            "users[0].role = 'boss': expected one of member, admin",
        ),
        (
            "users:\n  - email: a@b.example\n    timezone: Mars/Olympus\n",
            {},
            "users[0].timezone = 'Mars/Olympus': expected a time zone such as Europe/Berlin",
        ),
        (
            "users:\n  - email: a@b.example\n    quiet_hours: '22-7'\n",
            {},
            "users[0].quiet_hours = '22-7': expected a range of times such as 22:00-07:00",
        ),
        (
            "tracking:\n  internal_networks: [10.0.0.0/33]\n",
            {},
            "tracking.internal_networks[0] = '10.0.0.0/33': expected a CIDR network",
        ),
        ("tracking:\n  base_url: example.com\n", {}, "tracking.base_url = 'example.com': expected"),
        ("server: [1, 2]\n", {}, "server = [1, 2]: expected a mapping of keys"),
        # tracking holds the signing keys: what is in their place is not shown
        ("tracking: [1, 2]\n", {}, "tracking = (hidden): expected a mapping of keys"),
        ("- a\n- b\n", {}, "expected a mapping of sections at the top level"),
        ("server: {port: 1\n", {}, "is not valid YAML"),
    ],
)
def test_a_bad_key_or_value_names_the_key_the_value_and_what_was_expected(
    tmp_path: Path, yaml_text: str, environ: dict[str, str], message: str
) -> None:
    config = tmp_path / "config.yaml"
    config.write_text(yaml_text)
    with pytest.raises(ConfigError) as raised:
        load_settings(config, environ)
    assert message in str(raised.value)
    assert "\n" not in str(raised.value)


def test_keys_are_generated_once_into_the_data_folder(tmp_path: Path) -> None:
    environ = {"MAILBEACON__DATA_DIR": str(tmp_path)}
    first = with_generated_keys(load_settings(None, environ))
    again = with_generated_keys(load_settings(None, environ))
    assert first.tracking.signing_keys == again.tracking.signing_keys
    assert len(first.tracking.signing_keys[0]) >= 43  # 256 bits
    assert first.secrets.encryption_keys == again.secrets.encryption_keys
    for name in ("tracking.key", "credentials.key"):
        assert stat.S_IMODE((tmp_path / name).stat().st_mode) == 0o600


def test_configured_keys_are_used_and_checked(tmp_path: Path) -> None:
    environ = {
        "MAILBEACON__DATA_DIR": str(tmp_path),
        "MAILBEACON__TRACKING__SIGNING_KEYS": "[short]",
    }
    with pytest.raises(ConfigError, match=r"tracking.signing_keys\[0\]"):
        with_generated_keys(load_settings(None, environ))
    environ["MAILBEACON__TRACKING__SIGNING_KEYS"] = (
        "[a-long-enough-signing-key, an-older-signing-key]"
    )
    settings = with_generated_keys(load_settings(None, environ))
    assert settings.tracking.signing_keys == ["a-long-enough-signing-key", "an-older-signing-key"]
    assert not (tmp_path / "tracking.key").exists()

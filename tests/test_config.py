"""Configuration: defaults of DECISIONS, then one file, then the environment."""

from __future__ import annotations

from pathlib import Path

import pytest

from lucid.runtime.config import DEFAULT_PORTS, ConfigError, load_settings


def test_defaults_are_the_port_map_of_decisions(tmp_path: Path) -> None:
    settings = load_settings({}, tmp_path / "none.toml")
    assert settings.ports == DEFAULT_PORTS
    assert settings.port("gateway") == 50051
    assert settings.port("mesh") == 50060
    assert settings.edge_port == 8080
    assert settings.mongodb_db == "lucid"
    assert settings.host == "127.0.0.1"


def test_file_then_environment(tmp_path: Path) -> None:
    config = tmp_path / "lucid.toml"
    config.write_text('mongodb_db = "from_file"\ncall_timeout_s = 3\n[ports]\nauth = 6000\n')
    settings = load_settings(
        {"LUCID_MONGODB_DB": "from_env", "LUCID_PORT_SESSIONS": "6001"}, config
    )
    assert settings.mongodb_db == "from_env"
    assert settings.call_timeout_s == 3.0
    assert settings.port("auth") == 6000
    assert settings.port("sessions") == 6001
    assert settings.port("gateway") == 50051


@pytest.mark.parametrize(
    ("env", "message"),
    [
        ({"LUCID_EDGE_PORT": "eighty"}, "edge_port"),
        ({"LUCID_PORT_AUTH": "x"}, "LUCID_PORT_AUTH"),
    ],
)
def test_bad_values_are_refused(tmp_path: Path, env: dict[str, str], message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        load_settings(env, tmp_path / "none.toml")


def test_unknown_setting_in_file_is_refused(tmp_path: Path) -> None:
    config = tmp_path / "lucid.toml"
    config.write_text("mongo_url = 'typo'\n")
    with pytest.raises(ConfigError, match="mongo_url"):
        load_settings({}, config)


def test_sealing_passphrase_file_is_made_once_with_mode_0600(tmp_path: Path) -> None:
    settings = load_settings({"LUCID_VAR_DIR": str(tmp_path)}, tmp_path / "none.toml")
    first = settings.sealing_passphrase()
    assert first == settings.sealing_passphrase()
    path = tmp_path / "secrets" / "key-passphrase"
    assert path.stat().st_mode & 0o777 == 0o600

"""Settings: read from ``HEADWATER_*`` variables, and insecure values refused outside development."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
from pydantic import ValidationError

from headwater.settings import Settings
from headwater.stores.metadata import open_store

HEADWATER = Path(sys.executable).parent / "headwater"


@pytest.fixture(autouse=True)
def clean_environment(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """Each test starts from the defaults, whatever the shell running the suite exports."""
    for name in list(os.environ):
        if name.startswith("HEADWATER_"):
            monkeypatch.delenv(name)
    monkeypatch.chdir(tmp_path)


def settings(**values: object) -> Settings:
    return Settings(**values)  # type: ignore[arg-type]


# --- HEADWATER_OUTBOUND_ALLOW ---


@pytest.mark.parametrize("environment", ["production", "development"])
@pytest.mark.parametrize("entry", ["*", "0.0.0.0/0", "::/0", "10.0.0.0/8,*"])
def test_outbound_wildcard_is_always_refused(environment: str, entry: str) -> None:
    with pytest.raises(ValidationError, match="HEADWATER_OUTBOUND_ALLOW"):
        settings(environment=environment, outbound_allow=entry)


@pytest.mark.parametrize("environment", ["production", "development"])
@pytest.mark.parametrize("entry", ["169.254.169.254", "169.254.0.0/16", "169.0.0.0/8", "128.0.0.0/1"])
def test_outbound_cloud_metadata_address_is_always_refused(environment: str, entry: str) -> None:
    with pytest.raises(ValidationError, match=r"169\.254|metadata"):
        settings(environment=environment, outbound_allow=entry)


@pytest.mark.parametrize("entry", ["127.0.0.1", "127.0.0.0/8", "localhost", "::1"])
def test_outbound_loopback_is_development_only(entry: str) -> None:
    with pytest.raises(ValidationError, match="loopback"):
        settings(environment="production", outbound_allow=entry)
    assert settings(environment="development", outbound_allow=entry).outbound_allow_entries == [entry]


@pytest.mark.parametrize("entry", ["127.0.0.0/7", "0.0.0.0/1"])
def test_outbound_range_covering_loopback_is_refused_in_production(entry: str) -> None:
    # A wider range that contains loopback must not slip past the loopback rule.
    with pytest.raises(ValidationError, match="loopback"):
        settings(environment="production", outbound_allow=entry)


@pytest.mark.parametrize("entry", ["::ffff:127.0.0.1", "::ffff:169.254.169.254"])
def test_outbound_ipv4_mapped_ipv6_spelling_is_refused_in_production(entry: str) -> None:
    # http://[::ffff:169.254.169.254]/ reaches the IPv4 address: the IPv6 spelling is the same host.
    with pytest.raises(ValidationError, match=r"loopback|metadata"):
        settings(environment="production", outbound_allow=entry)


def test_outbound_ordinary_entries_are_accepted_in_production() -> None:
    allowed = settings(environment="production", outbound_allow=" 10.0.0.0/8, crm.internal.example ,")
    assert allowed.outbound_allow_entries == ["10.0.0.0/8", "crm.internal.example"]


def test_outbound_is_empty_by_default() -> None:
    assert settings().outbound_allow_entries == []


# --- keys and tokens ---


@pytest.mark.parametrize("name", ["encryption_key", "token_signing_key"])
def test_short_keys_are_refused(name: str) -> None:
    with pytest.raises(ValidationError, match=f"HEADWATER_{name.upper()}"):
        settings(**{name: "k" * 31})
    assert getattr(settings(**{name: "k" * 32}), name) == "k" * 32


def test_token_lifetime_over_a_day_is_refused_in_production() -> None:
    with pytest.raises(ValidationError, match="HEADWATER_TOKEN_LIFETIME_SECONDS"):
        settings(environment="production", token_lifetime_seconds=86401)
    assert settings(environment="production", token_lifetime_seconds=86400).token_lifetime_seconds == 86400
    assert settings(environment="development", token_lifetime_seconds=172800).token_lifetime_seconds == 172800


def test_every_problem_is_reported_at_once() -> None:
    with pytest.raises(ValidationError) as caught:
        settings(outbound_allow="*", encryption_key="short", token_lifetime_seconds=100_000)
    message = str(caught.value)
    for name in ("HEADWATER_OUTBOUND_ALLOW", "HEADWATER_ENCRYPTION_KEY", "HEADWATER_TOKEN_LIFETIME_SECONDS"):
        assert name in message


# --- environment variables and defaults ---


def test_environment_variables_are_read(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("HEADWATER_HOME", str(tmp_path / "hw"))
    monkeypatch.setenv("HEADWATER_PORT", "9123")
    monkeypatch.setenv("HEADWATER_HOST", "0.0.0.0")
    monkeypatch.setenv("HEADWATER_ENVIRONMENT", "development")
    monkeypatch.setenv("HEADWATER_OUTBOUND_ALLOW", "127.0.0.1,10.1.2.0/24")
    monkeypatch.setenv("HEADWATER_DATABASE_URL", "postgresql+psycopg://hw@db.example:5432/hw")
    monkeypatch.setenv("HEADWATER_TOKEN_LIFETIME_SECONDS", "600")
    monkeypatch.setenv("HEADWATER_PUBLIC_URL", "https://headwater.example/")
    loaded = Settings()
    assert loaded.home == tmp_path / "hw"
    assert (loaded.port, loaded.host, loaded.environment) == (9123, "0.0.0.0", "development")
    assert loaded.outbound_allow_entries == ["127.0.0.1", "10.1.2.0/24"]
    assert loaded.resolved_database_url == "postgresql+psycopg://hw@db.example:5432/hw"
    assert loaded.token_lifetime_seconds == 600
    assert loaded.base_url == "https://headwater.example"


def test_invalid_environment_variable_is_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HEADWATER_PORT", "not-a-port")
    with pytest.raises(ValidationError, match="port"):
        Settings()


def test_environment_checks_apply_to_variables_too(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HEADWATER_OUTBOUND_ALLOW", "127.0.0.1")
    with pytest.raises(ValidationError, match="loopback"):
        Settings()
    monkeypatch.setenv("HEADWATER_ENVIRONMENT", "development")
    assert Settings().outbound_allow_entries == ["127.0.0.1"]


def test_defaults(tmp_path: Path) -> None:
    defaults = Settings()
    assert defaults.environment == "production"
    assert defaults.home == tmp_path / ".headwater"
    assert defaults.home.is_absolute()
    assert (defaults.host, defaults.port) == ("127.0.0.1", 8080)
    assert defaults.base_url == "http://127.0.0.1:8080"
    assert defaults.token_lifetime_seconds == 86400


def test_default_database_is_sqlite_in_the_home(tmp_path: Path) -> None:
    home = tmp_path / "somewhere" / "home"
    loaded = settings(home=home)
    assert loaded.resolved_database_url == f"sqlite:///{home / 'metadata.db'}"
    store = open_store(loaded.resolved_database_url)
    try:
        store.migrate()
    finally:
        store.close()
    assert (home / "metadata.db").is_file()


def test_relative_home_is_resolved_against_the_working_directory(tmp_path: Path) -> None:
    loaded = settings(home=Path("data/hw"))
    assert loaded.home == tmp_path / "data" / "hw"
    assert loaded.resolved_database_url == f"sqlite:///{tmp_path / 'data' / 'hw' / 'metadata.db'}"


# --- the CLI refuses invalid settings ---


def _cli_env(home: Path, **variables: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("HEADWATER_")}
    env.update({"HEADWATER_HOME": str(home), "HEADWATER_ENVIRONMENT": "development", "COLUMNS": "200"})
    env.update(variables)
    return env


@pytest.mark.parametrize("command", [["credentials", "--json"], ["serve"], ["sandboxes", "list"]])
def test_cli_exits_2_with_a_readable_message_on_invalid_settings(tmp_path: Path, command: list[str]) -> None:
    home = tmp_path / "home"
    result = subprocess.run(
        [str(HEADWATER), *command],
        env=_cli_env(home, HEADWATER_OUTBOUND_ALLOW="*"),
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 2, result.stderr
    message = " ".join(result.stderr.split())
    assert "Invalid settings" in message
    assert "HEADWATER_OUTBOUND_ALLOW" in message and "wildcard" in message
    assert "Traceback" not in result.stderr
    assert result.stdout == ""
    assert not (home / "metadata.db").exists()

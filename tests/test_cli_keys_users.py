"""``headwater keys create`` and ``headwater users`` as a user runs them: the installed script, in real
processes, on a fresh home."""

from __future__ import annotations

import json
import os
import stat
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import jwt
import pytest
from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

HEADWATER = Path(sys.executable).parent / "headwater"


def run(home: Path, *args: str, cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("HEADWATER_")}
    env.update({"HEADWATER_HOME": str(home), "HEADWATER_ENVIRONMENT": "development", "COLUMNS": "200"})
    return subprocess.run(
        [str(HEADWATER), *args], env=env, cwd=cwd, capture_output=True, text=True, timeout=90
    )


def lines(result: subprocess.CompletedProcess[str]) -> list[dict[str, Any]]:
    assert result.returncode == 0, result.stderr
    return [json.loads(line) for line in result.stdout.splitlines()]


@pytest.fixture
def home(tmp_path: Path) -> Path:
    return tmp_path / "home"


# --- keys ---


def test_keys_create_makes_what_the_openssl_steps_make(home: Path, tmp_path: Path) -> None:
    out = tmp_path / "keys"
    [paths] = lines(run(home, "keys", "create", "--dir", str(out), "--common-name", "ingest.example.com"))
    keypair, certificate, private = (Path(paths[k]) for k in ("keyPair", "certificate", "privateKey"))
    assert {keypair.name, certificate.name, private.name} == {"keypair.key", "certificate.crt", "private.key"}
    assert all(p.parent == out.resolve() for p in (keypair, certificate, private))

    pair = serialization.load_pem_private_key(keypair.read_bytes(), password=None)
    pkcs8 = serialization.load_pem_private_key(private.read_bytes(), password=None)
    cert = x509.load_pem_x509_certificate(certificate.read_bytes())
    assert isinstance(pair, rsa.RSAPrivateKey) and isinstance(pkcs8, rsa.RSAPrivateKey)
    assert keypair.read_text().startswith("-----BEGIN RSA PRIVATE KEY-----")
    assert private.read_text().startswith("-----BEGIN PRIVATE KEY-----")  # PKCS#8, unencrypted
    assert pair.private_numbers() == pkcs8.private_numbers()
    assert cert.public_key().public_numbers() == pair.public_key().public_numbers()  # type: ignore[union-attr]
    assert cert.subject == cert.issuer  # self-signed
    assert cert.subject.rfc4514_string() == "CN=ingest.example.com"
    assert pair.key_size >= 2048

    # What the JWT bearer flow does with them: sign with private.key, verify with certificate.crt.
    token = jwt.encode({"iss": "k", "exp": int(time.time()) + 60}, private.read_bytes(), algorithm="RS256")
    assert jwt.decode(token, cert.public_key(), algorithms=["RS256"])["iss"] == "k"  # type: ignore[arg-type]

    assert stat.S_IMODE(keypair.stat().st_mode) == 0o600
    assert stat.S_IMODE(private.stat().st_mode) == 0o600


def test_keys_create_defaults_to_the_current_directory(home: Path, tmp_path: Path) -> None:
    [paths] = lines(run(home, "keys", "create", cwd=tmp_path))
    assert Path(paths["certificate"]) == tmp_path.resolve() / "certificate.crt"
    assert (tmp_path / "private.key").exists()


def test_keys_create_refuses_to_overwrite_unless_forced(home: Path, tmp_path: Path) -> None:
    lines(run(home, "keys", "create", "--dir", str(tmp_path)))
    before = (tmp_path / "private.key").read_bytes()
    again = run(home, "keys", "create", "--dir", str(tmp_path))
    assert again.returncode != 0 and again.stdout == ""
    message = " ".join(again.stderr.split())
    assert "Refusing to overwrite" in message and "--force" in message and "private.key" in message
    assert "Traceback" not in again.stderr
    assert (tmp_path / "private.key").read_bytes() == before

    (tmp_path / "private.key").chmod(0o644)
    lines(run(home, "keys", "create", "--dir", str(tmp_path), "--force"))
    assert (tmp_path / "private.key").read_bytes() != before
    assert stat.S_IMODE((tmp_path / "private.key").stat().st_mode) == 0o600


def test_keys_create_refuses_weak_keys(home: Path, tmp_path: Path) -> None:
    result = run(home, "keys", "create", "--dir", str(tmp_path), "--bits", "1024")
    assert result.returncode != 0
    assert not (tmp_path / "private.key").exists()


# --- users ---


def test_users_create_list_and_disable(home: Path) -> None:
    [ada] = lines(run(home, "users", "create", "Ada@Example.com", "--admin"))
    assert ada["username"] == "ada@example.com" and ada["email"] == "Ada@Example.com"
    assert ada["admin"] is True and ada["enabled"] is True
    assert ada["roles"] == {"*": "Admin"}  # what the console shows, not the stored default
    [bot] = lines(run(home, "users", "create", "bot@example.com", "--email", "ops@example.com"))
    assert bot["email"] == "ops@example.com" and bot["admin"] is False
    assert bot["roles"] == {"*": "Viewer"}
    [dev] = lines(
        run(home, "users", "create", "dev@example.com", "--role", "prod=Developer", "--role", "User")
    )
    assert dev["roles"] == {"prod": "Developer", "*": "User"}

    listed = {u["username"]: u for u in lines(run(home, "users", "list"))}
    assert set(listed) == {"ada@example.com", "bot@example.com", "dev@example.com"}

    [disabled] = lines(run(home, "users", "disable", "BOT@example.com"))
    assert disabled["id"] == bot["id"] and disabled["enabled"] is False
    listed = {u["username"]: u for u in lines(run(home, "users", "list"))}
    assert listed["bot@example.com"]["enabled"] is False
    assert listed["ada@example.com"]["enabled"] is True
    last = run(home, "users", "disable", "ada@example.com")  # nobody could manage users after that
    assert last.returncode == 1 and "last enabled admin" in " ".join(last.stderr.split())


def test_clients_carry_a_role(home: Path) -> None:
    [client] = lines(run(home, "clients", "create", "--name", "etl", "--role", "User"))
    assert client["role"] == "User"
    bad = run(home, "clients", "create", "--role", "Owner")
    assert bad.returncode == 1 and "must be one of Admin, Developer, User, Viewer" in bad.stderr


@pytest.mark.parametrize(
    ("args", "expected"),
    [
        (("users", "create", "not-a-login"), "email-like login"),
        (("users", "create", "dup@example.com"), "already exists"),
        (("users", "disable", "ghost@example.com"), "No user"),
        (("users", "create", "r@example.com", "--role", "prod=Owner"), "roles.prod: must be one of"),
        (("users", "create", "r@example.com", "--role", "nowhere=User"), "no such sandbox"),
    ],
)
def test_users_errors_are_readable(home: Path, args: tuple[str, ...], expected: str) -> None:
    lines(run(home, "users", "create", "dup@example.com"))
    result = run(home, *args)
    assert result.returncode == 1
    assert expected in " ".join(result.stderr.split())
    assert "Traceback" not in result.stderr

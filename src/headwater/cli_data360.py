"""``headwater keys`` and ``headwater users``: what document 000's first steps need.

``keys create`` replaces the guide's openssl commands (key pair, self-signed certificate, PKCS#8 key);
``users`` manages the default organization's user directory, whose usernames are the ``sub`` of JWT bearer
assertions. Both print JSON on stdout and messages on stderr, like the other commands.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer
from rich.console import Console

if TYPE_CHECKING:
    from headwater.container import Services
    from headwater.services.tenancy import Actor

keys_app = typer.Typer(no_args_is_help=True, help="RSA key pairs and certificates for the JWT bearer flow.")
users_app = typer.Typer(no_args_is_help=True, help="Users of the default organization.")
console = Console(stderr=True)
CLI_CLIENT = "headwater-cli"


@keys_app.command("create")
def keys_create(
    directory: Annotated[
        Path, typer.Option("--dir", help="Folder for keypair.key, certificate.crt and private.key.")
    ] = Path("."),
    common_name: Annotated[str, typer.Option(help="Subject CN of the certificate.")] = "headwater",
    organization: Annotated[str | None, typer.Option(help="Subject O of the certificate.")] = None,
    days: Annotated[int, typer.Option(min=1, max=36500, help="Validity of the certificate.")] = 365,
    bits: Annotated[int, typer.Option(min=2048, max=8192, help="RSA key size.")] = 2048,
    force: Annotated[bool, typer.Option("--force", help="Overwrite existing files.")] = False,
) -> None:
    """Create an RSA key pair, a self-signed x509 certificate and a PKCS#8 private key.

    Upload certificate.crt to the external client app; sign JWT bearer assertions with private.key.
    """
    from headwater.services.data360.keys import KeyFileExists, generate

    try:
        files = generate(
            directory.expanduser().resolve(),
            common_name=common_name,
            organization=organization,
            days=days,
            bits=bits,
            force=force,
        )
    except KeyFileExists as exc:
        names = ", ".join(str(p) for p in exc.paths)
        console.print(f"[red]Refusing to overwrite {names}[/red]: pass --force, or choose another --dir.")
        raise typer.Exit(1) from exc
    except OSError as exc:
        console.print(f"[red]Cannot write the key files:[/red] {exc}")
        raise typer.Exit(1) from exc
    sys.stdout.write(json.dumps(files.as_json()) + "\n")
    console.print(
        f"Upload {files.certificate.name} to the external client app (certificate); sign assertions with "
        f"{files.private_key.name}. Keep both private keys secret."
    )


def _services() -> Services:
    from headwater.cli import _services as open_services

    return open_services()


def _org_actor(services: Services) -> Actor:
    from headwater.services.users import actor_for

    org = services.tenancy.default_org()
    if org is None:  # start() has just bootstrapped it
        console.print("[red]The default organization does not exist.[/red]")
        raise typer.Exit(1)
    return actor_for(org, CLI_CLIENT)


def _print_user(doc: dict[str, object]) -> None:
    """The user as one JSON line. ``roles`` are the roles in effect: an organization admin is Admin in
    every sandbox whatever roles are stored (as the console shows it)."""
    keys = ("id", "username", "email", "enabled", "admin", "roles")
    shown = {k: doc.get(k) for k in keys}
    if doc.get("admin") is True:
        shown["roles"] = {"*": "Admin"}
    sys.stdout.write(json.dumps(shown) + "\n")


@users_app.command("create")
def users_create(
    username: Annotated[str, typer.Argument(help="An email-like login, e.g. integration@example.com.")],
    email: Annotated[str | None, typer.Option(help="Email address (default: the username).")] = None,
    admin: Annotated[bool, typer.Option("--admin", help="Make the user an administrator.")] = False,
    role: Annotated[
        list[str] | None,
        typer.Option(
            help="A role in every sandbox ('Developer') or in one ('prod=Developer'); repeatable. "
            "Roles: Admin, Developer, User, Viewer (the default).",
        ),
    ] = None,
    password: Annotated[
        str | None,
        typer.Option(
            envvar="HEADWATER_USER_PASSWORD",
            help="Console sign-in password (at least 12 characters; or HEADWATER_USER_PASSWORD). "
            "'-' asks for it without echo.",
        ),
    ] = None,
) -> None:
    """Create a user of the default organization (with --password, one who can sign in to the console)."""
    from headwater.errors import HeadwaterError

    if password == "-":
        password = typer.prompt("Password", hide_input=True, confirmation_prompt=True)
    services = _services()
    try:
        body: dict[str, object] = {"username": username, "admin": admin}
        if role:
            roles: dict[str, str] = {}
            for item in role:
                sandbox, _, named = item.rpartition("=")
                roles[sandbox or "*"] = named
            body["roles"] = roles
        if password is not None:
            body["password"] = password
        if email is not None:
            body["email"] = email
        user = services.identity.users.create(_org_actor(services), body)
        _print_user(services.identity.users.render(user))
    except HeadwaterError as exc:
        console.print(f"[red]{exc.detail}[/red]")
        raise typer.Exit(1) from exc
    finally:
        services.close()


@users_app.command("list")
def users_list() -> None:
    """List the users of the default organization, one JSON object a line."""
    from headwater.services.users import org_scope

    services = _services()
    try:
        users = services.identity.users
        actor = _org_actor(services)
        for resource in services.store.list(users.kind, org_scope(actor.org.id)).items:
            _print_user(users.render(resource))
    finally:
        services.close()


@users_app.command("disable")
def users_disable(username: Annotated[str, typer.Argument(help="Username or user id.")]) -> None:
    """Disable a user: new tokens are refused at once, issued ones within seconds."""
    from headwater.errors import HeadwaterError

    services = _services()
    try:
        user = services.identity.users.set_enabled(_org_actor(services), username, False)
        _print_user(services.identity.users.render(user))
    except HeadwaterError as exc:
        console.print(f"[red]{exc.detail}[/red]")
        raise typer.Exit(1) from exc
    finally:
        services.close()

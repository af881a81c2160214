"""``headwater keys`` and ``headwater users``: what document 000's first steps need."""

from __future__ import annotations

import typer

keys_app = typer.Typer(no_args_is_help=True, help="RSA key pairs and certificates for the JWT bearer flow.")
users_app = typer.Typer(no_args_is_help=True, help="Users of the default organization.")

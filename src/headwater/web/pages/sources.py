"""Console pages: sources. The catalog of source connection specs with the sandbox's accounts (base
connections, as AEP's Sources workspace names them), the wizard that creates one, and an account's page with
its explorer. Behaviour: static/sources.js."""

from __future__ import annotations

from fastapi import APIRouter, Request
from fastapi.responses import Response

from headwater.web.app import page

router = APIRouter(include_in_schema=False)


@router.get("/console/sources")
async def catalog(request: Request) -> Response:
    return page(request, "sources/catalog.html", "Sources")


@router.get("/console/sources/new")
async def new(request: Request, spec: str = "") -> Response:
    return page(request, "sources/new.html", "New account", spec=spec)


@router.get("/console/sources/{ident}")
async def detail(request: Request, ident: str) -> Response:
    return page(request, "sources/detail.html", "Account", ident=ident)

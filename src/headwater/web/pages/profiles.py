"""Console pages: profiles. Look a profile up by any of its identities and see its merged attributes, the
identities of its cluster and the datasets it came from (``static/profiles.js``); audiences with their
counts, previews and activations (``static/audiences.js``, ``static/activations-audience.js``)."""

from __future__ import annotations

from fastapi import APIRouter, Request
from fastapi.responses import Response

from headwater.catalog import ids
from headwater.web.app import page

router = APIRouter(include_in_schema=False)


@router.get("/console/profiles")
async def profiles(request: Request) -> Response:
    return page(request, "profiles/lookup.html", "Profiles")


@router.get("/console/audiences")
async def audiences(request: Request) -> Response:
    return page(request, "profiles/audiences.html", "Audiences", spec_id=ids.ACTIVATION)

"""Real-Time Customer Profile's entities (``/data/core/ups/access/entities``) and the Identity Service's
clusters (``/data/core/identity/cluster/members`` and ``/history``), in AEP's shapes. Reading them needs
the ``view-profiles`` permission (services/access.py): a merged profile is personal data."""

from __future__ import annotations

from fastapi import APIRouter, Depends, Request

from headwater.api.responses import JSONResponse
from headwater.container import services
from headwater.edge import calls
from headwater.edge.auth import platform_actor
from headwater.services.tenancy import Actor

router = APIRouter()
TAG = "Real-Time Customer Profile"
IDENTITY_TAG = "Identity Service"


@router.get(
    "/data/core/ups/access/entities",
    tags=[TAG],
    summary="Look up a profile by identity, or its experience events",
    description="``schema.name=_xdm.context.profile&entityId=&entityIdNS=`` gives the merged profile "
    "(``mergePolicyId`` to choose the policy, ``fields`` to narrow it); "
    "``schema.name=_xdm.context.experienceevent&relatedSchema.name=_xdm.context.profile&relatedEntityId="
    "&relatedEntityIdNS=`` gives its events, newest first, ``limit`` per page.",
)
async def entities(request: Request, actor: Actor = Depends(platform_actor)) -> JSONResponse:
    lookup = services(request).profile_lookup
    params = dict(request.query_params)
    return JSONResponse(await calls.read(services(request), lookup.entity, actor, params))


@router.get(
    "/data/core/identity/cluster/members",
    tags=[IDENTITY_TAG],
    summary="The identities linked to an identity (its cluster)",
    description="``namespace`` (a code) or ``nsId`` (a number), and ``id``.",
)
async def cluster_members(request: Request, actor: Actor = Depends(platform_actor)) -> JSONResponse:
    lookup = services(request).profile_lookup
    params = _namespace(request)
    return JSONResponse(await calls.read(services(request), lookup.cluster_members, actor, params))


@router.get(
    "/data/core/identity/cluster/history",
    tags=[IDENTITY_TAG],
    summary="The merges of an identity's cluster, newest first",
)
async def cluster_history(request: Request, actor: Actor = Depends(platform_actor)) -> JSONResponse:
    lookup = services(request).profile_lookup
    params = _namespace(request)
    return JSONResponse(await calls.read(services(request), lookup.cluster_history, actor, params))


def _namespace(request: Request) -> dict[str, str]:
    """``nsId`` (a namespace's number) is read as its code."""
    params = dict(request.query_params)
    ns_id = params.get("nsId")
    if ns_id and not params.get("namespace"):
        found = services(request).namespaces_by_id(ns_id)
        params["namespace"] = found or ns_id
    return params

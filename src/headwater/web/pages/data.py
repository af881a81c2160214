"""Console pages: schemas (the resolved field tree), datasets (schema, batches, sample rows) and mapping
sets (an editor with validation and a preview on sample rows), and the pages that create schemas and
datasets. The behaviour is in ``static/data.js`` and the files it names."""

from __future__ import annotations

from fastapi import APIRouter, Request
from fastapi.responses import Response

from headwater.web.app import page

router = APIRouter(include_in_schema=False)


@router.get("/console/schemas")
async def schemas(request: Request) -> Response:
    return page(request, "data/schemas.html", "Schemas")


@router.get("/console/schemas/new")
async def schema_new(request: Request) -> Response:
    """Create a schema with the schema builder (static/schema-builder.js); before ``{ident:path}``."""
    return page(request, "data/schema-new.html", "Create schema")


@router.get("/console/schemas/{ident:path}")
async def schema(request: Request, ident: str) -> Response:
    return page(request, "data/schema.html", "Schema", ident=ident)


@router.get("/console/datasets")
async def datasets(request: Request) -> Response:
    return page(request, "data/datasets.html", "Datasets")


@router.get("/console/datasets/new")
async def dataset_new(request: Request) -> Response:
    """Create a dataset (static/dataset-target.js): an existing schema, or a new one built inline."""
    return page(request, "data/dataset-new.html", "Create dataset")


@router.get("/console/datasets/{ident}")
async def dataset(request: Request, ident: str) -> Response:
    return page(request, "data/dataset.html", "Dataset", ident=ident)


@router.get("/console/mappings")
async def mappings(request: Request) -> Response:
    return page(request, "data/mappings.html", "Mapping sets")


@router.get("/console/mappings/{ident}")
async def mapping(request: Request, ident: str) -> Response:
    """The editor; ``new`` starts an empty mapping set."""
    new = ident == "new"
    return page(
        request, "data/mapping.html", "New mapping set" if new else "Mapping set", ident="" if new else ident
    )

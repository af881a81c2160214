"""The console's areas; each module holds the GET routes of its pages."""

from __future__ import annotations

from headwater.web.pages import (
    activations,
    data,
    data360,
    destinations,
    flows,
    organization,
    profiles,
    sources,
)

ROUTERS = [
    sources.router,
    destinations.router,
    data360.router,
    data.router,
    flows.router,
    activations.router,
    profiles.router,
    organization.router,
]

"""Sign-in, sign-out and the page shell of the console.

Sign-in takes a username, a password and, optionally, the organization (its tenant id or org id; a
``?org=`` link fills it in). A username is unique only within its organization: a sign-in that names
the organization checks only that organization's user. A refused sign-in is an audit event of the
organization whose user it is: the named one, or the only organization that has a user of that name.
When several have one and none was named, nobody can tell whose user it was, so no organization's log
gets it (the server log does): no organization sees the failures of another's user.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any
from urllib.parse import quote, urlsplit

import anyio
import anyio.to_thread
import orjson
from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from jinja2 import Environment, FileSystemLoader, select_autoescape

from headwater.container import Services, services
from headwater.edge.audit import writer as audit_writer
from headwater.edge.auth import client_host, session_of
from headwater.edge.html import SECURITY_HEADERS
from headwater.edge.session import COOKIE, LIFETIME_SECONDS, Session
from headwater.services import access, audit
from headwater.stores.metadata import Resource
from headwater.web import HERE

log = logging.getLogger("headwater.console")

router = APIRouter(include_in_schema=False)
templates = Environment(
    loader=FileSystemLoader(HERE / "templates"), autoescape=select_autoescape(["html"]), auto_reload=False
)

Nav = list[tuple[str, list[tuple[str, str]]]]
#: The navigation: (section, [(label, path)]). Pages register under these paths.
NAV: Nav = [
    ("Connections", [("Sources", "/console/sources"), ("Destinations", "/console/destinations")]),
    (
        "Data 360",
        [
            ("External client apps", "/console/data360/apps"),
            ("Connectors", "/console/data360/connectors"),
            ("Data streams", "/console/data360/streams"),
        ],
    ),
    (
        "Data",
        [
            ("Schemas", "/console/schemas"),
            ("Datasets", "/console/datasets"),
            ("Mapping sets", "/console/mappings"),
        ],
    ),
    ("Movement", [("Dataflows", "/console/flows"), ("Activations", "/console/activations")]),
    ("Customers", [("Profiles", "/console/profiles"), ("Audiences", "/console/audiences")]),
    (
        "Organization",
        [("Users", "/console/users"), ("Audit", "/console/audit"), ("Sandboxes", "/console/sandboxes")],
    ),
]
#: Pages of the navigation shown to organization admins only (the others get a 403 page there).
ADMIN_PAGES = frozenset({"/console/users", "/console/audit", "/console/sandboxes"})


def page(request: Request, template: str, title: str, needs: str | None = None, **context: Any) -> Response:
    """Render a console page for the signed-in user, or send the browser to sign in first. ``needs``: an
    organization-wide permission the page itself needs (Users, Audit); without it the person gets a 403
    page that names the permission."""
    session = session_of(request)
    if session is None:
        target = request.url.path + (f"?{request.url.query}" if request.url.query else "")
        return RedirectResponse(f"/console/login?next={quote(target, safe='')}", status_code=303)
    who = Access.of(services(request), session)
    status = 200
    if needs is not None and needs not in who.org_permissions:
        template, status, context = "forbidden.html", 403, {"needs": needs}
    html = templates.get_template(template).render(
        title=title,
        nav=NAV if who.admin else _without_admin_pages(NAV),
        path=request.url.path,
        username=session.username,
        org_id=session.org_id,
        csrf=session.csrf,
        access=orjson.dumps(who.for_page()).decode(),
        sandbox_names=list(who.sandboxes),
        **context,
    )
    return HTMLResponse(html, status_code=status, headers=SECURITY_HEADERS)


def _without_admin_pages(nav: Nav) -> Nav:
    kept = [
        (section, [(label, href) for label, href in items if href not in ADMIN_PAGES])
        for section, items in nav
    ]
    return [(section, items) for section, items in kept if items]


@dataclass(frozen=True)
class Access:
    """What the signed-in person may do: organization admin or not, and the role in each sandbox. The
    page carries it (``<body data-access>``) because the sandbox is picked in the browser: app.js shows
    the role in the header and disables the buttons of writes the role cannot do. The API checks every
    call anyway; this only spares people a refusal."""

    admin: bool
    sandboxes: dict[str, str]  # sandbox name -> role, prod first

    @classmethod
    def of(cls, svc: Services, session: Session) -> Access:
        user = svc.identity.users.recent(session.org_id, session.username)
        found = sorted(svc.store.list_sandboxes(session.org_id), key=lambda s: (s.name != "prod", s.name))
        roles = {
            s.name: svc.identity.users.role(user, s.name) if user is not None else access.DEFAULT_USER_ROLE
            for s in found
        }
        return cls(admin=user is not None and user.doc.get("admin") is True, sandboxes=roles)

    @property
    def org_permissions(self) -> frozenset[str]:
        return access.ORG_PERMISSIONS if self.admin else frozenset()

    def for_page(self) -> dict[str, Any]:
        return {
            "admin": self.admin,
            "sandboxes": {
                name: {"role": role, "permissions": sorted(access.permissions_of(role, org_admin=self.admin))}
                for name, role in self.sandboxes.items()
            },
            "orgPermissions": sorted(access.ORG_PERMISSIONS),
        }


@router.get("/console")
async def home(request: Request) -> Response:
    return RedirectResponse("/console/sources" if session_of(request) else "/console/login", status_code=303)


@router.get("/console/login")
async def login_page(request: Request, next: str = "/console/sources", org: str = "") -> Response:
    return _login(next_path=next, organization=org[:100])


def _cross_site(request: Request) -> bool:
    """A form posted from another site (login CSRF): browsers send Origin with every POST."""
    origin = request.headers.get("origin")
    if origin is None:
        return False
    public = urlsplit(services(request).settings.base_url)  # HEADWATER_PUBLIC_URL behind a proxy
    own = {f"{request.url.scheme}://{request.url.netloc}", f"{public.scheme}://{public.netloc}"}
    return origin not in own


@router.post("/console/login")
async def login(request: Request) -> Response:
    svc = services(request)
    if _cross_site(request):
        return HTMLResponse("Sign in from Headwater's own page.", status_code=403, headers=SECURITY_HEADERS)
    form = await request.form()
    username = str(form.get("username") or "").strip()[:200]
    password = str(form.get("password") or "")
    organization = str(form.get("organization") or "").strip()[:100]
    next_path = _safe_next(str(form.get("next") or "/console/sources"))
    address = client_host(request) or "?"
    org_id = _org_id(svc, organization) if organization else None
    verdict = svc.sign_in_throttle.check(address, username)
    if verdict.wait:
        message = f"Too many failed sign-ins. Try again in {int(verdict.wait) + 1} seconds."
        await _audit_failed_sign_in(request, username, org_id, organization, 429, "throttled")
        response = _login(next_path, username, message, status=429, organization=organization)
        response.headers["Retry-After"] = str(int(verdict.wait) + 1)
        return response
    if verdict.delay:  # the username is locked: slowed, never refused, so its owner still gets in
        await anyio.sleep(verdict.delay)
    user = None
    if org_id is not None or not organization:
        user = await anyio.to_thread.run_sync(svc.identity.users.authenticate, username, password, org_id)
    if user is None:
        svc.sign_in_throttle.failed(address, username)
        await _audit_failed_sign_in(request, username, org_id, organization, 401, "bad-credentials")
        message = "The username or password is not right."
        return _login(next_path, username, message, status=401, organization=organization)
    svc.sign_in_throttle.succeeded(address, username)
    event = audit.session_event(user.scope.org_id, user.doc["username"], user.id, "signin", 303, address)
    await audit_writer(request.app.state).add(event)
    cookie, _ = await anyio.to_thread.run_sync(
        svc.sessions.issue, user.id, user.scope.org_id, user.doc["username"]
    )
    response = RedirectResponse(next_path, status_code=303)
    response.set_cookie(
        COOKIE,
        cookie,
        max_age=LIFETIME_SECONDS,
        httponly=True,
        samesite="lax",
        secure=_secure(svc),
        path="/",
    )
    return response


def _secure(svc: Services) -> bool:
    """Cookies are Secure whenever the public URL is https (behind a TLS-terminating proxy too)."""
    return svc.settings.base_url.lower().startswith("https://")


def _org_id(svc: Services, organization: str) -> str | None:
    """The organization a sign-in names, by tenant id or org id (None when there is no such one)."""
    wanted = organization.strip().lower()
    for org in svc.store.list_orgs():
        if wanted in (org.tenant_id.lower(), org.id.lower()):
            return org.id
    return None


@router.post("/console/logout")
async def logout(request: Request) -> Response:
    svc = services(request)
    session = session_of(request)
    form = await request.form()
    if session is not None and form.get("csrf") != session.csrf:
        return HTMLResponse("Sign-out needs the page's CSRF token.", status_code=403)
    if session is not None:
        await anyio.to_thread.run_sync(svc.sessions.end, session)
        event = audit.session_event(
            session.org_id, session.username, session.user_id, "signout", 303, client_host(request)
        )
        await audit_writer(request.app.state).add(event)
    response = RedirectResponse("/console/login", status_code=303)
    response.delete_cookie(COOKIE, path="/", httponly=True, samesite="lax", secure=_secure(svc))
    return response


async def _audit_failed_sign_in(
    request: Request, username: str, org_id: str | None, organization: str, status: int, code: str
) -> None:
    """A refused sign-in, as an event of the organization whose user it is: the one the sign-in named,
    else the only one with a user of that name (see the module docstring); nowhere when none has."""
    svc = services(request)
    address = client_host(request)
    if organization and org_id is None:
        return  # an organization that does not exist: nobody to tell
    found: list[Resource] = await anyio.to_thread.run_sync(svc.identity.users.named, username)
    candidates = [u for u in found if org_id is None or u.scope.org_id == org_id]
    if len(candidates) > 1:
        log.warning(
            "refused console sign-in (%s) for %r from %s: the name is used in %d organizations and the "
            "sign-in named none, so no organization's audit log records it",
            code,
            username,
            address,
            len(candidates),
        )
        return
    for user in candidates:
        event = audit.session_event(
            user.scope.org_id, user.doc["username"], user.id, "signin", status, address, code
        )
        await audit_writer(request.app.state).add(event)


def _login(
    next_path: str,
    username: str = "",
    error: str | None = None,
    status: int = 200,
    organization: str = "",
) -> Response:
    html = templates.get_template("login.html").render(
        title="Sign in", next=_safe_next(next_path), username=username, error=error, organization=organization
    )
    return HTMLResponse(html, status_code=status, headers=SECURITY_HEADERS)


def _safe_next(path: str) -> str:
    """Only a console path of this server (never another host: no open redirect)."""
    if path.startswith("/console/") and not path.startswith("//") and "\\" not in path:
        return path
    return "/console/sources"

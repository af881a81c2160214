"""The layering of src/headwater: every import points down (docs/architecture.md draws the layers).

The test reads every import of every module under src/headwater (those under ``if TYPE_CHECKING:`` and
inside functions too: a lazy import is still a dependency) and fails on one that points up. The rules:

- foundation (errors, faults, settings, process, catalog, and the file store stores/objectfiles.py that
  every layer shares) imports nothing else of Headwater;
- the pure engines import only the foundation;
- stores, the lake and connectors import the foundation and the engines (the lake reads the stores);
- services import those, never runtime, api, web or the container;
- runtime imports services and below, never api, web or the container;
- the HTTP edge shared by api and web imports services and below;
- the PostgreSQL wire endpoint (pgwire) imports the edge (its authenticator) and below;
- api and web import the edge and below (api also the runtime), never each other;
- only entry points (server, CLI) and the request entry points of api and web import the container;
  the runners receive `runtime.context.Runtime`, a Protocol the container satisfies.

``test_the_rules_catch_an_upward_import`` is the self-check: it feeds the checker an upward import and
sees it refused.
"""

from __future__ import annotations

import ast
from pathlib import Path

SRC = Path(__file__).resolve().parent.parent / "src"
FOUNDATION = {"headwater", "headwater.errors", "headwater.faults", "headwater.settings", "headwater.process"}
# The file store beside the lake (a folder or the lake's bucket, over pyarrow.fs): it imports only the
# foundation, and connectors read their files through it (the files connectors' folders on S3).
FOUNDATION |= {"headwater.stores.objectfiles"}
ENTRY = {
    "headwater.cli",
    "headwater.cli_data360",
    "headwater.cli_flows",
    "headwater.cli_backup",
    "headwater.server",
}
CONTAINER = {"headwater.container"}

BELOW_SERVICES = {"foundation", "engines", "stores", "lake", "connectors"}
ALLOWED: dict[str, set[str]] = {
    "foundation": {"foundation"},
    "engines": {"foundation", "engines"},
    "stores": {"foundation", "engines", "stores"},
    "lake": {"foundation", "engines", "stores", "lake"},
    "connectors": {"foundation", "engines", "connectors"},
    "services": BELOW_SERVICES | {"services"},
    "runtime": BELOW_SERVICES | {"services", "runtime"},
    "edge": BELOW_SERVICES | {"services", "edge"},
    "api": BELOW_SERVICES | {"services", "runtime", "edge", "api", "container"},
    "web": BELOW_SERVICES | {"services", "edge", "web", "container"},
    "pgwire": BELOW_SERVICES | {"services", "edge", "pgwire"},
    "container": BELOW_SERVICES | {"services", "runtime", "edge", "container"},
    "entry": set(),  # anything
}

# Upward imports allowed for a while (none since issue 13's moves landed). Should a move need one, it is
# listed here; the list may only shrink: an entry that no longer occurs fails the test too.
KNOWN: set[tuple[str, str]] = set()


def layer(module: str) -> str:
    if module in FOUNDATION or module == "headwater.catalog" or module.startswith("headwater.catalog."):
        return "foundation"
    if module in ENTRY:
        return "entry"
    if module in CONTAINER:
        return "container"
    parts = module.split(".")
    return parts[1] if len(parts) > 1 and parts[1] in ALLOWED else "foundation"


def imports_of(path: Path, module: str) -> set[str]:
    """Every headwater module ``path`` imports (absolute names; ``from a import b`` gives ``a.b`` when
    ``a.b`` is a module, else ``a``)."""
    package = module if path.name == "__init__.py" else module.rpartition(".")[0]
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            found.update(a.name for a in node.names if a.name.split(".")[0] == "headwater")
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")[: len(package.split(".")) - node.level + 1]
                target = ".".join([*base, *([node.module] if node.module else [])])
            else:
                target = node.module or ""
            if target.split(".")[0] != "headwater":
                continue
            for alias in node.names:
                sub = f"{target}.{alias.name}"
                found.add(sub if _is_module(sub) else target)
    return found


def _is_module(name: str) -> bool:
    rel = Path(*name.split("."))
    return (SRC / rel).is_dir() or (SRC / rel).with_suffix(".py").is_file()


def modules(src: Path = SRC) -> dict[str, Path]:
    out = {}
    for path in sorted((src / "headwater").rglob("*.py")):
        parts = list(path.relative_to(src).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts.pop()
        out[".".join(parts)] = path
    return out


def upward(importer: str, imported: str) -> bool:
    """Whether ``importer`` importing ``imported`` breaks the rules."""
    src, dst = layer(importer), layer(imported)
    if src == "entry" or src == dst:
        return False
    return dst not in ALLOWED[src]


def violations(src: Path = SRC) -> set[tuple[str, str]]:
    return {
        (importer, imported)
        for importer, path in modules(src).items()
        for imported in imports_of(path, importer)
        if upward(importer, imported)
    }


def test_no_import_points_up() -> None:
    found = violations()
    new = sorted(found - KNOWN)
    assert not new, "upward imports (see this module's docstring for the rules):\n" + "\n".join(
        f"  {a} -> {b}  ({layer(a)} may not import {layer(b)})" for a, b in new
    )
    gone = sorted(KNOWN - found)
    assert not gone, "fixed upward imports still listed in KNOWN (remove them):\n" + "\n".join(
        f"  {a} -> {b}" for a, b in gone
    )


def test_the_rules_catch_an_upward_import(tmp_path: Path) -> None:
    """Self-check: an engine importing a service, a service importing the runtime or the container, api
    importing web and web importing api are each refused; the same imports downward are accepted."""
    refused = [
        ("headwater.engines.mapping.engine", "headwater.services.conversion"),
        ("headwater.stores.rowerrors", "headwater.runtime.executor"),
        ("headwater.connectors.salesforce.reader", "headwater.services.flowservice"),
        ("headwater.services.conversion", "headwater.runtime.executor"),
        ("headwater.services.flows", "headwater.container"),
        ("headwater.runtime.executor", "headwater.api.app"),
        ("headwater.runtime.streaming", "headwater.container"),
        ("headwater.errors", "headwater.engines.mapping"),
    ]
    for importer, imported in refused:
        assert upward(importer, imported), (importer, imported)
    accepted = [
        ("headwater.services.conversion", "headwater.engines.mapping.engine"),
        ("headwater.runtime.executor", "headwater.services.runs"),
        ("headwater.api.routes.flows", "headwater.services.flowservice"),
        ("headwater.web.app", "headwater.edge.auth"),
        ("headwater.cli", "headwater.container"),
        ("headwater.lake.iceberg", "headwater.stores.metadata"),
    ]
    for importer, imported in accepted:
        assert not upward(importer, imported), (importer, imported)
    # And the reader sees imports wherever they are written: a lazy one inside a function, one under
    # TYPE_CHECKING, a relative one.
    module = tmp_path / "probe.py"
    module.write_text(
        "from typing import TYPE_CHECKING\n"
        "if TYPE_CHECKING:\n    from headwater.container import Services\n"
        "def f():\n    from headwater.runtime import executor\n"
        "from ..api import app\n"
    )
    found = imports_of(module, "headwater.engines.probe")
    assert {"headwater.container", "headwater.runtime.executor", "headwater.api.app"} <= found


def test_an_upward_import_added_to_the_tree_fails_the_check(tmp_path: Path) -> None:
    """Self-check on the real tree: a copy of src/ with one upward import added (the mapping engine
    importing the Flow Service, lazily inside a function) shows exactly that violation."""
    import shutil

    copy = tmp_path / "src"
    shutil.copytree(SRC / "headwater", copy / "headwater", ignore=shutil.ignore_patterns("__pycache__"))
    engine = copy / "headwater" / "engines" / "mapping" / "engine.py"
    engine.write_text(
        engine.read_text() + "\n\ndef _probe() -> None:\n    from headwater.services import flowservice\n"
    )
    assert violations(copy) - violations() == {
        ("headwater.engines.mapping.engine", "headwater.services.flowservice")
    }

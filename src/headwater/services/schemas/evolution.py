"""Which changes to a composed schema keep every record valid under the old one valid under the new one.

Once a dataset is bound to a schema, only such additive changes are accepted: new optional fields and
new field groups. Removing a field, changing its type or format, making an existing field required, or
adding a required field to an object that already existed would strand data already ingested.
"""

from __future__ import annotations

from typing import Any

from headwater.engines.xdm_compose import describe_type, parent_path, walk


def incompatible_changes(old: dict[str, Any], new: dict[str, Any]) -> list[dict[str, str]]:
    """Every breaking difference from ``old`` to ``new`` (composed schemas), one entry per field path."""
    before = {path: (node, required) for path, node, required in walk(old)}
    after = {path: (node, required) for path, node, required in walk(new)}
    errors: list[dict[str, str]] = []
    for path, (node, _) in before.items():
        if path not in after:
            errors.append(
                {"path": path, "message": "removed: a schema used by a dataset can only gain fields"}
            )
            continue
        changed = _type_change(node, after[path][0])
        if changed:
            errors.append({"path": path, "message": changed})
    for path, (_, required) in after.items():
        if not required:
            continue
        if path in before and not before[path][1]:
            errors.append({"path": path, "message": "made required: existing records may not have it"})
        elif path not in before and (parent_path(path) == "" or parent_path(path) in before):
            errors.append(
                {
                    "path": path,
                    "message": "added as required to an existing object: "
                    "existing records do not have it; add it as optional",
                }
            )
    return sorted(errors, key=lambda e: e["path"])


def _type_change(old: dict[str, Any], new: dict[str, Any]) -> str | None:
    if old.get("type") != new.get("type"):
        return f"type changed from {describe_type(old)} to {describe_type(new)}"
    if old.get("format") != new.get("format"):
        return f"format changed from {old.get('format')} to {new.get('format')}"
    return None

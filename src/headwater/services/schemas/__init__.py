"""The Schema Registry service. See :mod:`headwater.services.schemas.registry` for the contract."""

from headwater.engines.xdm_compose import closed, field_at, leaf_paths
from headwater.services.schemas.registry import SchemaRegistry

__all__ = ["SchemaRegistry", "closed", "field_at", "leaf_paths"]

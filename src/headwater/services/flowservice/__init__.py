"""Flow Service: connections, source and target connections, and flows, validated against the spec catalog."""

from headwater.services.flowservice.connections import Connections, SourceConnections, TargetConnections
from headwater.services.flowservice.flows import Flows

__all__ = ["Connections", "Flows", "SourceConnections", "TargetConnections"]

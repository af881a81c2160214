"""The profile serving store: identities and clusters, profile fragments, experience events,
segment membership and its transitions.

``base.ProfileStore`` is the interface; ``sql.SqlProfileStore`` implements it once for SQLAlchemy (its
identity graph in ``graph``, its segment membership in ``membership``);
``sqlite`` and ``postgresql`` hold what differs per database; ``tables`` the tables, which live in the
metadata database and its migrations. ``open_profile_store`` opens it on the metadata store's engine.
"""

from headwater.stores.profiles.base import (
    EXITED,
    REALIZED,
    UNCHECKED,
    ClusterMerge,
    EventCursor,
    ExperienceEvent,
    Fragment,
    GraphSplit,
    GraphUpdate,
    IdentityKey,
    IdentityLink,
    MembershipMoved,
    Profile,
    ProfileStore,
    ProjectionCursor,
    RefusedLink,
    StaleCursor,
    StoredLink,
    Transition,
    TransitionSignal,
)
from headwater.stores.profiles.factory import open_profile_store

__all__ = [
    "EXITED",
    "REALIZED",
    "UNCHECKED",
    "ClusterMerge",
    "EventCursor",
    "ExperienceEvent",
    "Fragment",
    "GraphSplit",
    "GraphUpdate",
    "IdentityKey",
    "IdentityLink",
    "MembershipMoved",
    "Profile",
    "ProfileStore",
    "ProjectionCursor",
    "RefusedLink",
    "StaleCursor",
    "StoredLink",
    "Transition",
    "TransitionSignal",
    "open_profile_store",
]

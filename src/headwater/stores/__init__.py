"""Persistence behind interfaces: metadata (SQLAlchemy), secrets (AES-GCM), keys."""

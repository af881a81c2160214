"""Unified profiles: which datasets feed them, their projection from the lake, and lookups."""

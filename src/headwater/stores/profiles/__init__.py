"""The profile serving store."""

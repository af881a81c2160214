"""Salesforce Data 360-style ingestion: external client apps and OAuth (identity.py), server-to-server
connectors with JSON event-type schemas and their data streams (connectors.py), and the Ingestion API
(ingest.py)."""

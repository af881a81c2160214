"""HTTP: routing, request parsing, authentication and error rendering. No business rules here."""

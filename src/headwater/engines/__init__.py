"""Pure engines: the mapping engine and its expression language, request templates and variable
bindings, XDM schema composition and paths, XDM to Arrow types, identities and the identity graph's
components (``identity/``).

Everything here is a function of its arguments: it reads no store, no lake, no settings and no network,
and imports nothing of services, runtime, api or web (tests/test_layering.py holds that).
"""

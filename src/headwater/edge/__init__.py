"""The HTTP edge that the API (api/) and the console (web/) share; neither imports the other.

    edge/auth.py      who is calling: the actor of a platform call (access token or console session),
                      the console session of a page request, the caller's address
    edge/session.py   the signed console session cookie, its CSRF token, and sign-in throttling
    edge/audit.py     the audit trail middleware and the application's audit writer
    edge/calls.py     where service calls run (event loop or thread pool)
    edge/html.py      the security headers of every HTML page

The edge imports services and below, never the container: what it needs of the process it receives
(``Authenticator``, built in headwater/container.py) or reads off the application's state, which
headwater/server.py fills.
"""

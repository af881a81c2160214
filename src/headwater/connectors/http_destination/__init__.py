"""The HTTP destination connector: one request per record to a customer's HTTP endpoint.

    destination.py  Destination (template, authenticator, client, secrecy), connect, send_once, and what
                    is shown of a request and a response
    client.py       the keep-alive HTTP/1.1 client, checked against the outbound policy
    http11.py       one connection of that client: the response parser
    auth.py         no auth, HTTP Basic, OAuth 2 client credentials, mutual TLS
    secrecy.py      which request values are secrets, masking and scrubbing them
    errors.py       the errors raised, as subclasses of headwater.connectors.errors

The delivery engine (runtime/delivery/engine.py) drives it: concurrency, pacing, retries, dead letters.
Nothing is imported here.
"""

"""The identity layer's pure parts: namespaces and value formats (:mod:`.namespaces`), identities and
links out of XDM rows (:mod:`.extract`), and connected components under graph limits (:mod:`.graph`).

Nothing here reads a store: the caller passes arrays in and keeps what comes back.
"""

"""Connectors: sources and destinations, one folder per external system.

A source connector's folder holds the same files: ``config.py`` (typed params), ``client.py`` (the
protocol), ``reader.py`` (the ``SourceConnector``, see ``base.py`` for the window rule), ``errors.py``
(its exceptions, under ``errors.py`` here) and its connection spec (``spec.json``, or ``spec-<variant>.json``
when the folder reads several specs). Systems without a reader keep their spec and their own code:
``customerio/`` (webhook signatures), ``http_streaming/`` (the HTTP API inlet), ``http_destination/``.

``registry.py`` registers each source connector with one line and names every spec file, which the
catalog (services/specs.py) serves; tests/connectors/ runs the contract suite against every registered
source connector. Shared code: ``http.py`` (retries, JSON GETs, next-link paging) and ``httpapi.py`` (the
reader of the HTTP API sources), ``arrowing.py`` and ``batches.py`` (Arrow batches), ``outbound.py`` (the
outbound policy). Heavy imports happen inside the connector that needs them.
"""

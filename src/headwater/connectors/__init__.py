"""One package per external system, with the same files in each: ``config.py`` (typed params),
``client.py`` (the protocol), ``reader.py`` (the ``SourceConnector``), ``errors.py`` (its exceptions).
Heavy imports happen inside the connector that needs them; ``registry.connector_for`` picks one."""

"""Files connectors: ``local-files`` (a folder on the server) and ``uploaded-files`` (Headwater's upload
area). ``config`` checks params, ``client`` confines paths and decodes files, ``reader`` is the connector,
``errors`` maps file-system and parsing failures onto ``connectors.errors``.

pyarrow loads with ``reader`` and ``client``, not with this package.
"""

from headwater.connectors.files.config import FileInfo

__all__ = ["FileInfo"]

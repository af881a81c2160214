"""A PostgreSQL server on 127.0.0.1 that refuses every password, for tests.

The local PostgreSQL trusts every connection from 127.0.0.1, so a wrong password is accepted there;
:class:`RefusingServer` speaks just enough of the startup protocol to refuse one as a real server does.
"""

from __future__ import annotations

import contextlib
import socket
import struct
import threading


class RefusingServer:
    """Speaks PostgreSQL's startup protocol on 127.0.0.1: asks for a cleartext password, records it, and
    refuses it with SQLSTATE 28P01 as a real server does."""

    def __init__(self) -> None:
        self.sock = socket.create_server(("127.0.0.1", 0))
        self.port = self.sock.getsockname()[1]
        self.passwords: list[bytes] = []
        self.thread = threading.Thread(target=self._serve, daemon=True)
        self.thread.start()

    def _serve(self) -> None:
        while True:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            with conn, contextlib.suppress(OSError, struct.error):  # a client giving up mid-handshake
                self._session(conn)

    def _session(self, conn: socket.socket) -> None:
        while True:
            length, code = struct.unpack("!ii", _recv(conn, 8))
            body = _recv(conn, length - 8)
            if code in (80877103, 80877104):  # SSLRequest, GSSENCRequest: not offered
                conn.sendall(b"N")
                continue
            user = dict(zip(*[iter(body.split(b"\0"))] * 2, strict=False)).get(b"user", b"?")
            break
        conn.sendall(b"R" + struct.pack("!ii", 8, 3))  # AuthenticationCleartextPassword
        _kind, length = struct.unpack("!ci", _recv(conn, 5))
        self.passwords.append(_recv(conn, length - 4).rstrip(b"\0"))
        fields = [
            b"SFATAL",
            b"VFATAL",
            b"C28P01",
            b'Mpassword authentication failed for user "' + user + b'"',
        ]
        payload = b"\0".join(fields) + b"\0\0"
        conn.sendall(b"E" + struct.pack("!i", len(payload) + 4) + payload)

    def close(self) -> None:
        self.sock.shutdown(socket.SHUT_RDWR)  # wakes the blocked accept()
        self.sock.close()
        self.thread.join(timeout=5)


def _recv(conn: socket.socket, size: int) -> bytes:
    data = b""
    while len(data) < size:
        chunk = conn.recv(size - len(data))
        if not chunk:
            raise ConnectionError("client went away")
        data += chunk
    return data

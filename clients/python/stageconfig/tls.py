"""``TlsConfig``: how a client reaches a server over TLS, in one object every client
entry point takes (``ConfigClient``, ``AdminClient``, ``setup_stageconfig``, the CLI and
the web page)."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path


@dataclass(frozen=True, slots=True)
class TlsConfig:
    """TLS (and mTLS) settings of a client channel. No ``TlsConfig`` means plaintext.

    ::

        TlsConfig()                                     # TLS, the system's roots
        TlsConfig(root_certificates=ca_pem)             # TLS, a private CA
        TlsConfig.from_files(ca="ca.pem", cert="w.pem", key="w.key")   # mTLS
    """

    root_certificates: bytes | None = None
    """PEM of the CA(s) the server's certificate must chain to; None: the system roots."""
    client_certificate: bytes | None = field(default=None, repr=False)
    """PEM certificate chain presented to a server that asks for one (mTLS)."""
    client_key: bytes | None = field(default=None, repr=False)
    """PEM private key of ``client_certificate``."""

    def __post_init__(self) -> None:
        if (self.client_certificate is None) != (self.client_key is None):
            raise ValueError("client_certificate and client_key go together (mTLS)")

    @classmethod
    def from_files(
        cls,
        ca: str | Path | None = None,
        cert: str | Path | None = None,
        key: str | Path | None = None,
    ) -> TlsConfig:
        """Read the PEM files named (any may be None)."""

        def read(path: str | Path | None) -> bytes | None:
            return Path(path).read_bytes() if path is not None else None

        return cls(root_certificates=read(ca), client_certificate=read(cert), client_key=read(key))

"""The OPC UA server's own certificate: created on first start, kept in ``<state_directory>/opcua`` so clients
that trusted it keep trusting it across restarts, printed by ``check-config`` as a thumbprint to compare with
what a client shows. Not part of the ``opcua`` extra's server module so that `check-config` reads it without
starting anything."""

from __future__ import annotations

import hashlib
import socket
from dataclasses import dataclass
from pathlib import Path

from edge.atomic_file import write_atomically
from edge.config import EdgeSettings

VALID_DAYS = 3650  # a certificate a PLC was told to trust must not expire under a running line next year


def application_uri(device_id: str) -> str:
    return f"urn:sortline:{device_id}"


def server_certificate(settings: EdgeSettings) -> ServerCertificate | None:
    """The server's certificate, made on first use; None on loopback, where the server runs without message
    security. ModuleNotFoundError without the opcua extra (it makes the certificate)."""
    directory = settings.opcua_certificate_directory()
    if directory is None:
        return None
    return ServerCertificate.in_directory(directory).ensure(application_uri(settings.device_id))


@dataclass(frozen=True)
class ServerCertificate:
    cert_file: Path  # DER
    key_file: Path  # PEM, readable by the daemon's user only

    @classmethod
    def in_directory(cls, directory: Path) -> ServerCertificate:
        return cls(directory / "server-cert.der", directory / "server-key.pem")

    @property
    def exists(self) -> bool:
        return self.cert_file.is_file() and self.key_file.is_file()

    def thumbprint(self) -> str:
        """SHA-1 of the DER certificate, as OPC UA clients show it."""
        return hashlib.sha1(self.cert_file.read_bytes()).hexdigest().upper()

    def ensure(self, application_uri: str) -> ServerCertificate:
        """Create the key and a self-signed certificate for ``application_uri`` unless both exist; files are
        written beside their final names and renamed, so a kill mid-way leaves none or both."""
        if self.exists:
            return self
        from asyncua.crypto import cert_gen  # the opcua extra
        from cryptography.x509.oid import ExtendedKeyUsageOID

        key = cert_gen.generate_private_key()
        host = socket.gethostname()
        names = [cert_gen.x509.UniformResourceIdentifier(application_uri), cert_gen.x509.DNSName(host)]
        certificate = cert_gen.generate_self_signed_app_certificate(
            key,
            application_uri,
            {"commonName": f"Sortline {host}", "organizationName": "Sortline"},
            names,
            extended=[ExtendedKeyUsageOID.SERVER_AUTH, ExtendedKeyUsageOID.CLIENT_AUTH],
            days=VALID_DAYS,
        )
        self.cert_file.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        write_atomically(self.key_file, cert_gen.dump_private_key_as_pem(key), mode=0o600)
        write_atomically(self.cert_file, certificate.public_bytes(cert_gen.Encoding.DER), mode=0o644)
        return self

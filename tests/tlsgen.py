"""Self-signed test certificates made with `cryptography` (RSA or ECDSA keys, SAN DNS names, wildcards),
for the tests of sites routed by host name. Never used outside the tests."""

from __future__ import annotations

import datetime

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.x509.oid import NameOID

UTC = datetime.UTC
FAR_FUTURE = datetime.datetime(9999, 12, 31, 23, 59, 59, tzinfo=UTC)


def make_key(kind: str = "rsa") -> rsa.RSAPrivateKey | ec.EllipticCurvePrivateKey:
    return rsa.generate_private_key(public_exponent=65537, key_size=2048) if kind == "rsa" else ec.generate_private_key(
        ec.SECP256R1()
    )


def key_pem(key: rsa.RSAPrivateKey | ec.EllipticCurvePrivateKey) -> str:
    return key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    ).decode()


def make_cert(
    names: list[str], kind: str = "rsa", days: int = 2, not_before: datetime.datetime | None = None,
    not_after: datetime.datetime | None = None, key: rsa.RSAPrivateKey | ec.EllipticCurvePrivateKey | None = None,
) -> tuple[str, str]:
    """-> (certificate PEM, key PEM): self-signed, CN and SAN DNS names `names` (the first is the CN)."""
    key = key or make_key(kind)
    start = not_before or datetime.datetime.now(UTC) - datetime.timedelta(minutes=5)
    end = not_after or start + datetime.timedelta(days=days)
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, names[0])])
    cert = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(start)
        .not_valid_after(end)
        .add_extension(x509.SubjectAlternativeName([x509.DNSName(n) for n in names]), critical=False)
        .sign(key, hashes.SHA256())
    )
    return cert.public_bytes(serialization.Encoding.PEM).decode(), key_pem(key)

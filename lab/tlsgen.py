"""Test certificates made with `cryptography` (RSA or ECDSA keys, SAN DNS names, wildcards): self-signed,
or issued by a throwaway lab CA (make_ca) so a client can verify the chain and the host name. For the
tests and the lab of sites routed by host name; never for anything else."""

from __future__ import annotations

import datetime
from dataclasses import dataclass

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


Key = rsa.RSAPrivateKey | ec.EllipticCurvePrivateKey


@dataclass(frozen=True)
class CA:
    """A throwaway certificate authority: `pem` is what a client trusts (``cafile``)."""

    cert: x509.Certificate
    key: Key

    @property
    def pem(self) -> str:
        return self.cert.public_bytes(serialization.Encoding.PEM).decode()


def make_ca(name: str = "proxytier lab CA", days: int = 2) -> CA:
    """A self-signed CA (basicConstraints CA:true, keyCertSign) with an ECDSA P-256 key."""
    key = make_key("ec")
    start = datetime.datetime.now(UTC) - datetime.timedelta(minutes=5)
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)])
    cert = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(start)
        .not_valid_after(start + datetime.timedelta(days=days))
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(x509.KeyUsage(digital_signature=True, content_commitment=False, key_encipherment=False,
                                     data_encipherment=False, key_agreement=False, key_cert_sign=True,
                                     crl_sign=True, encipher_only=False, decipher_only=False), critical=True)
        .sign(key, hashes.SHA256())
    )
    return CA(cert, key)


def make_cert(
    names: list[str], kind: str = "rsa", days: int = 2, not_before: datetime.datetime | None = None,
    not_after: datetime.datetime | None = None, key: Key | None = None, issuer: CA | None = None,
) -> tuple[str, str]:
    """-> (certificate PEM, key PEM): CN and SAN DNS names `names` (the first is the CN), self-signed, or
    signed by `issuer` and then followed by the issuer's certificate (the chain, as a server sends it)."""
    key = key or make_key(kind)
    start = not_before or datetime.datetime.now(UTC) - datetime.timedelta(minutes=5)
    end = not_after or start + datetime.timedelta(days=days)
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, names[0])])
    cert = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(issuer.cert.subject if issuer else subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(start)
        .not_valid_after(end)
        .add_extension(x509.SubjectAlternativeName([x509.DNSName(n) for n in names]), critical=False)
        .sign(issuer.key if issuer else key, hashes.SHA256())
    )
    pem = cert.public_bytes(serialization.Encoding.PEM).decode()
    return (pem + issuer.pem if issuer else pem), key_pem(key)

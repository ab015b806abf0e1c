"""Read the certificates a TLS peer presented: earliest expiry, subject, issuer."""

from __future__ import annotations

import datetime as dt
import functools
import ssl
from typing import Any

from cryptography import x509
from cryptography.x509.oid import NameOID

from prober.results import Certificate

_ENCODING_DER = 2  # _ssl.ENCODING_DER; public as ssl.ENCODING_DER only on newer Pythons


def peer_chain(ssl_object: Any) -> list[bytes]:
    """DER certificates of the verified chain (leaf first), else just the leaf.

    Python 3.13 made get_verified_chain public; 3.11 and 3.12 have it on the inner object.
    """
    for owner in (ssl_object, getattr(ssl_object, "_sslobj", None)):
        getter = getattr(owner, "get_verified_chain", None)
        if getter is not None:
            try:
                chain = getter()
            except (ssl.SSLError, ValueError):
                break
            if chain:
                return [c if isinstance(c, bytes) else c.public_bytes(_ENCODING_DER) for c in chain]
    leaf = ssl_object.getpeercert(binary_form=True)
    return [leaf] if leaf else []


@functools.lru_cache(maxsize=4096)
def parse_certificate(der: bytes) -> Certificate:
    cert = x509.load_der_x509_certificate(der)
    return Certificate(
        not_after=cert.not_valid_after_utc,
        subject=_common_name(cert.subject),
        issuer=_common_name(cert.issuer),
    )


def earliest_expiry(chain: list[bytes]) -> Certificate | None:
    """The chain's certificate that expires first: the one that will break it."""
    parsed = [parse_certificate(der) for der in chain]
    return min(parsed, key=lambda c: c.not_after) if parsed else None


def _common_name(name: x509.Name) -> str:
    attrs = name.get_attributes_for_oid(NameOID.COMMON_NAME) or name.get_attributes_for_oid(
        NameOID.ORGANIZATION_NAME
    )
    if attrs:
        value = attrs[0].value
        return value if isinstance(value, str) else value.decode("utf-8", "replace")
    return name.rfc4514_string()


def describe_verify_error(exc: ssl.SSLCertVerificationError) -> str:
    """`certificate has expired`, `self-signed certificate`, `Hostname mismatch, ...`."""
    message = exc.verify_message or exc.reason or str(exc)
    return f"TLS certificate rejected: {message}"


def days_left(cert: Certificate, now: dt.datetime) -> float:
    return cert.days_left(now)

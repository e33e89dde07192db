"""TLS for control's API: the server's context, the clients' (agents', CLI's), and who a client certificate is.

`ngfw control --tls-cert FILE --tls-key FILE [--client-ca FILE]` serves HTTPS. With `--client-ca`,
a client may present a certificate signed by that CA; it authenticates as `dataplane:HOST`, HOST
being the certificate's subject CN (or, without a CN, its first DNS name). Agents and the CLI verify
control's certificate against `--ca-file` (or `$NGFW_CA_FILE`; without either, the system's CAs).

Every bad file or refused certificate comes out as one sentence naming the file or the host.
"""

from __future__ import annotations

import ipaddress
import re
import ssl
from collections.abc import Mapping
from pathlib import Path
from typing import Any

# a host name a certificate may give: what a dataplane's --host may be
_HOST_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,252}$")


class TlsConfigError(ValueError):
    """A certificate, key or CA file that cannot be used; the message names the file and says why."""


def _read(path: str, option: str) -> str:
    try:
        return Path(path).read_text(encoding="ascii", errors="replace")
    except OSError as exc:
        raise TlsConfigError(f"cannot read {option} {path}: {exc.strerror or exc}") from None


def _load_pair(context: ssl.SSLContext, cert: str, key: str, cert_option: str, key_option: str) -> None:
    """Load a certificate and its private key into `context`, checking each file first for a clear message."""
    if "-----BEGIN CERTIFICATE-----" not in _read(cert, cert_option):
        raise TlsConfigError(f"{cert_option} {cert} holds no PEM certificate")
    key_text = _read(key, key_option)
    if "PRIVATE KEY-----" not in key_text:
        raise TlsConfigError(f"{key_option} {key} holds no PEM private key")
    if "ENCRYPTED" in key_text:
        raise TlsConfigError(
            f"{key_option} {key} is encrypted with a passphrase: give the key unencrypted "
            "(a file only its owner can read)"
        )
    try:
        context.load_cert_chain(cert, key)
    except ssl.SSLError as exc:
        if exc.reason == "KEY_VALUES_MISMATCH":
            raise TlsConfigError(f"{key_option} {key} is not the private key of {cert_option} {cert}") from None
        raise TlsConfigError(
            f"{cert_option} {cert} with {key_option} {key} cannot be used: {exc.reason or exc}"
        ) from None


def _load_ca(context: ssl.SSLContext, ca_file: str, option: str) -> None:
    if "-----BEGIN CERTIFICATE-----" not in _read(ca_file, option):
        raise TlsConfigError(f"{option} {ca_file} holds no PEM certificate")
    try:
        context.load_verify_locations(cafile=ca_file)
    except ssl.SSLError as exc:
        raise TlsConfigError(f"{option} {ca_file} cannot be used as a CA: {exc.reason or exc}") from None


def server_context(cert: str, key: str, client_ca: str | None = None) -> ssl.SSLContext:
    """The context of `ngfw control --tls-cert CERT --tls-key KEY [--client-ca CA]` (TLS 1.2 and later)."""
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    _load_pair(context, cert, key, "--tls-cert", "--tls-key")
    if client_ca:
        _load_ca(context, client_ca, "--client-ca")
        # optional: people use bearer tokens over the same port; a certificate that is presented
        # must verify (OpenSSL refuses the handshake otherwise)
        context.verify_mode = ssl.CERT_OPTIONAL
    return context


def client_context(
    ca_file: str | None = None,
    client_cert: str | None = None,
    client_key: str | None = None,
    ca_option: str = "--ca-file",
) -> ssl.SSLContext:
    """What agents and the CLI verify control with: `ca_file` (else the system's CAs), and their certificate."""
    if ca_file:
        # only that CA: the system's would let any public certificate for the name pass as control
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)  # verifies the chain and the host name
        _load_ca(context, ca_file, ca_option)
    else:
        context = ssl.create_default_context(ssl.Purpose.SERVER_AUTH)
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    if client_cert or client_key:
        if not (client_cert and client_key):
            raise TlsConfigError("--client-cert and --client-key go together")
        _load_pair(context, client_cert, client_key, "--client-cert", "--client-key")
    return context


def certificate_host(peercert: Mapping[str, Any] | None) -> str | None:
    """The host a verified client certificate names: its subject CN, else its first DNS name; None if neither."""
    if not peercert:
        return None
    for rdn in peercert.get("subject", ()):
        for name, value in rdn:
            if name == "commonName" and value:
                return str(value)
    for kind, value in peercert.get("subjectAltName", ()):
        if kind == "DNS" and value:
            return str(value)
    return None


def valid_host_name(host: str) -> bool:
    return bool(_HOST_NAME.match(host))


def is_loopback(host: str) -> bool:
    """True for 127.0.0.0/8, ::1 and localhost: plain HTTP there never crosses a network."""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def explain_failure(exc: BaseException, url: str, ca_file: str | None, client_cert: str | None) -> str | None:
    """One sentence for a TLS failure talking to control at `url`; None when `exc` is not one."""
    if isinstance(exc, ssl.SSLCertVerificationError):
        why = exc.verify_message or str(exc)
        if "Hostname mismatch" in why or "IP address mismatch" in why:
            return f"control at {url} presented a certificate for another name ({why})"
        trusted = ca_file or "the system's CA certificates"
        return f"control at {url} is not trusted: its certificate is not signed by a CA in {trusted} ({why})"
    if not isinstance(exc, ssl.SSLError):
        return None
    reason = exc.reason or ""
    if reason in (
        "TLSV1_ALERT_UNKNOWN_CA",
        "SSLV3_ALERT_BAD_CERTIFICATE",
        "TLSV1_ALERT_DECRYPT_ERROR",
        "SSLV3_ALERT_CERTIFICATE_UNKNOWN",
        "TLSV13_ALERT_CERTIFICATE_REQUIRED",
    ):
        mine = f"this client's certificate {client_cert}" if client_cert else "this client's certificate"
        return f"control at {url} refused {mine}: it is not signed by control's --client-ca ({reason})"
    if reason in (
        "WRONG_VERSION_NUMBER",
        "RECORD_LAYER_FAILURE",
        "UNEXPECTED_EOF_WHILE_READING",
        "PACKET_LENGTH_TOO_LONG",
    ):
        return f"control at {url} does not answer TLS (is it serving plain HTTP? then use http://) ({reason})"
    return f"TLS with control at {url} failed: {reason or exc}"

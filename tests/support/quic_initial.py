"""Client Initial packets of QUIC's versions, built the way RFC 9001 section 5 says (and, for the versions
before it, as Google's and Facebook's stacks did): the test vectors of the QUIC parser."""

from __future__ import annotations

import struct

from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.hashes import SHA256
from cryptography.hazmat.primitives.hmac import HMAC
from cryptography.hazmat.primitives.kdf.hkdf import HKDFExpand

# Initial salts (RFC 9001 5.2, RFC 9369 3.3.1, the drafts, Google's Q050/T050/T051)
SALT_V1 = bytes.fromhex("38762cf7f55934b34d179ae6a4c80cadccbb7f0a")
SALT_V2 = bytes.fromhex("0dede3def700a6db819381be6e269dcbf9bd2ed9")
SALT_DRAFT_29 = bytes.fromhex("afbfec289993d24c9e9786f19c6111e04390a899")
SALT_DRAFT_23 = bytes.fromhex("c3eef712c72ebb5a11a7d2432bb46365bef9f502")
SALT_DRAFT_22 = bytes.fromhex("7fbcdb0e7c66bbe9193a96cd21519ebd7a02644a")
SALT_Q050 = bytes.fromhex("504574efd066fe2f9d945cfcdbd3a7f0d3b56b45")
SALT_T050 = bytes.fromhex("7ff579e5acd072915580304c43a2367c60488310")
SALT_T051 = bytes.fromhex("7a4edef4e7ccee5fa4506c19124fc8ccda6e033d")

V1, V2, V2_DRAFT = 0x00000001, 0x6B3343CF, 0x709A50C4
Q050, T050, T051 = 0x51303530, 0x54303530, 0x54303531
MVFST_22, MVFST_27, MVFST_EXP = 0xFACEB001, 0xFACEB002, 0xFACEB00E

SALTS = {
    V1: SALT_V1,
    V2: SALT_V2,
    V2_DRAFT: SALT_V2,
    0xFF00001D: SALT_DRAFT_29,
    0xFF00001B: SALT_DRAFT_23,
    Q050: SALT_Q050,
    T050: SALT_T050,
    T051: SALT_T051,
    MVFST_22: SALT_DRAFT_22,
    MVFST_27: SALT_DRAFT_23,
    MVFST_EXP: SALT_DRAFT_23,
}


def _expand_label(secret: bytes, label: bytes, length: int) -> bytes:
    full = b"tls13 " + label
    info = struct.pack("!HB", length, len(full)) + full + b"\x00"
    return HKDFExpand(SHA256(), length, info).derive(secret)


def _extract(salt: bytes, ikm: bytes) -> bytes:
    mac = HMAC(salt, SHA256())
    mac.update(ikm)
    return mac.finalize()


def varint(value: int) -> bytes:
    if value < 0x40:
        return bytes([value])
    if value < 0x4000:
        return struct.pack("!H", 0x4000 | value)
    return struct.pack("!I", 0x80000000 | value)


def crypto_frame(data: bytes, offset: int = 0, frame_type: int = 0x06) -> bytes:
    """A CRYPTO frame (0x06); Google's Q050/T05x carry the handshake in frame type 0x08, same layout."""
    return bytes([frame_type]) + varint(offset) + varint(len(data)) + data


def tls_client_hello(sni: bytes, alpn: bytes = b"h3") -> bytes:
    """A TLS 1.3 ClientHello handshake message (no record header), as QUIC carries it."""
    sni_ext = struct.pack("!HBH", len(sni) + 3, 0, len(sni)) + sni
    alpn_ext = struct.pack("!HB", len(alpn) + 1, len(alpn)) + alpn
    versions = b"\x02\x03\x04"
    params = b"\x01\x04\x80\x00\x75\x30"
    exts = (
        struct.pack("!HH", 0, len(sni_ext))
        + sni_ext
        + struct.pack("!HH", 16, len(alpn_ext))
        + alpn_ext
        + struct.pack("!HH", 43, len(versions))
        + versions
        + struct.pack("!HH", 0x39, len(params))
        + params
    )
    body = (
        b"\x03\x03" + b"\x11" * 32 + b"\x00" + b"\x00\x02\x13\x01" + b"\x01\x00" + struct.pack("!H", len(exts)) + exts
    )
    return b"\x01" + len(body).to_bytes(3, "big") + body


def gquic_chlo(sni: bytes, version: bytes = b"Q050") -> bytes:
    """A Google QUIC crypto "CHLO" message: tag table (tag, little-endian end offset), then the values."""
    values = [(b"PAD\x00", b"-" * 20), (b"SNI\x00", sni), (b"VER\x00", version)]
    table, blob = b"", b""
    for tag, value in values:
        blob += value
        table += tag + struct.pack("<I", len(blob))
    return b"CHLO" + struct.pack("<HH", len(values), 0) + table + blob


def client_initial(
    version: int,
    frames: bytes,
    dcid: bytes = bytes(range(1, 9)),
    pn: int = 0,
    size: int = 1200,
    salt: bytes | None = None,
) -> bytes:
    """One client Initial packet of `version`, padded to `size` bytes, protected with the version's keys."""
    secret = _expand_label(_extract(salt or SALTS[version], dcid), b"client in", 32)
    prefix = b"quicv2 " if version in (V2, V2_DRAFT) else b"quic "
    key, iv, hp = (_expand_label(secret, prefix + what, n) for what, n in ((b"key", 16), (b"iv", 12), (b"hp", 16)))
    packet_type = 1 if version in (V2, V2_DRAFT) else 0
    first = 0xC0 | (packet_type << 4) | 0x03  # 4-byte packet number
    head = bytes([first]) + struct.pack("!I", version) + bytes([len(dcid)]) + dcid + b"\x00" + varint(0)
    plain_len = size - len(head) - 2 - 4 - 16
    plaintext = frames + bytes(max(0, plain_len - len(frames)))
    header = head + struct.pack("!H", 0x4000 | (4 + len(plaintext) + 16)) + struct.pack("!I", pn)
    nonce = iv[:4] + (int.from_bytes(iv[4:], "big") ^ pn).to_bytes(8, "big")
    sealed = AESGCM(key).encrypt(nonce, plaintext, header)
    encryptor = Cipher(algorithms.AES(hp), modes.ECB()).encryptor()
    mask = encryptor.update(sealed[:16]) + encryptor.finalize()  # sample: 4 bytes after the packet number's start
    protected = bytearray(header)
    protected[0] ^= mask[0] & 0x0F
    for i in range(4):
        protected[len(header) - 4 + i] ^= mask[1 + i]
    return bytes(protected) + sealed


def dtls_client_hello(sni: bytes, cookie: bytes = b"", version: int = 0xFEFD) -> bytes:
    """One DTLS record carrying a whole ClientHello (RFC 6347 4.2.2: a cookie after the session id)."""
    tls = tls_client_hello(sni, alpn=b"webrtc")
    body = struct.pack("!H", version) + tls[6 : 6 + 32] + b"\x00" + bytes([len(cookie)]) + cookie + tls[6 + 33 :]
    handshake = b"\x01" + len(body).to_bytes(3, "big") + b"\x00\x00" + bytes(3) + len(body).to_bytes(3, "big") + body
    return b"\x16" + struct.pack("!H", 0xFEFF) + bytes(8) + struct.pack("!H", len(handshake)) + handshake

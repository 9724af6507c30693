"""Encryption at rest for credentials (provider API keys and the like).

The hub's ``secret_key`` setting (``AETHER_SECRET_KEY``) is stretched with HKDF-SHA256 into
a Fernet key (AES-128-CBC with HMAC-SHA256, a timestamp and a random IV: the same text
encrypts differently each time). The salt and info are fixed and versioned below, so the
same secret key always gives the same Fernet key, on every instance sharing a database.

Decisions:

- An empty (or blank) secret key is refused with :class:`SecretKeyMissing`: storing
  credentials under a key anyone could guess would be encryption in name only, and
  falling back to plain text would be worse. Whoever stores a credential must make sure a
  secret key is configured (or generated and kept) first.
- Decrypting with another key raises :class:`SecretKeyMismatch`. Fernet cannot tell a wrong
  key from a token altered after encryption (both fail the HMAC), so the message names both
  causes. Text that is not a Fernet token at all raises :class:`MalformedSecret`.
- Changing ``AETHER_SECRET_KEY`` makes stored credentials unreadable (by design): they must
  be entered again, or re-encrypted with both keys at hand.
"""

from __future__ import annotations

import base64
import binascii
import logging
import os
import secrets
import threading
from pathlib import Path

from cryptography.fernet import Fernet, InvalidToken
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

from hub.settings import Settings, current_settings

log = logging.getLogger("aether.crypto")

KDF_SALT = b"aether-hub/secret-box/v1"
KDF_INFO = b"fernet credential encryption key"
FERNET_VERSION = 0x80
FERNET_MIN_BYTES = 1 + 8 + 16 + 32  # version, timestamp, IV, HMAC (empty ciphertext aside)


class CryptoError(Exception):
    """Base of every error of this module."""


class SecretKeyMissing(CryptoError, ValueError):
    """No secret key is configured, so credentials cannot be stored or read."""


class SecretKeyMismatch(CryptoError):
    """The token was made with another secret key (or altered since)."""


class MalformedSecret(CryptoError, ValueError):
    """The text is not a token this module made."""


def derive_key(secret_key: str) -> bytes:
    """The Fernet key (url-safe base64 of 32 bytes) for ``secret_key``."""
    if not secret_key or not secret_key.strip():
        raise SecretKeyMissing("AETHER_SECRET_KEY is empty: set it to store credentials encrypted.")
    hkdf = HKDF(algorithm=hashes.SHA256(), length=32, salt=KDF_SALT, info=KDF_INFO)
    return base64.urlsafe_b64encode(hkdf.derive(secret_key.encode("utf-8")))


class SecretBox:
    """Encrypts and decrypts short texts under a key derived from ``secret_key``."""

    __slots__ = ("_fernet",)

    def __init__(self, secret_key: str) -> None:
        self._fernet = Fernet(derive_key(secret_key))

    def __repr__(self) -> str:
        return "SecretBox(***)"

    def encrypt(self, text: str) -> str:
        """An ASCII token for ``text``; different on each call."""
        return self._fernet.encrypt(text.encode("utf-8")).decode("ascii")

    def decrypt(self, token: str) -> str:
        """The text ``token`` was made from; :class:`SecretKeyMismatch` when it was made
        under another key, :class:`MalformedSecret` when it is not a token at all."""
        try:
            raw = base64.urlsafe_b64decode(token.encode("ascii"))
        except (binascii.Error, UnicodeEncodeError, ValueError):
            raise MalformedSecret("The stored secret is not an encrypted token.") from None
        if len(raw) < FERNET_MIN_BYTES or raw[0] != FERNET_VERSION:
            raise MalformedSecret("The stored secret is not an encrypted token.")
        try:
            return self._fernet.decrypt(token.encode("ascii")).decode("utf-8")
        except InvalidToken:
            raise SecretKeyMismatch(
                "The stored secret was encrypted with another AETHER_SECRET_KEY (or altered "
                "since): restore that key or enter the credential again."
            ) from None


# --- the process's box ---------------------------------------------------------------------


def secret_key(settings: Settings) -> str:
    """``AETHER_SECRET_KEY``, or a random key kept in the data folder (made once, mode 0600).

    Several machines sharing one PostgreSQL must set ``AETHER_SECRET_KEY`` to the same value.
    """
    if settings.secret_key:
        return settings.secret_key
    path = Path(settings.data_dir) / "secret.key"
    if not path.exists():
        if not path.parent.exists():
            path.parent.mkdir(parents=True, mode=0o700)
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "w") as handle:
            handle.write(secrets.token_urlsafe(32))
        log.warning("generated a secret key for credential encryption", extra={"path": str(path)})
    return path.read_text().strip()


AUDIT_KDF_INFO = b"audit log chain key"  # a key of its own, never the credential key


def audit_key() -> bytes:
    """The HMAC key of the audit chain: HKDF-SHA256 of the secret key in force (made once
    per key), so rewriting audit rows without ``AETHER_SECRET_KEY`` fails ``verify``."""
    settings = current_settings()
    which = (settings.secret_key, settings.data_dir)
    with _boxes_lock:
        found = _audit_keys.get(which)
        if found is None:
            secret = secret_key(settings)
            if not secret.strip():
                raise SecretKeyMissing("AETHER_SECRET_KEY is empty: the audit chain needs it.")
            found = _audit_keys[which] = HKDF(
                algorithm=hashes.SHA256(), length=32, salt=KDF_SALT, info=AUDIT_KDF_INFO
            ).derive(secret.encode())
    return found


_audit_keys: dict[tuple[str, str], bytes] = {}
_boxes: dict[tuple[str, str], SecretBox] = {}
_boxes_lock = threading.Lock()


def box() -> SecretBox:
    """The box of the settings in force, built once (the key is derived on first use, so a
    hub that stores no credential never generates a key file)."""
    settings = current_settings()
    which = (settings.secret_key, settings.data_dir)
    with _boxes_lock:
        found = _boxes.get(which)
        if found is None:
            found = _boxes[which] = SecretBox(secret_key(settings))
    return found

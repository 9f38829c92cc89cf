"""Encryption of API keys at rest.

The Fernet key is derived from ``ADMIN_SECRET_KEY`` with HKDF-SHA256 (a fixed salt and a
domain-separating ``info``), so the admin secret itself is never used as a key and the
same secret used elsewhere yields an unrelated key. ``ADMIN_SECRET_KEY_PREVIOUS`` secrets
are accepted for decryption through MultiFernet while a rotation is under way; new
ciphertexts always use the current secret.

A canary ciphertext stored at first start is decrypted at every start: a wrong secret
stops the server with a clear message instead of failing later, per key, with None.
"""

from __future__ import annotations

import base64
import hashlib
from collections.abc import Sequence

from cryptography.fernet import Fernet, InvalidToken, MultiFernet
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

from stageconfig_server.errors import SecretMismatch

_HKDF_SALT = b"stageconfig/v1/hkdf-salt"
_HKDF_INFO = b"stageconfig/v1/api-key-encryption"
CANARY_PLAINTEXT = "stageconfig-canary-v1"


def derive_fernet_key(secret: str) -> bytes:
    """The urlsafe-base64 Fernet key derived from an admin secret."""
    raw = HKDF(algorithm=hashes.SHA256(), length=32, salt=_HKDF_SALT, info=_HKDF_INFO).derive(
        secret.encode("utf-8")
    )
    return base64.urlsafe_b64encode(raw)


class KeyCipher:
    """Encrypts with the current secret; decrypts with the current or any previous one."""

    def __init__(self, secret: str, previous: Sequence[str] = ()) -> None:
        if not secret:
            raise SecretMismatch("ADMIN_SECRET_KEY is empty")
        self._current = Fernet(derive_fernet_key(secret))
        self._all = MultiFernet([self._current, *(Fernet(derive_fernet_key(p)) for p in previous)])

    def __repr__(self) -> str:
        return "KeyCipher(<secret hidden>)"

    def encrypt_key(self, plain_text: str) -> str:
        """Ciphertext (a Fernet token, ASCII) of ``plain_text``."""
        return self._current.encrypt(plain_text.encode("utf-8")).decode("ascii")

    def decrypt_key(self, encrypted_text: str) -> str:
        """Plaintext of a token made with the current or a previous secret.

        Raises SecretMismatch (never returns None) when no configured secret fits.
        """
        try:
            return self._all.decrypt(encrypted_text.encode("ascii")).decode("utf-8")
        except (InvalidToken, ValueError) as exc:
            raise SecretMismatch(
                "a stored API key cannot be decrypted with ADMIN_SECRET_KEY or "
                "ADMIN_SECRET_KEY_PREVIOUS"
            ) from exc

    def rotate(self, encrypted_text: str) -> str:
        """Re-encrypt a token under the current secret (for ``rotate-keys``)."""
        try:
            return self._all.rotate(encrypted_text.encode("ascii")).decode("ascii")
        except (InvalidToken, ValueError) as exc:
            raise SecretMismatch(
                "a stored ciphertext matches none of the configured secrets"
            ) from exc

    def is_current(self, encrypted_text: str) -> bool:
        """Whether a token was made with the current secret."""
        try:
            self._current.decrypt(encrypted_text.encode("ascii"))
        except (InvalidToken, ValueError):
            return False
        return True

    def make_canary(self) -> str:
        """A ciphertext stored at first start to detect a wrong secret at the next."""
        return self.encrypt_key(CANARY_PLAINTEXT)

    def check_canary(self, canary: str) -> None:
        """Raise SecretMismatch, naming the variable, when the stored canary does not open."""
        try:
            ok = self.decrypt_key(canary) == CANARY_PLAINTEXT
        except SecretMismatch:
            ok = False
        if not ok:
            raise SecretMismatch(
                "ADMIN_SECRET_KEY does not match the secret this database was created with: "
                "stored API keys cannot be decrypted. Set ADMIN_SECRET_KEY to the original "
                "secret (or put it in ADMIN_SECRET_KEY_PREVIOUS while rotating)."
            )


def fingerprint(api_key: str) -> str:
    """A short non-reversible identifier of a key (first 8 hex digits of SHA-256)."""
    return hashlib.sha256(api_key.encode("utf-8")).hexdigest()[:8]

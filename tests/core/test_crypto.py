"""Credentials encrypted at rest: a Fernet key derived from the hub's secret key."""

from __future__ import annotations

import base64

import pytest

from hub.core.crypto import (
    CryptoError,
    MalformedSecret,
    SecretBox,
    SecretKeyMismatch,
    SecretKeyMissing,
    derive_key,
)

SECRET = "correct horse battery staple"


def test_derive_key_is_a_fernet_key_and_stable():
    key = derive_key(SECRET)
    assert len(base64.urlsafe_b64decode(key)) == 32
    assert derive_key(SECRET) == key
    # Pinned: a change of salt, info or algorithm would make every stored credential
    # unreadable, so it must be deliberate (and come with a migration).
    assert key == b"PsVhpg0ZQBmOs2NEhBNkyhgPamiZ69TvlzqVH-3x-Bk="


def test_different_secrets_give_different_keys():
    assert derive_key(SECRET) != derive_key(SECRET + "!")
    assert derive_key("a") != derive_key("A")


@pytest.mark.parametrize("text", ["sk-live-1234567890", "", "ünïcødé ✓ 鍵", "x" * 10_000])
def test_what_is_encrypted_decrypts_to_the_same_text(text):
    box = SecretBox(SECRET)
    token = box.encrypt(text)
    assert token.isascii()
    assert box.decrypt(token) == text
    assert SecretBox(SECRET).decrypt(token) == text  # another box on the same key


def test_the_token_hides_the_text_and_differs_each_time():
    box = SecretBox(SECRET)
    first, second = box.encrypt("sk-live-1234567890"), box.encrypt("sk-live-1234567890")
    assert first != second
    assert "sk-live" not in first
    assert b"sk-live" not in base64.urlsafe_b64decode(first)


@pytest.mark.parametrize("secret", ["", "   ", "\n\t"])
def test_an_empty_secret_key_is_refused(secret):
    with pytest.raises(SecretKeyMissing) as info:
        SecretBox(secret)
    assert "AETHER_SECRET_KEY" in str(info.value)
    with pytest.raises(SecretKeyMissing):
        derive_key(secret)
    assert isinstance(info.value, CryptoError) and isinstance(info.value, ValueError)


def test_a_token_from_another_key_raises_a_mismatch():
    token = SecretBox(SECRET).encrypt("sk-live-1234567890")
    with pytest.raises(SecretKeyMismatch) as info:
        SecretBox("another secret").decrypt(token)
    assert isinstance(info.value, CryptoError)
    assert "AETHER_SECRET_KEY" in str(info.value)
    assert info.value.__cause__ is None and info.value.__suppress_context__


def test_an_altered_token_raises_a_mismatch():
    box = SecretBox(SECRET)
    raw = bytearray(base64.urlsafe_b64decode(box.encrypt("sk-live-1234567890")))
    raw[-40] ^= 1  # one bit of the ciphertext
    with pytest.raises(SecretKeyMismatch):
        box.decrypt(base64.urlsafe_b64encode(bytes(raw)).decode())


@pytest.mark.parametrize(
    "token", ["", "sk-plain-text-key", "not base64 !!", "gAAAAA", "é", "AAAA" * 30]
)
def test_text_that_is_not_a_token_is_malformed(token):
    with pytest.raises(MalformedSecret):
        SecretBox(SECRET).decrypt(token)


def test_the_box_never_shows_its_key():
    box = SecretBox(SECRET)
    assert repr(box) == "SecretBox(***)"
    assert SECRET not in repr(box)
    assert derive_key(SECRET).decode() not in repr(box)
    assert not hasattr(box, "__dict__")

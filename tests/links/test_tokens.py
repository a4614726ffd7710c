"""Link tokens: signed over (id, path, expiry), checked before any lookup, rotatable."""

from __future__ import annotations

import base64
import string

import pytest
from callfs_link_service.tokens import MAX_TOKEN_CHARS, LinkToken, Signer
from hypothesis import given
from hypothesis import strategies as st

from callfs.errors import NotFound

OLD = b"old-link-secret-0123456789abcdef"
NEW = b"new-link-secret-0123456789abcdef"
ALPHABET = string.ascii_letters + string.digits + "-_"


def test_issued_token_verifies_to_its_path_expiry_and_id() -> None:
    signer = Signer([NEW])
    token, claims = signer.issue("/docs/report.pdf", 2_000_000_000)
    assert signer.verify(token) == claims
    assert claims == LinkToken(claims.token_id, "/docs/report.pdf", 2_000_000_000)
    assert len(claims.token_id) == 32
    assert set(token) <= set(ALPHABET)


def test_each_token_has_its_own_id() -> None:
    signer = Signer([NEW])
    ids = {signer.issue("/same.txt", 2_000_000_000)[1].token_id for _ in range(100)}
    assert len(ids) == 100


def test_tokens_for_short_paths_stay_short() -> None:
    token, _ = Signer([NEW]).issue("/f.txt", 2_000_000_000)
    assert len(token) <= 64


def test_changing_any_single_character_is_refused() -> None:
    signer = Signer([NEW])
    token, _ = signer.issue("/docs/ünïcode report.pdf", 2_000_000_000)
    for position, original in enumerate(token):
        for replacement in {ALPHABET[(ALPHABET.index(original) + 1) % 64], "A", "_"} - {original}:
            tampered = token[:position] + replacement + token[position + 1 :]
            with pytest.raises(NotFound):
                signer.verify(tampered)


def test_truncated_or_extended_tokens_are_refused() -> None:
    signer = Signer([NEW])
    token, _ = signer.issue("/f.txt", 2_000_000_000)
    for bad in (token[:-1], token[1:], token + "A", token + "AA", token[: len(token) // 2]):
        with pytest.raises(NotFound):
            signer.verify(bad)


@pytest.mark.parametrize(
    "bad", ["", "x", "!!!!", "a b", "ünï", "A" * 200, "A" * (MAX_TOKEN_CHARS + 1), "AA=="]
)
def test_malformed_tokens_are_not_found(bad: str) -> None:
    with pytest.raises(NotFound):
        Signer([NEW]).verify(bad)


def test_padded_or_standard_alphabet_spellings_are_refused() -> None:
    signer = Signer([NEW])
    for _ in range(50):
        token, _ = signer.issue("/f.txt", 2_000_000_000)
        raw = base64.urlsafe_b64decode(token + "=" * (-len(token) % 4))
        standard = base64.b64encode(raw).decode()
        if "+" in standard or "/" in standard:
            with pytest.raises(NotFound):
                signer.verify(standard.rstrip("="))
        if len(token) % 4:
            with pytest.raises(NotFound):
                signer.verify(token + "=" * (-len(token) % 4))


def test_a_token_signed_with_another_secret_is_not_found() -> None:
    token, _ = Signer([OLD]).issue("/f.txt", 2_000_000_000)
    with pytest.raises(NotFound):
        Signer([NEW]).verify(token)


def test_rotation_keeps_old_tokens_valid_while_the_old_secret_is_listed() -> None:
    old_token, old_claims = Signer([OLD]).issue("/f.txt", 2_000_000_000)
    rotated = Signer([NEW, OLD])
    assert rotated.verify(old_token) == old_claims
    new_token, new_claims = rotated.issue("/g.txt", 2_000_000_000)
    # The first secret signs: the new token verifies without the old secret.
    assert Signer([NEW]).verify(new_token) == new_claims
    with pytest.raises(NotFound):
        Signer([OLD]).verify(new_token)
    with pytest.raises(NotFound):
        Signer([NEW]).verify(old_token)


def test_a_signed_but_invalid_path_is_not_found() -> None:
    # Only a holder of the secret could make this, yet it must not reach a lookup.
    signer = Signer([NEW])
    for path in ("/a/../b", "relative", "/a//b", "/a/"):
        token, _ = signer.issue(path, 2_000_000_000)
        with pytest.raises(NotFound):
            signer.verify(token)


def test_expiry_is_inclusive_of_its_second() -> None:
    claims = LinkToken("id", "/f.txt", 1000)
    assert not claims.expired(999.999)
    assert claims.expired(1000)
    assert claims.expired(1001)


def test_empty_secret_list_is_refused() -> None:
    with pytest.raises(ValueError, match="link secret"):
        Signer([])
    with pytest.raises(ValueError, match="link secret"):
        Signer([b""])


@given(
    path=st.lists(
        st.text(
            alphabet=st.characters(blacklist_categories=("Cc", "Cs"), blacklist_characters="/\\"),
            min_size=1,
            max_size=20,
        ).filter(lambda s: s not in (".", "..")),
        min_size=1,
        max_size=5,
    ).map(lambda parts: "/" + "/".join(parts)),
    expires=st.integers(min_value=0, max_value=2**40),
)
def test_any_valid_path_and_expiry_round_trip(path: str, expires: int) -> None:
    signer = Signer([NEW, OLD])
    token, claims = signer.issue(path, expires)
    assert signer.verify(token) == LinkToken(claims.token_id, path, expires)

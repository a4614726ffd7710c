"""Unix permissions between the users of CALLFS_AUTH_API_KEYS (api-user-1, api-user-2, ...)."""

from __future__ import annotations

import httpx
import pytest

from tests.e2e.target import code

pytestmark = pytest.mark.e2e


def test_private_file_is_403_for_another_user(
    user1: httpx.Client, user2: httpx.Client, home: str
) -> None:
    path = f"/v1/files{home}/secret.txt"
    created = user1.post(path, params={"mode": "0600"}, content=b"for my eyes")
    assert created.status_code == 201
    assert created.json()["mode"] == "0600"

    for response in (user2.get(path), user2.put(path, content=b"mine now")):
        assert response.status_code == 403
        assert code(response) == "PERMISSION_DENIED"
    assert user2.head(path).status_code == 403
    assert user1.get(path).content == b"for my eyes"


def test_group_readable_file_is_read_by_another_user_of_the_group(
    user1: httpx.Client, user2: httpx.Client, home: str
) -> None:
    path = f"/v1/files{home}/team.txt"
    user1.post(path, params={"mode": "0640"}, content=b"team notes")
    assert user2.get(path).content == b"team notes"
    denied = user2.put(path, content=b"edited")
    assert denied.status_code == 403
    assert code(denied) == "PERMISSION_DENIED"


def test_another_user_cannot_create_or_delete_in_a_0755_directory(
    user1: httpx.Client, user2: httpx.Client, home: str
) -> None:
    user1.post(f"/v1/files{home}/kept.txt", content=b"kept")
    created = user2.post(f"/v1/files{home}/intruder.txt", content=b"x")
    assert created.status_code == 403
    deleted = user2.delete(f"/v1/files{home}/kept.txt")
    assert deleted.status_code == 403
    assert code(deleted) == "PERMISSION_DENIED"
    assert user1.get(f"/v1/files{home}/kept.txt").content == b"kept"
    assert user1.get(f"/v1/files{home}/intruder.txt").status_code == 404


def test_only_the_owner_changes_the_mode(
    user1: httpx.Client, user2: httpx.Client, home: str
) -> None:
    path = f"/v1/files{home}/locked.txt"
    user1.post(path, params={"mode": "0600"}, content=b"locked")
    refused = user2.patch(path, json={"mode": "0666"})
    assert refused.status_code == 403
    assert user1.head(path).headers["x-callfs-mode"] == "0600"

    assert user1.patch(path, json={"mode": "0644"}).status_code == 200
    assert user2.get(path).content == b"locked"


def test_listing_a_0700_directory_is_403_for_another_user(
    user1: httpx.Client, user2: httpx.Client, home: str
) -> None:
    assert user1.post(f"/v1/files{home}/private/", params={"mode": "0700"}).status_code == 201
    user1.post(f"/v1/files{home}/private/inner.txt", content=b"x")
    listing = user2.get(f"/v1/directories{home}/private")
    assert listing.status_code == 403
    assert code(listing) == "PERMISSION_DENIED"
    assert user2.get(f"/v1/files{home}/private/inner.txt").status_code == 403

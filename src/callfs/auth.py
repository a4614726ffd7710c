"""API keys to users: who is calling, decided in constant time."""

from __future__ import annotations

import hmac

from callfs.errors import AuthenticationFailed
from callfs.permissions import User
from callfs.settings import AuthSettings

API_USERS_GROUP = "callfs"


class Authenticator:
    """Maps ``Authorization: Bearer <key>`` to a :class:`User`.

    Keys from ``auth.api_keys`` become ``api-user-N`` (N counts from 1, skipping
    empty keys) in group ``callfs``; ``auth.users`` name their own users.
    """

    def __init__(self, settings: AuthSettings) -> None:
        self._keys: list[tuple[bytes, User]] = []
        index = 1
        for secret in settings.api_keys:
            key = secret.get_secret_value()
            if key:
                self._keys.append(
                    (key.encode(), User(f"api-user-{index}", frozenset({API_USERS_GROUP})))
                )
                index += 1
        for spec in settings.users:
            self._keys.append(
                (spec.api_key.get_secret_value().encode(), User(spec.name, frozenset(spec.groups)))
            )

    def authenticate(self, header: str | None) -> User:
        """The user behind an Authorization header value.

        Raises:
            AuthenticationFailed: missing, malformed, empty or unknown key.
        """
        if not header:
            raise AuthenticationFailed("missing Authorization header")
        scheme, _, token = header.strip().partition(" ")
        if scheme.lower() != "bearer":
            raise AuthenticationFailed("Authorization must be 'Bearer <api-key>'")
        token = token.strip()
        if not token:
            raise AuthenticationFailed("empty API key")
        presented = token.encode()
        found: User | None = None
        for key, user in self._keys:
            # Compare with every key, never stopping early, so timing tells nothing.
            if hmac.compare_digest(key, presented) and found is None:
                found = user
        if found is None:
            raise AuthenticationFailed("invalid API key")
        return found

"""The CallFS domain errors, each carrying its API.md status and code.

    CallFSError                      500 INTERNAL_ERROR
    ├── InvalidPath                  400 INVALID_PATH
    ├── BadRequest                   400 BAD_REQUEST
    ├── NotADirectory                400 NOT_A_DIRECTORY
    ├── IsADirectory                 400 IS_A_DIRECTORY
    ├── AuthenticationFailed         401 AUTHENTICATION_FAILED
    ├── PermissionDenied             403 PERMISSION_DENIED
    ├── NotFound                     404 FILE_NOT_FOUND
    ├── AlreadyExists                409 FILE_ALREADY_EXISTS
    ├── DirectoryNotEmpty            409 DIRECTORY_NOT_EMPTY
    ├── LinkExpired                  410 LINK_EXPIRED
    ├── LinkUsed                     410 LINK_USED
    ├── PreconditionFailed           412 PRECONDITION_FAILED
    ├── PayloadTooLarge              413 PAYLOAD_TOO_LARGE
    ├── RangeNotSatisfiable          416 RANGE_NOT_SATISFIABLE
    ├── RateLimitExceeded            429 RATE_LIMIT_EXCEEDED
    └── BackendUnavailable           503 BACKEND_UNAVAILABLE
        ├── NodeUnreachable          (a storage node did not answer at all)
        ├── ReplicaCorrupted         (a replica's bytes failed their checksum: read another)
        ├── LockTimeout              (another operation holds the path's lock)
        └── EntryChanged             (the row changed after the decision: a lost lock)

Nothing below the transports imports fastapi or grpc: each transport maps these
to its own status in one place.
"""

from __future__ import annotations


class CallFSError(Exception):
    """Base of every error CallFS reports to a client."""

    status_code = 500
    code = "INTERNAL_ERROR"
    default_message = "internal error"

    def __init__(self, message: str | None = None) -> None:
        self.message = message or self.default_message
        super().__init__(self.message)


class InvalidPath(CallFSError):
    status_code = 400
    code = "INVALID_PATH"
    default_message = "invalid path"


class BadRequest(CallFSError):
    status_code = 400
    code = "BAD_REQUEST"
    default_message = "bad request"


class NotADirectory(CallFSError):
    status_code = 400
    code = "NOT_A_DIRECTORY"
    default_message = "not a directory"


class IsADirectory(CallFSError):
    status_code = 400
    code = "IS_A_DIRECTORY"
    default_message = "is a directory"


class AuthenticationFailed(CallFSError):
    status_code = 401
    code = "AUTHENTICATION_FAILED"
    default_message = "authentication failed"


class PermissionDenied(CallFSError):
    status_code = 403
    code = "PERMISSION_DENIED"
    default_message = "permission denied"


class NotFound(CallFSError):
    status_code = 404
    code = "FILE_NOT_FOUND"
    default_message = "file not found"


class AlreadyExists(CallFSError):
    status_code = 409
    code = "FILE_ALREADY_EXISTS"
    default_message = "file already exists"


class DirectoryNotEmpty(CallFSError):
    status_code = 409
    code = "DIRECTORY_NOT_EMPTY"
    default_message = "directory not empty"


class LinkExpired(CallFSError):
    status_code = 410
    code = "LINK_EXPIRED"
    default_message = "link expired"


class LinkUsed(CallFSError):
    status_code = 410
    code = "LINK_USED"
    default_message = "link already used"


class PreconditionFailed(CallFSError):
    status_code = 412
    code = "PRECONDITION_FAILED"
    default_message = "precondition failed"


class PayloadTooLarge(CallFSError):
    status_code = 413
    code = "PAYLOAD_TOO_LARGE"
    default_message = "payload too large"


class RangeNotSatisfiable(CallFSError):
    status_code = 416
    code = "RANGE_NOT_SATISFIABLE"
    default_message = "range not satisfiable"

    def __init__(self, message: str | None = None, *, size: int = 0) -> None:
        super().__init__(message)
        self.size = size


class RateLimitExceeded(CallFSError):
    status_code = 429
    code = "RATE_LIMIT_EXCEEDED"
    default_message = "rate limit exceeded"

    def __init__(self, message: str | None = None, *, retry_after: float = 1.0) -> None:
        super().__init__(message)
        self.retry_after = retry_after


class BackendUnavailable(CallFSError):
    status_code = 503
    code = "BACKEND_UNAVAILABLE"
    default_message = "storage backend unavailable"


class NodeUnreachable(BackendUnavailable):
    """A storage node did not answer at all (refused, reset or timed out): it is down."""


class ReplicaCorrupted(BackendUnavailable):
    """A replica's stored bytes failed a checksum: another replica may hold them whole.

    A storage node raises it before it sends any byte of a block that fails its CRC
    (gRPC ``DATA_LOSS``), and the storage client raises it again from that answer.
    """

    default_message = "a replica of the object is corrupted"


class LockTimeout(BackendUnavailable):
    """A path lock could not be taken in time (another writer holds it)."""

    default_message = "the path is locked by another operation; try again"


class EntryChanged(BackendUnavailable):
    """A conditional update found the row changed since the caller decided from it.

    Under the path's lock this only happens when the lock was lost (a Redis restart,
    an expiry): the mutation is refused, nothing is changed, and the client may retry.
    """

    default_message = "the entry changed concurrently; nothing was changed, try again"

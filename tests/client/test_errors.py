"""Every API error answer becomes a typed exception carrying code, message, status and
request id — from a real ``callfs dev`` where it can be provoked, from :func:`error_for`
otherwise."""

from __future__ import annotations

import httpx
import pytest

from callfs.client import (
    AlreadyExists,
    AsyncClient,
    BadRequest,
    Client,
    ClientError,
    Conflict,
    DirectoryNotEmpty,
    EndpointNotFound,
    Gone,
    InternalError,
    InvalidPath,
    IsADirectory,
    LinkExpired,
    LinkUsed,
    NotADirectory,
    NotFound,
    NotModified,
    PayloadTooLarge,
    PermissionDenied,
    PreconditionFailed,
    RangeNotSatisfiable,
    RateLimited,
    ServerError,
    TransportError,
    Unauthorized,
    Unavailable,
)
from callfs.client.errors import error_for
from tests.client.conftest import Server
from tests.support.servers import free_port


def assert_answered(error: ClientError, status: int, code: str) -> None:
    assert (error.status, error.code) == (status, code)
    assert error.message and error.request_id and len(error.request_id) >= 16
    assert code in str(error) and error.request_id in str(error)


def test_not_found_conflicts_and_bad_paths(server: Server, home: str) -> None:
    with Client(server.url, server.key) as fs:
        with pytest.raises(NotFound) as raised:
            fs.read(f"{home}/absent")
        assert_answered(raised.value, 404, "FILE_NOT_FOUND")
        # stat is a HEAD (no body): the code is learnt from the same request as a GET.
        with pytest.raises(NotFound) as raised:
            fs.stat(f"{home}/absent")
        assert_answered(raised.value, 404, "FILE_NOT_FOUND")
        with pytest.raises(NotFound):
            fs.delete(f"{home}/absent")

        fs.write(f"{home}/dir/file", b"x")
        with pytest.raises(AlreadyExists) as conflict:
            fs.write(f"{home}/dir/file", b"y", create_only=True)
        assert_answered(conflict.value, 409, "FILE_ALREADY_EXISTS")
        assert isinstance(conflict.value, Conflict)
        with pytest.raises(DirectoryNotEmpty) as not_empty:
            fs.delete(f"{home}/dir")
        assert_answered(not_empty.value, 409, "DIRECTORY_NOT_EMPTY")

        with pytest.raises(InvalidPath) as invalid:
            fs.read(f"{home}/../etc/passwd")  # sent as %2E%2E: never resolved on the way
        assert_answered(invalid.value, 400, "INVALID_PATH")
        assert isinstance(invalid.value, BadRequest)
        with pytest.raises(InvalidPath):
            fs.stat(f"{home}//double")
        with pytest.raises(NotADirectory) as not_dir:
            fs.stat(f"{home}/dir/file/")
        assert_answered(not_dir.value, 400, "NOT_A_DIRECTORY")
        with pytest.raises(IsADirectory) as is_dir:
            fs.write(f"{home}/dir", b"x")
        assert_answered(is_dir.value, 400, "IS_A_DIRECTORY")
        with pytest.raises(BadRequest) as bad:
            fs.rename(f"{home}/dir/file", "")
        assert_answered(bad.value, 400, "BAD_REQUEST")
        with pytest.raises(PreconditionFailed) as precondition:
            fs.write(f"{home}/dir/file", b"z", if_match="nope")
        assert_answered(precondition.value, 412, "PRECONDITION_FAILED")
        with pytest.raises(RangeNotSatisfiable) as unsatisfiable:
            fs.read(f"{home}/dir/file", range=(5, 9))
        assert_answered(unsatisfiable.value, 416, "RANGE_NOT_SATISFIABLE")
        assert unsatisfiable.value.size == 1


def test_another_user_is_denied(server: Server, home: str) -> None:
    with Client(server.url, server.key) as owner, Client(server.url, server.other_key) as other:
        private = owner.write(f"{home}/private.txt", b"secret", mode=0o600)
        assert private.mode == 0o600
        owner.write(f"{home}/public.txt", b"hi")
        with pytest.raises(PermissionDenied) as raised:
            other.read(private.path)
        assert_answered(raised.value, 403, "PERMISSION_DENIED")
        with pytest.raises(PermissionDenied):
            other.stat(private.path)  # a file's metadata needs read permission too
        with pytest.raises(PermissionDenied):
            other.exists(private.path)
        assert other.read(f"{home}/public.txt") == b"hi"
        with pytest.raises(PermissionDenied):
            other.write(f"{home}/public.txt", b"mine now")  # 0644: not writable by others
        with pytest.raises(PermissionDenied):
            other.delete(f"{home}/public.txt")  # the directory is 0755
        with pytest.raises(PermissionDenied):
            other.chmod(f"{home}/public.txt", 0o666)
        with pytest.raises(PermissionDenied):
            other.cluster()  # root only
        assert owner.read(f"{home}/public.txt") == b"hi"


async def test_errors_async(server: Server, home: str) -> None:
    async with (
        AsyncClient(server.url, server.key) as owner,
        AsyncClient(server.url, server.other_key) as other,
    ):
        with pytest.raises(NotFound) as raised:
            await owner.stat(f"{home}/absent")
        assert_answered(raised.value, 404, "FILE_NOT_FOUND")
        await owner.write(f"{home}/private.txt", b"secret", mode=0o600)
        with pytest.raises(PermissionDenied) as denied:
            await other.read(f"{home}/private.txt")
        assert_answered(denied.value, 403, "PERMISSION_DENIED")
        with pytest.raises(AlreadyExists):
            await owner.write(f"{home}/private.txt", b"x", create_only=True)
        with pytest.raises(InvalidPath):
            await owner.stat(f"{home}/./x")


def test_bad_key_and_wrong_base_url(server: Server) -> None:
    with Client(server.url, "not-a-key-0123456789") as fs, pytest.raises(Unauthorized) as raised:
        fs.read("/anything")
    assert_answered(raised.value, 401, "AUTHENTICATION_FAILED")
    with Client(server.url) as anonymous, pytest.raises(Unauthorized):
        list(anonymous.list("/"))
    with Client(f"{server.url}/not-callfs", server.key) as fs:
        with pytest.raises(EndpointNotFound) as missing:
            fs.read("/x")
        assert_answered(missing.value, 404, "NOT_FOUND")
        assert isinstance(missing.value, NotFound)


async def test_bad_key_async(server: Server) -> None:
    async with AsyncClient(server.url, "not-a-key-0123456789") as fs:
        with pytest.raises(Unauthorized):
            await fs.stat("/")


def test_no_server_is_a_transport_error() -> None:
    url = f"http://127.0.0.1:{free_port()}"
    with Client(url, "key", retries=0) as fs, pytest.raises(TransportError) as raised:
        fs.read("/x")
    assert raised.value.status is None and raised.value.code == "TRANSPORT_ERROR"
    assert isinstance(raised.value.__cause__, httpx.ConnectError)


@pytest.mark.parametrize(
    ("status", "code", "expected"),
    [
        (400, "INVALID_PATH", InvalidPath),
        (400, "BAD_REQUEST", BadRequest),
        (400, "NOT_A_DIRECTORY", NotADirectory),
        (400, "IS_A_DIRECTORY", IsADirectory),
        (401, "AUTHENTICATION_FAILED", Unauthorized),
        (403, "PERMISSION_DENIED", PermissionDenied),
        (404, "FILE_NOT_FOUND", NotFound),
        (404, "NOT_FOUND", EndpointNotFound),
        (409, "FILE_ALREADY_EXISTS", AlreadyExists),
        (409, "DIRECTORY_NOT_EMPTY", DirectoryNotEmpty),
        (410, "LINK_EXPIRED", LinkExpired),
        (410, "LINK_USED", LinkUsed),
        (412, "PRECONDITION_FAILED", PreconditionFailed),
        (413, "PAYLOAD_TOO_LARGE", PayloadTooLarge),
        (416, "RANGE_NOT_SATISFIABLE", RangeNotSatisfiable),
        (429, "RATE_LIMIT_EXCEEDED", RateLimited),
        (431, "BAD_REQUEST", BadRequest),
        (500, "INTERNAL_ERROR", InternalError),
        (503, "BACKEND_UNAVAILABLE", Unavailable),
        # Unknown codes: the class of their status family, the code as sent.
        (409, "SOMETHING_NEW", Conflict),
        (410, "SOMETHING_NEW", Gone),
        (502, "HTTP_502", ServerError),
        (418, "TEAPOT", ClientError),
        (304, None, NotModified),
    ],
)
def test_every_code_has_its_class(status: int, code: str | None, expected: type) -> None:
    error = error_for(status, code, "message", request_id="rid")
    assert type(error) is expected
    assert isinstance(error, ClientError)
    assert error.status == status and error.request_id == "rid" and error.message == "message"
    assert error.code == (code or expected.default_code)


def test_every_server_code_is_mapped() -> None:
    """Each code the server can send (callfs.errors, read here, never by the SDK) has a class."""
    import callfs.errors as server_errors

    codes = {
        value.code
        for value in vars(server_errors).values()
        if isinstance(value, type) and issubclass(value, server_errors.CallFSError)
    }
    codes.add("NOT_FOUND")  # routing's "no such endpoint" (callfs.web)
    for code in codes:
        assert type(error_for(400, code, "m")).default_code == code, code


def test_error_details_from_headers() -> None:
    limited = error_for(429, "RATE_LIMIT_EXCEEDED", "slow down", headers={"retry-after": "3"})
    assert isinstance(limited, RateLimited) and limited.retry_after == 3.0
    unsatisfiable = error_for(
        416, "RANGE_NOT_SATISFIABLE", "no", headers={"content-range": "bytes */42"}
    )
    assert isinstance(unsatisfiable, RangeNotSatisfiable) and unsatisfiable.size == 42
    modified = error_for(304, None, "not modified", headers={"etag": '"abc"'})
    assert isinstance(modified, NotModified) and modified.etag == "abc"

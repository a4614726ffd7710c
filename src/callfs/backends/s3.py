"""The S3 backend: objects in one bucket of Amazon S3 or any S3-compatible server."""

from __future__ import annotations

import asyncio
import contextlib
import functools
import hashlib
import logging
from collections.abc import AsyncIterable, AsyncIterator, Callable, Coroutine, Iterator
from contextlib import AsyncExitStack
from typing import Any

import aioboto3
import aiohttp
from botocore.config import Config
from botocore.exceptions import (
    BotoCoreError,
    ClientError,
    CredentialRetrievalError,
    NoCredentialsError,
    PartialCredentialsError,
)

from callfs.backends.base import (
    Backend,
    ObjectRef,
    StoredObject,
    Written,
    new_object_key,
    prefetched,
)
from callfs.errors import (
    BackendUnavailable,
    CallFSError,
    NotFound,
    PayloadTooLarge,
    RangeNotSatisfiable,
)
from callfs.settings import BackendSettings

logger = logging.getLogger(__name__)

MAX_PARTS = 10_000
MAX_LIST_PAGE = 1000
DEFAULT_CHUNK_SIZE = 1024 * 1024
# Parts uploading while the next one is read from the client. Each one more in flight
# holds one more part in memory: two (~+15 MiB RSS) push `callfs dev` past 200 MiB.
DEFAULT_PARTS_IN_FLIGHT = 1
PUBLIC_MESSAGE = "S3 is unavailable"

_FAILURES = (ClientError, BotoCoreError, aiohttp.ClientError, OSError)
_MISSING_KEY = frozenset({"NoSuchKey", "NotFound", "404"})
_MISSING_BUCKET = frozenset({"NoSuchBucket"})
_BAD_RANGE = frozenset({"InvalidRange", "416"})
_DENIED = frozenset(
    {
        "AccessDenied",
        "InvalidAccessKeyId",
        "SignatureDoesNotMatch",
        "ExpiredToken",
        "InvalidToken",
        "TokenRefreshRequired",
        "AllAccessDisabled",
        "AccountProblem",
        "403",
    }
)
_NO_CREDENTIALS = (NoCredentialsError, PartialCredentialsError, CredentialRetrievalError)


def _diagnose(
    exc: BaseException, *, bucket: str, key: str | None
) -> tuple[type[CallFSError], str, int]:
    """The one translation of an S3 or transport failure: domain error, reason, log level.

    The reason names the bucket and key but never a credential.
    """
    if isinstance(exc, ClientError):
        error = exc.response.get("Error", {})
        code = str(error.get("Code", ""))
        status = int(exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode", 0) or 0)
        if code in _MISSING_BUCKET or (key is None and (code in _MISSING_KEY or status == 404)):
            return BackendUnavailable, f"bucket {bucket!r} does not exist", logging.ERROR
        if code in _MISSING_KEY or status == 404:
            return (
                NotFound,
                f"object s3://{bucket}/{key} is missing although metadata points at it",
                logging.ERROR,
            )
        if code in _BAD_RANGE or status == 416:
            return RangeNotSatisfiable, f"range outside s3://{bucket}/{key}", logging.DEBUG
        if code in _DENIED or status == 403:
            return (
                BackendUnavailable,
                f"access to bucket {bucket!r} was denied ({code or status}): check the access "
                "key and secret key (CALLFS_BACKEND_S3_ACCESS_KEY, CALLFS_BACKEND_S3_SECRET_KEY) "
                "or the IAM role, and the bucket policy",
                logging.ERROR,
            )
        if status >= 500 or status == 429 or not status:
            return BackendUnavailable, f"S3 answered {code or status}", logging.WARNING
        # Any other 4xx is a setting S3 refuses (a KMS key, an ACL, a region): say which.
        message = str(error.get("Message", ""))
        return (
            BackendUnavailable,
            f"S3 rejected the request on bucket {bucket!r}: {code} {message}".rstrip(),
            logging.ERROR,
        )
    if isinstance(exc, _NO_CREDENTIALS):
        return (
            BackendUnavailable,
            "no S3 credentials: set CALLFS_BACKEND_S3_ACCESS_KEY and "
            "CALLFS_BACKEND_S3_SECRET_KEY, or give the process an AWS role (IRSA)",
            logging.ERROR,
        )
    return BackendUnavailable, f"S3 is unreachable: {type(exc).__name__}: {exc}", logging.WARNING


def _translate(exc: BaseException, *, bucket: str, key: str | None) -> CallFSError:
    """Log ``exc`` once with its reason and return the domain error a client may see."""
    kind, reason, level = _diagnose(exc, bucket=bucket, key=key)
    logger.log(level, "S3: %s", reason)
    if kind is BackendUnavailable:
        return BackendUnavailable(PUBLIC_MESSAGE)
    return kind()


def _range(offset: int, length: int | None) -> str | None:
    if offset == 0 and length is None:
        return None
    if length is None:
        return f"bytes={offset}-"
    return f"bytes={offset}-{offset + length - 1}"


def _etag(value: str) -> str:
    return value.strip('"')


class S3Backend(Backend):
    """Stores each object under its key in one bucket, streamed both ways.

    One aioboto3 session and one client serve the whole process, opened by
    :meth:`start` and closed by :meth:`close`.
    """

    name = "s3"

    def __init__(
        self,
        settings: BackendSettings,
        *,
        chunk_size: int = DEFAULT_CHUNK_SIZE,
        list_page_size: int = MAX_LIST_PAGE,
        parts_in_flight: int = DEFAULT_PARTS_IN_FLIGHT,
    ) -> None:
        self._settings = settings
        self._parts_in_flight = max(1, parts_in_flight)
        self._bucket = settings.s3_bucket_name
        self._part_size = settings.s3_part_size
        self._chunk_size = chunk_size
        self._list_page_size = list_page_size
        self._stack: AsyncExitStack | None = None
        self._client_handle: Any = None

    @property
    def bucket(self) -> str:
        """The bucket every object lives in."""
        return self._bucket

    @property
    def _client(self) -> Any:
        if self._client_handle is None:
            raise BackendUnavailable("the S3 backend is not started")
        return self._client_handle

    async def start(self) -> None:
        """Open the process's S3 client (the standard AWS chain when no keys are set)."""
        if self._stack is not None:
            return
        settings = self._settings
        access_key = settings.s3_access_key.get_secret_value()
        secret_key = settings.s3_secret_key.get_secret_value()
        if access_key and secret_key:
            session = aioboto3.Session(
                aws_access_key_id=access_key,
                aws_secret_access_key=secret_key,
                region_name=settings.s3_region,
            )
        else:
            if access_key or secret_key:
                logger.warning(
                    "S3: only one of the access key and secret key is set; "
                    "using the standard AWS credential chain instead"
                )
            session = aioboto3.Session(region_name=settings.s3_region)
        config = Config(
            signature_version="s3v4",
            # MinIO, SeaweedFS and most self-hosted servers only route path-style.
            s3={"addressing_style": "path" if settings.s3_endpoint else "auto"},
            # total_max_attempts counts the first attempt; botocore's max_attempts would not.
            retries={"mode": "standard", "total_max_attempts": settings.s3_max_attempts},
            connect_timeout=5,
            read_timeout=60,
            max_pool_connections=64,
        )
        stack = AsyncExitStack()
        self._client_handle = await stack.enter_async_context(
            session.client(
                "s3",
                endpoint_url=settings.s3_endpoint or None,
                region_name=settings.s3_region,
                config=config,
            )
        )
        self._stack = stack

    async def close(self) -> None:
        """Close the client and its connection pool."""
        stack, self._stack, self._client_handle = self._stack, None, None
        if stack is not None:
            await stack.aclose()

    @contextlib.contextmanager
    def _translated(self, key: str | None) -> Iterator[None]:
        try:
            yield
        except _FAILURES as exc:
            raise _translate(exc, bucket=self._bucket, key=key) from exc

    def _put_arguments(self) -> dict[str, str]:
        """Encryption and ACL arguments for every request that creates an object."""
        settings = self._settings
        arguments: dict[str, str] = {}
        if settings.s3_server_side_encryption:
            arguments["ServerSideEncryption"] = settings.s3_server_side_encryption
            if settings.s3_server_side_encryption == "aws:kms" and settings.s3_kms_key_id:
                arguments["SSEKMSKeyId"] = settings.s3_kms_key_id
        # "private" is what S3 does anyway, and buckets with ACLs disabled refuse any ACL.
        if settings.s3_acl and settings.s3_acl != "private":
            arguments["ACL"] = settings.s3_acl
        return arguments

    async def new_object(self, path: str) -> ObjectRef:
        """A fresh key in the bucket; S3 has no placement to choose."""
        return ObjectRef("s3", new_object_key())

    async def write(self, ref: ObjectRef, chunks: AsyncIterable[bytes]) -> Written:
        """Stream ``chunks`` to S3: one PutObject when it fits a part, else a multipart upload.

        While a part uploads, the next one is read from ``chunks``: at most
        ``parts_in_flight`` parts are uploading and one more is being filled, so
        memory stays bounded. Any failure, including ``chunks`` raising, stops the
        parts in flight and aborts the multipart upload so no parts remain, and
        propagates.

        Raises:
            PayloadTooLarge: the body needs more than 10,000 parts of ``s3_part_size``.
            BackendUnavailable: S3 does not answer or refuses.
        """
        digest = hashlib.sha256()
        size = 0
        filling: list[bytes] = []
        filled = 0
        upload: _MultipartUpload | None = None
        try:
            async for chunk in chunks:
                digest.update(chunk)
                size += len(chunk)
                filling.append(chunk)
                filled += len(chunk)
                while filled >= self._part_size:
                    if upload is None:
                        upload = await self._start_upload(ref.key)
                    filling = await upload.send(filling)
                    filled -= self._part_size
            if upload is None:
                with self._translated(ref.key):
                    response = await self._client.put_object(
                        Bucket=self._bucket,
                        Key=ref.key,
                        Body=b"".join(filling),
                        **self._put_arguments(),
                    )
                etag = _etag(response["ETag"])
            else:
                if filling:
                    await upload.send(filling)
                filling = []
                parts = await upload.finish()
                with self._translated(ref.key):
                    response = await self._client.complete_multipart_upload(
                        Bucket=self._bucket,
                        Key=ref.key,
                        UploadId=upload.upload_id,
                        MultipartUpload={"Parts": parts},
                    )
                etag = _etag(response["ETag"])
        except BaseException:
            if upload is not None:
                await upload.stop()
                await self._abort(ref.key, upload.upload_id)
            raise
        return Written(size=size, sha256=digest.hexdigest(), etag=etag)

    async def _create_upload(self, key: str) -> str:
        with self._translated(key):
            response = await self._client.create_multipart_upload(
                Bucket=self._bucket, Key=key, **self._put_arguments()
            )
        upload_id: str = response["UploadId"]
        return upload_id

    async def _start_upload(self, key: str) -> _MultipartUpload:
        upload_id = await self._create_upload(key)
        return _MultipartUpload(
            upload_id,
            functools.partial(self._upload_part, key, upload_id),
            limit=self._parts_in_flight,
            part_size=self._part_size,
        )

    async def _upload_part(
        self, key: str, upload_id: str, number: int, body: bytes
    ) -> dict[str, Any]:
        with self._translated(key):
            response = await self._client.upload_part(
                Bucket=self._bucket, Key=key, UploadId=upload_id, PartNumber=number, Body=body
            )
        return {"ETag": response["ETag"], "PartNumber": number}

    async def _abort(self, key: str, upload_id: str) -> None:
        """Abort a multipart upload; shielded so a cancelled request still cleans up."""
        try:
            await asyncio.shield(
                self._client.abort_multipart_upload(
                    Bucket=self._bucket, Key=key, UploadId=upload_id
                )
            )
        except _FAILURES as exc:
            logger.error(
                "S3: could not abort multipart upload of s3://%s/%s (%s); its parts stay "
                "until a lifecycle rule removes incomplete uploads",
                self._bucket,
                key,
                type(exc).__name__,
            )

    async def read(
        self, ref: ObjectRef, *, offset: int = 0, length: int | None = None
    ) -> AsyncIterator[bytes]:
        """Open the object (or its byte range) and stream it in ``chunk_size`` pieces.

        Raises:
            NotFound: the object is missing.
            RangeNotSatisfiable: ``offset`` lies beyond the object.
            BackendUnavailable: S3 does not answer or refuses.
        """
        if length == 0:
            with self._translated(ref.key):
                await self._client.head_object(Bucket=self._bucket, Key=ref.key)
            return _nothing()
        arguments: dict[str, str] = {}
        byte_range = _range(offset, length)
        if byte_range is not None:
            arguments["Range"] = byte_range
        with self._translated(ref.key):
            response = await self._client.get_object(Bucket=self._bucket, Key=ref.key, **arguments)
        return await prefetched(self._stream(response["Body"], ref.key))

    async def _stream(self, body: Any, key: str) -> AsyncIterator[bytes]:
        try:
            at_end = False
            while not at_end:
                # Joined once: each byte is copied once here, not twice.
                pieces: list[bytes] = []
                filled = 0
                while filled < self._chunk_size:
                    with self._translated(key):
                        data = await body.read(self._chunk_size - filled)
                    if not data:
                        at_end = True
                        break
                    pieces.append(data)
                    filled += len(data)
                if pieces:
                    yield b"".join(pieces)
        finally:
            body.close()

    async def delete(self, ref: ObjectRef) -> None:
        """DeleteObject; S3 answers success for a missing key too."""
        with self._translated(ref.key):
            await self._client.delete_object(Bucket=self._bucket, Key=ref.key)

    async def list_objects(self, instance_id: str | None = None) -> AsyncIterator[StoredObject]:
        """Every object in the bucket, one ListObjectsV2 page (``list_page_size`` keys,
        at most 1000) at a time.

        A multipart upload in progress is not an object yet, so it is never listed.

        Raises:
            BackendUnavailable: S3 does not answer or refuses (also mid-listing).
        """
        arguments: dict[str, Any] = {"Bucket": self._bucket, "MaxKeys": self._list_page_size}
        while True:
            with self._translated(None):
                page = await self._client.list_objects_v2(**arguments)
            for item in page.get("Contents", ()):
                yield StoredObject(item["Key"], int(item["Size"]), item["LastModified"])
            token = page.get("NextContinuationToken")
            if not page.get("IsTruncated") or not token:
                return
            arguments["ContinuationToken"] = token


class _MultipartUpload:
    """The parts of one multipart upload: each goes up in its own task, at most
    ``limit`` at once, and their ETags are kept in part order.
    """

    def __init__(
        self,
        upload_id: str,
        upload_part: Callable[[int, bytes], Coroutine[Any, Any, dict[str, Any]]],
        *,
        limit: int,
        part_size: int,
    ) -> None:
        self.upload_id = upload_id
        self._upload_part = upload_part
        self._limit = limit
        self._part_size = part_size
        self._parts: list[asyncio.Task[dict[str, Any]]] = []
        self._running: set[asyncio.Task[dict[str, Any]]] = set()

    async def send(self, chunks: list[bytes]) -> list[bytes]:
        """Start uploading the first ``part_size`` bytes of ``chunks`` as the next part,
        once fewer than ``limit`` parts are in flight; return the chunks left over.

        Raises:
            PayloadTooLarge: this would be part 10,001.
            BackendUnavailable: an earlier part failed.
        """
        number = len(self._parts) + 1
        if number > MAX_PARTS:
            raise PayloadTooLarge(
                f"an S3 object holds at most {MAX_PARTS} parts of {self._part_size} bytes"
            )
        self._reap()
        while len(self._running) >= self._limit:
            await asyncio.wait(self._running, return_when=asyncio.FIRST_COMPLETED)
            self._reap()
        # Joined only now: while the upload waited, the chunks were all it held.
        body, rest = _split_part(chunks, self._part_size)
        task = asyncio.create_task(self._upload_part(number, body))
        self._parts.append(task)
        self._running.add(task)
        return rest

    def _reap(self) -> None:
        """Forget finished parts; a failed part stops the upload here."""
        for task in [task for task in self._running if task.done()]:
            self._running.discard(task)
            task.result()

    async def finish(self) -> list[dict[str, Any]]:
        """Wait for every part; their ``{"ETag", "PartNumber"}`` in part order."""
        return [await task for task in self._parts]

    async def stop(self) -> None:
        """Cancel the parts still in flight and wait until they have ended."""
        for task in self._running:
            task.cancel()
        await asyncio.gather(*self._parts, return_exceptions=True)


def _split_part(chunks: list[bytes], part_size: int) -> tuple[bytes, list[bytes]]:
    """The first ``part_size`` bytes of ``chunks`` as one part, and the chunks left over.

    Each byte is copied once, by the join; a part exactly made of the chunks (the
    usual case: the chunk size divides the part size) is not sliced again.
    """
    joined = chunks[0] if len(chunks) == 1 else b"".join(chunks)
    if len(joined) <= part_size:
        return joined, []
    return joined[:part_size], [joined[part_size:]]


async def _nothing() -> AsyncIterator[bytes]:
    nothing: tuple[bytes, ...] = ()
    for chunk in nothing:
        yield chunk


async def check_connectivity(settings: BackendSettings) -> None:
    """Check that the configured bucket answers HeadBucket (``config validate``).

    Raises:
        BackendUnavailable: with a message saying which setting or condition fails.
    """
    if not settings.s3_bucket_name:
        raise BackendUnavailable(
            "backend.s3_bucket_name (CALLFS_BACKEND_S3_BUCKET_NAME) is not set"
        )
    where = settings.s3_endpoint or f"AWS region {settings.s3_region}"
    # One attempt: the check answers at once, not after botocore's backoff.
    backend = S3Backend(settings.model_copy(update={"s3_max_attempts": 1}))
    await backend.start()
    try:
        await backend._client.head_bucket(Bucket=settings.s3_bucket_name)
    except _FAILURES as exc:
        _, reason, _ = _diagnose(exc, bucket=settings.s3_bucket_name, key=None)
        raise BackendUnavailable(f"S3 at {where}: {reason}") from exc
    finally:
        await backend.close()

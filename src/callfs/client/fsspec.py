"""An `fsspec <https://filesystem-spec.readthedocs.io/>`_ filesystem for CallFS:
``callfs://`` URLs for pandas, pyarrow, dask, xarray… on the blocking :class:`Client`.

::

    import pandas as pd

    options = {"endpoint_url": "http://127.0.0.1:8443", "api_key": "3vQ…"}
    pd.DataFrame({"a": [1, 2]}).to_csv("callfs:///data/x.csv", storage_options=options)
    df = pd.read_csv("callfs:///data/x.csv", storage_options=options)

URLs name paths, never servers: ``callfs:///data/x.csv`` and ``callfs://data/x.csv``
both mean ``/data/x.csv``; the server and the key come from the storage options
(``endpoint_url``, ``api_key``, ``profile``, ``timeout``, ``verify``, ``retries``,
``chunk_size``: :class:`Client`'s arguments), else from ``CALLFS_URL`` /
``CALLFS_API_KEY``, else from a profile, as with the SDK. Registered for ``callfs``
through the ``fsspec.specs`` entry point; needs the ``fsspec`` extra
(``pip install 'callfs[fsspec]'``). See docs/clients.md.
"""

from __future__ import annotations

import errno
import hashlib
import os
import tempfile
import weakref
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from datetime import datetime
from types import TracebackType
from typing import IO, Any

import httpx
from fsspec.callbacks import DEFAULT_CALLBACK, Callback
from fsspec.spec import AbstractBufferedFile, AbstractFileSystem
from fsspec.utils import stringify_path

from callfs.client._core import Reported, Retry
from callfs.client._sync import Client
from callfs.client.errors import (
    AlreadyExists,
    BadRequest,
    ClientError,
    DirectoryNotEmpty,
    EndpointNotFound,
    IsADirectory,
    NotADirectory,
    NotFound,
    PayloadTooLarge,
    PermissionDenied,
    PreconditionFailed,
    RangeNotSatisfiable,
    RateLimited,
    TransportError,
    Unauthorized,
)
from callfs.client.models import Entry

__all__ = ["CallFSFile", "CallFSFileSystem"]

LISTING_LEVELS = 1001
"""Levels one recursive listing request covers: the API clamps ``max_depth`` to 1000
(children are level 1, at ``max_depth`` 0); deeper trees are listed on from there."""


def _os_error(exc: ClientError, path: str) -> OSError:
    """The Python error fsspec (and its callers) expect for an SDK error about ``path``."""
    text = str(exc)  # code, message and request id
    if isinstance(exc, IsADirectory):
        return IsADirectoryError(errno.EISDIR, text, path)
    if isinstance(exc, NotADirectory):
        return NotADirectoryError(errno.ENOTDIR, text, path)
    if isinstance(exc, PermissionDenied | Unauthorized):
        return PermissionError(errno.EACCES, text, path)
    if isinstance(exc, EndpointNotFound):  # no such endpoint: a wrong base URL, not a file
        return OSError(errno.EIO, text, path)
    if isinstance(exc, NotFound):
        return FileNotFoundError(errno.ENOENT, text, path)
    if isinstance(exc, AlreadyExists):
        return FileExistsError(errno.EEXIST, text, path)
    if isinstance(exc, DirectoryNotEmpty):
        return OSError(errno.ENOTEMPTY, text, path)
    if isinstance(exc, PayloadTooLarge):
        return OSError(errno.EFBIG, text, path)
    if isinstance(exc, PreconditionFailed):
        return OSError(errno.ESTALE, text, path)
    if isinstance(exc, RateLimited):
        return OSError(errno.EAGAIN, text, path)
    if isinstance(exc, BadRequest | RangeNotSatisfiable):
        return OSError(errno.EINVAL, text, path)
    if isinstance(exc, TransportError):
        if isinstance(exc.__cause__, httpx.TimeoutException):
            return TimeoutError(errno.ETIMEDOUT, text, path)
        return ConnectionError(errno.ECONNABORTED, text, path)
    return OSError(errno.EIO, text, path)


@contextmanager
def _translated(path: str) -> Iterator[None]:
    """Raise SDK errors as :func:`_os_error`'s (the SDK's as their ``__cause__``)."""
    try:
        yield
    except ClientError as exc:
        raise _os_error(exc, path) from exc


def _info(entry: Entry) -> dict[str, Any]:
    """fsspec's info dict for an entry: ``name``, ``size``, ``type`` and CallFS's fields."""
    return {
        "name": entry.path,
        "size": entry.size,
        "type": entry.type,
        "mode": entry.mode,
        "mtime": entry.mtime,
        "ctime": entry.ctime,
        "etag": entry.etag,
        "owner": entry.owner,
        "group": entry.group,
        "backend": entry.backend,
        "instance_id": entry.instance_id,
        "replicas": list(entry.replicas),
        "islink": False,
    }


def _depth(path: str) -> int:
    """How many segments ``path`` (canonical) has: 0 for ``/``."""
    return 0 if path == "/" else path.count("/")


class CallFSFileSystem(AbstractFileSystem):  # type: ignore[misc]
    """CallFS as an fsspec filesystem, on a blocking :class:`Client`.

    Args:
        endpoint_url: the gateway's base URL: :class:`Client`'s ``url`` (not named
            ``url``: ``fsspec.core.url_to_fs`` takes that name for the path).
        api_key, profile, timeout, verify, retries, chunk_size: as for
            :class:`Client`. Unset URL and key come from ``CALLFS_URL`` /
            ``CALLFS_API_KEY``, then from the profile.
        storage_options: fsspec's own (``skip_instance_cache``…).

    Paths are absolute (``/data/x.csv``; ``data/x.csv`` means the same). CallFS has real
    directories, writes create missing parents (0755), and no listing is cached: every
    call asks the server.
    """

    protocol = "callfs"
    root_marker = "/"
    blocksize = 5 * 2**20

    def __init__(
        self,
        endpoint_url: str | None = None,
        api_key: str | None = None,
        *,
        profile: str | None = None,
        timeout: float | None = None,
        verify: bool | str | None = None,
        retries: int | Retry | None = 3,
        chunk_size: int | None = None,
        **storage_options: Any,
    ) -> None:
        if "url" in storage_options:
            # fsspec.core.url_to_fs(url, **storage_options) (pandas.read_parquet…) takes
            # the path as "url": an option of that name could never reach this class.
            raise TypeError("CallFSFileSystem takes the server's URL as endpoint_url=, not url=")
        super().__init__(**storage_options)
        options: dict[str, Any] = {}
        if chunk_size is not None:
            options["chunk_size"] = chunk_size
        self.client = Client(
            endpoint_url,
            api_key,
            profile=profile,
            timeout=timeout,
            verify=verify,
            retries=retries,
            **options,
        )
        # fsspec keeps instances (one per options, process and thread) and has no
        # close(): the connections close when the instance goes, or at exit.
        weakref.finalize(self, self.client.close)

    def __repr__(self) -> str:
        return f"CallFSFileSystem(url={self.client.url!r})"

    @property
    def fsid(self) -> str:
        return f"callfs:{self.client.url}"

    # --- paths ------------------------------------------------------------------

    @classmethod
    def _strip_protocol(cls, path: Any) -> Any:
        """``callfs:///a/b``, ``callfs://a/b``, ``a/b/`` and ``/a/b`` → ``/a/b``."""
        if isinstance(path, list):
            return [cls._strip_protocol(p) for p in path]
        text = str(stringify_path(path))
        for prefix in (f"{cls.protocol}://", f"{cls.protocol}::"):
            if text.startswith(prefix):
                text = text[len(prefix) :]
        return "/" + text.strip("/")

    def invalidate_cache(self, path: str | None = None) -> None:
        """Nothing to drop: no listing is cached (the base records it in a transaction)."""
        super().invalidate_cache(path)

    # --- metadata ---------------------------------------------------------------

    def ls(self, path: str, detail: bool = True, **kwargs: Any) -> list[Any]:
        """The entries of a directory (a file lists as itself), sorted by path."""
        path = self._strip_protocol(path)
        try:
            with _translated(path):
                entries = [_info(entry) for entry in self.client.list(path)]
        except NotADirectoryError:
            entries = [self.info(path)]
        return entries if detail else [entry["name"] for entry in entries]

    def info(self, path: str, **kwargs: Any) -> dict[str, Any]:
        """One ``HEAD``: name, size, type (file/directory), mode, mtime, etag, owner,
        group… (``ctime`` is None here: the API's headers do not carry it; ``ls`` and
        ``find`` entries have it)."""
        path = self._strip_protocol(path)
        with _translated(path):
            return _info(self.client.stat(path))

    def exists(self, path: str, **kwargs: Any) -> bool:
        """Whether ``path`` names an entry. False for an invalid path; an unreachable
        server or a permission error is raised, never taken for a missing file."""
        path = self._strip_protocol(path)
        try:
            with _translated(path):
                return self.client.exists(path)
        except FileNotFoundError:
            return False
        except OSError as error:
            if error.errno == errno.EINVAL:
                return False
            raise

    def find(
        self,
        path: str,
        maxdepth: int | None = None,
        withdirs: bool = False,
        detail: bool = False,
        **kwargs: Any,
    ) -> Any:
        """Everything below ``path`` from recursive listings (one paged request per
        1001 levels), not one request per directory."""
        if maxdepth is not None and maxdepth < 1:
            raise ValueError("maxdepth must be at least 1")
        path = self._strip_protocol(path)
        try:
            top = self.info(path)
        except FileNotFoundError:
            top = None
        found: dict[str, dict[str, Any]] = {}
        if top is not None and top["type"] != "directory":
            found[path] = top
        elif top is not None:
            if withdirs:
                found[path] = top
            for info in self._tree(path, maxdepth):
                if withdirs or info["type"] != "directory":
                    found[info["name"]] = info
        names = sorted(found)
        return {name: found[name] for name in names} if detail else names

    def _tree(self, path: str, maxdepth: int | None) -> Iterator[dict[str, Any]]:
        """The entries below the directory ``path``, ``maxdepth`` levels down (None: all)."""
        pending = [(path, maxdepth)]
        while pending:
            top, levels = pending.pop()
            asked = LISTING_LEVELS if levels is None else min(levels, LISTING_LEVELS)
            base = _depth(top)
            with _translated(top):
                for entry in self.client.list(top, recursive=True, max_depth=asked - 1):
                    yield _info(entry)
                    deeper = levels is None or levels > asked
                    if entry.is_dir and deeper and _depth(entry.path) - base == asked:
                        pending.append((entry.path, None if levels is None else levels - asked))

    def du(
        self,
        path: str,
        total: bool = True,
        maxdepth: int | None = None,
        withdirs: bool = False,
        **kwargs: Any,
    ) -> Any:
        """Bytes used below ``path``, from the listings (no request per file)."""
        found = self.find(path, maxdepth=maxdepth, withdirs=withdirs, detail=True)
        sizes = {name: info["size"] for name, info in found.items()}
        return sum(sizes.values()) if total else sizes

    def modified(self, path: str) -> datetime:
        """The last modification time (an aware UTC datetime)."""
        mtime: datetime = self.info(path)["mtime"]
        return mtime

    def created(self, path: str) -> datetime:
        """Not available: CallFS records no creation time (``ctime`` is the POSIX change
        time, updated by a replace or a chmod)."""
        raise NotImplementedError("CallFS records no creation time (ctime is the change time)")

    def ukey(self, path: str) -> str:
        """The file's ETag (it changes with its content); for a directory, a hash of its
        metadata."""
        info = self.info(path)
        if info["etag"]:
            return str(info["etag"])
        return hashlib.sha256(repr(sorted(info.items())).encode()).hexdigest()

    def checksum(self, path: str) -> int:
        """:meth:`ukey` as an int."""
        return int(hashlib.sha256(self.ukey(path).encode()).hexdigest(), 16)

    # --- bytes ------------------------------------------------------------------

    def cat_file(
        self, path: str, start: int | None = None, end: int | None = None, **kwargs: Any
    ) -> bytes:
        """The file's bytes ``[start:end]`` (Python slice rules; negatives count from the
        end), one ranged ``GET``; a negative bound costs a ``HEAD`` for the size."""
        path = self._strip_protocol(path)
        span: tuple[int, int] | int | None
        if start is not None and start < 0 and end is None:
            span = start  # the last -start bytes: no need for the size
        else:
            if (start is not None and start < 0) or (end is not None and end < 0):
                size = self.info(path)["size"]
                if start is not None and start < 0:
                    start = max(0, size + start)
                if end is not None and end < 0:
                    end = max(0, size + end)
            first = start or 0
            if end is None:
                span = first or None
            elif end <= first:
                return b""
            else:
                span = (first, end - 1)
        with _translated(path):
            try:
                return self.client.read(path, span)
            except RangeNotSatisfiable:
                return b""  # starts past the end: an empty slice, as in Python

    def pipe_file(self, path: str, value: bytes, mode: str = "overwrite", **kwargs: Any) -> None:
        """Write ``value`` in one request: ``mode="create"`` fails (FileExistsError) when
        anything is there, atomically."""
        path = self._strip_protocol(path)
        with _translated(path):
            self.client.write(path, bytes(value), create_only=mode == "create")

    def _open(
        self,
        path: str,
        mode: str = "rb",
        block_size: int | None = None,
        autocommit: bool = True,
        cache_options: dict[str, Any] | None = None,
        **kwargs: Any,
    ) -> CallFSFile:
        return CallFSFile(
            self,
            self._strip_protocol(path),
            mode,
            block_size=block_size or self.blocksize,
            autocommit=autocommit,
            cache_options=cache_options,
            **kwargs,
        )

    def cp_file(self, path1: str, path2: str, **kwargs: Any) -> None:
        """Copy a file, streamed (its bytes pass through, never whole); a directory is
        created at ``path2`` (``copy(recursive=True)`` lists directories too)."""
        path1, path2 = self._strip_protocol(path1), self._strip_protocol(path2)
        if path1 == path2:
            return
        with ExitStack() as stack:
            try:
                with _translated(path1):
                    chunks = stack.enter_context(self.client.stream(path1))
            except IsADirectoryError:
                self.makedirs(path2, exist_ok=True)
                return
            with _translated(path2):
                # A generator: a ByteStream has a read() of its own, it is no file object.
                self.client.write(path2, (chunk for chunk in chunks))

    def put_file(
        self,
        lpath: str,
        rpath: str,
        callback: Callback = DEFAULT_CALLBACK,
        mode: str = "overwrite",
        **kwargs: Any,
    ) -> None:
        """Upload a local file in one streamed ``PUT`` (with its ``Content-Length``);
        ``mode="create"`` never replaces (FileExistsError)."""
        rpath = self._strip_protocol(rpath)
        if os.path.isdir(lpath):
            self.makedirs(rpath, exist_ok=True)
            return
        with open(lpath, "rb") as source, _translated(rpath):
            callback.set_size(os.fstat(source.fileno()).st_size)
            self.client.write(
                rpath, Reported(source, callback.relative_update), create_only=mode == "create"
            )

    def get_file(
        self,
        rpath: str,
        lpath: Any,
        callback: Callback = DEFAULT_CALLBACK,
        outfile: IO[bytes] | None = None,
        **kwargs: Any,
    ) -> None:
        """Download a file in one streamed ``GET``; a directory is created locally."""
        rpath = self._strip_protocol(rpath)
        if outfile is None and hasattr(lpath, "write"):
            outfile = lpath
        with ExitStack() as stack:
            try:
                with _translated(rpath):
                    chunks = stack.enter_context(self.client.stream(rpath))
            except IsADirectoryError:
                if outfile is not None:
                    raise
                os.makedirs(lpath, exist_ok=True)
                return
            callback.set_size(chunks.size)
            if outfile is None:
                os.makedirs(os.path.dirname(os.fspath(lpath)) or ".", exist_ok=True)
                outfile = stack.enter_context(open(lpath, "wb"))
            with _translated(rpath):
                for chunk in chunks:
                    outfile.write(chunk)
                    callback.relative_update(len(chunk))

    # --- namespace --------------------------------------------------------------

    def mkdir(
        self, path: str, create_parents: bool = True, mode: int | None = None, **kwargs: Any
    ) -> None:
        """Create a directory (FileExistsError when something is there); missing parents
        too unless ``create_parents=False`` (then FileNotFoundError)."""
        path = self._strip_protocol(path)
        with _translated(path):
            try:
                self.client.mkdir(path, mode=mode)
            except NotFound:
                if not create_parents:
                    raise
                self.client.mkdir(path, parents=True, mode=mode)

    def makedirs(self, path: str, exist_ok: bool = False) -> None:
        """``mkdir -p``; an existing directory is an error unless ``exist_ok`` (a file
        there always is: FileExistsError)."""
        path = self._strip_protocol(path)
        if not exist_ok:
            self.mkdir(path, create_parents=True)
            return
        with _translated(path):
            self.client.mkdir(path, parents=True)

    def rmdir(self, path: str) -> None:
        """Remove an empty directory (OSError ENOTEMPTY otherwise)."""
        path = self._strip_protocol(path)
        if self.info(path)["type"] != "directory":
            raise NotADirectoryError(errno.ENOTDIR, "not a directory", path)
        with _translated(path):
            self.client.delete(path)

    def rm_file(self, path: str) -> None:
        """Delete a file (or an empty directory)."""
        path = self._strip_protocol(path)
        with _translated(path):
            self.client.delete(path)

    def _rm(self, path: str) -> None:
        self.rm_file(path)

    def rm(self, path: Any, recursive: bool = False, maxdepth: int | None = None) -> None:
        """Delete files or directories; ``recursive`` deletes each directory's subtree in
        one request, on the server (with ``maxdepth``: entry by entry, as fsspec does)."""
        if not recursive or maxdepth is not None:
            super().rm(path, recursive=recursive, maxdepth=maxdepth)
            return
        targets = self.expand_path(path, recursive=False)
        removed: list[str] = []
        for target in sorted(targets):
            if any(target.startswith(done.rstrip("/") + "/") for done in removed):
                continue  # went with its directory
            with _translated(target):
                self.client.delete(target, recursive=True)
            removed.append(target)

    def mv(
        self,
        path1: Any,
        path2: Any,
        recursive: bool = False,
        maxdepth: int | None = None,
        **kwargs: Any,
    ) -> None:
        """Move on the server (a directory moves whole, atomically), like ``shutil.move``:
        into ``path2`` when it is a directory (or ends with ``/``), else to ``path2``; a
        file replaces a file there, a directory never replaces anything
        (FileExistsError). Missing parents of the destination are created. Globs and
        ``maxdepth`` fall back to fsspec's copy-and-delete."""
        if isinstance(path1, list) and isinstance(path2, list):
            if len(path1) != len(path2):
                raise ValueError("mv: as many destinations as sources are needed")
            for source, target in zip(path1, path2, strict=True):
                self._move(self._strip_protocol(source), self._strip_protocol(target))
            return
        magic = isinstance(path1, list) or any(c in str(path1) for c in "*?[")
        if magic or maxdepth is not None:
            super().mv(path1, path2, recursive=recursive, maxdepth=maxdepth, **kwargs)
            return
        source = self._strip_protocol(path1)
        target = self._strip_protocol(path2)
        if str(path2).endswith("/") or (target != source and self.isdir(target)):
            target = target.rstrip("/") + "/" + source.rsplit("/", 1)[-1]
        self._move(source, target)

    def _move(self, source: str, target: str) -> None:
        if source == target:
            return
        is_file = self.info(source)["type"] == "file"
        with _translated(source):
            self.client.move(source, target, overwrite=is_file, create_parents=True)

    # --- extras -----------------------------------------------------------------

    def chmod(self, path: str, mode: int) -> None:
        """Set the permission bits (``0o640``; only the owner or root may)."""
        path = self._strip_protocol(path)
        with _translated(path):
            self.client.chmod(path, mode)

    def sign(self, path: str, expiration: int = 100, **kwargs: Any) -> str:
        """A single-use download link (``expiration`` seconds, 1..86400): anyone holding
        it may download the file once, without the API key."""
        path = self._strip_protocol(path)
        with _translated(path):
            return self.client.link(path, expiry_seconds=int(expiration)).url


class CallFSFile(AbstractBufferedFile):  # type: ignore[misc]
    """A CallFS file opened through fsspec.

    Reading (``rb``): buffered random access by ranged ``GET``s, each checked against
    the ETag seen at opening (OSError ESTALE when the file was replaced meanwhile).

    Writing (``wb``, ``xb``, ``ab``): the bytes are spooled — in memory up to the block
    size, then in a temporary file — and sent in one streamed ``PUT`` on ``close()``,
    which replaces the file atomically: readers see the old content or the new one,
    never a part. Leaving a ``with`` block by an exception sends nothing (the old
    content stays). ``xb`` fails with FileExistsError at opening when something is
    there, and at closing (atomically) when something appeared meanwhile. ``ab``
    starts from the current content (streamed into the spool) and refuses to close
    (OSError ESTALE) when the file changed meanwhile.
    """

    fs: CallFSFileSystem

    def __init__(
        self,
        fs: CallFSFileSystem,
        path: str,
        mode: str = "rb",
        block_size: int | str = "default",
        autocommit: bool = True,
        cache_type: str = "readahead",
        cache_options: dict[str, Any] | None = None,
        size: int | None = None,
        **kwargs: Any,
    ) -> None:
        self._spool: IO[bytes] | None = None
        self._if_match: str | None = None
        self._if_none_match: str | None = None
        if mode == "xb" and fs.exists(path):
            raise FileExistsError(errno.EEXIST, "already exists", path)
        super().__init__(
            fs,
            path,
            mode,
            block_size=block_size,
            autocommit=autocommit,
            cache_type=cache_type,
            cache_options=cache_options,
            size=size,
            **kwargs,
        )
        if mode == "rb":
            if self.details["type"] == "directory":
                self.closed = True
                raise IsADirectoryError(errno.EISDIR, "is a directory", path)
            return
        # Closed by commit() or discard(), whichever comes first.
        self._spool = tempfile.SpooledTemporaryFile(max_size=self.blocksize)  # noqa: SIM115
        if mode == "ab":
            try:
                self._start_append(self._spool)
            except BaseException:
                self.discard()
                self.closed = True
                raise

    @property
    def _etag(self) -> str | None:
        return self._details.get("etag") if self._details else None

    def _start_append(self, spool: IO[bytes]) -> None:
        """Spool the current content, if any, and have the upload require that it is
        still the file's (its ETag), or that there is still no file."""
        try:
            with _translated(self.path), self.fs.client.stream(self.path) as chunks:
                for chunk in chunks:
                    spool.write(chunk)
                self._if_match = chunks.etag
        except FileNotFoundError:
            self._if_none_match = "*"
        self.loc = spool.tell()

    def _fetch_range(self, start: int, end: int) -> bytes:
        end = min(end, self.size)
        if start >= end:
            return b""
        with _translated(self.path), self.fs.client.stream(self.path, (start, end - 1)) as chunks:
            if self._etag and chunks.etag and chunks.etag != self._etag:
                raise OSError(errno.ESTALE, "the file was replaced since it was opened", self.path)
            return chunks.read()

    def _initiate_upload(self) -> None:
        """Nothing to start: the spool exists from the opening."""

    def _upload_chunk(self, final: bool = False) -> bool:
        """Move the buffer into the spool; on the final flush, send it (autocommit)."""
        assert self._spool is not None
        self._spool.write(self.buffer.getbuffer())
        if final and self.autocommit:
            self.commit()
        return True

    def commit(self) -> None:
        """Send the spooled bytes in one streamed ``PUT`` (``POST`` for ``xb``)."""
        spool, self._spool = self._spool, None
        if spool is None:
            return
        with spool, _translated(self.path):
            spool.seek(0)
            if self.mode == "xb":
                self.fs.client.write(self.path, spool, create_only=True)
            else:
                self.fs.client.write(
                    self.path, spool, if_match=self._if_match, if_none_match=self._if_none_match
                )

    def discard(self) -> None:
        """Drop the spooled bytes: nothing is sent."""
        spool, self._spool = self._spool, None
        if spool is not None:
            spool.close()

    def close(self) -> None:
        try:
            super().close()
        finally:
            if self.autocommit:
                self.discard()  # a failed upload still frees its spool

    def __exit__(
        self,
        kind: type[BaseException] | None,
        value: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        if kind is not None and self.writable():
            self.discard()
            self.closed = True
            return
        self.close()

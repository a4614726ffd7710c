"""The ``callfs`` client commands: ``ls``, ``stat``, ``cat``, ``cp``, ``mv``, ``rm``,
``mkdir``, ``chmod``, ``link``, ``du`` and ``tree``, on the blocking :class:`Client`.

They sit beside the server roles as subcommands of the ``callfs`` command
(:mod:`callfs.cli` registers them with :func:`add_commands`) and, like the SDK, import
nothing of the server: the standard library, httpx, and — only to draw a progress bar
— tqdm. See docs/clients.md, "CLI".

Exit codes: 0 ok, 1 any other error, 2 usage (a bad argument, no URL configured),
3 not found, 4 permission denied (or the key refused), 5 already exists / not empty
(conflict), 130 interrupted. A command that goes on past failures (``cp -r``, ``rm a
b``…) exits with the code its failures share, else 1.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import stat as stat_module
import sys
import tempfile
from collections.abc import Callable, Iterator
from contextlib import contextmanager, suppress
from dataclasses import dataclass, field
from datetime import datetime
from itertools import chain
from pathlib import Path
from types import TracebackType
from typing import TYPE_CHECKING, Any, Literal, NoReturn, Protocol

from callfs.client import (
    Client,
    ClientError,
    ConfigError,
    Conflict,
    EndpointNotFound,
    Entry,
    NotADirectory,
    NotFound,
    PermissionDenied,
    Unauthorized,
    config_file,
)
from callfs.client._core import Reported
from callfs.client.models import format_mode

if TYPE_CHECKING:
    from tqdm import tqdm

__all__ = [
    "DENIED",
    "EXISTS",
    "FAILURE",
    "INTERRUPTED",
    "NOT_FOUND",
    "OK",
    "PROGRESS_THRESHOLD",
    "USAGE",
    "add_commands",
]

OK = 0
FAILURE = 1
"""Any error not named below: a transport failure, a server error, an invalid path…"""
USAGE = 2
"""A bad command line (argparse's own code), or no URL configured anywhere."""
NOT_FOUND = 3
DENIED = 4
"""403 ``PERMISSION_DENIED``, 401 (a missing or unknown key), a local permission error."""
EXISTS = 5
"""409: already exists, directory not empty; a local file in the way."""
INTERRUPTED = 130
"""Ctrl-C (128 + SIGINT)."""

PROGRESS_THRESHOLD = 4 * 1024 * 1024
"""Transfers larger than this show a progress bar (when stderr is a terminal)."""
SCHEME = "callfs:"
DEEPEST = 1000
"""The deepest recursive listing the API serves (deeper requests are clamped)."""
PART_SUFFIX = ".callfs-part"

Handler = Callable[["Context", argparse.Namespace], int]


# --- errors and exit codes ------------------------------------------------------------


class UsageError(Exception):
    """A command line that cannot be carried out whatever the server holds: exit 2."""


class CommandError(Exception):
    """A failure the CLI decides itself (copying a directory without ``-r``…): exit 1
    unless ``code`` says otherwise."""

    def __init__(self, message: str, code: int = FAILURE) -> None:
        super().__init__(message)
        self.code = code


class Located(Exception):
    """An error about one path (or one pair of paths) of the command."""

    def __init__(self, where: str, error: BaseException) -> None:
        if isinstance(error, OSError) and error.strerror and str(error.filename) == where:
            message = f"{where}: {error.strerror}"  # not the path twice
        else:
            message = f"{where}: {describe(error)}"
        super().__init__(message)
        self.where = where
        self.error = error


def exit_code(error: BaseException) -> int:
    """The exit code an error stands for (see the module's docstring)."""
    if isinstance(error, Located):
        return exit_code(error.error)
    if isinstance(error, CommandError):
        return error.code
    if isinstance(error, UsageError | ConfigError):
        return USAGE
    if isinstance(error, EndpointNotFound):
        return FAILURE  # a base URL that is not CallFS's, not a missing file
    if isinstance(error, NotFound | FileNotFoundError):
        return NOT_FOUND
    if isinstance(error, PermissionDenied | Unauthorized | PermissionError):
        return DENIED
    if isinstance(error, Conflict | FileExistsError):
        return EXISTS
    return FAILURE


def describe(error: BaseException) -> str:
    """One line about ``error``, without its traceback."""
    if isinstance(error, OSError) and error.strerror:
        where = f"{error.filename}: " if error.filename is not None else ""
        return f"{where}{error.strerror}"
    return str(error) or type(error).__name__


@dataclass
class Failures:
    """The failures of a command that goes on past them, reported together at the end."""

    items: list[Located] = field(default_factory=list)
    done: int = 0
    """How many items succeeded."""

    def add(self, where: str, error: BaseException) -> None:
        self.items.append(error if isinstance(error, Located) else Located(where, error))

    def code(self) -> int:
        """0 without failures; else the code they share, or 1 when they differ."""
        codes = {exit_code(failure) for failure in self.items}
        if not codes:
            return OK
        return codes.pop() if len(codes) == 1 else FAILURE

    def report(self, command: str, what: str) -> int:
        """Write the failures to stderr (if any); the exit code."""
        if self.items:
            total = self.done + len(self.items)
            sys.stderr.write(f"callfs {command}: {len(self.items)} of {total} {what} failed:\n")
            for failure in self.items:
                sys.stderr.write(f"  {failure}\n")
        return self.code()


# --- paths ----------------------------------------------------------------------------


def canonical(path: str) -> str:
    """A remote path as the API names it: a leading ``/``, no trailing one."""
    return "/" + path.strip("/")


def remote_path(text: str) -> str:
    """A path of a command that only takes remote paths: ``/dir/file``, ``dir/file``,
    ``callfs:/dir/file`` or ``callfs:///dir/file``."""
    return canonical(_after_scheme(text) if text.startswith(SCHEME) else text)


def _after_scheme(text: str) -> str:
    """``callfs:/a`` and ``callfs:///a`` → ``/a`` (a trailing ``/`` is kept)."""
    rest = text[len(SCHEME) :]
    if rest.startswith("//"):
        if rest != "//" and not rest.startswith("///"):
            raise UsageError(
                f"{text}: a remote path is written callfs:/dir/file or callfs:///dir/file"
            )
        rest = rest[2:]
    return rest if rest.startswith("/") else "/" + rest


def name_of(path: str) -> str:
    """The last segment of a remote path (``""`` for ``/``)."""
    return canonical(path).rsplit("/", 1)[1]


def join(directory: str, name: str) -> str:
    base = canonical(directory)
    return canonical(f"{base}/{name}") if name else base


def below(path: str, root: str) -> bool:
    """Whether remote ``path`` is ``root`` or inside it."""
    path, root = canonical(path), canonical(root)
    return root == "/" or path == root or path.startswith(root + "/")


@dataclass(frozen=True)
class Location:
    """One side of ``cp``/``mv``: a remote path, a local one, or ``-`` (stdin/stdout)."""

    kind: Literal["remote", "local", "std"]
    path: str
    """Remote: the path with its leading ``/`` (and trailing ``/``, if given)."""

    @classmethod
    def parse(cls, text: str) -> Location:
        if text == "-":
            return cls("std", "-")
        if text.startswith(SCHEME):
            return cls("remote", _after_scheme(text))
        if not text:
            raise UsageError("an empty path")
        return cls("local", text)

    @property
    def remote(self) -> bool:
        return self.kind == "remote"

    @property
    def directory_hint(self) -> bool:
        """Whether it ends with a separator: a directory to copy into."""
        return self.path.endswith("/") or (self.kind == "local" and self.path.endswith(os.sep))

    def __str__(self) -> str:
        return SCHEME + canonical(self.path) if self.remote else self.path


def local_name(path: str) -> str:
    """The name a local path gives its copy (``""`` for ``/``)."""
    return os.path.basename(os.path.abspath(path))


# --- output ---------------------------------------------------------------------------


def iso(moment: datetime | None) -> str | None:
    if moment is None:
        return None
    return moment.isoformat().replace("+00:00", "Z")


def entry_json(entry: Entry) -> dict[str, Any]:
    """An entry as the API's metadata object spells it (``mode`` ``"0644"``…)."""
    return {
        "name": entry.name,
        "path": entry.path,
        "type": entry.type,
        "size": entry.size,
        "mode": format_mode(entry.mode),
        "owner": entry.owner,
        "group": entry.group,
        "mtime": iso(entry.mtime),
        "ctime": iso(entry.ctime),
        "etag": entry.etag,
        "backend": entry.backend,
        "instance_id": entry.instance_id,
        "replicas": list(entry.replicas),
    }


def mode_string(entry: Entry) -> str:
    """``drwxr-xr-x`` / ``-rw-r--r--`` (setuid, setgid and sticky bits included)."""
    kind = stat_module.S_IFDIR if entry.is_dir else stat_module.S_IFREG
    return stat_module.filemode(kind | entry.mode)


def human(size: int) -> str:
    """Bytes in powers of 1024, as ``du -h`` writes them: ``512``, ``4.0K``, ``13M``."""
    if size < 1024:
        return str(size)
    value = float(size)
    for unit in "KMGTPE":
        value /= 1024
        if value < 1024 or unit == "E":
            return f"{value:.1f}{unit}" if value < 10 else f"{value:.0f}{unit}"
    raise AssertionError("unreachable")  # pragma: no cover


def write_json(document: object) -> None:
    sys.stdout.write(json.dumps(document, indent=2, ensure_ascii=False) + "\n")


def out(line: str) -> None:
    sys.stdout.write(line + "\n")


# --- progress -------------------------------------------------------------------------


class Meter(Protocol):
    def advance(self, count: int) -> None: ...


class Bar:
    """One transfer's progress on stderr: drawn (by tqdm, imported only then) once the
    transfer is known to exceed :data:`PROGRESS_THRESHOLD` — from its size, or, when the
    size is unknown (stdin), from the bytes gone so far. Silent when not ``enabled``."""

    def __init__(self, label: str, total: int | None, *, enabled: bool) -> None:
        self.label = label
        self.total = total
        self.done = 0
        self.enabled = enabled
        self._bar: tqdm[NoReturn] | None = None
        if enabled and total is not None and total > PROGRESS_THRESHOLD:
            self._start()

    def advance(self, count: int) -> None:
        self.done += count
        if self._bar is not None:
            self._bar.update(count)
        elif self.enabled and self.total is None and self.done > PROGRESS_THRESHOLD:
            self._start()

    def _start(self) -> None:
        from tqdm import tqdm

        self._bar = tqdm(
            total=self.total,
            initial=self.done,
            desc=self.label,
            unit="B",
            unit_scale=True,
            unit_divisor=1024,
            file=sys.stderr,
            dynamic_ncols=True,
            leave=True,
        )

    def __enter__(self) -> Bar:
        return self

    def __exit__(
        self,
        kind: type[BaseException] | None,
        value: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        if self._bar is not None:
            self._bar.close()


def counted(chunks: Iterator[bytes], meter: Meter) -> Iterator[bytes]:
    for chunk in chunks:
        meter.advance(len(chunk))
        yield chunk


# --- the command line -----------------------------------------------------------------


class Context:
    """What a command works with: the client (made at first use) and the options."""

    def __init__(self, args: argparse.Namespace) -> None:
        self.args = args
        self.command: str = args.command
        self._client: Client | None = None

    @property
    def client(self) -> Client:
        if self._client is None:
            try:
                self._client = Client(self.args.url, self.args.api_key, profile=self.args.profile)
            except ConfigError as exc:
                if not exc.message.startswith("no CallFS URL"):
                    raise
                raise ConfigError(
                    f"no CallFS URL: pass --url, set CALLFS_URL, or add a profile to "
                    f"{config_file()} (docs/clients.md)"
                ) from exc
        return self._client

    @property
    def progress(self) -> bool:
        """Whether transfers draw progress bars: stderr is a terminal and no ``-q``."""
        return not getattr(self.args, "quiet", False) and sys.stderr.isatty()

    def bar(self, label: str, total: int | None) -> Bar:
        return Bar(label, total, enabled=self.progress)

    def close(self) -> None:
        if self._client is not None:
            self._client.close()


def run(handler: Handler, args: argparse.Namespace) -> int:
    """Run one client command; its exit code. Errors end it with one line on stderr."""
    context = Context(args)
    try:
        return handler(context, args)
    except BrokenPipeError:
        _quiet_stdout()  # `callfs cat big | head`: the reader is gone; say nothing more
        return FAILURE
    except (UsageError, CommandError, Located, ClientError, OSError) as exc:
        sys.stderr.write(f"callfs {context.command}: {describe(exc)}\n")
        return exit_code(exc)
    except KeyboardInterrupt:
        sys.stderr.write(f"callfs {context.command}: interrupted\n")
        return INTERRUPTED
    finally:
        with suppress(Exception):
            context.close()


def _quiet_stdout() -> None:
    """Point stdout at /dev/null so that Python's final flush cannot fail again."""
    with suppress(OSError):
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        os.close(devnull)


@contextmanager
def about(where: str) -> Iterator[None]:
    """Name ``where`` in an error raised inside the block."""
    try:
        yield
    except BrokenPipeError:
        raise
    except (ClientError, OSError, CommandError) as exc:
        raise Located(where, exc) from exc


def octal_mode(text: str) -> int:
    """An argparse type: ``640``, ``0640`` or ``0o640``."""
    digits = text.lower().removeprefix("0o")
    try:
        mode = int(digits, 8)
    except ValueError:
        raise argparse.ArgumentTypeError(f"invalid octal mode {text!r}") from None
    if not 0 <= mode <= 0o7777:
        raise argparse.ArgumentTypeError(f"mode {text!r} is beyond 7777")
    return mode


def positive(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a whole number: {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1: {text!r}")
    return value


def add_commands(commands: Any) -> None:
    """Register the client commands on ``callfs``'s subparsers (an argparse
    ``_SubParsersAction``)."""
    connection = argparse.ArgumentParser(add_help=False)
    group = connection.add_argument_group(
        "connection (else CALLFS_URL, CALLFS_API_KEY, CALLFS_PROFILE, then the profile file)"
    )
    group.add_argument("--url", help="the gateway's base URL")
    group.add_argument("--api-key", help="the API key (prefer CALLFS_API_KEY: argv is visible)")
    group.add_argument("--profile", help="a profile of ~/.config/callfs/config.yaml")
    as_json = argparse.ArgumentParser(add_help=False)
    as_json.add_argument("--json", action="store_true", help="print one JSON document")
    quiet = argparse.ArgumentParser(add_help=False)
    quiet.add_argument("-q", "--quiet", action="store_true", help="no progress bars")

    def command(
        name: str,
        handler: Handler,
        text: str,
        *parents: argparse.ArgumentParser,
        dash_h: bool = False,
    ) -> argparse.ArgumentParser:
        parser: argparse.ArgumentParser = commands.add_parser(
            name,
            help=text,
            description=text,
            parents=[connection, *parents],
            add_help=not dash_h,
        )
        if dash_h:  # -h means "human-readable" here, as in ls and du
            parser.add_argument("--help", action="help", help="show this help message and exit")
        parser.set_defaults(handler=lambda args: run(handler, args))
        return parser

    ls = command("ls", _ls, "list a directory (or show a file)", as_json, dash_h=True)
    ls.add_argument("-l", dest="long", action="store_true", help="long format: mode, owner…")
    ls.add_argument("-R", dest="recursive", action="store_true", help="the whole subtree")
    ls.add_argument("-h", dest="human", action="store_true", help="sizes in K, M, G (with -l)")
    ls.add_argument("path", nargs="?", default="/", help="a remote path (default /)")

    stat = command("stat", _stat, "show the metadata of a file or directory", as_json)
    stat.add_argument("path", help="a remote path")

    cat = command("cat", _cat, "write files to stdout")
    cat.add_argument("paths", nargs="+", metavar="path", help="remote files")

    cp = command(
        "cp", _cp, "copy local↔remote or remote↔remote (a remote path is callfs:/…)", quiet
    )
    cp.add_argument("-r", "-R", dest="recursive", action="store_true", help="copy directories")
    cp.add_argument("source", help="callfs:/path, a local path, or - for stdin")
    cp.add_argument("destination", help="callfs:/path, a local path, or - for stdout")

    mv = command("mv", _mv, "move (server-side) or transfer then delete the source", quiet)
    mv.add_argument("source", help="callfs:/path or a local path")
    mv.add_argument("destination", help="callfs:/path or a local path")

    rm = command("rm", _rm, "remove files and empty directories (-r: whole trees)")
    rm.add_argument("-r", "-R", dest="recursive", action="store_true", help="remove directories")
    rm.add_argument("-f", "--force", action="store_true", help="ignore paths that do not exist")
    rm.add_argument("paths", nargs="+", metavar="path", help="remote paths")

    mkdir = command("mkdir", _mkdir, "create directories")
    mkdir.add_argument("-p", dest="parents", action="store_true", help="parents too, no error")
    mkdir.add_argument("-m", "--mode", type=octal_mode, help="the new directories' mode (750)")
    mkdir.add_argument("paths", nargs="+", metavar="path", help="remote paths")

    chmod = command("chmod", _chmod, "set permission bits (octal: 640)")
    chmod.add_argument("mode", type=octal_mode, help="octal mode: 640, 0750, 1777")
    chmod.add_argument("paths", nargs="+", metavar="path", help="remote paths")

    link = command("link", _link, "make a single-use download link; print its URL", as_json)
    link.add_argument("path", help="a remote file")
    link.add_argument(
        "--expiry", type=positive, default=3600, metavar="SECONDS", help="default 3600"
    )

    du = command("du", _du, "sizes of directories, in bytes", as_json, dash_h=True)
    du.add_argument("-s", dest="summarize", action="store_true", help="only the total")
    du.add_argument("-h", dest="human", action="store_true", help="sizes in K, M, G")
    du.add_argument("path", nargs="?", default="/", help="a remote path (default /)")

    tree = command("tree", _tree, "draw a directory tree", as_json)
    tree.add_argument("-L", dest="level", type=positive, help="descend at most LEVEL levels")
    tree.add_argument("path", nargs="?", default="/", help="a remote directory (default /)")


# --- ls, stat, cat --------------------------------------------------------------------


def listing(client: Client, path: str, *, recursive: bool) -> tuple[Iterator[Entry], Entry | None]:
    """``(entries, None)`` for a directory; ``(nothing, its entry)`` for a file."""
    entries = (
        client.list(path, recursive=True, max_depth=DEEPEST) if recursive else client.list(path)
    )
    try:
        first = next(entries, None)
    except NotADirectory:
        return iter(()), client.stat(path)
    return (iter(()) if first is None else chain([first], entries)), None


def _ls(context: Context, args: argparse.Namespace) -> int:
    path = remote_path(args.path)
    with about(path):
        entries, file = listing(context.client, path, recursive=args.recursive)
        if file is not None:
            entries = iter([file])
        if args.json:
            sys.stdout.write("[")
            for count, entry in enumerate(entries):
                sys.stdout.write(("," if count else "") + "\n  " + json.dumps(entry_json(entry)))
            sys.stdout.write("\n]\n")
            return OK
        for entry in entries:
            if file is not None:
                name = args.path
            elif args.recursive:
                name = entry.path[len(path) :].lstrip("/")
            else:
                name = entry.name
            if entry.is_dir:
                name += "/"
            if args.long:
                size = human(entry.size) if args.human else str(entry.size)
                when = entry.mtime.strftime("%Y-%m-%d %H:%M")
                owner = f"{entry.owner:<12} {entry.group:<8}"
                name = f"{mode_string(entry)} {owner} {size:>12} {when} {name}"
            out(name)
    return OK


def _stat(context: Context, args: argparse.Namespace) -> int:
    path = remote_path(args.path)
    with about(path):
        entry = context.client.stat(path)
    if args.json:
        write_json(entry_json(entry))
        return OK
    rows = [
        ("path", entry.path),
        ("type", entry.type),
        ("size", str(entry.size)),
        ("mode", f"{format_mode(entry.mode)} ({mode_string(entry)})"),
        ("owner", entry.owner),
        ("group", entry.group),
        ("mtime", iso(entry.mtime) or ""),
    ]
    if entry.ctime is not None:
        rows.append(("ctime", iso(entry.ctime) or ""))
    if entry.etag is not None:
        rows.append(("etag", entry.etag))
    if entry.backend is not None:
        rows.append(("backend", entry.backend))
    if entry.replicas:
        rows.append(("replicas", ", ".join(entry.replicas)))
    for key, value in rows:
        out(f"{key + ':':<9} {value}")
    return OK


def _cat(context: Context, args: argparse.Namespace) -> int:
    failures = Failures()
    for text in args.paths:
        path = remote_path(text)
        try:
            with about(path), context.client.stream(path) as chunks:
                for chunk in chunks:
                    sys.stdout.buffer.write(chunk)
            failures.done += 1
        except Located as exc:
            if len(args.paths) == 1:
                raise
            failures.add(path, exc)
    sys.stdout.buffer.flush()
    return failures.report("cat", "files")


# --- cp and mv ------------------------------------------------------------------------


class Transfer:
    """Copies of single files and of trees, local↔remote and remote↔remote; tree copies
    go on past a file's failure and collect it in :attr:`failures`."""

    def __init__(self, context: Context) -> None:
        self.context = context
        self.failures = Failures()

    @property
    def client(self) -> Client:
        return self.context.client

    # remote lookups

    def stat_or_none(self, path: str) -> Entry | None:
        try:
            return self.client.stat(path)
        except NotFound:
            return None

    def remote_target(self, destination: Location, name: str) -> str:
        """Where a copy named ``name`` goes: into ``destination`` when it is a
        directory (or ends with ``/``), else ``destination`` itself."""
        if destination.directory_hint:
            return join(destination.path, name)
        existing = self.stat_or_none(canonical(destination.path))
        if existing is not None and existing.is_dir:
            return join(destination.path, name)
        return canonical(destination.path)

    @staticmethod
    def local_target(destination: str, name: str) -> Path:
        target = Path(destination)
        if destination.endswith(("/", os.sep)) or target.is_dir():
            return target / name if name else target
        return target

    # single files

    def upload(self, source: Path, target: str) -> None:
        with open(source, "rb") as file:
            size = os.fstat(file.fileno()).st_size
            with self.context.bar(source.name, size) as bar:
                self.client.write(target, Reported(file, bar.advance))

    def upload_stdin(self, target: str) -> None:
        stdin = sys.stdin.buffer
        size: int | None = None
        with suppress(OSError, ValueError):
            status = os.fstat(stdin.fileno())
            if stat_module.S_ISREG(status.st_mode):
                size = status.st_size - stdin.tell()
        with self.context.bar(name_of(target) or "stdin", size) as bar:
            self.client.write(target, Reported(stdin, bar.advance))

    def download(self, source: str, target: Path) -> None:
        """Stream a remote file into ``target`` through a temporary file beside it,
        renamed over it once complete (a failed download leaves nothing behind)."""
        with self.client.stream(source) as chunks:
            part = tempfile.NamedTemporaryFile(  # noqa: SIM115 (renamed, or removed below)
                dir=target.parent, prefix=f".{target.name}.", suffix=PART_SUFFIX, delete=False
            )
            try:
                with part, self.context.bar(target.name, chunks.size) as bar:
                    for chunk in chunks:
                        part.write(chunk)
                        bar.advance(len(chunk))
                os.chmod(part.name, _new_file_mode(target))
                os.replace(part.name, target)
            except BaseException:
                with suppress(OSError):
                    os.unlink(part.name)
                raise

    def download_stdout(self, source: str) -> None:
        stdout = sys.stdout.buffer
        with (
            self.client.stream(source) as chunks,
            self.context.bar(name_of(source), chunks.size) as bar,
        ):
            for chunk in chunks:
                stdout.write(chunk)
                bar.advance(len(chunk))
        stdout.flush()

    def copy_remote(self, source: str, target: str) -> None:
        """No copy endpoint: the bytes stream down and back up through this process."""
        with (
            self.client.stream(source) as chunks,
            self.context.bar(name_of(source), chunks.size) as bar,
        ):
            self.client.write(target, counted(iter(chunks), bar))

    # trees

    def upload_tree(self, source: Path, target: str) -> None:
        self.client.mkdir(target, parents=True)

        def unreadable(error: OSError) -> None:
            self.failures.add(str(error.filename or source), error)

        for directory, subdirectories, files in os.walk(source, onerror=unreadable):
            here = Path(directory)
            relative = here.relative_to(source)
            remote = target if relative == Path(".") else join(target, relative.as_posix())
            subdirectories.sort()
            for name in subdirectories:
                where = str(here / name)
                self.attempt(where, self.client.mkdir, join(remote, name), parents=True)
            for name in sorted(files):
                self.attempt(str(here / name), self.upload_regular, here / name, join(remote, name))

    def upload_regular(self, source: Path, target: str) -> None:
        if not stat_module.S_ISREG(source.stat().st_mode):
            raise CommandError("not a regular file (skipped)")
        self.upload(source, target)

    def download_tree(self, source: str, target: Path) -> None:
        target.mkdir(parents=True, exist_ok=True)
        try:
            for entry in self.client.list(source, recursive=True, max_depth=DEEPEST):
                local = target.joinpath(*entry.path[len(source) :].strip("/").split("/"))
                if entry.is_dir:
                    self.attempt(entry.path, local.mkdir, parents=True, exist_ok=True)
                else:
                    self.attempt(entry.path, self._download_into, entry.path, local)
        except ClientError as exc:  # the listing itself broke off
            self.failures.add(source, exc)

    def _download_into(self, source: str, target: Path) -> None:
        target.parent.mkdir(parents=True, exist_ok=True)
        self.download(source, target)

    def copy_remote_tree(self, source: str, target: str) -> None:
        if below(target, source):
            raise UsageError(f"cannot copy {source} into itself ({target})")
        self.client.mkdir(target, parents=True)
        try:
            for entry in self.client.list(source, recursive=True, max_depth=DEEPEST):
                remote = join(target, entry.path[len(source) :].strip("/"))
                if entry.is_dir:
                    self.attempt(entry.path, self.client.mkdir, remote, parents=True)
                else:
                    self.attempt(entry.path, self.copy_remote, entry.path, remote)
        except ClientError as exc:
            self.failures.add(source, exc)

    def attempt(
        self, where: str, action: Callable[..., object], *arguments: Any, **options: Any
    ) -> None:
        """Run one step of a tree copy; a failure is recorded, not raised."""
        try:
            action(*arguments, **options)
        except BrokenPipeError:
            raise
        except (ClientError, OSError, CommandError) as exc:
            self.failures.add(where, exc)
        else:
            self.failures.done += 1

    # the whole copy

    def copy(self, source: Location, destination: Location, *, recursive: bool) -> bool:
        """Copy ``source`` to ``destination``; whether the source is a directory.

        Raises (single files) or records in :attr:`failures` (trees)."""
        if source.kind == "std":
            if not destination.remote:
                raise UsageError("- (stdin) can only be copied to a remote path (callfs:/…)")
            if recursive:
                raise UsageError("-r cannot be used with - (stdin)")
            target = self.remote_target(destination, "stdin")
            with about(target):
                self.upload_stdin(target)
            return False
        if source.remote:
            return self._copy_remote_source(source, destination, recursive=recursive)
        return self._copy_local_source(source, destination, recursive=recursive)

    def _copy_local_source(
        self, source: Location, destination: Location, *, recursive: bool
    ) -> bool:
        if not destination.remote:
            raise UsageError(
                "one of SOURCE and DESTINATION must be remote: callfs:/path or callfs:///path"
            )
        local = Path(source.path)
        with about(source.path):
            is_dir = local.is_dir()
            if not is_dir:
                local.stat()  # FileNotFoundError, PermissionError
        if is_dir and not recursive:
            raise Located(source.path, CommandError("is a directory (cp -r copies it)"))
        with about(str(destination)):
            target = self.remote_target(destination, local_name(source.path))
        if is_dir:
            with about(target):
                self.upload_tree(local, target)
        else:
            with about(f"{source.path} → {SCHEME}{target}"):
                self.upload_regular(local, target)
            self.failures.done += 1
        return is_dir

    def _copy_remote_source(
        self, source: Location, destination: Location, *, recursive: bool
    ) -> bool:
        path = canonical(source.path)
        with about(path):
            entry = self.client.stat(path)
        if entry.is_dir and not recursive:
            raise Located(path, CommandError("is a directory (cp -r copies it)"))
        if destination.kind == "std":
            if entry.is_dir:
                raise UsageError("a directory cannot be copied to - (stdout)")
            with about(path):
                self.download_stdout(path)
            return False
        name = name_of(path)
        if destination.remote:
            with about(str(destination)):
                target = self.remote_target(destination, name)
            if entry.is_dir:
                with about(target):
                    self.copy_remote_tree(path, target)
            else:
                with about(f"{SCHEME}{path} → {SCHEME}{target}"):
                    self.copy_remote(path, target)
                self.failures.done += 1
            return entry.is_dir
        local = self.local_target(destination.path, name)
        if entry.is_dir:
            with about(str(local)):
                self.download_tree(path, local)
        else:
            with about(f"{SCHEME}{path} → {local}"):
                self.download(path, local)
            self.failures.done += 1
        return entry.is_dir


def _new_file_mode(target: Path) -> int:
    """The mode a downloaded file gets: the one of the file it replaces, else 0666 less
    the umask (as ``cp`` creates files)."""
    with suppress(OSError):
        return stat_module.S_IMODE(target.stat().st_mode)
    umask = os.umask(0)
    os.umask(umask)
    return 0o666 & ~umask


def _cp(context: Context, args: argparse.Namespace) -> int:
    source = Location.parse(args.source)
    destination = Location.parse(args.destination)
    if source.kind == "std" and destination.kind == "std":
        raise UsageError("- cannot be both SOURCE and DESTINATION")
    transfer = Transfer(context)
    transfer.copy(source, destination, recursive=args.recursive)
    return transfer.failures.report("cp", "entries")


def _mv(context: Context, args: argparse.Namespace) -> int:
    source = Location.parse(args.source)
    destination = Location.parse(args.destination)
    if "std" in (source.kind, destination.kind):
        raise UsageError("mv takes no - (use cp)")
    if not (source.remote or destination.remote):
        raise UsageError(
            "one of SOURCE and DESTINATION must be remote: callfs:/path or callfs:///path"
        )
    transfer = Transfer(context)
    if source.remote and destination.remote:
        _move_remote(transfer, canonical(source.path), destination)
        return OK
    is_dir = transfer.copy(source, destination, recursive=True)
    if transfer.failures.items:
        sys.stderr.write(f"callfs mv: {source} was kept: not everything was copied\n")
        return transfer.failures.report("mv", "entries")
    with about(str(source)):
        if source.remote:
            context.client.delete(canonical(source.path), recursive=is_dir)
        elif is_dir:
            shutil.rmtree(source.path)
        else:
            os.unlink(source.path)
    return OK


def _move_remote(transfer: Transfer, source: str, destination: Location) -> None:
    """A server-side move; into ``destination`` when it is a directory, over it when it
    is a file (and ``source`` one too), like ``mv``."""
    client = transfer.client
    with about(str(destination)):
        target = transfer.remote_target(destination, name_of(source))
        existing = transfer.stat_or_none(target) if target != source else None
    with about(f"{SCHEME}{source} → {SCHEME}{target}"):
        overwrite = existing is not None and existing.is_file and client.stat(source).is_file
        client.move(source, target, overwrite=overwrite)


# --- rm, mkdir, chmod, link -----------------------------------------------------------


def _each(command: str, paths: list[str], action: Callable[[str], object], what: str) -> int:
    """Apply ``action`` to every path, going on past failures; report them at the end."""
    failures = Failures()
    for text in paths:
        path = remote_path(text)
        try:
            with about(path):
                action(path)
        except Located as exc:
            if len(paths) == 1:
                raise
            failures.add(path, exc)
        else:
            failures.done += 1
    return failures.report(command, what)


def _rm(context: Context, args: argparse.Namespace) -> int:
    def remove(path: str) -> None:
        try:
            context.client.delete(path, recursive=args.recursive)
        except NotFound as exc:
            if not args.force or isinstance(exc, EndpointNotFound):
                raise

    return _each("rm", args.paths, remove, "paths")


def _mkdir(context: Context, args: argparse.Namespace) -> int:
    return _each(
        "mkdir",
        args.paths,
        lambda path: context.client.mkdir(path, parents=args.parents, mode=args.mode),
        "directories",
    )


def _chmod(context: Context, args: argparse.Namespace) -> int:
    return _each("chmod", args.paths, lambda path: context.client.chmod(path, args.mode), "paths")


def _link(context: Context, args: argparse.Namespace) -> int:
    path = remote_path(args.path)
    with about(path):
        link = context.client.link(path, expiry_seconds=args.expiry)
    if args.json:
        write_json(
            {"url": link.url, "token": link.token, "expires_at": iso(link.expires_at), "path": path}
        )
    else:
        out(link.url)
    return OK


# --- du and tree ----------------------------------------------------------------------


def _du(context: Context, args: argparse.Namespace) -> int:
    root = remote_path(args.path)
    totals: dict[str, int] = {}
    files = 0
    with about(root):
        entries, file = listing(context.client, root, recursive=True)
        if file is not None:
            totals[root] = file.size
            files = 1
        else:
            totals[root] = 0
            for entry in entries:
                if entry.is_dir:
                    totals.setdefault(entry.path, 0)
                    continue
                files += 1
                parent = entry.path.rsplit("/", 1)[0] or "/"
                while True:  # every directory from the file's up to the root
                    totals[parent] = totals.get(parent, 0) + entry.size
                    if parent == root or not below(parent, root):
                        break
                    parent = parent.rsplit("/", 1)[0] or "/"
    order = [root] if args.summarize else _post_order(root, totals)
    size: Callable[[int], str] = human if args.human else str
    if args.json:
        document: dict[str, Any] = {
            "path": root,
            "size": totals[root],
            "files": files,
            "directories": 0 if file is not None else len(totals) - 1,
        }
        if not args.summarize:
            document["entries"] = [{"path": path, "size": totals[path]} for path in order]
        write_json(document)
        return OK
    for path in order:
        out(f"{size(totals[path])}\t{path}")
    return OK


def _post_order(root: str, totals: dict[str, int]) -> list[str]:
    """Every directory, each after those below it (as ``du`` prints them)."""
    children: dict[str, list[str]] = {}
    for path in totals:
        if path != root:
            children.setdefault(path.rsplit("/", 1)[0] or "/", []).append(path)
    order: list[str] = []
    stack: list[tuple[str, bool]] = [(root, False)]
    while stack:
        path, expanded = stack.pop()
        if expanded:
            order.append(path)
            continue
        stack.append((path, True))
        for child in sorted(children.get(path, ()), reverse=True):
            stack.append((child, False))
    return order


@dataclass
class TreeCount:
    directories: int = 0
    files: int = 0
    failures: Failures = field(default_factory=Failures)


def _tree(context: Context, args: argparse.Namespace) -> int:
    root = remote_path(args.path)
    count = TreeCount()
    with about(root):
        entries, file = listing(context.client, root, recursive=False)
    if file is not None:
        count.files = 1
        node: dict[str, Any] = entry_json(file)
    else:
        node = {"name": root, "path": root, "type": "directory", "contents": []}
        _walk(context.client, root, entries, node["contents"], count, 1, args)
    if args.json:
        write_json({**node, "directories": count.directories, "files": count.files})
    else:
        if file is not None:
            out(root)
        plural_d = "directory" if count.directories == 1 else "directories"
        plural_f = "file" if count.files == 1 else "files"
        out(f"\n{count.directories} {plural_d}, {count.files} {plural_f}")
    return count.failures.code()


def _walk(
    client: Client,
    path: str,
    entries: Iterator[Entry],
    contents: list[dict[str, Any]],
    count: TreeCount,
    depth: int,
    args: argparse.Namespace,
    prefix: str = "",
) -> None:
    """Draw (or, with ``--json``, collect) one directory's children, depth first; a
    directory that cannot be listed is marked and the walk goes on."""
    if depth == 1 and not args.json:
        out(path)
    following = _next(entries, path, count)
    while following is not None:
        entry, following = following, _next(entries, path, count)
        last = following is None
        node = entry_json(entry)
        contents.append(node)
        line = f"{prefix}{'└── ' if last else '├── '}{entry.name}"
        if entry.is_file:
            count.files += 1
            if not args.json:
                out(line)
            continue
        count.directories += 1
        node["contents"] = []
        if args.level is not None and depth >= args.level:
            if not args.json:
                out(line)
            continue
        try:
            children = client.list(entry.path)
            first = next(children, None)
        except ClientError as exc:
            count.failures.add(entry.path, exc)
            node["error"] = exc.code
            if not args.json:
                out(f"{line}  [{exc.code}]")
            continue
        if not args.json:
            out(line)
        below_entries = iter(()) if first is None else chain([first], children)
        _walk(
            client,
            entry.path,
            below_entries,
            node["contents"],
            count,
            depth + 1,
            args,
            prefix + ("    " if last else "│   "),
        )


def _next(entries: Iterator[Entry], path: str, count: TreeCount) -> Entry | None:
    try:
        return next(entries, None)
    except ClientError as exc:  # a later page failed: the directory ends here
        count.failures.add(path, exc)
        return None

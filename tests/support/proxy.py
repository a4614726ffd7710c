"""A fault-injecting TCP proxy: forwards loopback connections to a real server and cuts
each one off once it has carried a set number of bytes in one direction.

Put it between CallFS and S3 to make an upload or a download break off midway, the way
a dying server or a broken network does, with both ends real.
"""

from __future__ import annotations

import asyncio
import contextlib


class CuttingProxy:
    """Forwards ``127.0.0.1:port`` to ``127.0.0.1:upstream_port``.

    A connection that has sent more than ``upload_limit`` bytes towards the server, or
    received more than ``download_limit`` bytes from it, is reset on both sides
    (``None``: no limit that way). ``cuts`` counts the connections cut so far.
    """

    def __init__(
        self,
        upstream_port: int,
        *,
        upload_limit: int | None = None,
        download_limit: int | None = None,
    ) -> None:
        self.upstream_port = upstream_port
        self.upload_limit = upload_limit
        self.download_limit = download_limit
        self.cuts = 0
        self.port = 0
        self._server: asyncio.Server | None = None
        self._connections: set[asyncio.Task[None]] = set()

    @property
    def endpoint(self) -> str:
        """The proxy's URL, to configure in place of the server's."""
        return f"http://127.0.0.1:{self.port}"

    async def start(self) -> None:
        """Listen on a free loopback port."""
        self._server = await asyncio.start_server(self._accept, "127.0.0.1", 0)
        self.port = self._server.sockets[0].getsockname()[1]

    async def stop(self) -> None:
        """Stop listening and end every open connection."""
        if self._server is not None:
            self._server.close()
            await self._server.wait_closed()
            self._server = None
        for task in list(self._connections):
            task.cancel()
        await asyncio.gather(*self._connections, return_exceptions=True)

    async def __aenter__(self) -> CuttingProxy:
        await self.start()
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.stop()

    def _accept(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.create_task(self._serve(reader, writer))
        self._connections.add(task)
        task.add_done_callback(self._connections.discard)

    async def _serve(self, client_r: asyncio.StreamReader, client_w: asyncio.StreamWriter) -> None:
        try:
            server_r, server_w = await asyncio.open_connection("127.0.0.1", self.upstream_port)
        except OSError:
            client_w.transport.abort()
            return
        writers = (client_w, server_w)
        try:
            # Either side resetting ends its pipe; the other then sees the end too.
            await asyncio.gather(
                self._pipe(client_r, server_w, self.upload_limit, writers),
                self._pipe(server_r, client_w, self.download_limit, writers),
                return_exceptions=True,
            )
        finally:
            for writer in writers:
                writer.transport.abort()
            for writer in writers:
                with contextlib.suppress(ConnectionError, OSError):
                    await writer.wait_closed()

    async def _pipe(
        self,
        source: asyncio.StreamReader,
        sink: asyncio.StreamWriter,
        limit: int | None,
        writers: tuple[asyncio.StreamWriter, ...],
    ) -> None:
        """Copy ``source`` to ``sink``; past ``limit`` bytes, reset the connection."""
        carried = 0
        while data := await source.read(64 * 1024):
            if limit is not None and carried + len(data) > limit:
                sink.write(data[: limit - carried])
                self.cuts += 1
                for writer in writers:
                    writer.transport.abort()
                return
            sink.write(data)
            await sink.drain()
            carried += len(data)
        if sink.can_write_eof():
            sink.write_eof()

"""The API's HTTP server (uvicorn) and the webhook workers, run inside `ipbx serve`'s
event loop beside SIP and media. With `api.enabled: false` neither FastAPI nor uvicorn is
imported (about 11 MB of a server's resident memory); webhooks still run."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import socket
from collections.abc import Callable, Iterator
from typing import TYPE_CHECKING

from ipbx.api.webhooks import DAY, Webhooks

if TYPE_CHECKING:
    import uvicorn
    from fastapi import FastAPI

    from ipbx.api.services import PbxServices

log = logging.getLogger("ipbx.api")

# What the API listener serves, made from the PBX and the webhooks.
AppFactory = Callable[["PbxServices", Webhooks], "FastAPI"]


def _embedded_server(config: uvicorn.Config) -> uvicorn.Server:
    import uvicorn

    class EmbeddedServer(uvicorn.Server):
        @contextlib.contextmanager
        def capture_signals(self) -> Iterator[None]:
            # `ipbx serve` owns SIGINT and SIGTERM (it stops SIP, media and this server
            # in order); uvicorn's own handlers would replace its handlers and re-raise.
            yield

    return EmbeddedServer(config)


class ApiServer:
    """Start with `start()`; at shutdown `stop()` before the PBX stops and `close()`
    after it, so that the events of calls ended by the shutdown reach the outbox."""

    def __init__(self, pbx: PbxServices, app: AppFactory) -> None:
        """`app` makes what the listener serves (the composition root's choice: the API
        with the web pages); it is called, and FastAPI imported, only when the API is on."""
        self.config = pbx.config.api
        self.webhooks = Webhooks(
            pbx.store,
            pbx.config.webhooks,
            pbx.events,
            retention=self.config.delivery_retention_days * DAY,
        )
        pbx.on_reconfigure.append(lambda config: self.webhooks.update(config.webhooks))
        self._pbx = pbx
        self._app = app
        self._server: uvicorn.Server | None = None
        self._task: asyncio.Task[None] | None = None
        self.address: tuple[str, int] | None = None

    async def start(self) -> None:
        self.webhooks.start()
        if not self.config.enabled:
            return
        # Our own socket: a port in use is an OSError here, with the address, where
        # uvicorn would log it and exit the process.
        host, port = self.config.host, self.config.port
        family = socket.AF_INET6 if ":" in host else socket.AF_INET
        try:
            sock = socket.create_server((host, port), family=family)
        except OSError as exc:
            message = f"api.listen {self.config.listen}: {exc.strerror}"
            if "listen" in self.config.model_fields_set:
                raise OSError(exc.errno, message) from None
            # The default address is best effort: with 8080 taken (another ipbx on the
            # machine, a developer's server) SIP still serves; an address written in
            # the file must work or ipbx does not start.
            log.error("%s: the API is not available (set api.listen)", message)
            return
        sock.setblocking(False)
        self.address = sock.getsockname()[:2]
        import uvicorn

        config = uvicorn.Config(
            self._app(self._pbx, self.webhooks),
            log_config=None,  # keep ipbx's logging set-up
            access_log=False,
            lifespan="off",
            timeout_graceful_shutdown=3,
        )
        self._server = _embedded_server(config)
        self._task = asyncio.create_task(self._server.serve(sockets=[sock]))
        while not self._server.started:
            if self._task.done():
                self._task.result()  # raises what stopped it
                raise RuntimeError("the API server stopped while starting")
            await asyncio.sleep(0.01)
        log.info(
            "API on http://%s:%d (docs at /docs); web administration at / for the users of "
            "`ipbx user create`",
            *self.address,
        )

    async def stop(self) -> None:
        if self._server is not None and self._task is not None:
            self._server.should_exit = True
            try:
                await asyncio.wait_for(asyncio.shield(self._task), 10)
            except TimeoutError:
                self._task.cancel()
            except Exception:
                log.exception("the API server failed")
            self._server = self._task = None
        await self.webhooks.stop()

    async def close(self) -> None:
        await self.webhooks.close()

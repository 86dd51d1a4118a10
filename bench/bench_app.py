"""The app the benchmark loads: the real service, plus a plain-text route as the framework ceiling.

Run by bench/auth_ratio.py under the same uvicorn server and settings as ``authserver serve``
(uvloop, httptools, no access log): ``python bench/bench_app.py PORT``.
"""

from __future__ import annotations

import sys

from starlette.requests import Request
from starlette.responses import PlainTextResponse, Response
from starlette.routing import Route

from authserver.config import load_settings
from authserver.http.app import create_app
from authserver.infra.logs import configure_logging
from authserver.server.guard import ConnectionLimits
from authserver.server.serving import acceptors, bind, run_servers, uvicorn_server


async def hello(request: Request) -> Response:
    return PlainTextResponse("hello")


def main() -> None:
    port = int(sys.argv[1])
    settings = load_settings()
    configure_logging("warning")
    app = create_app(settings)
    # The ceiling shares the app, its middleware and the server with /auth: the ratio is the cost
    # of the session check, the policy decision and signing.
    app.router.routes.insert(0, Route("/bench/hello", hello))
    limits = ConnectionLimits(
        settings.header_timeout, settings.body_timeout, settings.max_connections, settings.max_header_bytes
    )
    run_servers([(uvicorn_server(app, "warning", limits), acceptors(bind(settings.host, port)))])


if __name__ == "__main__":
    main()

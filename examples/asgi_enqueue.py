"""A web endpoint that enqueues without blocking its event loop: plain ASGI and ``AsyncClient``.

    uvicorn examples.asgi_enqueue:app          # REDIS_URL / ASYNQ_* from the environment
    curl -X POST localhost:8000/signup -d '{"email": "a@example.com"}'
    supervisor start --app examples.demo:app   # runs the "email:send" tasks it enqueues

Plain ASGI so that it needs no web framework; in Starlette or FastAPI the calls are the same:
create the client in the lifespan (its connections belong to the server's event loop), ``await
client.enqueue(...)`` in the endpoint, ``await client.aclose()`` at shutdown.
"""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any

from supervisor import AsyncClient, BrokerError, InvalidTaskError

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]


class SignupApp:
    """``POST /signup`` with ``{"email": ...}``: enqueue the welcome e-mail, answer 202 with its task id."""

    def __init__(self, make_client: Callable[[], AsyncClient] = AsyncClient) -> None:
        self.make_client = make_client
        self.client: AsyncClient | None = None

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "lifespan":
            await self.lifespan(receive, send)
        elif scope["type"] == "http":
            if (scope["method"], scope["path"]) != ("POST", "/signup"):
                await respond(send, 404, {"error": "not found"})
                return
            await self.signup(await read_body(receive), send)

    async def lifespan(self, receive: Receive, send: Send) -> None:
        while True:
            message = await receive()
            if message["type"] == "lifespan.startup":
                self.client = self.make_client()
                await send({"type": "lifespan.startup.complete"})
            elif message["type"] == "lifespan.shutdown":
                if self.client is not None:
                    await self.client.aclose()
                await send({"type": "lifespan.shutdown.complete"})
                return

    async def signup(self, body: bytes, send: Send) -> None:
        assert self.client is not None, "the ASGI server must run the lifespan (uvicorn does)"
        try:
            email = json.loads(body)["email"]
        except (ValueError, KeyError, TypeError):
            await respond(send, 400, {"error": 'expected a JSON body {"email": "..."}'})
            return
        try:
            # One welcome e-mail per address per hour: a repeated sign-up gets the same task back.
            info = await self.client.enqueue(
                "email:send",
                {"to": email, "subject": "Welcome!"},
                queue="critical",
                unique_key=f"welcome:{email}",
                unique_for="1h",
                on_duplicate="return",
            )
        except InvalidTaskError as exc:
            await respond(send, 400, {"error": str(exc)})
            return
        except BrokerError as exc:  # Redis unreachable or refusing: say so, the caller may retry
            await respond(send, 503, {"error": f"queue unavailable: {exc}"})
            return
        await respond(send, 202, {"id": info.id, "state": info.state.value, "existing": info.existing})


async def read_body(receive: Receive) -> bytes:
    body = b""
    while True:
        message = await receive()
        chunk: bytes = message.get("body", b"")
        body += chunk
        if not message.get("more_body"):
            return body


async def respond(send: Send, status: int, document: dict[str, Any]) -> None:
    body = json.dumps(document).encode()
    headers = [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": body})


app = SignupApp()

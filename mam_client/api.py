"""Local HTTP API of the MAM client (aiohttp, 127.0.0.1 by default), for other producers and for queries.

    POST /messages                {"channel": NAME, "message": <any JSON>}  or  {"channel": NAME, "trytes": "..."}
                                  -> 202 {"id": N, "state": "queued"}
    GET  /messages/{id}           -> state, channel, address, root, nextRoot, bundle, attempts, lastError
    GET  /channels                -> [{name, mode, security, firstRoot, queued, prepared, attached, lastAddress}]
    GET  /channels/{name}/messages?after=ID&limit=N  -> messages in channel order

A malformed request gets 400 with {"error": "..."} and enqueues nothing; bodies over `MAX_BODY_BYTES` get 413.
"""
from __future__ import annotations

import json
from typing import Any

from aiohttp import web
from sqlalchemy import func, select
from sqlalchemy.orm import Session, sessionmaker

from mam_client.crypto.trits import ascii_to_trytes
from mam_client.models import Channel, OutboxMessage
from mam_client.outbox import MAX_MESSAGE_TRYTES, enqueue
from mam_client.mam.errors import InvalidInput
from scb import safejson
from scb.db import transaction

#: Request body limit. Why: a message is at most MAX_MESSAGE_TRYTES trytes, i.e. half as many JSON bytes
#: (2 trytes per character), plus a little envelope.
MAX_BODY_BYTES = MAX_MESSAGE_TRYTES + 4096
PAGE_LIMIT = 500

FACTORY = web.AppKey("factory", sessionmaker)
CHANNELS = web.AppKey("channels", tuple)


def _error(status: int, message: str) -> web.Response:
    return web.json_response({"error": message}, status=status)


def message_json(row: OutboxMessage) -> dict[str, Any]:
    return {
        "id": row.id, "channel": row.channel, "state": row.state, "address": row.address, "root": row.root,
        "nextRoot": row.next_root, "bundle": row.bundle_hash, "attempts": row.attempts, "lastError": row.last_error,
        "createdAt": row.created_at.isoformat() if row.created_at else None,
        "attachedAt": row.attached_at.isoformat() if row.attached_at else None,
    }


def _message_trytes(body: Any) -> str:
    if not isinstance(body, dict):
        raise InvalidInput("the body must be a JSON object")
    unknown = set(body) - {"channel", "message", "trytes"}
    if unknown:
        raise InvalidInput(f"unknown field(s): {', '.join(sorted(unknown))}")
    if ("message" in body) == ("trytes" in body):
        raise InvalidInput("give exactly one of 'message' (any JSON value) or 'trytes'")
    if "trytes" in body:
        if not isinstance(body["trytes"], str):
            raise InvalidInput("'trytes' must be a string of trytes")
        return body["trytes"]
    text = json.dumps(body["message"], separators=(",", ":"), sort_keys=True, ensure_ascii=True)
    return ascii_to_trytes(text)


async def post_message(request: web.Request) -> web.Response:
    try:
        body = safejson.loads(await request.read())
    except web.HTTPRequestEntityTooLarge:
        return _error(413, f"request body over {MAX_BODY_BYTES} bytes")
    except (ValueError, UnicodeDecodeError):
        return _error(400, "the body must be JSON (and nested at most a few levels)")
    try:
        trytes = _message_trytes(body)
        channel = body.get("channel")
        if channel not in request.app[CHANNELS]:
            raise InvalidInput(f"unknown channel {channel!r}; configured: {', '.join(request.app[CHANNELS])}")
        with transaction(request.app[FACTORY]) as session:
            row = enqueue(session, channel, trytes)
            row_id = row.id
    except InvalidInput as exc:
        return _error(400, str(exc))
    return web.json_response({"id": row_id, "state": "queued"}, status=202)


async def get_message(request: web.Request) -> web.Response:
    raw = request.match_info["id"]
    if not raw.isdigit() or len(raw) > 18:
        return _error(400, "message id must be a positive integer")
    with request.app[FACTORY]() as session:
        row = session.get(OutboxMessage, int(raw))
        if row is None:
            return _error(404, f"no message {raw}")
        return web.json_response(message_json(row))


async def get_channels(request: web.Request) -> web.Response:
    out = []
    with request.app[FACTORY]() as session:
        counts: dict[tuple[str, str], int] = {
            (c, s): n for c, s, n in session.execute(
                select(OutboxMessage.channel, OutboxMessage.state, func.count()).group_by(
                    OutboxMessage.channel, OutboxMessage.state))
        }
        for ch in session.scalars(select(Channel).order_by(Channel.name)):
            last = session.scalars(select(OutboxMessage.address).where(
                OutboxMessage.channel == ch.name, OutboxMessage.state == "attached")
                .order_by(OutboxMessage.id.desc()).limit(1)).first()
            out.append({"name": ch.name, "mode": ch.mode, "security": ch.security, "firstRoot": ch.first_root,
                        "queued": counts.get((ch.name, "queued"), 0),
                        "prepared": counts.get((ch.name, "prepared"), 0),
                        "attached": counts.get((ch.name, "attached"), 0), "lastAddress": last})
    return web.json_response(out)


async def get_channel_messages(request: web.Request) -> web.Response:
    name = request.match_info["name"]
    try:
        after = int(request.query.get("after", "0"))
        limit = int(request.query.get("limit", "100"))
    except ValueError:
        return _error(400, "'after' and 'limit' must be integers")
    if after < 0 or not 1 <= limit <= PAGE_LIMIT:
        return _error(400, f"'after' must be >= 0 and 'limit' between 1 and {PAGE_LIMIT}")
    with request.app[FACTORY]() as session:
        if session.get(Channel, name) is None and name not in request.app[CHANNELS]:
            return _error(404, f"no channel {name!r}")
        rows = session.scalars(select(OutboxMessage).where(OutboxMessage.channel == name, OutboxMessage.id > after)
                               .order_by(OutboxMessage.id).limit(limit))
        return web.json_response([message_json(r) for r in rows])


@web.middleware
async def json_errors(request: web.Request, handler: Any) -> web.StreamResponse:
    """Every error is JSON, and no traceback ever reaches a client."""
    try:
        return await handler(request)
    except web.HTTPException as exc:
        if exc.status >= 400:
            return _error(exc.status, exc.reason)
        raise
    except Exception:  # noqa: BLE001
        request.app.logger.exception("internal error on %s %s", request.method, request.path)
        return _error(500, "internal error")


def create_app(factory: sessionmaker[Session], channels: tuple[str, ...]) -> web.Application:
    app = web.Application(client_max_size=MAX_BODY_BYTES, middlewares=[json_errors])
    app[FACTORY] = factory
    app[CHANNELS] = channels
    app.add_routes([
        web.post("/messages", post_message),
        web.get("/messages/{id}", get_message),
        web.get("/channels", get_channels),
        web.get("/channels/{name}/messages", get_channel_messages),
    ])
    return app

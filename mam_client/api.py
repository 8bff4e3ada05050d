"""Local HTTP API of the MAM client (aiohttp, 127.0.0.1 by default), for other producers and for queries.

    POST /messages                {"channel": NAME, "message": <any JSON>}  or  {"channel": NAME, "trytes": "..."}
                                  -> 202 {"id": N, "state": "queued"}
    GET  /messages/{id}           -> state, channel, address, root, nextRoot, bundle, attempts, lastError,
                                     refusal (the node's reason while it refuses the message), retryAt
    GET  /channels                -> [{name, mode, security, firstRoot, queued, prepared, attached, lastAddress,
                                      blockedBy (null, or the refused message that blocks the channel)}]
    GET  /channels/{name}/messages?after=ID&limit=N  -> messages in channel order

Who may call it (scb.http.EdgePolicy; docs/mam.md "The API"): the Host must be a loopback name, `mam.api_host` or
one of `mam.api_allowed_hosts` (403 otherwise), a foreign `Origin` is refused (403), and a POST needs
`Content-Type: application/json` (415) and `Authorization: Bearer <token>` (401), the token being the content of
`mam.api_token_file` (`<data_dir>/secrets/mam-api.token`, created with mode 0600 on first start).

Why a token for POST and not for GET: a POST enqueues a message that the hub signs with its channel key, i.e. it
speaks for the hub on the tangle; the GETs show what the hub already published. Why a token file rather than
"loopback is trusted": every local user and every local web page reaches loopback; the file's 0600 mode limits
writers to the hub's own user. The hub's own processes do not POST at all (the energy manager enqueues in its own
database transaction); a producer on the hub reads the same file.

A malformed request gets 400 with {"error": "..."} and enqueues nothing; bodies over `MAX_BODY_BYTES` get 413.
"""
from __future__ import annotations

import json
import secrets
from pathlib import Path
from typing import Any

from aiohttp import web
from sqlalchemy import func, select
from sqlalchemy.orm import Session, sessionmaker

from mam_client.crypto.trits import ascii_to_trytes
from mam_client.models import Channel, OutboxMessage
from mam_client.outbox import MAX_MESSAGE_TRYTES, blocked_channels, enqueue
from mam_client.mam.errors import InvalidInput
from mam_client.settings import MamSettings
from scb import http, safejson
from scb.timefmt import utc_iso_dt
from scb.db import transaction
from scb.errors import SecretFileError
from scb.files import read_secret_file, write_secret_file

#: Request body limit. Why: a message is at most MAX_MESSAGE_TRYTES trytes, i.e. half as many JSON bytes
#: (2 trytes per character), plus a little envelope.
MAX_BODY_BYTES = MAX_MESSAGE_TRYTES + 4096
PAGE_LIMIT = 500
#: A token file written by hand must hold at least this many characters. Why: the token is all that stands between
#: a local process and messages signed with the hub's key; a short one can be guessed through the API.
MIN_TOKEN_CHARS = 16

FACTORY = web.AppKey("factory", sessionmaker)
CHANNELS = web.AppKey("channels", tuple)


_error = http.error_response


def api_token(path: Path) -> str:
    """The API's bearer token: read from `path` (refused when group or others can read it), created there with
    mode 0600 on first use. Never logged and never put on a command line."""
    if not path.exists():
        write_secret_file(path, secrets.token_urlsafe(32))
    token = read_secret_file(path, "MAM API token")
    if len(token) < MIN_TOKEN_CHARS or any(not c.isascii() or not c.isprintable() or c.isspace() for c in token):
        raise SecretFileError(f"MAM API token file {path} must hold one token of at least {MIN_TOKEN_CHARS} "
                              "printable characters without spaces (delete it to have a new one made)")
    return token


def message_json(row: OutboxMessage) -> dict[str, Any]:
    return {
        "id": row.id, "channel": row.channel, "state": row.state, "address": row.address, "root": row.root,
        "nextRoot": row.next_root, "bundle": row.bundle_hash, "attempts": row.attempts, "lastError": row.last_error,
        "refusal": row.refusal, "retryAt": utc_iso_dt(row.retry_at),
        "createdAt": utc_iso_dt(row.created_at),
        "attachedAt": utc_iso_dt(row.attached_at),
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
        body = safejson.loads(await http.read_body(request, MAX_BODY_BYTES))
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
        blocked = {b.channel: b.to_json() for b in blocked_channels(session)}
        for ch in session.scalars(select(Channel).order_by(Channel.name)):
            last = session.scalars(select(OutboxMessage.address).where(
                OutboxMessage.channel == ch.name, OutboxMessage.state == "attached")
                .order_by(OutboxMessage.id.desc()).limit(1)).first()
            out.append({"name": ch.name, "mode": ch.mode, "security": ch.security, "firstRoot": ch.first_root,
                        "queued": counts.get((ch.name, "queued"), 0),
                        "prepared": counts.get((ch.name, "prepared"), 0),
                        "attached": counts.get((ch.name, "attached"), 0), "lastAddress": last,
                        "blockedBy": blocked.get(ch.name)})
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


def create_app(factory: sessionmaker[Session], mam: MamSettings, token: str) -> web.Application:
    """The API over `factory` for `mam`'s channels; POST /messages needs `token` (see `api_token`)."""
    policy = http.EdgePolicy.local(
        "the MAM API", mam.api_host, mam.api_allowed_hosts, "mam.api_allowed_hosts", token=token,
        token_hint=f"the token is in {mam.api_token_file} (mam.api_token_file)")
    app = web.Application(client_max_size=MAX_BODY_BYTES, middlewares=[http.edge_middleware(policy)])
    app[FACTORY] = factory
    app[CHANNELS] = tuple(mam.channels)
    app.add_routes([
        web.post("/messages", post_message),
        web.get("/messages/{id}", get_message),
        web.get("/channels", get_channels),
        web.get("/channels/{name}/messages", get_channel_messages),
    ])
    return app

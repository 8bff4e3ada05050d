"""`scb mam-client`: the publisher loop and the local HTTP API in one process.

The publisher runs in a thread (PyOTA is synchronous); the API runs on aiohttp's event loop. SIGTERM/SIGINT stop
the API, then the publisher finishes the call it is in and exits; anything not yet attached stays prepared or
queued in the database and is picked up on the next start.

The publisher's loop runs under `scb.loop.Guard` and beats the process's one heartbeat ("mam-client", loop
"publisher"): a locked or failing database is retried in place, an unexpected error exits the process with 70
(the worker thread must not die while the API keeps answering, or nothing would be published again).
"""
from __future__ import annotations

import logging
import threading

from aiohttp import web

from mam_client.api import api_token, create_app
from mam_client.publisher import Publisher
from mam_client.settings import IotaSettings, MamSettings, iota_settings, mam_settings
from mam_client.transport import PyotaTransport
from scb import http
from scb.config import Config
from scb.db import open_database
from scb.files import exclusive_lock
from scb.loop import Heartbeat

log = logging.getLogger(__name__)
#: one publisher per data directory: two would attach the same prepared message twice
LOCK_FILE = "mam-client.lock"
#: the process name in the heartbeat directory (the `scb` subcommand)
PROCESS = "mam-client"


def make_transport(iota: IotaSettings) -> PyotaTransport:
    return PyotaTransport(iota.node_url, depth=iota.depth, mwm=iota.mwm, timeout_s=iota.timeout_s,
                          local_pow=iota.pow == "local", pow_threads=iota.pow_threads or None)


def run(config: Config) -> int:
    iota = iota_settings(config)
    mam = mam_settings(config)
    with exclusive_lock(config.data_dir / LOCK_FILE, "mam-client"):
        return _serve(config, iota, mam)


def _serve(config: Config, iota: IotaSettings, mam: MamSettings) -> int:
    factory = open_database(config)
    publisher = Publisher(factory, mam, make_transport(iota), tag=iota.tag)
    publisher.ensure_channels()
    heartbeat = Heartbeat(config.data_dir, PROCESS)
    stop = threading.Event()
    worker = threading.Thread(target=publisher.run_forever, args=(stop, heartbeat), name="publisher", daemon=True)

    async def start_worker(_app: web.Application) -> None:
        worker.start()

    async def stop_worker(_app: web.Application) -> None:
        stop.set()
        worker.join(timeout=60)

    app = create_app(factory, mam, api_token(mam.api_token_file))
    app.on_startup.append(start_worker)
    app.on_cleanup.append(stop_worker)
    log.info("mam-client: node %s (%s PoW, mwm %d), API on http://%s:%d (POST token in %s), channels: %s",
             iota.node_url, iota.pow, iota.mwm, mam.api_host, mam.api_port, mam.api_token_file,
             ", ".join(mam.channels))
    http.run_app(app, host=mam.api_host, port=mam.api_port)
    return 0

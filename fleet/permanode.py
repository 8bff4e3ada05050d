"""The fleet's read-only legacy IRI API at `/iota`: a permanode over every hub's published bundles.

getNodeInfo, findTransactions (addresses, bundles) and getTrytes, with the request checks, limits and answer shapes
of SCB's own tangle node (mam_client.node.server), so that @iota/mam.js (mamFetch, mamFetchAll), PyOTA and
`scb verify --fleet` read a channel here as from a node. Every other command is refused as IRI refuses a command it
does not offer. Why read-only: the fleet keeps what hubs published; it is not a place to publish.
"""
from __future__ import annotations

import asyncio
import logging
import os
import time
from collections.abc import Callable
from concurrent.futures import Executor
from typing import Any, TypeVar

from aiohttp import web
from sqlalchemy import func, select
from sqlalchemy.orm import Session, sessionmaker

from fleet.models import FleetTransaction
from mam_client.node import transaction as tx
# the node's own request handling and checks, so that both APIs refuse the same requests with the same words
from mam_client.node.server import ApiError, Handler, answer_iri, check_addresses, check_hashes
from scb import __version__

log = logging.getLogger("fleet.permanode")
_T = TypeVar("_T")

#: IRI's defaults (maxRequestsList, maxFindTransactions, maxGetTrytes), as the tangle node's.
MAX_REQUESTS_LIST = 1000
MAX_FIND_TRANSACTIONS = 100_000
MAX_GET_TRYTES = 10_000
#: Largest request body. Why: the API reads at most 1000 hashes per list; a body beyond that is not a request.
MAX_BODY_BYTES = 1024 * 1024


class Permanode:
    def __init__(self, factory: sessionmaker[Session], executor: Executor) -> None:
        self.factory = factory
        self.executor = executor
        self.commands: dict[str, Handler] = {
            "getNodeInfo": self.get_node_info,
            "findTransactions": self.find_transactions,
            "getTrytes": self.get_trytes,
        }

    async def _db(self, fn: Callable[[Session], _T]) -> _T:
        def run() -> _T:
            with self.factory() as session:
                return fn(session)

        return await asyncio.get_running_loop().run_in_executor(self.executor, run)

    async def handle(self, request: web.Request) -> web.Response:
        return await answer_iri(request, self.commands, MAX_BODY_BYTES, log)

    async def get_node_info(self, req: dict[str, Any]) -> dict[str, Any]:
        count = await self._db(lambda s: int(s.scalar(select(func.count()).select_from(FleetTransaction)) or 0))
        return {
            "appName": "SCB fleet permanode", "appVersion": __version__,
            "jreAvailableProcessors": os.cpu_count() or 1, "jreFreeMemory": 0, "jreMaxMemory": 0,
            "jreTotalMemory": 0, "jreVersion": "none (Python)",
            "latestMilestone": tx.NULL_HASH, "latestMilestoneIndex": 0,
            "latestSolidSubtangleMilestone": tx.NULL_HASH, "latestSolidSubtangleMilestoneIndex": 0,
            "milestoneStartIndex": 0, "lastSnapshottedMilestoneIndex": 0, "neighbors": 0, "packetsQueueSize": 0,
            "time": int(time.time() * 1000), "tips": 0, "transactionsToRequest": 0, "features": [],
            "coordinatorAddress": tx.NULL_HASH, "transactions": count,
        }

    async def find_transactions(self, req: dict[str, Any]) -> dict[str, Any]:
        addresses = check_addresses(req, MAX_REQUESTS_LIST, required=False)
        bundles = check_hashes(req, "bundles", MAX_REQUESTS_LIST, required=False)
        for unsupported in ("tags", "approvees"):
            if req.get(unsupported) is not None:
                raise ApiError(f"Invalid parameters: this permanode finds transactions by addresses and bundles, "
                               f"not {unsupported}")
        if addresses is None and bundles is None:
            raise ApiError("Invalid parameters: give at least one of addresses, bundles")

        def find(session: Session) -> list[str]:
            query = select(FleetTransaction.hash)
            # IRI intersects the given criteria
            if addresses is not None:
                query = query.where(FleetTransaction.address.in_(addresses))
            if bundles is not None:
                query = query.where(FleetTransaction.bundle.in_(bundles))
            hashes = list(session.scalars(query.order_by(FleetTransaction.hash).limit(MAX_FIND_TRANSACTIONS + 1)))
            if len(hashes) > MAX_FIND_TRANSACTIONS:
                raise ApiError(f"Could not complete request: more than {MAX_FIND_TRANSACTIONS} transactions match")
            return hashes

        return {"hashes": await self._db(find)}

    async def get_trytes(self, req: dict[str, Any]) -> dict[str, Any]:
        hashes = check_hashes(req, "hashes", MAX_GET_TRYTES)
        assert hashes is not None

        def get(session: Session) -> list[str]:
            found = dict(session.execute(select(FleetTransaction.hash, FleetTransaction.trytes)
                                         .where(FleetTransaction.hash.in_(set(hashes)))).all()) if hashes else {}
            # IRI answers an unknown hash with an all-9 transaction, not an error
            return [found.get(h, tx.NULL_TRANSACTION) for h in hashes]

        return {"trytes": await self._db(get)}

"""The Ethereum side of the hub: a client for SolarProperty over plain JSON-RPC, signing with settlement.signing.

Why a wrapper: the settlement job must tell *retry later* from *never retry*. Every failure to reach or use the
node becomes `ChainUnavailable` (retryable, with back-off); a revert becomes `ContractReverted` (a `ChainRefused`:
the chain understood and said no) carrying the contract's custom error decoded by name, e.g.
``PeriodAlreadySettled(1, 7)``; an address without contract code is `NoContract` (a `ChainRefused` too); callers
never see a transport's own exception.

Every request (reads, gas estimates, sending, receipts) goes through one transport (settlement.rpc): plain
JSON-RPC over HTTP on the configured `rpc_url` by default, or a web3-style provider passed in
(`ChainClient(settings, provider=...)`), so the layers above run offline against a fake provider in tests. Why not
web3: importing it (with eth_account, eth_utils and pydantic) costs about 50 MB of memory per process and more
than `scb verify`'s one-second budget (issue 16), for requests this module and settlement.abi encode and decode
themselves. The contract's views are read through the typed facade `settlement.solar_property.SolarProperty`,
which also builds its transactions (`ContractCall`). Transactions are signed here with a local account
(settlement.signing: keystore + password file, or the development chain's first account), with the nonce from the
node's pending count, gas from eth_estimateGas times a margin, EIP-1559 fees (optionally capped), and a wait for
the receipt plus a configurable confirmation depth. Signing and sending are separate steps so that the settlement
job can record a transaction's hash in the database *before* it is broadcast (docs/settlement.md "Idempotency").
"""
from __future__ import annotations

import json
import logging
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from functools import lru_cache
from typing import Any, Protocol, TypeVar

from settlement import abi as _abi
from settlement.abi import to_checksum_address
from settlement.contract_artifact import ArtifactError, load_artifact
from settlement.fees import Fees, quote
from settlement.logscan import DeploymentStore, LogScanner, RangeRefused, find_deployment_block, is_range_refusal
# RateLimited and is_rate_limit are settlement.rpc's; callers know them as the client's (settlement.chain)
from settlement.rpc import (
    JsonRpcTransport,
    ProviderTransport,
    RateLimited,
    Transport,
    RpcError,
    error_of,
    is_rate_limit,
)
from settlement.settings import EthereumSettings
from settlement.signing import KeystoreError, Signer, decrypt_keystore, from_mnemonic
from scb.errors import ChainRefused, ChainUnavailable, ConfigError, ScbError
from scb.files import read_secret_file
from scb.retry import Backoff

log = logging.getLogger(__name__)
T = TypeVar("T")

#: The mnemonic every anvil/hardhat development chain derives its funded accounts from (public knowledge: these
#: accounts hold value on development chains only). Used only when the node *is* such a chain.
DEV_MNEMONIC = "test test test test test test test test test test test junk"
DEV_CHAIN_ID = 31337
#: eth_calls per JSON-RPC batch. Why 100: hosted providers cap batches (commonly at 100 to 1,000 requests, some
#: lower on free plans) and a refused batch costs a round trip before the single-call fallback; a publish window's
#: verification needs about two calls per reading, so one or two batches.
BATCH_MAX = 100
#: solidity's Error(string) and Panic(uint256) selectors
_ERROR_STRING = bytes.fromhex("08c379a0")
_PANIC = bytes.fromhex("4e487b71")


class ContractReverted(ChainRefused):
    """The contract refused a call or transaction; `name` and `args` are its decoded custom error."""

    def __init__(self, what: str, name: str, args: tuple[Any, ...] = ()) -> None:
        shown = ", ".join(str(a) for a in args)
        super().__init__(f"{what} reverted: {name}({shown})")
        self.name = name
        self.args_ = args


class NoContract(ChainRefused):
    """The address holds no contract code on this chain: a development chain that was reset, or a wrong
    `contract_address`. Retrying the call cannot help; re-resolving the system (or the configuration) can."""


@dataclass(frozen=True)
class SignedTx:
    """A signed transaction not yet (or maybe) broadcast: what the job stores before sending."""

    tx_hash: str  # 0x hex
    raw: str  # 0x hex, re-broadcastable as is
    nonce: int
    sender: str
    gas: int = 0
    fees: Fees | None = None


def _canonical_type(param: dict[str, Any]) -> str:
    if param["type"].startswith("tuple"):
        return "(" + ",".join(_canonical_type(c) for c in param["components"]) + ")" + param["type"][5:]
    return param["type"]


def error_table(abi: list[dict[str, Any]]) -> dict[bytes, tuple[str, list[str]]]:
    """selector -> (custom error name, argument types), from the ABI."""
    table: dict[bytes, tuple[str, list[str]]] = {}
    for entry in abi:
        if entry.get("type") == "error":
            types = [_canonical_type(i) for i in entry["inputs"]]
            table[_abi.selector(f"{entry['name']}({','.join(types)})")] = (entry["name"], types)
    return table


def decode_revert_data(abi: list[dict[str, Any]], data: bytes) -> tuple[str, tuple[Any, ...]]:
    """Name and arguments of the revert `data` (custom error, Error(string) or Panic(uint256))."""
    standard = {_ERROR_STRING: ("Error", ["string"]), _PANIC: ("Panic", ["uint256"])}
    known = standard.get(data[:4]) or error_table(abi).get(data[:4])
    if known is None:
        return "UnknownError", (("0x" + data.hex()) if data else "no revert data",)
    name, types = known
    try:
        return name, tuple(_abi.decode(types, data[4:]))
    except _abi.AbiError:  # malformed revert data is reported, not raised
        return name, ("undecodable arguments",)


def _block_param(block: int | str) -> str:
    """A block number or tag as JSON-RPC takes it."""
    return hex(block) if isinstance(block, int) else block


def _quantity(value: Any, what: str) -> int:
    """A JSON-RPC quantity (0x hex) as an int; an answer that is not one is the node's fault."""
    try:
        return int(str(value), 16)
    except ValueError:
        raise ChainUnavailable(f"{what}: the node answered {value!r}, not a quantity") from None


def _data(value: Any, what: str) -> bytes:
    """JSON-RPC data (0x hex) as bytes."""
    if isinstance(value, str) and value.startswith("0x"):
        try:
            return bytes.fromhex(value[2:])
        except ValueError:
            pass
    raise ChainUnavailable(f"{what}: the node answered {str(value)[:80]!r}, not 0x data")


def _http_status(exc: BaseException) -> int | None:
    response = getattr(exc, "response", None)
    status = getattr(response, "status_code", None)
    return int(status) if isinstance(status, int) else None


def _is_transport_failure(exc: BaseException) -> bool:
    """Whether a provider's exception means the node could not be reached. requests' and web3's exceptions are
    looked up only where they are loaded: only a provider built on them (a caller's web3 provider) can raise them,
    and this module imports neither (issue 16)."""
    kinds: list[type[BaseException]] = [OSError, ConnectionError, TimeoutError]
    requests = sys.modules.get("requests")
    if requests is not None:
        kinds.append(requests.RequestException)
    web3_errors = sys.modules.get("web3.exceptions")
    if web3_errors is not None:
        kinds += [web3_errors.ProviderConnectionError, web3_errors.TimeExhausted]
    return isinstance(exc, tuple(kinds))


class Account(Protocol):
    """What signs the hub's transactions: settlement.signing.Signer (eth_account's LocalAccount has the same
    shape, which the tests use as the reference)."""

    @property
    def address(self) -> str: ...

    def sign_transaction(self, tx: dict[str, Any]) -> Any: ...


@dataclass(frozen=True)
class ContractCall:
    """A transaction's target and calldata, built by the contract facade (settlement.solar_property) and signed
    here. `to` None deploys: `data` is then the creation code with its constructor's arguments."""

    what: str
    to: str | None
    data: bytes

    def __post_init__(self) -> None:
        if self.to is not None:  # checksummed once here, not at every `fields()`
            object.__setattr__(self, "to", to_checksum_address(self.to))

    def fields(self) -> dict[str, Any]:
        """Its `to` and `data` as a JSON-RPC transaction object has them."""
        out: dict[str, Any] = {"data": "0x" + self.data.hex()}
        if self.to is not None:
            out["to"] = self.to
        return out


class ChainClient:
    """One Ethereum node, one signing account, the SolarProperty ABI."""

    def __init__(self, settings: EthereumSettings, account: Account | None = None,
                 rpc_url: str | None = None, sleep: Callable[[float], None] = time.sleep,
                 provider: Any | None = None, transport: Transport | None = None) -> None:
        """`provider`: a web3-style provider (`make_request`) to use instead of HTTP on `rpc_url` (tests inject a
        fake one); `rpc_url` then only names the node in messages. `transport`: what every request goes through
        (settlement.rpc); default: the provider's when one is given, else JSON-RPC over HTTP on `rpc_url`."""
        self.settings = settings
        self.rpc_url = rpc_url or settings.rpc_url
        if transport is None:
            transport = ProviderTransport(provider, self.rpc_url) if provider is not None \
                else JsonRpcTransport(self.rpc_url, settings.timeout_s)
        self.transport: Transport = transport
        self.account = account
        self._sleep = sleep
        #: False once the node refused a JSON-RPC batch: `call_many` sends single calls from then on
        self.batches = True
        self._chain_id: int | None = None
        self._dev: bool | None = None
        self.scanner = LogScanner(settings.log_chunk_blocks)
        #: lowercase contract address -> its deployment block (the floor of every log scan of it)
        self.deployment_blocks: dict[str, int] = {}
        #: where deployment blocks are kept beyond this process (the service gives it the hub's database)
        self.deployment_store: DeploymentStore | None = None
        try:
            self.abi: list[dict[str, Any]] = load_artifact()["abi"]
        except ArtifactError as exc:
            raise ConfigError(str(exc)) from None

    # -- plumbing -------------------------------------------------------------------------------------------
    def guard(self, what: str, fn: Callable[[], T]) -> T:
        """Run one node request; unreachable/refusing node -> ChainUnavailable, revert -> ContractReverted, a call
        to an address without code -> NoContract, a range of logs the provider refuses -> RangeRefused.

        A provider's rate limit (HTTP 429, JSON-RPC "limit exceeded") is waited out here, with exponential back-off
        (0.25 s doubling to 8 s) for at most `rate_limit_wait_s` in all, then raised as RateLimited (a
        ChainUnavailable: the caller's slower back-off takes over). Why here: every request of the hub goes
        through this method, so a throttled provider slows the hub down instead of failing its jobs."""
        backoff = Backoff(0.25, 8.0)
        waited = 0.0
        while True:
            try:
                return self._guard_once(what, fn)
            except RateLimited as exc:
                delay = backoff.fail(0.0, str(exc))
                if waited + delay > self.settings.rate_limit_wait_s:
                    raise
                if backoff.failures == 1:
                    log.info("%s; backing off", exc)
                self._sleep(delay)
                waited += delay

    def _guard_once(self, what: str, fn: Callable[[], T]) -> T:
        try:
            return fn()
        except RpcError as exc:  # the transport's JSON-RPC error answer
            raise self._rpc_error(what, exc.revert_data(), exc.rpc_message) from None
        except ScbError:
            raise  # mapped already (the transport's ChainUnavailable, RateLimited; ContractReverted ...)
        except Exception as exc:
            mapped = self._transport_error(what, exc)
            if mapped is None:
                raise
            raise mapped from None

    def _rpc_error(self, what: str, data: bytes | None, message: str) -> ScbError:
        """A JSON-RPC error answer: a revert (with data) -> ContractReverted; a log range the provider refuses ->
        RangeRefused; a rate limit -> RateLimited; anything else the node refused -> ChainUnavailable."""
        if data is not None:
            return ContractReverted(what, *decode_revert_data(self.abi, data))
        if what.startswith("eth_getLogs") and is_range_refusal(message):
            return RangeRefused(f"Ethereum node {self.rpc_url} refused {what}: {message}")
        if is_rate_limit(message):
            return RateLimited(f"Ethereum node {self.rpc_url} rate-limits {what}: {message}")
        return ChainUnavailable(f"Ethereum node {self.rpc_url} refused {what}: {message}")

    def _transport_error(self, what: str, exc: Exception) -> ScbError | None:
        """What a provider's own exception means (a throttled or unreachable node), None for a bug. The HTTP
        transport raises ScbErrors itself; a provider passed in raises its library's exceptions."""
        if _http_status(exc) == 429:
            return RateLimited(f"Ethereum node {self.rpc_url} rate-limits {what} (HTTP 429)")
        if _is_transport_failure(exc):
            return ChainUnavailable(f"Ethereum node {self.rpc_url} is unreachable ({what}): {type(exc).__name__}")
        return None

    def rpc(self, method: str, params: list[Any], what: str | None = None) -> Any:
        """A raw JSON-RPC call through the transport (anvil's evm_* methods, and every read below): its
        result as the node gave it. An error answer is ChainUnavailable, or ContractReverted when it carries
        revert data (see `guard`)."""
        return self.guard(what or method, lambda: self.transport.request(method, params))

    @property
    def chain_id(self) -> int:
        if self._chain_id is None:
            self._chain_id = _quantity(self.rpc("eth_chainId", []), "eth_chainId")
            expected = self.settings.chain_id
            if expected is not None and expected != self._chain_id:
                raise ConfigError(f"ethereum.chain_id is {expected} but the node at {self.rpc_url} serves chain "
                                  f"{self._chain_id}")
        return self._chain_id

    def is_dev_chain(self) -> bool:
        """True for a local anvil (chain 31337 answering as anvil): only there the hub deploys on its own and may
        move the chain's clock."""
        if self._dev is None:
            version = str(self.rpc("web3_clientVersion", []))
            self._dev = version.lower().startswith("anvil/") and self.chain_id == DEV_CHAIN_ID
        return self._dev

    def block_number(self) -> int:
        return _quantity(self.rpc("eth_blockNumber", []), "eth_blockNumber")

    def latest_timestamp(self) -> int:
        return self.block_timestamp("latest")

    def block_timestamp(self, block: int | str) -> int:
        """The timestamp of block `block` (a number or a tag), through the transport: the dashboard and
        hub.ledger read block times without importing web3 (issue 16)."""
        found = self.rpc("eth_getBlockByNumber", [_block_param(block), False])
        if not isinstance(found, dict):  # null: a block above the head (or dropped by a reorg)
            raise ChainUnavailable(f"Ethereum node {self.rpc_url} has no block {block} (eth_getBlockByNumber)")
        return _quantity(found.get("timestamp"), "eth_getBlockByNumber")

    def balance(self, address: str) -> int:
        """The account's balance in wei (latest block)."""
        return _quantity(self.rpc("eth_getBalance", [to_checksum_address(address), "latest"]), "eth_getBalance")

    def gas_price(self) -> int:
        """The node's suggested gas price in wei (for EIP-1559 chains: base fee plus a tip)."""
        return _quantity(self.rpc("eth_gasPrice", []), "eth_gasPrice")

    def get_code(self, address: str, block: int | str = "latest") -> bytes:
        """The code at `address` (at `block`)."""
        return _data(self.rpc("eth_getCode", [to_checksum_address(address), _block_param(block)]), "eth_getCode")

    def has_code(self, address: str, block: int | str = "latest") -> bool:
        return len(self.get_code(address, block)) > 0

    def eth_call(self, what: str, tx: dict[str, Any], block: int | str = "latest") -> bytes:
        """One eth_call `{"to", "data"}` at `block`: its return data (a revert raises ContractReverted)."""
        return _data(self.rpc("eth_call", [tx, _block_param(block)], what), what)

    def call_many(self, calls: Sequence[tuple[str, dict[str, Any], int | str]]) -> list[bytes | ContractReverted]:
        """Several eth_calls `(what, {"to", "data"}, block)` in JSON-RPC batches of at most BATCH_MAX: one round
        trip instead of one per call. Returns each call's raw return data, or the ContractReverted it reverted
        with (a revert is an answer about that call, e.g. PeriodNotSettled, not a failure of the others).

        Failures map as for single calls (`guard`): unreachable -> ChainUnavailable, rate limits waited out, then
        RateLimited. A node or provider that refuses batches (no list answer, HTTP 4xx, an error on every item
        without revert data: hosted providers limit or disable them) gets the same calls one by one, and is not
        sent a batch again by this client."""
        results: list[bytes | ContractReverted] = []
        for lo in range(0, len(calls), BATCH_MAX):
            chunk = calls[lo:lo + BATCH_MAX]
            answer = self.guard(f"eth_call batch of {len(chunk)}", lambda: self._batch_once(chunk)) \
                if self.batches else None
            if answer is None:
                answer = [self._call_single(what, tx, block) for what, tx, block in chunk]
            results += answer
        return results

    def _call_single(self, what: str, tx: dict[str, Any], block: int | str) -> bytes | ContractReverted:
        try:
            return self.eth_call(what, tx, block)
        except ContractReverted as exc:
            return exc

    def _batch_once(self, chunk: Sequence[tuple[str, dict[str, Any], int | str]]) -> list[bytes | ContractReverted] | None:
        """One batch; None when the node refuses batches (then `self.batches` is False)."""
        answer = self.transport.batch([("eth_call", [tx, _block_param(block)]) for _, tx, block in chunk])
        if isinstance(answer, dict) and isinstance(answer.get("error"), dict):
            message = str(answer["error"].get("message", answer["error"]))
            if is_rate_limit(message):  # one error for the whole batch: throttled, not refused
                raise RateLimited(f"Ethereum node {self.rpc_url} rate-limits eth_call batches: {message}")
        if isinstance(answer, list) and len(answer) == len(chunk) and all(isinstance(a, dict) for a in answer):
            out: list[bytes | ContractReverted] = []
            for (what, _, _), item in zip(chunk, answer):
                if item.get("error") is None and isinstance(item.get("result"), str):
                    out.append(_data(item["result"], what))
                    continue
                error = error_of(what, item.get("error"))
                data = error.revert_data()
                if data is not None:
                    out.append(ContractReverted(what, *decode_revert_data(self.abi, data)))
                    continue
                message = error.rpc_message
                if is_rate_limit(message):
                    raise RateLimited(f"Ethereum node {self.rpc_url} rate-limits {what}: {message}")
                if "revert" in message.lower():
                    out.append(ContractReverted(what, "Error", (message,)))
                    continue
                break  # an item the batch did not answer: the endpoint's batch limit, or no batches at all
            else:
                return out
        log.info("Ethereum node %s does not take JSON-RPC batches: sending single calls", self.rpc_url)
        self.batches = False
        return None

    def scan_logs(self, what: str, address: str, topics: Sequence[str | None], from_block: int,
                  to_block: int | str = "latest") -> list[dict[str, Any]]:
        """The raw logs (JSON-RPC objects) of `address` matching `topics` from `from_block` (raised to the
        contract's deployment block) to `to_block`, in chunks the provider accepts (settlement.logscan): what
        the facade decodes itself (settlement.solar_property), without web3; the one way logs are read."""
        start = max(int(from_block), self.log_floor(address))
        end = self.block_number() if isinstance(to_block, str) else int(to_block)
        query = {"address": to_checksum_address(address), "topics": list(topics)}

        def fetch(lo: int, hi: int) -> list[Any]:
            found = self.rpc("eth_getLogs", [{**query, "fromBlock": hex(lo), "toBlock": hex(hi)}],
                             f"eth_getLogs {what}")
            if not isinstance(found, list) or not all(isinstance(item, dict) for item in found):
                raise ChainUnavailable(f"Ethereum node {self.rpc_url} answered eth_getLogs {what} with something "
                                       "that is not a list of logs")
            return found

        key = (address.lower(), what, json.dumps(list(topics)))
        return self.scanner.scan(key, fetch, start, end)

    def log_floor(self, address: str) -> int:
        """The block `address` was deployed in: remembered, stored, read from the contract (SolarProperty 2's
        `deploymentBlock`, one eth_call), or found now (binary search on eth_getCode), and stored. For a version-1
        contract on a node that refuses the historical state (not an archive node) it is 0: scans then start at
        the chain's first block, slower but complete."""
        lower = address.lower()
        if lower in self.deployment_blocks:
            return self.deployment_blocks[lower]
        block = self.deployment_store.load(self.chain_id, address) if self.deployment_store else None
        if block is None:
            block = self._declared_deployment_block(address)
            if block is not None and self.deployment_store is not None:
                self.deployment_store.save(self.chain_id, address, block)
        if block is None:
            try:
                block = find_deployment_block(lambda n: self.has_code(address, n), self.block_number())
            except ChainUnavailable as exc:
                log.warning("deployment block of %s not found (%s): log scans start at block 0", address, exc)
                self.deployment_blocks[lower] = 0
                return 0
            log.info("contract %s was deployed in block %d: log scans start there", address, block)
            if self.deployment_store is not None:
                self.deployment_store.save(self.chain_id, address, block)
        self.deployment_blocks[lower] = block
        return block

    def _declared_deployment_block(self, address: str) -> int | None:
        """The deployment block the contract itself records (version 2), else None (version 1 has no such view:
        the call reverts)."""
        try:
            raw = self.eth_call("deploymentBlock", {"to": to_checksum_address(address),
                                                    "data": "0x" + _abi.selector("deploymentBlock()").hex()})
            block = int(_abi.decode(["uint256"], raw)[0])
        except (ChainRefused, _abi.AbiError):
            return None
        log.info("contract %s records its deployment block %d: log scans start there", address, block)
        return block

    def remember_deployment(self, address: str, block: int, tx_hash: str | None = None) -> None:
        """Record a deployment this client made or was told about (kept in the store when there is one)."""
        self.deployment_blocks[address.lower()] = int(block)
        if self.deployment_store is not None:
            self.deployment_store.save(self.chain_id, address, int(block), tx_hash)

    # -- accounts -------------------------------------------------------------------------------------------
    @property
    def sender(self) -> str:
        return self._account.address

    # -- anvil time (development chain only) ----------------------------------------------------------------
    def set_next_timestamp(self, timestamp: int) -> None:
        self.rpc("evm_setNextBlockTimestamp", [int(timestamp)])

    def mine(self, timestamp: int | None = None) -> None:
        self.rpc("evm_mine", [int(timestamp)] if timestamp is not None else [])

    def set_time(self, timestamp: int) -> None:
        self.rpc("evm_setTime", [int(timestamp)])

    # -- transactions ---------------------------------------------------------------------------------------
    def fees(self) -> Fees:
        """The fees of a transaction sent now (settlement.fees.quote): EIP-1559 when the latest block has a base
        fee (or `tx_type = "eip1559"`), legacy gasPrice otherwise. Raises FeeAboveCap while the chain asks more
        than the configured cap."""
        s = self.settings
        base: int | None = None
        if s.tx_type != "legacy":
            block = self.rpc("eth_getBlockByNumber", ["latest", False])
            if isinstance(block, dict) and block.get("baseFeePerGas") is not None:
                base = _quantity(block["baseFeePerGas"], "eth_getBlockByNumber")
            elif s.tx_type == "eip1559":
                raise ConfigError(f"ethereum.tx_type is \"eip1559\" but the chain at {self.rpc_url} has no base fee")
        if base is None:
            return quote(base_fee=None, suggested_tip=None, max_fee_cap=s.max_fee_wei, gas_price=self.gas_price())
        tip = None
        if s.priority_fee_wei is None:
            tip = _quantity(self.rpc("eth_maxPriorityFeePerGas", []), "eth_maxPriorityFeePerGas")
        return quote(base_fee=base, suggested_tip=tip, gas_price=None, max_fee_cap=s.max_fee_wei,
                     tip_cap=s.max_priority_fee_wei, fixed_tip=s.priority_fee_wei)

    def sign(self, call: ContractCall, what: str, value: int = 0, nonce: int | None = None,
             extra_gas: int = 0, fees: Fees | None = None, gas: int | None = None) -> SignedTx:
        """Build (nonce, gas estimate x margin + extra_gas, fees) and sign a contract call or deployment; nothing
        is sent.

        Gas estimation runs the transaction against the node first, so a call the contract would refuse raises
        ContractReverted here, before anything is signed or paid for. `extra_gas` covers what the estimate cannot
        see: work that depends on the block the transaction lands in (unused gas is not charged). A replacement
        passes the `nonce`, `fees` and `gas` of the transaction it replaces (bumped fees, the same gas limit).
        """
        sender = self.sender
        if nonce is None:
            nonce = self.next_nonce()
        if gas is None:
            estimate = _quantity(self.rpc("eth_estimateGas", [{"from": sender, **call.fields(), "value": hex(value)}],
                                          what), what)
            gas = int(estimate * self.settings.gas_margin) + 1 + extra_gas
        fees = fees or self.fees()
        tx = {"nonce": nonce, "gas": gas, "value": value, "chainId": self.chain_id, **call.fields(),
              **fees.tx_fields()}
        signed = self._account.sign_transaction(tx)
        return SignedTx(tx_hash="0x" + bytes(signed.hash).hex(), raw="0x" + bytes(signed.raw_transaction).hex(),
                        nonce=nonce, sender=sender, gas=gas, fees=fees)

    def send(self, signed: SignedTx | str) -> str:
        """Broadcast a signed transaction; a node that already has it is fine (re-broadcast after a crash).
        Rate limits are waited out as for every request (`guard`): sending the same bytes again is harmless."""
        return self.guard("eth_sendRawTransaction", lambda: self._send_once(signed))

    def _send_once(self, signed: SignedTx | str) -> str:
        raw = signed.raw if isinstance(signed, SignedTx) else signed
        try:
            return str(self.transport.request("eth_sendRawTransaction", [raw]))
        except RpcError as exc:
            text = exc.rpc_message
            message = text.lower()
            if "already known" in message or "already imported" in message or "known transaction" in message:
                return signed.tx_hash if isinstance(signed, SignedTx) else ""
            if "nonce too low" in message or "nonce has already been used" in message:
                raise StaleNonce(f"transaction nonce is already used: {text}") from None
            if "underpriced" in message or "fee too low" in message or "less than block base fee" in message:
                raise Underpriced(f"Ethereum node {self.rpc_url} refused the transaction as underpriced: {text}") \
                    from None
            raise  # a revert or any other refusal: mapped by `guard` as every request's

    def receipt(self, tx_hash: str) -> dict[str, Any] | None:
        """The receipt of `tx_hash`, or None while it is not mined (or unknown to the node): the JSON-RPC object
        with its quantities as ints, its hashes as bytes and `contractAddress` checksummed (`logs` as the node
        gave them, which settlement.solar_property decodes)."""
        found = self.rpc("eth_getTransactionReceipt", [tx_hash])
        if found is None:
            return None
        if not isinstance(found, dict):
            raise ChainUnavailable(f"Ethereum node {self.rpc_url} answered eth_getTransactionReceipt with "
                                   f"{str(found)[:80]!r}, not a receipt")
        return _receipt(found)

    def known(self, tx_hash: str) -> bool:
        """Whether the node knows the transaction at all (mined or pending)."""
        return self.rpc("eth_getTransactionByHash", [tx_hash]) is not None

    def wait(self, tx_hash: str, what: str, call: ContractCall | None = None,
             timeout_s: float | None = None) -> dict[str, Any]:
        """Wait for the receipt and `confirmations` blocks; a failed transaction raises ContractReverted (why:
        `call` replayed, see `explain_failure`).

        Raises ChainUnavailable when the receipt or the depth does not come in time (the caller retries later
        with the same hash: nothing is sent twice).
        """
        deadline = time.monotonic() + (timeout_s if timeout_s is not None else self.settings.receipt_timeout_s)
        delay = 0.05
        while True:
            receipt = self.receipt(tx_hash)
            if receipt is not None:
                if receipt["status"] != 1:
                    raise self.explain_failure(receipt, what, call)
                depth = self.block_number() - int(receipt["blockNumber"]) + 1
                if depth >= self.settings.confirmations:
                    return receipt
            if time.monotonic() > deadline:
                state = "not mined" if receipt is None else "not deep enough"
                raise ChainUnavailable(f"{what}: transaction {tx_hash} is {state} after "
                                       f"{self.settings.receipt_timeout_s:g} s; will check again")
            self._sleep(delay)
            delay = min(1.0, delay * 2)

    def explain_failure(self, receipt: dict[str, Any], what: str, call: ContractCall | None) -> ContractReverted:
        """Why a mined transaction failed: replay `call` with eth_call at the block before it to get the revert
        data."""
        if call is None:
            return ContractReverted(what, "TransactionFailed", ("0x" + bytes(receipt["transactionHash"]).hex(),))
        try:
            self.eth_call(what, {"from": self.sender, **call.fields()}, int(receipt["blockNumber"]) - 1)
        except ContractReverted as exc:
            return exc
        return ContractReverted(what, "TransactionFailed", ("out of gas or reverted without data",))

    def next_nonce(self) -> int:
        """The hub account's next nonce (counting its pending transactions)."""
        return self._nonce("pending")

    def mined_nonce(self) -> int:
        """How many transactions of the hub account are mined (the latest block's nonce): a nonce below it is used
        for good, by whichever transaction."""
        return self._nonce("latest")

    def _nonce(self, block: str) -> int:
        return _quantity(self.rpc("eth_getTransactionCount", [self.sender, block]), "eth_getTransactionCount")

    def block_hash(self, number: int) -> str | None:
        """The hash of the canonical block `number` (0x hex), None above the head."""
        block = self.rpc("eth_getBlockByNumber", [_block_param(int(number)), False])
        if block is None:
            return None
        if not isinstance(block, dict) or not isinstance(block.get("hash"), str):
            raise ChainUnavailable(f"Ethereum node {self.rpc_url} answered eth_getBlockByNumber with something "
                                   "that is not a block")
        return str(block["hash"]).lower()

    def burn_nonce(self, why: str) -> None:
        """Use up the account's next nonce with a 0-wei transfer to itself (so that its next contract gets a new
        address: see settlement.system); waits for the receipt."""
        signed = self.sign(ContractCall(why, self.sender, b""), why, gas=21_000)  # a plain transfer's gas
        self.send(signed)
        self.wait(signed.tx_hash, why)

    def transact(self, call: ContractCall, what: str, value: int = 0) -> dict[str, Any]:
        """Sign, send, wait: for one-off operator actions (deploy, register). The settlement job uses the steps."""
        signed = self.sign(call, what, value)
        self.send(signed)
        return self.wait(signed.tx_hash, what, call)

    def deploy(self, admin: str, approver: str) -> str:
        """Deploy SolarProperty from the committed artifact; returns its address."""
        artifact = load_artifact()
        creation = bytes.fromhex(str(artifact["bytecode"]).removeprefix("0x")) + _abi.encode(
            ["address", "address"], [to_checksum_address(admin), to_checksum_address(approver)])
        receipt = self.transact(ContractCall("deploy SolarProperty", None, creation), "deploy SolarProperty")
        address = str(receipt["contractAddress"])
        self.remember_deployment(address, int(receipt["blockNumber"]), "0x" + bytes(receipt["transactionHash"]).hex())
        return address

    @property
    def _account(self) -> Account:
        if self.account is None:
            raise ConfigError("no hub account: set ethereum.keystore_file and ethereum.password_file")
        return self.account


class StaleNonce(ChainUnavailable):
    """The nonce of a signed transaction is used already: re-check the chain, then re-sign."""


class Underpriced(ChainUnavailable):
    """The node refused a transaction's fees (a replacement bumped too little, or below the pool's minimum):
    the transaction already in the pool keeps its place; tried again at the next check."""


#: receipt fields that are JSON-RPC quantities, and those that are 32-byte hashes
_RECEIPT_QUANTITIES = ("status", "blockNumber", "gasUsed", "cumulativeGasUsed", "effectiveGasPrice",
                       "transactionIndex", "type")
_RECEIPT_HASHES = ("transactionHash", "blockHash")


def _receipt(found: dict[str, Any]) -> dict[str, Any]:
    """A JSON-RPC receipt with its quantities as ints and hashes as bytes (what the callers compute with)."""
    out = dict(found)
    for key in _RECEIPT_QUANTITIES:
        if out.get(key) is not None:
            out[key] = _quantity(out[key], "eth_getTransactionReceipt")
    for key in _RECEIPT_HASHES:
        out[key] = _data(out.get(key), "eth_getTransactionReceipt")
    if out.get("contractAddress") is not None:
        out["contractAddress"] = to_checksum_address(out["contractAddress"])
    if not isinstance(out.get("logs", []), list):
        raise ChainUnavailable("eth_getTransactionReceipt: the node answered logs that are not a list")
    return out


# ---------------------------------------------------------------------------------------------------- accounts


@lru_cache(maxsize=None)
def dev_account(index: int) -> Signer:
    """Development account `index` of DEV_MNEMONIC (anvil's funded accounts 0..9).

    Cached: the derivation (BIP-39 seed and BIP-32 path, settlement.signing) takes milliseconds and its result
    never changes, and the demo households ask for accounts 1..8 at every 2-second step
    (settlement.households.check_demo). A Signer is immutable, so one instance may be shared."""
    return from_mnemonic(DEV_MNEMONIC, f"m/44'/60'/0'/0/{index}")


def load_keystore(keystore_file: Any, password_file: Any) -> Signer:
    """Decrypt the hub's keystore with its password; both files must be mode 0600 and are never logged."""
    text = read_secret_file(keystore_file, "keystore")
    password = read_secret_file(password_file, "keystore password")
    try:
        keystore = json.loads(text)
    except ValueError:
        raise ConfigError(f"keystore {keystore_file} cannot be decrypted (not a valid keystore: not JSON)") from None
    try:
        return Signer(decrypt_keystore(keystore, password))
    except (KeystoreError, ValueError) as exc:
        raise ConfigError(f"keystore {keystore_file} cannot be decrypted ({exc})") from None


def hub_account(settings: EthereumSettings, client: ChainClient) -> Account:
    """The account the hub signs with: the keystore, else (development chain only) anvil's first account."""
    if settings.keystore_file is not None and settings.password_file is not None:
        return load_keystore(settings.keystore_file, settings.password_file)
    if not client.is_dev_chain():
        raise ConfigError(f"the node at {client.rpc_url} is not a local development chain: set "
                          "ethereum.keystore_file and ethereum.password_file for the hub account")
    account = dev_account(0)
    accounts = client.rpc("eth_accounts", [])
    if isinstance(accounts, list) and accounts and str(accounts[0]).lower() != account.address.lower():
        raise ConfigError("the local chain does not use the standard development accounts: set "
                          "ethereum.keystore_file and ethereum.password_file")
    return account


def connect(settings: EthereumSettings, rpc_url: str | None = None, with_account: bool = True,
            provider: Any | None = None) -> ChainClient:
    """A client for the configured node (or `provider`) with the hub account loaded (when `with_account`)."""
    client = ChainClient(settings, rpc_url=rpc_url, provider=provider)
    if with_account:
        client.account = hub_account(settings, client)
    return client

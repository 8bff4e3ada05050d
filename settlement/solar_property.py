"""SolarProperty as the hub sees it: one system on one contract, its views decoded by name into dataclasses.

Why a facade (the Ethereum side's counterpart of `mam_client.transport.TangleTransport`): web3 hands back a view's
struct as a bare tuple, and code that reads `info[7]` breaks silently when the contract gains a field. Here each
view is decoded with the committed ABI (`contracts/build/SolarProperty.json`) by the names of its outputs, and
the dataclasses below name every field of the contract's `SystemView`, `PeriodView` and `HolderView`; a test
checks that the two agree, and `check_abi` refuses an artifact that does not match at start.

**One block per snapshot.** `snapshot()` pins the block (`eth_call` with `block_identifier` = that block's
number), so a set of views read from it is consistent: a period settled between `systemInfo` and `periodInfo`
cannot make the two disagree, and the holders' standing and the block time the dashboard shows belong together.
An unpinned facade reads each view at the node's latest block (fine for a single view).

**One holder status.** A holder's standing is `holderInfo` alone: the contract's `HolderStatus` (paying, owned,
repossessed) and `inGoodStanding`, as the contract itself derives them. (Deriving "repossessed" from a zero share
and "owned" from `supplyStatus` elsewhere would be a second definition that can drift.)

**Two contract versions.** The hub deploys version 2 (`contracts/build/SolarProperty.json`); a system registered on
a version-1 contract keeps working (`contracts/build/SolarProperty.v1.json`). The facade tells them apart by the
deployed code (version 1 is exactly the committed v1 runtime bytecode) and reads each with its own ABI; fields and
events that only version 2 has (`since=2` below) read as their defaults on version 1 (peak powers 0, no period
cancelled, no repossession fee, `grid_energy_wh` None), and version-2 operations (`cancel_period_call`,
`assign_share_call`, `set_beneficiary_call`) refuse a version-1 contract with an ArtifactError.

**No web3.** Views are encoded and decoded here with settlement.abi and sent as plain `eth_call`s through the
client's transport (settlement.rpc); events are raw `eth_getLogs` answers decoded here by the event's ABI
(indexed arguments from the topics, the others from the data); the transaction builders (`settle_call`,
`transaction` ...) encode a `ContractCall` that the client signs (settlement.signing) and sends. So neither
reading nor settling imports web3 (`scb verify` within a second, and about 50 MB less memory, issue 16). The one
way to decode the contract's events: the typed readers below, `event_logs` (any event by name, its arguments by
name: hub.ledger's money events) and `events_in` (a receipt's logs) all decode here.

Errors are the client's (settlement.chain): a node that cannot be reached is `ChainUnavailable`, a revert is
`ContractReverted` (a `ChainRefused`) with the custom error by name, an address without code is `NoContract`.
The transport under the client is injectable (`ChainClient(settings, provider=...)` or `transport=...`): the
tests run this facade against a fake provider offline and against a real anvil.
"""
from __future__ import annotations

import dataclasses
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from functools import lru_cache
from typing import Any, TypeVar

from weakref import WeakKeyDictionary

from settlement import abi as codec
from settlement.abi import AbiError, to_checksum_address

from settlement.chain import ChainClient, ContractCall, ContractReverted, NoContract, _canonical_type
from settlement.contract_artifact import CURRENT_VERSION, ArtifactError, load_artifact

T = TypeVar("T")

#: The contract's `HolderStatus` enum, in declaration order (NONE is never stored for a registered holder).
HOLDER_STATUS = ("none", "paying", "owned", "repossessed")
NONE, PAYING, OWNED, REPOSSESSED = HOLDER_STATUS


def _address(value: Any) -> str:
    return to_checksum_address(value)


def _status(value: Any) -> str:
    index = int(value)
    if not 0 <= index < len(HOLDER_STATUS):
        # an enum value this SCB does not know: not the contract it was built for
        raise ArtifactError(f"the contract answered HolderStatus {index}, which this SCB does not know")
    return HOLDER_STATUS[index]


def _abi(name: str, convert: Callable[[Any], Any] = int, since: int = 1, default: Any = None) -> Any:
    """A dataclass field filled from the ABI output (or event argument) `name`, converted by `convert`; a field
    the contract has only from version `since` on reads as `default` on older contracts."""
    return field(default=default, metadata={"abi": name, "convert": convert, "since": since})


def _from_abi(cls: type[T], values: dict[str, Any], **extra: Any) -> T:
    kwargs = dict(extra)
    for f in dataclasses.fields(cls):  # type: ignore[arg-type]
        if "abi" in f.metadata and (f.metadata["abi"] in values or f.metadata["since"] == 1):
            kwargs[f.name] = f.metadata["convert"](values[f.metadata["abi"]])
    return cls(**kwargs)


def abi_names(cls: type, version: int = CURRENT_VERSION) -> set[str]:
    """The ABI names a dataclass below is filled from (on a contract of `version`)."""
    return {f.metadata["abi"] for f in dataclasses.fields(cls)
            if "abi" in f.metadata and f.metadata["since"] <= version}


# ------------------------------------------------------------------------------------------------ the views


@dataclass(frozen=True)
class SystemInfo:
    """`systemInfo(systemId)`: the contract's `SystemView`."""

    beneficiary: str = _abi("beneficiary", _address)
    price_per_kwh_wei: int = _abi("pricePerKWh")
    total_value_wei: int = _abi("totalValue")
    grace_period_s: int = _abi("gracePeriod")
    mam_channel_root_hash: bytes = _abi("mamChannelRootHash", bytes)
    holder_count: int = _abi("holderCount")
    grid_share_bps: int = _abi("gridShareBps")
    last_period_id: int = _abi("lastPeriodId")
    last_period_end: int = _abi("lastPeriodEnd")
    registered_at: int = _abi("registeredAt")
    peak_power_w: int = _abi("peakPowerW", since=2, default=0)  # 0: version 1 (no bound)
    repossession_fee_bps: int = _abi("repossessionFeeBps", since=2, default=0)


@dataclass(frozen=True)
class PeriodInfo:
    """`periodInfo(systemId, periodId)`: the contract's `PeriodView` of a settled period."""

    readings_root: bytes = _abi("readingsRoot", bytes)
    mam_root_hash: bytes = _abi("mamRootHash", bytes)
    reading_count: int = _abi("readingCount")
    start: int = _abi("start")
    end: int = _abi("end")
    settled_at: int = _abi("settledAt")
    due_time: int = _abi("dueTime")
    generation_wh: int = _abi("generationWh")
    #: the approver cancelled the period's bills and it awaits its corrected settlement (settlement.disputes)
    cancelled: bool = _abi("cancelled", bool, since=2, default=False)

    @property
    def readings_root_hex(self) -> str:
        return "0x" + self.readings_root.hex()


@dataclass(frozen=True)
class HolderInfo:
    """`holderInfo(systemId, holder)`: the contract's `HolderView`; `status` is one of HOLDER_STATUS."""

    account: str = _abi("account", _address)
    index: int = _abi("index")
    share_bps: int = _abi("shareBps")
    status: str = _abi("status", _status)
    holding_value_wei: int = _abi("holdingValue")
    equity_paid_wei: int = _abi("equityPaid")
    debt_wei: int = _abi("debt")
    prepaid_wei: int = _abi("prepaid")
    in_good_standing: bool = _abi("inGoodStanding", bool)
    next_due_time: int = _abi("nextDueTime")  # 0 without debt
    peak_power_w: int = _abi("peakPowerW", since=2, default=0)  # 0: version 1 (no bound)


@dataclass(frozen=True)
class HolderShare:
    """One entry of `holderList(systemId)`, in holder (settlement) order."""

    account: str
    share_bps: int


# ------------------------------------------------------------------------------------------------ events


@dataclass(frozen=True)
class PeriodSettledEvent:
    period_id: int = _abi("periodId")
    start: int = _abi("start")
    end: int = _abi("end")
    readings_root: bytes = _abi("readingsRoot", bytes)
    mam_root: str = _abi("mamRoot", str)  # the trytes themselves: on chain only their hash is stored
    reading_count: int = _abi("readingCount")
    generation_wh: int = _abi("generationWh")
    due_time: int = _abi("dueTime")
    #: generation x grid share / 10000 (Wh): the grid portion's energy, which the operator sells; None on version 1
    grid_energy_wh: int | None = _abi("gridEnergyWh", since=2)
    tx_hash: str = ""
    block_number: int = 0

    @property
    def readings_root_hex(self) -> str:
        return "0x" + self.readings_root.hex()


@dataclass(frozen=True)
class RepossessedEvent:
    holder: str = _abi("holder", _address)
    share_bps: int = _abi("shareBps")
    equity_returned_wei: int = _abi("equityReturned")
    debt_recovered_wei: int = _abi("debtRecovered")
    debt_remaining_wei: int = _abi("debtRemaining")
    fee_wei: int = _abi("feeCharged", since=2, default=0)
    tx_hash: str = ""
    block_number: int = 0


@dataclass(frozen=True)
class SystemRegisteredEvent:
    hub: str = _abi("hub", _address)
    beneficiary: str = _abi("beneficiary", _address)
    price_per_kwh_wei: int = _abi("pricePerKWh")
    total_value_wei: int = _abi("totalValue")
    grace_period_s: int = _abi("gracePeriod")
    mam_channel_root: str = _abi("mamChannelRoot", str)
    holders: tuple[str, ...] = _abi("holders", lambda v: tuple(_address(a) for a in v))
    shares_bps: tuple[int, ...] = _abi("sharesBps", lambda v: tuple(int(s) for s in v))
    peak_power_w: int = _abi("peakPowerW", since=2, default=0)
    holder_peaks_w: tuple[int, ...] = _abi("holderPeaksW", lambda v: tuple(int(s) for s in v), since=2,
                                           default=())
    repossession_fee_bps: int = _abi("repossessionFeeBps", since=2, default=0)
    tx_hash: str = ""
    block_number: int = 0


@dataclass(frozen=True)
class BilledEvent:
    """The bills of one settlement of a period, in holder order (`cancel_period_call` gives them back)."""

    period_id: int = _abi("periodId")
    amounts_wei: tuple[int, ...] = _abi("amounts", lambda v: tuple(int(a) for a in v))
    unpaid_wei: tuple[int, ...] = _abi("unpaid", lambda v: tuple(int(a) for a in v))
    tx_hash: str = ""
    block_number: int = 0


@dataclass(frozen=True)
class PeriodCancelledEvent:
    period_id: int = _abi("periodId", since=2)
    debt_reversed_wei: int = _abi("debtReversed", since=2)
    refunded_wei: int = _abi("refunded", since=2)
    tx_hash: str = ""
    block_number: int = 0


@dataclass(frozen=True)
class ShareAssignedEvent:
    holder: str = _abi("holder", _address, since=2)
    index: int = _abi("index", since=2)
    share_bps: int = _abi("shareBps", since=2)
    peak_power_w: int = _abi("peakPowerW", since=2)
    tx_hash: str = ""
    block_number: int = 0


@dataclass(frozen=True)
class BeneficiaryChangedEvent:
    previous: str = _abi("previous", _address, since=2)
    beneficiary: str = _abi("beneficiary", _address, since=2)
    tx_hash: str = ""
    block_number: int = 0


#: view or event -> the dataclass its named outputs fill
VIEWS: dict[str, type] = {"systemInfo": SystemInfo, "periodInfo": PeriodInfo, "holderInfo": HolderInfo}
EVENTS: dict[str, type] = {"PeriodSettled": PeriodSettledEvent, "Repossessed": RepossessedEvent,
                           "SystemRegistered": SystemRegisteredEvent, "Billed": BilledEvent,
                           "PeriodCancelled": PeriodCancelledEvent, "ShareAssigned": ShareAssignedEvent,
                           "BeneficiaryChanged": BeneficiaryChangedEvent}
#: events a version-1 contract does not have
V2_EVENTS = ("PeriodCancelled", "ShareAssigned", "BeneficiaryChanged")


def _find_entry(abi: list[dict[str, Any]], kind: str, name: str) -> dict[str, Any] | None:
    """The ABI entry of the `kind` ("function", "event") named `name`, None when `abi` has none."""
    return next((e for e in abi if e.get("type") == kind and e.get("name") == name), None)


def _abi_entry(abi: list[dict[str, Any]], kind: str, name: str) -> dict[str, Any]:
    entry = _find_entry(abi, kind, name)
    if entry is not None:
        return entry
    raise ArtifactError(f"the SolarProperty artifact has no {kind} {name}: rebuild it (node contracts/compile.js)")


def _output_names(entry: dict[str, Any]) -> set[str]:
    outputs = entry["outputs"]
    if len(outputs) == 1 and outputs[0]["type"] == "tuple":
        return {c["name"] for c in outputs[0]["components"]}
    return {o["name"] for o in outputs}


def check_abi(abi: list[dict[str, Any]], version: int = CURRENT_VERSION) -> None:
    """The dataclasses name exactly the fields the ABI's views and events have (on a contract of `version`);
    ArtifactError otherwise."""
    for name, cls in VIEWS.items():
        have, want = _output_names(_abi_entry(abi, "function", name)), abi_names(cls, version)
        if have != want:
            raise ArtifactError(f"SolarProperty.{name} returns {sorted(have)} but settlement.solar_property reads "
                                f"{sorted(want)}: the artifact and this SCB disagree")
    for name, cls in EVENTS.items():
        if version < 2 and name in V2_EVENTS:
            continue
        have = {i["name"] for i in _abi_entry(abi, "event", name)["inputs"]} - {"systemId"}
        want = abi_names(cls, version)
        if have != want:
            raise ArtifactError(f"SolarProperty event {name} carries {sorted(have)} but settlement.solar_property "
                                f"reads {sorted(want)}: the artifact and this SCB disagree")


@lru_cache(maxsize=4)
def _checked_abi(version: int = CURRENT_VERSION) -> list[dict[str, Any]]:
    abi = load_artifact(version)["abi"]
    check_abi(abi, version)
    return abi


#: client -> {lowercase address: contract version}: the version of a deployed contract never changes
_VERSIONS: WeakKeyDictionary[ChainClient, dict[str, int]] = WeakKeyDictionary()


def contract_version(client: ChainClient, address: str) -> int:
    """1 when the code at `address` is the committed version-1 runtime bytecode, else the current version (one
    eth_getCode per client and address). Why by code rather than by calling `VERSION()`: version 1 has no such
    function, and a call to a missing function is indistinguishable from any other revert without reason."""
    known = _VERSIONS.setdefault(client, {})
    key = address.lower()
    if key not in known:
        code = client.get_code(address)
        v1 = bytes.fromhex(load_artifact(1)["deployedBytecode"][2:])
        known[key] = 1 if code == v1 else CURRENT_VERSION
    return known[key]


def _answered(answer: Any) -> Any:
    """An answer of `SolarProperty.view_many`, raising the ContractReverted a call reverted with."""
    if isinstance(answer, ContractReverted):
        raise answer
    return answer


def _named(param: dict[str, Any], value: Any) -> Any:
    """An ABI-decoded value with its tuples as dicts by component name, arrays as lists, addresses checksummed
    (the forms web3 gives)."""
    kind = param["type"]
    if kind.endswith("]"):
        inner = {**param, "type": kind[:kind.rindex("[")]}
        return [_named(inner, v) for v in value]
    if kind.startswith("tuple"):
        return {c["name"]: _named(c, v) for c, v in zip(param["components"], value)}
    if kind == "address":
        return to_checksum_address(value)
    return value


def _event_signature(entry: dict[str, Any]) -> str:
    return f"{entry['name']}({','.join(_canonical_type(i) for i in entry['inputs'])})"


def _topics(entry: dict[str, Any], filters: dict[str, Any]) -> list[str | None]:
    """eth_getLogs topics of event `entry` with its indexed arguments in `filters` fixed (None: any value). A filter
    on an argument the event does not index is ArtifactError: the node cannot apply it, and ignoring it would
    return other holders' or systems' logs as if they matched."""
    indexed = [i for i in entry["inputs"] if i.get("indexed")]
    unknown = set(filters) - {i["name"] for i in indexed}
    if unknown:
        raise ArtifactError(f"SolarProperty event {entry['name']} has no indexed argument {', '.join(sorted(unknown))}")
    topics: list[str | None] = [codec.topic(_event_signature(entry))]
    for param in indexed:
        value = filters.get(param["name"])
        topics.append(None if value is None else "0x" + codec.encode([_canonical_type(param)], [value]).hex())
    while topics[-1] is None:
        topics.pop()
    return topics


def _hex_text(value: Any) -> str:
    """A log field as 0x hex text: JSON-RPC gives it so, web3's receipts as bytes (HexBytes)."""
    return value if isinstance(value, str) else "0x" + bytes(value).hex()


def _log_quantity(value: Any) -> int:
    """A log's block number or index: a 0x hex quantity from JSON-RPC, an int in web3's receipts."""
    return value if isinstance(value, int) else int(str(value), 16)


def _event_args(entry: dict[str, Any], item: dict[str, Any]) -> dict[str, Any]:
    """The arguments of one raw log of event `entry`, by name: indexed ones from the topics, the rest from the
    data. A log that does not decode is ArtifactError (not the event this SCB knows)."""
    indexed = [i for i in entry["inputs"] if i.get("indexed")]
    plain = [i for i in entry["inputs"] if not i.get("indexed")]
    topics = [_hex_text(t) for t in list(item.get("topics") or [])[1:]]
    try:
        if len(topics) != len(indexed):
            raise AbiError(f"{len(topics)} topics for {len(indexed)} indexed arguments")
        values = {p["name"]: codec.decode([_canonical_type(p)], bytes.fromhex(t[2:]))[0]
                  for p, t in zip(indexed, topics)}
        data = bytes.fromhex(_hex_text(item.get("data", "0x"))[2:])
        values.update(zip((p["name"] for p in plain), codec.decode([_canonical_type(p) for p in plain], data)))
    except (AbiError, ValueError) as exc:
        raise ArtifactError(f"a {entry['name']} log that does not decode as SolarProperty's ({exc})") from None
    return {p["name"]: _named(p, values[p["name"]]) for p in entry["inputs"]}


@dataclass(frozen=True)
class EventLog:
    """One log of a SolarProperty event, decoded: every argument by its ABI name (`systemId` included), addresses
    checksummed, tuples as dicts by component name; where it is on chain. What the typed events above are filled
    from, and what readers that take any artifact's arguments by name use (hub.ledger)."""

    name: str
    args: dict[str, Any]
    tx_hash: str  # 0x hex, lower case
    block_number: int
    log_index: int


def _event_log(entry: dict[str, Any], item: dict[str, Any]) -> EventLog:
    return EventLog(entry["name"], _event_args(entry, item), _hex_text(item.get("transactionHash", b"")).lower(),
                    _log_quantity(item.get("blockNumber", 0)), _log_quantity(item.get("logIndex", 0)))


def _typed(cls: type[T], event: EventLog) -> T:
    return _from_abi(cls, event.args, tx_hash=event.tx_hash, block_number=event.block_number)


def _logs_in(abi: list[dict[str, Any]], address: str, name: str, logs: Sequence[dict[str, Any]]) -> list[EventLog]:
    """The `name` events of the contract at `address` among `logs` (a receipt's, in JSON-RPC's or web3's form),
    decoded by `abi`; other contracts' logs and other events are skipped; none when `abi` lacks the event."""
    entry = _find_entry(abi, "event", name)
    if entry is None:
        return []
    topic0 = codec.topic(_event_signature(entry))
    return [_event_log(entry, item) for item in logs
            if str(item.get("address", "")).lower() == address.lower() and (item.get("topics") or [])
            and _hex_text(item["topics"][0]) == topic0]


def events_in(client: ChainClient, address: str, name: str, logs: Sequence[dict[str, Any]]) -> list[EventLog]:
    """The `name` events of the SolarProperty contract at `address` among a receipt's `logs`, of every system
    (decoded with the ABI of the contract's version): e.g. the SystemRegistered event that tells a registration's
    new system id."""
    return _logs_in(_checked_abi(contract_version(client, address)), to_checksum_address(address), name, logs)


# ------------------------------------------------------------------------------------------------ the facade


class SolarProperty:
    """System `system_id` of the SolarProperty contract at `address`, read and written through `client`.

    `block`: None reads each view at the latest block; a number pins every view and event query to that block
    (see `snapshot`).
    """

    def __init__(self, client: ChainClient, address: str, system_id: int, block: int | None = None,
                 version: int | None = None) -> None:
        self.client = client
        self.address = to_checksum_address(address)
        self.system_id = int(system_id)
        self.block = block
        _checked_abi(CURRENT_VERSION)  # an artifact this SCB cannot read is refused at start, before any I/O
        self._version = version
        self._functions_by_name: dict[str, dict[str, Any]] | None = None

    @property
    def version(self) -> int:
        """The contract's version (1 or 2), see `contract_version`: asked on first use (one eth_getCode per client
        and address), so that building a facade needs no node."""
        if self._version is None:
            self._version = contract_version(self.client, self.address)
        return self._version

    @property
    def _functions(self) -> dict[str, dict[str, Any]]:
        if self._functions_by_name is None:
            self._functions_by_name = {e["name"]: e for e in _checked_abi(self.version) if e.get("type") == "function"}
        return self._functions_by_name

    # -- snapshots --------------------------------------------------------------------------------------------
    def at(self, block: int) -> SolarProperty:
        """The same system, every read pinned to `block`."""
        return SolarProperty(self.client, self.address, self.system_id, int(block), self._version)

    def snapshot(self) -> SolarProperty:
        """Pinned to the node's current head: a consistent set of views (one `eth_blockNumber`)."""
        return self.at(self.client.block_number())

    @property
    def block_identifier(self) -> int | str:
        return self.block if self.block is not None else "latest"

    def block_timestamp(self) -> int:
        """The timestamp of the pinned block (or of the latest one)."""
        return self.client.block_timestamp(self.block_identifier)

    # -- views ------------------------------------------------------------------------------------------------
    def view(self, name: str, *args: Any) -> Any:
        """`eth_call` of view `name` at this facade's block, decoded by the ABI's output names: a dict for a
        struct or several outputs, the bare value for one unnamed output."""
        raw = self.client.eth_call(name, self._call_tx(name, args), self.block_identifier)
        return self._decode(name, raw)

    def _call_tx(self, name: str, args: Sequence[Any]) -> dict[str, str]:
        """The eth_call `{"to", "data"}` of view `name` with `args` (selector and arguments, settlement.abi)."""
        return self.transaction(name, *args).fields()

    def transaction(self, name: str, *args: Any) -> ContractCall:
        """Function `name` of this contract's version called with `args` (the system's id among them, as the ABI
        has it), to sign with `ChainClient.sign`."""
        return function_call(self._functions[name], self.address, args)

    def _decode(self, name: str, raw: bytes) -> Any:
        entry = self._functions[name]
        outputs = entry["outputs"]
        if not raw and outputs:
            if not self.client.has_code(self.address):
                raise NoContract(f"{name}: no contract code at {self.address} on chain {self.client.chain_id} "
                                 "(was the chain reset?)")
            raise ArtifactError(f"the contract at {self.address} answers {name} with nothing: not SolarProperty?")
        try:
            values = codec.decode([_canonical_type(o) for o in outputs], raw)
        except AbiError as exc:
            raise ArtifactError(f"the contract at {self.address} answers {name} in a form SolarProperty does not "
                                f"({type(exc).__name__})") from None
        if len(outputs) == 1:
            return _named(outputs[0], values[0])
        return {o["name"]: _named(o, v) for o, v in zip(outputs, values)}

    def system_info(self) -> SystemInfo:
        """Reverts UnknownSystem (ContractReverted) for a system that is not registered."""
        return _from_abi(SystemInfo, self.view("systemInfo", self.system_id))

    def period_info(self, period_id: int) -> PeriodInfo | None:
        """The settled period, or None when the chain holds no period `period_id` (PeriodNotSettled)."""
        try:
            return _from_abi(PeriodInfo, self.view("periodInfo", self.system_id, int(period_id)))
        except ContractReverted as exc:
            if exc.name == "PeriodNotSettled":
                return None
            raise

    def period_infos(self, period_ids: Sequence[int]) -> dict[int, PeriodInfo | None]:
        """`period_info` of each of `period_ids` (None: not on chain), the calls in JSON-RPC batches."""
        ids = [int(p) for p in period_ids]
        answers = self.view_many("periodInfo", [(self.system_id, p) for p in ids])
        out: dict[int, PeriodInfo | None] = {}
        for period_id, answer in zip(ids, answers):
            if isinstance(answer, ContractReverted) and answer.name == "PeriodNotSettled":
                out[period_id] = None
            else:
                out[period_id] = _from_abi(PeriodInfo, _answered(answer))
        return out

    def holder_list(self) -> list[HolderShare]:
        listed = self.view("holderList", self.system_id)
        return [HolderShare(a, int(s)) for a, s in zip(listed["accounts"], listed["sharesBps"])]

    def holder_info(self, account: str) -> HolderInfo:
        """Reverts NotHolder (ContractReverted) for an account that is not a holder of the system."""
        return _from_abi(HolderInfo, self.view("holderInfo", self.system_id, to_checksum_address(account)))

    def holders(self) -> list[HolderInfo]:
        """Every holder's full standing, in holder order, the `holderInfo` calls in one JSON-RPC batch. Pin the
        facade first (`snapshot`) so that the list and each holder's standing come from the same block."""
        answers = self.view_many("holderInfo", [(self.system_id, to_checksum_address(h.account))
                                                for h in self.holder_list()])
        return [_from_abi(HolderInfo, _answered(a)) for a in answers]

    def is_hub(self, account: str) -> bool:
        """Whether `account` holds the system's hub role (may settle it)."""
        role = self.view("hubRole", self.system_id)
        return bool(self.view("hasRole", role, to_checksum_address(account)))

    def verify_reading(self, period_id: int, digest: bytes, proof: Sequence[bytes]) -> bool:
        return bool(self.view("verifyReading", self.system_id, int(period_id), digest, list(proof)))

    def verify_readings(self, items: Sequence[tuple[int, bytes, Sequence[bytes]]]) -> list[bool]:
        """`verify_reading` of many `(period_id, digest, proof)` in JSON-RPC batches (ChainClient.call_many): what
        `scb verify` asks for a whole message at once. A revert raises, as `verify_reading` does."""
        answers = self.view_many("verifyReading", [(self.system_id, int(period_id), bytes(digest),
                                                    [bytes(p) for p in proof]) for period_id, digest, proof in items])
        return [bool(_answered(answer)) for answer in answers]

    def view_many(self, name: str, args_list: Sequence[Sequence[Any]]) -> list[Any]:
        """`view` of `name` for each argument list of `args_list`, in JSON-RPC batches (ChainClient.call_many) at
        this facade's block: one round trip instead of one per call. Each answer is decoded as `view` decodes it,
        or is the ContractReverted that call reverted with (a revert answers that call, not the others)."""
        block = self.block_identifier
        calls = [(name, self._call_tx(name, args), block) for args in args_list]
        return [answer if isinstance(answer, ContractReverted) else self._decode(name, bytes(answer))
                for answer in self.client.call_many(calls)]

    # -- events -----------------------------------------------------------------------------------------------
    def event_logs(self, name: str, filters: dict[str, Any] | None = None, from_block: int = 0,
                   to_block: int | None = None) -> list[EventLog]:
        """The system's `name` events, oldest first, decoded by the ABI of the contract's version: any event the
        ABI has, its arguments by name (`EventLog.args`); none when that ABI has no such event (a version-2 event
        on version 1: none was ever emitted). `filters`: indexed arguments by name (`{"holder": account}`), the
        system's id always among them. Read up to this facade's block, from the contract's deployment block on,
        in the chunks the provider accepts (ChainClient.scan_logs)."""
        entry = _find_entry(_checked_abi(self.version), "event", name)
        if entry is None:
            return []
        end: int | str = to_block if to_block is not None else self.block_identifier
        topics = _topics(entry, {"systemId": self.system_id, **(filters or {})})
        return [_event_log(entry, item) for item in self.client.scan_logs(name, self.address, topics, from_block, end)]

    def _events(self, name: str, cls: type[T], from_block: int, to_block: int | None,
                filters: dict[str, Any]) -> list[T]:
        return [_typed(cls, event) for event in self.event_logs(name, filters, from_block, to_block)]

    def settled_in(self, logs: Sequence[dict[str, Any]]) -> list[PeriodSettledEvent]:
        """The PeriodSettled events of this system among raw `logs` (a receipt's): others' logs are ignored."""
        return [_typed(PeriodSettledEvent, event)
                for event in _logs_in(_checked_abi(self.version), self.address, "PeriodSettled", logs)
                if event.args["systemId"] == self.system_id]

    def period_settled_events(self, period_id: int | None = None, from_block: int = 0) -> list[PeriodSettledEvent]:
        """PeriodSettled events of the system (of one period when `period_id` is given), oldest first."""
        filters = {"periodId": int(period_id)} if period_id is not None else {}
        return self._events("PeriodSettled", PeriodSettledEvent, from_block, None, filters)

    def repossessed_events(self, from_block: int, to_block: int | None = None,
                           holder: str | None = None) -> list[RepossessedEvent]:
        """Repossessed events of the system (of one holder's share when `holder` is given), oldest first."""
        filters = {"holder": to_checksum_address(holder)} if holder is not None else {}
        return self._events("Repossessed", RepossessedEvent, from_block, to_block, filters)

    def billed_events(self, period_id: int, from_block: int = 0) -> list[BilledEvent]:
        """Billed events of period `period_id`, oldest first (a corrected period has one per settlement)."""
        return self._events("Billed", BilledEvent, from_block, None, {"periodId": int(period_id)})

    def period_cancelled_events(self, from_block: int = 0, to_block: int | None = None) -> list[PeriodCancelledEvent]:
        """PeriodCancelled events of the system, oldest first (none on a version-1 contract)."""
        return self._events("PeriodCancelled", PeriodCancelledEvent, from_block, to_block, {})

    def registration(self) -> SystemRegisteredEvent | None:
        """The SystemRegistered event (the MAM channel root in clear: the contract stores only its hash)."""
        found = self._events("SystemRegistered", SystemRegisteredEvent, 0, None, {})
        return found[0] if found else None

    # -- transactions (built here, signed and sent by the client) ---------------------------------------------
    def settle_call(self, period_id: int, start: int, end: int, readings_root: bytes, mam_root: str,
                    reading_count: int, generation_wh: int, consumption_wh: Sequence[int]) -> Any:
        """The `settle` call of one period, to sign with `ChainClient.sign`."""
        return self.transaction("settle", self.system_id, int(period_id), int(start), int(end), bytes(readings_root),
                                mam_root, int(reading_count), int(generation_wh), [int(c) for c in consumption_wh])

    def _require_v2(self, what: str) -> None:
        if self.version < 2:
            raise ArtifactError(f"{what} needs SolarProperty version 2; the contract at {self.address} is version "
                                f"{self.version} (docs/contract.md: moving a community to version 2)")

    def cancel_period_call(self, period_id: int) -> Any:
        """The approver's `cancelPeriod` of a settled period, with the bills of its latest settlement (its Billed
        event, which the contract checks against the hash it stored), to sign with `ChainClient.sign`."""
        self._require_v2("cancelling a period")
        billed = self.billed_events(period_id)
        if not billed:
            raise ContractReverted("cancelPeriod", "PeriodNotSettled", (self.system_id, int(period_id)))
        latest = billed[-1]
        return self.transaction("cancelPeriod", self.system_id, int(period_id), list(latest.amounts_wei),
                                list(latest.unpaid_wei))

    def assign_share_call(self, holder: str, share_bps: int, peak_power_w: int) -> Any:
        """The approver's `assignShare`: `share_bps` of the grid portion to the new holder `holder`."""
        self._require_v2("assigning a share")
        return self.transaction("assignShare", self.system_id, to_checksum_address(holder), int(share_bps),
                                int(peak_power_w))

    def set_beneficiary_call(self, beneficiary: str) -> Any:
        """`setBeneficiary` (by the beneficiary or an approver): future revenue goes to `beneficiary`."""
        self._require_v2("handing over the beneficiary role")
        return self.transaction("setBeneficiary", self.system_id, to_checksum_address(beneficiary))


def register_system_call(contract: str, *, hub: str, beneficiary: str, price_per_kwh_wei: int, total_value_wei: int,
                         grace_period_s: int, peak_power_w: int, repossession_fee_bps: int, mam_channel_root: str,
                         holders: Sequence[str], shares_bps: Sequence[int],
                         holder_peaks_w: Sequence[int]) -> ContractCall:
    """The approver's `registerSystem` call on the version-2 contract at `contract`, to sign and send."""
    terms = (to_checksum_address(hub), to_checksum_address(beneficiary), int(price_per_kwh_wei), int(total_value_wei),
             int(grace_period_s), int(peak_power_w), int(repossession_fee_bps))
    entry = _find_entry(_checked_abi(CURRENT_VERSION), "function", "registerSystem")
    if entry is None:
        raise ArtifactError("the SolarProperty artifact has no registerSystem function")
    return function_call(entry, contract, (terms, mam_channel_root, [to_checksum_address(h) for h in holders],
                                           [int(x) for x in shares_bps], [int(x) for x in holder_peaks_w]))


def function_call(entry: dict[str, Any], address: str, args: Sequence[Any]) -> ContractCall:
    """The call of the ABI function `entry` on `address` with `args`: its selector and ABI-encoded arguments
    (settlement.abi). Arguments that do not fit the ABI are the artifact's or the caller's fault: ArtifactError."""
    types = [_canonical_type(i) for i in entry["inputs"]]
    name = entry["name"]
    try:
        encoded = codec.encode(types, list(args))
    except AbiError as exc:
        raise ArtifactError(f"SolarProperty.{name}: {exc}") from None
    return ContractCall(name, address, codec.selector(f"{name}({','.join(types)})") + encoded)

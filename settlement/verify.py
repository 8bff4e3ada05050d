"""Verification of readings end to end: tangle message -> signature -> channel -> leaf -> Merkle proof -> chain.

Two entry points, one list of steps and one verdict each:

`verify_address(ADDRESS)` (``scb verify ADDRESS``)
  1. root: which MAM root the message at ADDRESS was signed under (--root, else the hub's database, else found by
     walking the system's channel from the root the contract holds);
  2. fetch: the bundle(s) at the address from the node, or the hub's archive when the node has pruned them;
  3. signature: the MAM v0 signature against the root (done while parsing; bundles that fail are listed);
  4. message: the readings message decodes and every reading in it is in canonical form;
  5. chain: the RPC serves a chain with the contract and the system;
  6. channel: the message belongs to the system's channel (walk nextRoot from the period's MAM root, which is
     anchored on chain, until the message's root);
  7. per reading: its leaf (keccak256 of its canonical bytes), its period (the proof stored on the hub), the
     Merkle proof checked locally against the on-chain root, and with the contract's `verifyReading`.

`verify_proof_file(proof.json)` (``scb verify --proof``): the same from a self-contained proof file, with nothing
but an RPC endpoint: file format, reading bytes against the digest, the file's Merkle leaf against the digest, the
MAM message (when the side key is given), the chain id, the period on chain, the settlement transaction, the root,
the proof locally and on chain.

Verdicts: VALID (exit 0), INVALID (exit 1: something does not match; the failing step says what), CANNOT_CHECK
(exit 2: a node or the chain unreachable, an unknown address, a reading not settled yet).
"""
from __future__ import annotations

import json
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

from energy_manager.message import ReadingsMessage, decode_message
from energy_manager.reading import Reading, ReadingError, encode_json, parse_canonical, parse_digest, reading_digest
from mam_client.crypto.trits import is_trytes, trytes_to_ascii
from mam_client.fetch import Archive, BundleSource, fetch_at, fetch_chain
from mam_client.mam import InvalidInput, InvalidMessage, decode_address, parse_message
from settlement.abi import AbiError, keccak, to_checksum_address
from settlement.chain import ChainClient, ContractReverted
from settlement.merkle import MerkleError, build_reading_tree, process_proof, reading_leaf, reading_proof, to_hex
from settlement.solar_property import PeriodInfo, PeriodSettledEvent, SolarProperty
from scb.errors import ChainRefused, ChainUnavailable, ConfigError, Interrupted, TransportError

VALID, INVALID, CANNOT_CHECK = 0, 1, 2
VERDICT_NAMES = {VALID: "VALID", INVALID: "INVALID", CANNOT_CHECK: "COULD NOT CHECK"}
PROOF_FORMAT = "scb-reading-proof"
PROOF_VERSION = 1
#: messages walked at most when looking for an address or a message in the channel
MAX_WALK = 20_000


@dataclass
class Step:
    name: str
    ok: bool | None  # None: informational or skipped
    detail: str

    def to_json(self) -> dict[str, Any]:
        return {"step": self.name, "ok": self.ok, "detail": self.detail}


@dataclass
class Report:
    """Every step with its result, and the verdict."""

    subject: str
    steps: list[Step] = field(default_factory=list)
    verdict: int = VALID
    reason: str = ""

    def ok(self, name: str, detail: str) -> None:
        self.steps.append(Step(name, True, detail))

    def info(self, name: str, detail: str) -> None:
        self.steps.append(Step(name, None, detail))

    def fail(self, name: str, detail: str) -> VerificationEnded:
        self.steps.append(Step(name, False, detail))
        return VerificationEnded(INVALID, f"{name}: {detail}")

    def cannot(self, name: str, detail: str) -> VerificationEnded:
        self.steps.append(Step(name, False, detail))
        return VerificationEnded(CANNOT_CHECK, f"{name}: {detail}")

    def to_json(self) -> dict[str, Any]:
        return {"subject": self.subject, "verdict": VERDICT_NAMES[self.verdict], "exit_code": self.verdict,
                "reason": self.reason, "steps": [s.to_json() for s in self.steps]}

    def text(self) -> str:
        marks = {True: "ok  ", False: "FAIL", None: "--  "}
        lines = [f"verifying {self.subject}"]
        lines += [f"  [{marks[s.ok]}] {s.name}: {s.detail}" for s in self.steps]
        verdict = VERDICT_NAMES[self.verdict]
        lines.append(f"verdict: {verdict}" + (f" ({self.reason})" if self.reason else ""))
        return "\n".join(lines)


class VerificationEnded(Interrupted):
    """Ends a verification with a verdict (raised by Report.fail / Report.cannot)."""

    def __init__(self, verdict: int, reason: str) -> None:
        super().__init__(reason)
        self.verdict = verdict
        self.reason = reason


def _run(report: Report, body: Callable[[], None]) -> Report:
    try:
        body()
    except VerificationEnded as stop:
        report.verdict, report.reason = stop.verdict, stop.reason
    except TransportError as exc:  # the node or the chain unreachable
        report.steps.append(Step("network", False, str(exc)))
        report.verdict, report.reason = CANNOT_CHECK, str(exc)
    except ChainRefused as exc:  # a view reverted unexpectedly, or the contract is gone: nothing proven either way
        report.steps.append(Step("chain", False, str(exc)))
        report.verdict, report.reason = CANNOT_CHECK, str(exc)
    except ConfigError as exc:
        report.steps.append(Step("setup", False, str(exc)))
        report.verdict, report.reason = CANNOT_CHECK, str(exc)
    return report


# ---------------------------------------------------------------------------------------------------- the chain


@dataclass
class ChainView:
    """What verification reads from the chain about one system (views and events only).

    `check()` pins the block (settlement.solar_property): every view and event read afterwards comes from that
    block, so the verdict is about one state of the chain.
    """

    client: ChainClient
    contract_address: str
    system_id: int

    def __post_init__(self) -> None:
        self.chain = SolarProperty(self.client, self.contract_address, self.system_id)
        self._settled: dict[int, PeriodSettledEvent] | None = None
        self._periods: dict[int, PeriodInfo | None] = {}
        #: (period id, digest, proof) -> the contract's verifyReading answer, asked in one batch (`prefetch`)
        self._verified: dict[tuple[int, bytes, tuple[bytes, ...]], bool] = {}

    def check(self, report: Report, expected_chain: int | None = None) -> None:
        chain_id = self.client.chain_id
        if expected_chain is not None and expected_chain != chain_id:
            raise report.fail("chain", f"the proof is anchored on chain {expected_chain}, but the RPC endpoint "
                                       f"serves chain {chain_id}")
        if not self.client.has_code(self.contract_address):
            raise report.fail("chain", f"no contract at {self.contract_address} on chain {chain_id}")
        self.chain = self.chain.snapshot()
        self._periods.clear()
        self._verified.clear()
        try:
            self.chain.system_info()
        except ContractReverted as exc:
            raise report.fail("chain", f"contract {self.contract_address}: {exc}") from None
        report.ok("chain", f"chain {chain_id}, SolarProperty at {self.contract_address}, system {self.system_id} "
                           f"(read at block {self.chain.block})")

    def period(self, period_id: int) -> PeriodInfo | None:
        """The period at the pinned block: asked once per period (a message's readings share one or two)."""
        if period_id not in self._periods:
            self._periods[period_id] = self.chain.period_info(period_id)
        return self._periods[period_id]

    def settled_events(self) -> dict[int, PeriodSettledEvent]:
        """period id -> its PeriodSettled event (the MAM root string is only in the event)."""
        if self._settled is None:
            self._settled = {e.period_id: e for e in self.chain.period_settled_events()}
        return self._settled

    def channel_root(self) -> str | None:
        registration = self.chain.registration()
        return registration.mam_channel_root if registration is not None else None

    def prefetch(self, items: Iterable[tuple[int, bytes, list[bytes]]]) -> None:
        """Ask the contract's verifyReading for all `items` in one JSON-RPC batch, so that `verify_reading` answers
        from memory. Why best effort: the checks that come first decide the verdict and its reason; a batch that
        reverts (a period not on chain, say) is left to the single call at its place in the steps."""
        keys = list(dict.fromkeys((int(p), bytes(d), tuple(proof)) for p, d, proof in items))
        if not keys:
            return
        try:
            answers = self.chain.verify_readings([(p, d, list(proof)) for p, d, proof in keys])
        except ContractReverted:
            return
        self._verified.update(zip(keys, answers))

    def verify_reading(self, period_id: int, digest: bytes, proof: list[bytes]) -> bool:
        known = self._verified.get((int(period_id), bytes(digest), tuple(proof)))
        return known if known is not None else self.chain.verify_reading(period_id, digest, proof)


def check_proof(report: Report, chain: ChainView, label: str, period_id: int, digest: bytes, proof: list[bytes],
                onchain_root: str) -> None:
    """The Merkle proof of one reading digest: locally, then with the contract."""
    computed = process_proof(reading_leaf(digest), proof)
    if to_hex(computed) != onchain_root:
        raise report.fail(f"{label} proof", f"the proof leads to {to_hex(computed)}, but period {period_id}'s root "
                                            f"on chain is {onchain_root}")
    report.ok(f"{label} proof", f"{len(proof)} sibling hashes lead to period {period_id}'s on-chain root")
    if not chain.verify_reading(period_id, digest, proof):
        raise report.fail(f"{label} verifyReading", f"the contract rejects the proof for period {period_id}")
    report.ok(f"{label} verifyReading", f"the contract accepts it (period {period_id})")


# ------------------------------------------------------------------------------------------------ by address


@dataclass(frozen=True)
class ReadingKey:
    """A message's reading as the hub's records find it: by its time, then (hub, meter, seq), its unique key, and
    then its digest. Why not by digest, or by (hub, meter, seq) alone: an index of random digests, or one that
    leads with the meter, takes a sample's readings at a page per reading or per meter, and at 1,000 meters each
    cost more disk writes than the readings themselves (issue 16); readings are indexed by time anyway."""

    digest: str  # 64 lowercase hex digits
    hub: str
    meter: str
    seq: int
    ts_ms: int


@dataclass
class HubRecord:
    """What the hub's database knows about one reading (None fields: unknown)."""

    reading_id: int
    period_id: int | None
    proof: list[bytes] | None
    late: bool


@dataclass
class AddressContext:
    """Everything `verify_address` needs; the CLI fills it from flags, configuration and the hub's database."""

    transport: BundleSource | None
    archive: Archive | None
    mode: str
    side_key: str | None
    chain: ChainView
    root: str | None = None  # --root
    root_lookup: Callable[[str], str | None] | None = None  # address -> root from the hub's database
    root_source: str = "the hub's database"  # where root_lookup looks, as the report names it (e.g. "the fleet")
    #: digest hex -> hub record, for all of a message's readings at once (the hub's database answers in one query)
    readings_lookup: Callable[[list[ReadingKey]], dict[str, HubRecord | None]] | None = None


def _find_root_by_walk(report: Report, ctx: AddressContext, address: str) -> str:
    start = ctx.chain.channel_root()
    if start is None:
        raise report.cannot("root", f"system {ctx.chain.system_id} has no SystemRegistered event on chain")
    walked = 0
    for message in fetch_chain(ctx.transport, start, ctx.mode, ctx.side_key, ctx.archive):
        walked += 1
        if message.address == address:
            report.ok("root", f"found by walking the system's channel from its registered root ({walked} messages)")
            return message.root
        if walked >= MAX_WALK:
            break
    raise report.cannot("root", f"address {address} is not among the {walked} messages of the system's channel "
                                "(unknown address; give --root if it belongs elsewhere)")


def verify_address(address: str, ctx: AddressContext) -> Report:
    """Verify every reading of the MAM message at `address` (see the module docstring for the steps)."""
    report = Report(f"address {address}")

    def body() -> None:
        if not is_trytes(address, 81):
            raise report.cannot("address", "an address is 81 trytes (A-Z, 9)")
        if ctx.mode == "restricted" and ctx.side_key is None:
            raise report.cannot("side key", "the channel is restricted: give --side-key-file")
        root, how = ctx.root, "given with --root"
        if root is None and ctx.root_lookup is not None:
            root, how = ctx.root_lookup(address), f"from {ctx.root_source}"
        if root is None:
            root = _find_root_by_walk(report, ctx, address)
        else:
            try:
                derived = decode_address(root, ctx.mode)
            except InvalidInput as exc:
                raise report.cannot("root", str(exc)) from None
            if derived != address:
                raise report.fail("root", f"root {root} belongs to address {derived}, not {address}")
            report.ok("root", f"{root} ({how})")
        messages, skipped = fetch_at(ctx.transport, root, ctx.mode, ctx.side_key, ctx.archive)
        for item in skipped:
            report.info("fetch", f"skipped bundle {item.bundle_hash or '(archive)'}: {item.reason}")
        if not messages:
            if skipped:
                raise report.fail("signature", "no bundle at the address carries a message signed under the root "
                                               f"({skipped[0].reason})")
            raise report.cannot("fetch", "no message at the address on the node nor in the hub's archive")
        message = messages[0]
        source = ("the tangle node" if message.source == "node"
                  else "the hub's archive (the node no longer has it: pruned or unreachable)")
        report.ok("fetch", f"message read from {source}" + (f", bundle {message.bundle_hash}"
                                                            if message.bundle_hash else ""))
        report.ok("signature", "MAM signature valid for the root; next root " + message.next_root)
        try:
            decoded = decode_message(trytes_to_ascii(message.message))
        except (ReadingError, ValueError) as exc:
            raise report.fail("message", f"not a valid readings message: {exc}") from None
        report.ok("message", f"{len(decoded.readings)} readings of hub {decoded.hub}, window "
                             f"{decoded.window_start_ms}..{decoded.window_end_ms} (part {decoded.part}/{decoded.parts})")
        ctx.chain.check(report)
        _check_readings(report, ctx, root, decoded)

    return _run(report, body)


def _check_membership(report: Report, ctx: AddressContext, root: str, period_id: int, event: PeriodSettledEvent,
                      onchain: PeriodInfo) -> None:
    mam_root = event.mam_root
    if keccak(mam_root.encode("utf-8")) != onchain.mam_root_hash:
        raise report.fail("channel", f"period {period_id}'s MAM root in its event does not match the hash on chain")
    walked = 0
    for message in fetch_chain(ctx.transport, mam_root, ctx.mode, ctx.side_key, ctx.archive):
        walked += 1
        if message.root == root:
            report.ok("channel", f"in the channel: reached by following nextRoot from period {period_id}'s "
                                 f"anchored MAM root ({walked} message{'s' if walked != 1 else ''})")
            return
        if walked >= MAX_WALK:
            break
    raise report.fail("channel", f"the message is not reachable from period {period_id}'s anchored MAM root "
                                 f"{mam_root} (walked {walked} messages)")


def _check_readings(report: Report, ctx: AddressContext, root: str, decoded: ReadingsMessage) -> None:
    events = ctx.chain.settled_events()
    member_checked = False
    rebuilt: dict[int, Any] = {}
    digests = [reading_digest(encode_json(reading.as_dict())) for reading in decoded.readings]
    keys = [ReadingKey(d.hex(), r.hub, r.meter, r.seq, r.ts_ms) for r, d in zip(decoded.readings, digests)]
    by_hex = ctx.readings_lookup(keys) if ctx.readings_lookup is not None else {}
    records = {d: by_hex.get(d.hex()) for d in digests}
    # every reading's verifyReading in one batch instead of one eth_call each (issue 16)
    ctx.chain.prefetch((r.period_id, d, r.proof) for d, r in records.items()
                       if r is not None and r.period_id is not None and r.proof is not None)
    for reading, digest in zip(decoded.readings, digests):
        label = f"{reading.meter}#{reading.seq}"
        report.ok(f"{label} leaf", f"digest 0x{digest.hex()} (keccak256 of its canonical bytes)")
        record = records.get(digest)
        if record is not None and record.period_id is None:
            raise report.cannot(f"{label} period", "not settled yet (its period is still open, or "
                                                   "within its lateness window)")
        if record is None or record.proof is None:
            record = _rebuild_proof(report, ctx, label, reading, digest, events, rebuilt)
        period_id = record.period_id
        onchain = ctx.chain.period(period_id)
        if onchain is None or period_id not in events:
            raise report.fail(f"{label} period", f"period {period_id} is not settled on chain")
        ts_s = reading.ts_ms // 1000
        where = ("inside it" if onchain.start <= ts_s < onchain.end
                 else "a late reading anchored after its own period" if record.late else "OUTSIDE its range")
        if where == "OUTSIDE its range":
            raise report.fail(f"{label} period", f"the reading's time {ts_s} lies outside period {period_id} "
                                                 f"[{onchain.start}, {onchain.end})")
        report.ok(f"{label} period", f"period {period_id} [{onchain.start}, {onchain.end}), {where}")
        if not member_checked:
            _check_membership(report, ctx, root, period_id, events[period_id], onchain)
            member_checked = True
        check_proof(report, ctx.chain, label, period_id, digest, record.proof, onchain.readings_root_hex)


def _rebuild_proof(report: Report, ctx: AddressContext, label: str, reading: Reading, digest: bytes,
                   events: dict[int, PeriodSettledEvent], cache: dict[int, Any]) -> HubRecord:
    """Without the hub's database: rebuild the tree of the reading's period from the tangle.

    Walks the channel from the period's anchored MAM root, collects every reading whose time lies in the period,
    until the first message of a later window once the on-chain count is reached (or the channel ends), and
    rebuilds the tree. It matches the on-chain root unless the period also anchored late readings of earlier
    periods; then only the hub (or a proof file) has the proof.
    """
    ts_s = reading.ts_ms // 1000
    period_id = next((pid for pid, e in sorted(events.items()) if e.start <= ts_s < e.end), None)
    if period_id is None:
        raise report.cannot(f"{label} period", "no settled period covers the reading's time (not settled yet)")
    if period_id not in cache:
        event = events[period_id]
        onchain = ctx.chain.period(period_id)
        digests: list[bytes] = []
        walked = 0
        for message in fetch_chain(ctx.transport, event.mam_root, ctx.mode, ctx.side_key, ctx.archive):
            walked += 1
            try:
                decoded = decode_message(trytes_to_ascii(message.message))
            except (ReadingError, ValueError):
                continue
            if decoded.window_start_ms >= event.end * 1000 and onchain and len(digests) >= onchain.reading_count:
                break
            digests += [reading_digest(encode_json(r.as_dict())) for r in decoded.readings
                        if event.start * 1000 <= r.ts_ms < event.end * 1000]
            if walked >= MAX_WALK:
                break
        tree = build_reading_tree(digests) if digests else None
        cache[period_id] = tree if tree is not None and to_hex(tree.root) == event.readings_root_hex else None
        if cache[period_id] is not None:
            report.info(f"period {period_id} tree", f"rebuilt from {len(digests)} readings on the tangle "
                                                    f"({walked} messages): it matches the on-chain root")
    tree = cache[period_id]
    if tree is None:
        raise report.cannot(f"{label} period", f"the readings of period {period_id} on the tangle do not rebuild "
                                               "its root (it also anchors late readings): use a proof file from "
                                               "the hub (`scb proof export`)")
    try:
        return HubRecord(-1, period_id, reading_proof(tree, digest), False)
    except MerkleError:
        raise report.fail(f"{label} period", f"the reading is not among the readings of period {period_id} on "
                                             "the tangle") from None


# ------------------------------------------------------------------------------------------------- proof files


def _field(report: Report, data: Any, path: str, kind: type | tuple[type, ...]) -> Any:
    node = data
    for part in path.split("."):
        if not isinstance(node, dict) or part not in node:
            raise report.cannot("proof file", f"missing field {path}")
        node = node[part]
    if not isinstance(node, kind) or isinstance(node, bool) and kind is int:
        raise report.cannot("proof file", f"field {path} has the wrong type")
    return node


def verify_proof_file(data: Any, chain_for: Callable[[str, int], ChainView], side_key: str | None = None) -> Report:
    """Verify a proof file's content (parsed JSON). `chain_for(contract, system_id)` opens the chain view."""
    report = Report("proof file")

    def body() -> None:
        if not isinstance(data, dict) or data.get("format") != PROOF_FORMAT:
            raise report.cannot("proof file", f"not an SCB proof file (format {PROOF_FORMAT!r} expected)")
        version = data.get("version")
        if version != PROOF_VERSION:
            raise report.cannot("proof file", f"proof file version {version!r} is not supported (this SCB reads "
                                              f"version {PROOF_VERSION})")
        canonical = _field(report, data, "reading.canonical", str).encode("ascii", "replace")
        digest_text = _field(report, data, "reading.digest", str)
        proof_hex = _field(report, data, "merkle.proof", list)
        leaf_text = _field(report, data, "merkle.leaf", str)
        leaf_encoding = _field(report, data, "merkle.leaf_encoding", list)
        claimed_root = _field(report, data, "merkle.root", str)
        chain_id = _field(report, data, "chain.chain_id", int)
        contract = _field(report, data, "chain.contract", str)
        system_id = _field(report, data, "chain.system_id", int)
        period_id = _field(report, data, "chain.period_id", int)
        tx_hash = _field(report, data, "chain.tx_hash", str)
        try:
            proof = [parse_digest(p) for p in proof_hex]
            digest = parse_digest(digest_text)
            leaf = parse_digest(leaf_text)
            contract = to_checksum_address(contract)
        except (ReadingError, AbiError, ValueError, TypeError) as exc:
            raise report.cannot("proof file", f"malformed field: {exc}") from None
        report.ok("proof file", f"{PROOF_FORMAT} version {version}: period {period_id} of system {system_id} on "
                                f"chain {chain_id}")
        try:
            reading = parse_canonical(canonical)
        except ReadingError as exc:
            raise report.fail("reading", f"the reading is not a valid canonical reading: {exc}") from None
        actual = reading_digest(canonical)
        if actual != digest:
            raise report.fail("reading", f"the reading's bytes hash to 0x{actual.hex()}, not to the digest "
                                         f"0x{digest.hex()} the proof is for (the reading was altered)")
        report.ok("reading", f"{reading.meter}#{reading.seq} at {reading.ts_ms}: canonical, digest 0x{digest.hex()}")
        _check_leaf(report, digest, leaf, leaf_encoding)
        _check_file_mam(report, data, reading, side_key)
        chain = chain_for(contract, system_id)
        chain.check(report, expected_chain=chain_id)
        onchain = chain.period(period_id)
        if onchain is None:
            raise report.fail("period", f"period {period_id} of system {system_id} is not settled on this contract")
        report.ok("period", f"period {period_id} [{onchain.start}, {onchain.end}) settled at "
                            f"{onchain.settled_at} with {onchain.reading_count} readings")
        _check_transaction(report, chain, tx_hash, period_id, onchain)
        if claimed_root.lower() != onchain.readings_root_hex:
            raise report.fail("root", f"the file's root {claimed_root} is not period {period_id}'s root on chain "
                                      f"({onchain.readings_root_hex})")
        report.ok("root", f"the file's root is period {period_id}'s root on chain")
        check_proof(report, chain, "merkle", period_id, digest, proof, onchain.readings_root_hex)

    return _run(report, body)


def _check_leaf(report: Report, digest: bytes, leaf: bytes, encoding: list[Any]) -> None:
    """The file's `merkle.leaf` is the leaf of its digest. Why check a field the proof is not computed from: the
    leaf is what other tools (OpenZeppelin's StandardMerkleTree, tests/js/golden_proof.js) check the path with, so
    a file whose leaf disagrees with its digest proves different things to different verifiers; it is refused."""
    if encoding != ["bytes32"]:
        raise report.cannot("leaf", f"leaf encoding {encoding!r} is not supported (SCB's leaves are one bytes32 "
                                    "digest)")
    expected = reading_leaf(digest)
    if leaf != expected:
        raise report.fail("leaf", f"the file's leaf {to_hex(leaf)} is not the leaf of its digest ({to_hex(expected)}):"
                                  " the file was altered")
    report.ok("leaf", f"{to_hex(expected)}: the StandardMerkleTree leaf of the digest")


def _check_file_mam(report: Report, data: dict[str, Any], reading: Reading, side_key: str | None) -> None:
    mam = data.get("mam")
    if not isinstance(mam, dict) or not all(isinstance(mam.get(k), str) for k in ("root", "address", "payload",
                                                                                 "mode")):
        report.info("MAM message", "the file carries no MAM message: skipped")
        return
    if mam["mode"] == "restricted" and side_key is None:
        report.info("MAM message", "restricted channel and no --side-key-file: signature not checked")
        return
    try:
        if decode_address(mam["root"], mam["mode"]) != mam["address"]:
            raise report.fail("MAM message", f"the root does not belong to the address {mam['address']}")
        parsed = parse_message(mam["payload"], mam["root"], side_key if mam["mode"] == "restricted" else None)
    except InvalidInput as exc:
        raise report.fail("MAM message", f"malformed MAM fields: {exc}") from None
    except InvalidMessage as exc:
        raise report.fail("MAM message", f"the MAM payload fails its check against the root: {exc}") from None
    try:
        decoded = decode_message(trytes_to_ascii(parsed.message))
    except (ReadingError, ValueError) as exc:
        raise report.fail("MAM message", f"not a valid readings message: {exc}") from None
    if reading not in decoded.readings:
        raise report.fail("MAM message", "the signed message does not contain this reading")
    report.ok("MAM message", f"signature valid for root {mam['root']}; the message carries the reading")


def _check_transaction(report: Report, chain: ChainView, tx_hash: str, period_id: int,
                       onchain: PeriodInfo) -> None:
    receipt = chain.client.rpc("eth_getTransactionReceipt", [tx_hash])
    if receipt is None:
        raise report.fail("transaction", f"transaction {tx_hash} is not on this chain")
    if not isinstance(receipt, dict) or not isinstance(receipt.get("logs"), list):
        raise ChainUnavailable(f"eth_getTransactionReceipt {tx_hash}: the node answered something else than a "
                               "receipt")
    mine = chain.chain.settled_in(receipt["logs"])
    if not mine:
        raise report.fail("transaction", f"transaction {tx_hash} settled no period of system {chain.system_id}")
    settled = mine[0].period_id
    if settled != period_id:
        raise report.fail("transaction", f"transaction {tx_hash} settled period {settled}, not period {period_id}")
    report.ok("transaction", f"{tx_hash} settled period {period_id} in block {mine[0].block_number}")


# ----------------------------------------------------------------------------------------------- proof export


def build_proof_file(*, reading_id: int, canonical: bytes, digest: str, proof: Iterable[bytes], root: str,
                     late: bool, chain_id: int, contract: str, system_id: int, period_id: int, start_s: int,
                     end_s: int, tx_hash: str | None, block_number: int | None, channel_root: str, mode: str,
                     mam_root: str | None, address: str | None, payload: str | None, bundle_hash: str | None,
                     period_mam_root: str) -> dict[str, Any]:
    """The versioned, self-contained proof of one reading (docs/settlement.md "Proof files")."""
    return {
        "format": PROOF_FORMAT,
        "version": PROOF_VERSION,
        "reading": {"id": reading_id, "canonical": bytes(canonical).decode("ascii"),
                    "digest": "0x" + parse_digest(digest).hex()},
        "mam": {"mode": mode, "channel_root": channel_root, "root": mam_root, "address": address,
                "payload": payload, "bundle_hash": bundle_hash, "period_mam_root": period_mam_root},
        "merkle": {"leaf_encoding": ["bytes32"], "leaf": to_hex(reading_leaf(parse_digest(digest))),
                   "proof": [to_hex(p) for p in proof], "root": root, "late": late},
        "chain": {"chain_id": chain_id, "contract": contract, "system_id": system_id, "period_id": period_id,
                  "start": start_s, "end": end_s, "tx_hash": tx_hash, "block_number": block_number},
    }


def dumps(data: dict[str, Any]) -> str:
    return json.dumps(data, indent=2, sort_keys=False) + "\n"


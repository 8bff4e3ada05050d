"""The one exception tree of SCB.

Every exception class of the project sits in this tree, so a caller catches at the level it can act on:
retry (a peer or the database is down), give up on this input (it is wrong and will stay wrong), wait on a
slow schedule (a peer understood and said no), or fix the configuration and restart.

    ScbError                        anything SCB raises on purpose; carries a process exit code
    ├── ConfigError                 the configuration or installation cannot be used  -> fix it, restart; never retried
    │   ├── UsageError              a command was asked for something it cannot do (flags, arguments)
    │   ├── SecretFileError         a seed / key / keystore / token file missing, unreadable or too open
    │   ├── AlreadyRunning          another process holds this data directory's lock       (scb.files)
    │   ├── SchemaError             the database was migrated by a newer SCB              (scb.migrate)
    │   └── ArtifactError           the compiled contract is missing or broken  (settlement.contract_artifact)
    ├── DataError                   input that is wrong and will stay wrong                 -> never retry
    │   ├── JsonTooDeep             JSON nested deeper than the parsers allow             (scb.safejson)
    │   ├── BadRequest              an HTTP request one of our servers refuses (4xx, JSON error)
    │   ├── MamError                the MAM codec                                   (mam_client.mam.errors)
    │   │   ├── InvalidInput, InvalidChannel
    │   │   └── InvalidMessage → InvalidPayload, WrongKeyOrRoot, SignatureMismatch
    │   ├── TransactionFormatError  a transaction's trytes                   (mam_client.node.transaction)
    │   ├── BundleRejected, TooManyResults                                        (mam_client.node.store)
    │   ├── ReadingError, LineError, ClockBackwards           (energy_manager.reading, .emontx, .registers)
    │   ├── MessageError            an MQTT meter's message that gives no values (energy_manager.drivers.mqtt)
    │   ├── BadValue, NotSunSpec, AddressRefused   a Modbus register or chain  (energy_manager.modbus.*)
    │   ├── PollError               one poll of a Modbus unit gave bad input    (energy_manager.drivers.modbus)
    │   ├── BatchError, SignatureError  a fleet upload malformed / not signed by its hub  (hub.fleet.protocol)
    │   ├── MerkleError             a tree or proof that does not hold                  (settlement.merkle)
    │   └── AbiError                data that is not the ABI encoding of its types          (settlement.abi)
    ├── Refused                     a peer understood the request and said no   -> retry only on a slow schedule
    │   ├── NodeRefused             the IOTA node rejected a request (HTTP 4xx with its reason)
    │   ├── FleetRefused            the fleet server refused an upload or a query (4xx)     (hub.fleet.client)
    │   └── ChainRefused            the chain or the contract refused
    │       ├── RpcError            a JSON-RPC error answer, with its code and data            (settlement.rpc)
    │       ├── ContractReverted    a call or transaction reverted, with the decoded error  (settlement.chain)
    │       ├── NoContract          no contract code at the address (a reset chain)        (settlement.chain)
    │       ├── FeeAboveCap         the chain asks more than [ethereum] max_fee_gwei: wait    (settlement.fees)
    │       └── PeriodConflict      the chain holds another settlement of this period        (settlement.job)
    ├── TransportError              a peer or a local resource failed          -> retry with backoff
    │   ├── NodeUnavailable         the IOTA node could not be reached, timed out, or failed (5xx)
    │   ├── ChainUnavailable        the Ethereum JSON-RPC endpoint, likewise
    │   │   ├── StaleNonce          a signed transaction's nonce is taken: re-sign        (settlement.chain)
    │   │   ├── Underpriced         the node refused a transaction's fees                 (settlement.chain)
    │   │   ├── RateLimited         HTTP 429 / "limit exceeded": backed off per request     (settlement.rpc)
    │   │   └── RangeRefused        eth_getLogs over too many blocks: halve the chunk   (settlement.logscan)
    │   ├── DatabaseUnavailable     the database is locked, full or failing (I/O)
    │   ├── BusLost                 a Modbus serial port or TCP gateway went away (energy_manager.drivers.modbus)
    │   ├── FleetUnavailable        the fleet server could not be reached, or failed (5xx) (hub.fleet.client)
    │   └── ActuatorError           a supply actuator (relay board...) did not answer    (settlement.supply)
    └── Interrupted                 work stopped on request before it finished
        ├── PowInterrupted          proof of work cancelled                                 (mam_client.pow)
        └── VerificationEnded       a verification reached its verdict early               (settlement.verify)

What a long-running loop does with each branch is decided once, in `scb.loop` (the failure policy).
A `ScbError` that reaches the `scb` command prints `scb: <message>` and exits with its `exit_code`; anything
else is a bug, printed as one line too (`SCB_DEBUG=1` shows the traceback).

This module is pure (no I/O, no imports) so that the consensus-critical core can raise these without
importing plumbing.
"""
from __future__ import annotations


class ScbError(Exception):
    """Base of every deliberate SCB error. `exit_code` is what the CLI exits with when it reaches the top."""

    exit_code: int = 2

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message

    def __str__(self) -> str:
        return self.message


# ---- fix the configuration or the installation -------------------------------------------------------------


class ConfigError(ScbError):
    """The configuration cannot be used; the message names the setting and what is expected."""


class UsageError(ConfigError):
    """A command cannot run as asked (a missing or contradictory flag, a file that is not there): exit 2."""


class SecretFileError(ConfigError):
    """A secret file (seed, side key, keystore, password, token) is missing, unreadable or readable by others."""


# ---- wrong input: never retry ------------------------------------------------------------------------------


class DataError(ScbError):
    """Input data is invalid; retrying will not help. Exit code 1 where a verdict is asked for."""

    exit_code = 1


class BadRequest(DataError):
    """An HTTP request that one of SCB's servers refuses: answered with `status` (4xx) and a JSON error."""

    def __init__(self, message: str, status: int = 400) -> None:
        super().__init__(message)
        self.status = status


# ---- a peer said no: slow schedule -------------------------------------------------------------------------


class Refused(ScbError):
    """A peer understood the request and refused it. Retrying at once gets the same answer: callers record the
    reason where an operator sees it and try again only on a slow schedule (or after something changed)."""


class NodeRefused(Refused):
    """The IOTA node answered with a client error (e.g. HTTP 400 "invalid transaction") and its reason."""


class ChainRefused(Refused):
    """The Ethereum node or the contract refused a call or a transaction."""


# ---- a peer or a resource is down: retry with backoff -------------------------------------------------------


class TransportError(ScbError):
    """A network peer or a local resource failed; the operation may be retried later, with backoff."""


class NodeUnavailable(TransportError):
    """The IOTA node could not be reached, timed out, or failed on its side (HTTP 5xx)."""


class ChainUnavailable(TransportError):
    """The Ethereum JSON-RPC endpoint could not be reached, timed out, or failed on its side."""


class DatabaseUnavailable(TransportError):
    """The database is locked beyond the busy timeout, out of space, or failing with I/O errors."""


# ---- stopped on request ------------------------------------------------------------------------------------


class Interrupted(ScbError):
    """Work stopped on request (shutdown, cancellation) before it finished; nothing is wrong."""

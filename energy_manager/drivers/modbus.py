"""The `modbus` driver: meters read with pymodbus's async client over RTU (RS-485) or TCP.

Why a *bus* object: RS-485 is one shared pair of wires, and a TCP gateway in front of such a bus answers one
request at a time too. All devices configured on the same serial port (or the same host:port) share one `Bus`:
one pymodbus client, one thread with its own asyncio loop, and one lock, and it polls its units in turn, so two
requests are never on the wire at once. Each device keeps its newest complete frame; the sampling loop takes it
from `read()` without waiting for the bus (a slow meter never delays the others' samples).

Bad input is counted as events and never leaves the poll: a timeout (no answer), a Modbus exception response, a
CRC error and an answer from another unit (pymodbus drops both frames and times out; `Wire` records the bytes it
received so `energy_manager.modbus.frames` tells them apart), NaN or infinite floats, an answer with the wrong
number of registers. A frame with any bad value is not kept, so a meter's register never mixes two polls, and
after a timeout the bus is quiet for a while so that a late answer is never taken for the next request. A register that goes down (a reset or a replaced meter) is the sampling loop's business
(`energy_manager.registers`: recorded as a reset, never negative energy). A gateway or adapter that disappears
is reconnected with backoff (`scb.retry.Backoff`), reported once per outage as `unavailable` and `reconnected`.
"""
from __future__ import annotations

import asyncio
import logging
import threading
import time
import weakref
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import Any

from pymodbus.client import AsyncModbusSerialClient, AsyncModbusTcpClient
from pymodbus.client.base import ModbusBaseClient
from pymodbus.exceptions import ConnectionException, ModbusException, ModbusIOException

from energy_manager.drivers.base import Device, DeviceSample, InputEvent, LatestFrame
from energy_manager.drivers.serial_line import RECONNECTED, UNAVAILABLE
from energy_manager.modbus import frames, sunspec
from energy_manager.modbus.decode import Block, decode_block, show_registers
from energy_manager.modbus.profiles import Profile
from scb.errors import DataError, TransportError
from scb.retry import Backoff

log = logging.getLogger("energy_manager.modbus")
# Why pymodbus is quiet below CRITICAL: every failure it logs (at ERROR, once per timeout) reaches this driver as
# an exception and is logged and counted here once, with the device's name and the raw registers; pymodbus's own
# lines would double each of them without saying which meter. SCB_LOG_LEVEL=DEBUG still shows them (below).
logging.getLogger("pymodbus").setLevel(logging.CRITICAL)
if logging.getLogger().isEnabledFor(logging.DEBUG):
    logging.getLogger("pymodbus").setLevel(logging.DEBUG)

TIMEOUT = frames.TIMEOUT
MODBUS_EXCEPTION = "modbus_exception"
CRC = frames.CRC
WRONG_UNIT = frames.WRONG_UNIT
BAD_VALUE = "bad_value"
NOT_SUNSPEC = "not_sunspec"
#: Modbus exception codes by number (Modbus application protocol specification, section 7).
EXCEPTION_CODES = {1: "illegal function", 2: "illegal data address", 3: "illegal data value",
                   4: "server device failure", 5: "acknowledge", 6: "server device busy",
                   10: "gateway path unavailable", 11: "gateway target device failed to respond"}


def _wall_ms() -> int:
    return int(time.time() * 1000)


@dataclass(frozen=True)
class Link:
    """How to reach a bus. Devices with equal links share one Bus (one connection, polled in turn)."""

    transport: str  # "rtu" or "tcp"
    serial_port: str = ""
    baud: int = 9600
    parity: str = "N"
    stopbits: int = 1
    bytesize: int = 8
    host: str = ""
    port: int = 502

    @property
    def key(self) -> tuple[str, ...]:
        return ("rtu", self.serial_port) if self.transport == "rtu" else ("tcp", self.host, str(self.port))

    def describe(self) -> str:
        if self.transport == "rtu":
            return f"{self.serial_port} ({self.baud} {self.bytesize}{self.parity}{self.stopbits})"
        return f"{self.host}:{self.port}"

    def client(self, timeout_s: float) -> ModbusBaseClient:
        """A pymodbus client without its own retries or reconnects (the bus does both, with events), whose
        received bytes a `Wire` records."""
        wire = Wire(self.transport)
        client: ModbusBaseClient
        if self.transport == "rtu":
            client = AsyncModbusSerialClient(self.serial_port, baudrate=self.baud, parity=self.parity,
                                             stopbits=self.stopbits, bytesize=self.bytesize, timeout=timeout_s,
                                             retries=0, reconnect_delay=0, trace_packet=wire.trace)
        else:
            client = AsyncModbusTcpClient(self.host, port=self.port, timeout=timeout_s, retries=0,
                                          reconnect_delay=0, trace_packet=wire.trace)
        _WIRES[client] = wire
        return client


class Wire:
    """The bytes received for the request in flight on one client, as pymodbus handed them to its framer.

    pymodbus calls `trace_packet(False, buffer)` with its whole receive buffer each time bytes arrive (the buffer
    grows until the framer takes a frame or discards it), so each call is kept as one buffer: `diagnose` looks at
    them as the framer did. Only one request is on a bus at a time (the bus lock), so `begin` before each
    request is enough to keep answers apart. The list is capped: a babbling line must not eat memory.
    """

    LIMIT = 16

    def __init__(self, transport: str) -> None:
        self.transport = transport
        self.received: list[bytes] = []

    def trace(self, sending: bool, data: bytes) -> bytes:
        if not sending:
            if self.received and data.startswith(self.received[-1]):
                self.received[-1] = data  # the same buffer, grown
            elif len(self.received) < self.LIMIT:
                self.received.append(data)
        return data

    def begin(self) -> None:
        self.received = []

    def diagnose(self, unit: int) -> frames.Verdict:
        if self.transport == "rtu":
            return frames.diagnose_rtu(self.received, unit)
        return frames.diagnose_tcp(self.received, unit)


#: each client's Wire (weak: a closed client and its wire go together)
_WIRES: "weakref.WeakKeyDictionary[ModbusBaseClient, Wire]" = weakref.WeakKeyDictionary()


class PollError(DataError):
    """One poll of one unit failed with bad input (`kind` is the event); the bus goes on with the next unit."""

    def __init__(self, kind: str, detail: str, raw: bytes | None = None) -> None:
        super().__init__(detail)
        self.kind, self.detail, self.raw = kind, detail, raw


class BusLost(TransportError):
    """The connection itself is gone (gateway unreachable, adapter unplugged): reconnect."""


async def read_block(client: ModbusBaseClient, unit: int, block: Block) -> list[int]:
    """The registers of one block from one unit; PollError for bad input, BusLost for a lost connection."""
    call = client.read_input_registers if block.function == "input" else client.read_holding_registers
    where = f"{block.function} registers {block.address}..{block.address + block.count - 1} of unit {unit}"
    wire = _WIRES.get(client)
    if wire is not None:
        wire.begin()
    try:
        response = await call(block.address, count=block.count, device_id=unit)
    except ConnectionException as exc:
        raise BusLost(str(exc)) from exc
    except ModbusIOException as exc:
        if not client.connected:
            raise BusLost(str(exc)) from exc
        if wire is None:
            raise PollError(TIMEOUT, f"no answer for {where}") from exc
        verdict = wire.diagnose(unit)
        detail = f"no answer for {where}" if verdict.kind == TIMEOUT and not verdict.raw else \
            f"{verdict.detail} ({where})"
        raise PollError(verdict.kind, detail, verdict.raw or None) from exc
    except ModbusException as exc:
        raise PollError(TIMEOUT, f"{where}: {exc}") from exc
    except OSError as exc:
        raise BusLost(str(exc)) from exc
    if response.isError():
        code = getattr(response, "exception_code", 0)
        raise PollError(MODBUS_EXCEPTION,
                        f"exception {code} ({EXCEPTION_CODES.get(code, 'unknown')}) for {where}")
    if response.dev_id not in (unit, 0) and unit != 0:
        raise PollError(WRONG_UNIT, f"unit {response.dev_id} answered a request to unit {unit}")
    registers = list(response.registers)
    if len(registers) != block.count:
        # exactly `count` registers or none: a longer answer is no bonus but another request's (a late answer
        # to the request before, which RTU, having no transaction id, cannot tell apart), and taking its first
        # words would store one register's value as another's
        raise PollError(BAD_VALUE, f"{len(registers)} registers in the answer for {where}, not {block.count}",
                        show_registers(registers, block.address))
    return registers


async def read_profile(client: ModbusBaseClient, unit: int, profile: Profile) -> tuple[dict[str, float], bytes]:
    """Every value of a register-map profile, and the raw registers; PollError when any value is bad."""
    values: dict[str, float] = {}
    raw: list[bytes] = []
    for block in profile.blocks:
        registers = await read_block(client, unit, block)
        shown = show_registers(registers, block.address)
        raw.append(shown)
        got, errors = decode_block(block, registers)
        if errors:
            raise PollError(BAD_VALUE, "; ".join(e.message for e in errors), shown)
        values.update(got)
    return values, b" ".join(raw)


class SunSpecReader:
    """Reads a SunSpec device: discovers the base and model chain on the first poll (and again after a read of
    the chosen model fails, since a replaced inverter may lay out its chain differently), then reads the first
    inverter or meter model each poll. `details` holds what `scb meters scan` shows."""

    def __init__(self, bases: Sequence[int] = sunspec.BASES) -> None:
        self.bases = tuple(bases)
        self.model: sunspec.Model | None = None
        self.details: dict[str, Any] = {}

    async def __call__(self, client: ModbusBaseClient, unit: int) -> tuple[dict[str, float], bytes]:
        async def read(address: int, count: int) -> list[int]:
            try:
                return await read_block(client, unit, Block("holding", address, count, ()))
            except PollError as exc:
                if exc.kind == MODBUS_EXCEPTION:
                    raise sunspec.AddressRefused(exc.detail) from exc
                raise

        try:
            if self.model is None:
                base, models = await sunspec.discover(read, self.bases)
                model = sunspec.energy_model(models)
                details: dict[str, Any] = {"base": base, "models": [m.id for m in models]}
                common = next((m for m in models if m.id == sunspec.COMMON), None)
                if common is not None:
                    details.update(sunspec.decode_common(await sunspec.read_span(read, common.address,
                                                                                 common.length)))
                self.model, self.details = model, details
            model = self.model
            try:
                data = await sunspec.read_span(read, model.address, model.length)
            except sunspec.AddressRefused:
                self.model = None
                raise
        except sunspec.AddressRefused as exc:
            raise PollError(MODBUS_EXCEPTION, exc.message) from exc
        except sunspec.NotSunSpec as exc:
            self.model = None
            raise PollError(NOT_SUNSPEC, exc.message) from exc
        decode = sunspec.decoder(model.id)
        assert decode is not None  # energy_model picked a model with a decoder
        return decode(data), show_registers(data, model.address)


#: An async reader of one unit: (client, unit) -> (values, raw registers).
Reader = Callable[[ModbusBaseClient, int], Awaitable[tuple[dict[str, float], bytes]]]


class ModbusDevice(Device):
    """One Modbus unit (a meter or an inverter) on a bus."""

    driver = "modbus"

    def __init__(self, name: str, link: Link, unit: int, profile: Profile | None, *, timeout_s: float = 1.0,
                 poll_interval_s: float = 1.0, retry_min_s: float = 0.5, retry_max_s: float = 30.0,
                 clock_ms: Callable[[], int] = _wall_ms, reader: Reader | None = None) -> None:
        super().__init__(name)
        self.link, self.unit, self.profile = link, unit, profile
        self.timeout_s, self.poll_interval_s = timeout_s, poll_interval_s
        self.retry_min_s, self.retry_max_s = retry_min_s, retry_max_s
        self.clock_ms = clock_ms
        #: async (client, unit) -> (values, raw registers): the register map, or SunSpec when there is none
        if reader is None:  # no register map: the device describes itself (SunSpec)
            reader = SunSpecReader() if profile is None else (lambda client, unit: read_profile(client, unit, profile))
        self.reader: Reader = reader
        self._latest = LatestFrame()
        self._bus: Bus | None = None
        #: polls that gave a complete frame (for status and tests)
        self.polls = 0

    def open(self) -> None:
        if self._bus is None:
            self._bus = Bus.attach(self)

    def read(self, now_ms: int) -> DeviceSample | None:
        if self._bus is not None and self._bus.failure is not None:
            raise self._bus.failure
        return self._latest.take()

    def close(self) -> None:
        if self._bus is not None:
            self._bus.detach(self)
            self._bus = None

    # -- called on the bus's thread ---------------------------------------------------------------------
    async def poll(self, client: ModbusBaseClient) -> str | None:
        """One poll; the kind of bad input that ended it, or None when a frame was kept."""
        try:
            values, raw = await self.reader(client, self.unit)
        except PollError as exc:
            log.warning("meter device %s: %s%s", self.name, exc.detail,
                        f": {exc.raw.decode('ascii', 'replace')[:300]}" if exc.raw else "")
            self.events.add(InputEvent(exc.kind, exc.detail, exc.raw))
            return exc.kind
        now = self.clock_ms()
        self._latest.put(now, values, raw)
        self.polls += 1
        return None

    def event(self, kind: str, detail: str) -> None:
        self.events.add(InputEvent(kind, detail))


class Bus:
    """One serial port or TCP gateway: one client, one thread and loop, its units polled in turn."""

    _registry: dict[tuple[str, ...], "Bus"] = {}
    _registry_lock = threading.Lock()

    def __init__(self, link: Link) -> None:
        self.link = link
        self.devices: list[ModbusDevice] = []
        self._devices_lock = threading.Lock()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name=f"modbus-{link.describe()}", daemon=True)
        #: True while the client is connected (for status and tests)
        self.connected = threading.Event()
        self.connects = 0
        #: what stopped the bus thread (a bug); every read() of its devices raises it, so the sampling loop
        #: counts a driver_error each sample instead of the meters falling silent unnoticed
        self.failure: Exception | None = None

    # -- registry ---------------------------------------------------------------------------------------
    @classmethod
    def attach(cls, device: ModbusDevice) -> "Bus":
        with cls._registry_lock:
            bus = cls._registry.get(device.link.key)
            if bus is None:
                bus = cls._registry[device.link.key] = Bus(device.link)
                with bus._devices_lock:
                    bus.devices.append(device)
                bus._thread.start()
            else:
                with bus._devices_lock:
                    bus.devices.append(device)
            return bus

    def detach(self, device: ModbusDevice) -> None:
        with self._registry_lock:
            with self._devices_lock:
                if device in self.devices:
                    self.devices.remove(device)
                empty = not self.devices
            if empty and self._registry.get(self.link.key) is self:
                del self._registry[self.link.key]
        if empty:
            self._stop.set()
            self._thread.join(timeout=10)

    def _units(self) -> list[ModbusDevice]:
        with self._devices_lock:
            return list(self.devices)

    def _settings(self) -> tuple[float, float, float, float]:
        """Timeout, poll interval and retry bounds for the whole bus: the longest timeout any unit needs, the
        shortest poll interval and retry bounds any unit asks for (one client serves them all)."""
        units = self._units()
        if not units:
            return 1.0, 1.0, 0.5, 30.0
        return (max(d.timeout_s for d in units), min(d.poll_interval_s for d in units),
                min(d.retry_min_s for d in units), min(d.retry_max_s for d in units))

    # -- the bus thread ---------------------------------------------------------------------------------
    def _run(self) -> None:
        try:
            asyncio.run(self._main())
        except Exception as exc:  # noqa: BLE001 - kept for read(): a bug must show, not leave the meters silent
            log.error("modbus bus %s stopped: %s: %s", self.link.describe(), type(exc).__name__, exc)
            self.failure = exc

    async def _sleep(self, seconds: float) -> None:
        end = time.monotonic() + seconds
        while not self._stop.is_set() and time.monotonic() < end:
            await asyncio.sleep(min(0.05, max(0.0, end - time.monotonic())))

    async def _main(self) -> None:
        timeout_s, poll_s, retry_min, retry_max = self._settings()
        backoff = Backoff(retry_min, retry_max)
        down_since: float | None = None
        #: a connection that served whole rounds of polls was closed (why): reconnect at once, and report an
        #: outage only if that fails. Why: pymodbus closes a TCP connection itself after a few requests in a
        #: row went unanswered (one silent unit behind a working gateway), which is timeouts, not an outage.
        closed: str | None = None
        lock = asyncio.Lock()  # the bus lock: one request at a time (scan and polls alike)
        where = self.link.describe()
        while not self._stop.is_set():
            client = self.link.client(timeout_s)
            try:
                ok = await client.connect()
            except (OSError, ModbusException) as exc:
                ok, reason = False, str(exc) or type(exc).__name__
            else:
                reason = "no connection"
            if closed is not None and not ok:  # it was an outage after all: reported as the loss it was
                log.warning("modbus bus %s: lost (%s); reconnecting", where, closed)
                for d in self._units():
                    d.event(UNAVAILABLE, f"lost {where}: {closed}")
                down_since = time.monotonic()
            elif closed is not None:
                log.info("modbus bus %s: connection closed (%s); connected again at once", where, closed)
            closed = None
            if not ok:
                client.close()
                if down_since is None:
                    down_since = time.monotonic()
                    log.warning("modbus bus %s: cannot connect (%s); retrying until it returns", where, reason)
                    for d in self._units():
                        d.event(UNAVAILABLE, f"cannot connect to {where}: {reason}")
                await self._sleep(backoff.fail(time.monotonic(), reason))
                continue
            self.connects += 1
            if down_since is not None:
                log.info("modbus bus %s: back after %.0f s", where, time.monotonic() - down_since)
                for d in self._units():
                    d.event(RECONNECTED, f"{where} connected again")
            down_since = None
            backoff.succeed()
            self.connected.set()
            rounds = 0  # whole rounds of polls on this connection
            try:
                while not self._stop.is_set():
                    started = time.monotonic()
                    for device in self._units():
                        if self._stop.is_set():
                            break
                        async with lock:
                            failed = await device.poll(client)
                            if failed == TIMEOUT:
                                # RTU answers carry no transaction id: an answer that comes after the timeout
                                # would be taken for the next request, and when that one asks for as many
                                # registers (EM24/EM340 blocks, custom maps) its words would be stored as
                                # another register's, one answer behind for as long as the meter keeps pace.
                                # A quiet time with no request out lets it arrive and be dropped (pymodbus
                                # ignores an answer with no request waiting). TCP too: a gateway may answer a
                                # late request with the newest transaction id (pymodbus's own server does).
                                await self._sleep(timeout_s)
                    rounds += 1
                    await self._sleep(poll_s - (time.monotonic() - started))
            except BusLost as exc:
                if rounds > 0:  # no tight loop: a gateway that drops each new connection at once is an outage
                    closed = str(exc)
                    continue
                down_since = time.monotonic()
                log.warning("modbus bus %s: lost (%s); reconnecting", where, exc)
                for d in self._units():
                    d.event(UNAVAILABLE, f"lost {where}: {exc}")
                await self._sleep(backoff.fail(time.monotonic(), str(exc)))
            finally:
                self.connected.clear()
                client.close()


def read_once(link: Link, unit: int, reader: Reader, timeout_s: float) -> tuple[dict[str, float], bytes]:
    """One read of one unit on a fresh connection (for `scb meters scan`); PollError/BusLost say why not."""
    async def run() -> tuple[dict[str, float], bytes]:
        client = link.client(timeout_s)
        try:
            try:
                ok = await client.connect()
            except (OSError, ModbusException) as exc:
                raise BusLost(f"cannot connect to {link.describe()}: {exc}") from exc
            if not ok:
                raise BusLost(f"cannot connect to {link.describe()}")
            return await reader(client, unit)
        finally:
            client.close()
    return asyncio.run(run())


def devices_on(link: Link) -> Sequence[ModbusDevice]:
    """The devices polled on a bus now (for status and tests)."""
    bus = Bus._registry.get(link.key)
    return bus._units() if bus else []


def link_of(options: dict[str, Any]) -> Link:
    """The bus a device's validated options (energy_manager.modbus.config.parse) describe."""
    return Link(options["transport"], serial_port=options["serial_port"], baud=options["baud"],
                parity=options["parity"], stopbits=options["stopbits"], bytesize=options["bytesize"],
                host=options["host"], port=options["port"])


def build(name: str, options: dict[str, Any]) -> ModbusDevice:
    """The device for `[energy.devices.<name>]` with driver = "modbus" (validated options)."""
    profile = options["register_map"]
    return ModbusDevice(name, link_of(options), options["unit"], profile,
                        timeout_s=options["timeout_s"], poll_interval_s=options["poll_interval_s"],
                        retry_max_s=options["retry_max_s"])

"""pymodbus's own server playing the meters (no mocks): register tables the test lays out as the manuals do,
changeable while the driver polls, and failures on demand (exception responses, a unit that falls silent)."""
from __future__ import annotations

import asyncio
import os
import select
import socket
import threading
import tty
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from pymodbus.constants import ExcCodes
from pymodbus.server import ModbusSerialServer, ModbusTcpServer
from pymodbus.simulator import DataType, SimData, SimDevice

from energy_manager.modbus.decode import encode_value


@dataclass
class Unit:
    """One simulated unit: `input` and `holding` registers by address, plus failure switches."""

    input: dict[int, int] = field(default_factory=dict)
    holding: dict[int, int] = field(default_factory=dict)
    #: answer every request with this Modbus exception code
    exception: ExcCodes | None = None
    #: requests seen (function code, address, count)
    requests: list[tuple[int, int, int]] = field(default_factory=list)

    def put(self, function: str, address: int, type_: str, order: str, value: float) -> None:
        table = self.input if function == "input" else self.holding
        for i, word in enumerate(encode_value(type_, order, value)):
            table[address + i] = word

    def words(self, function: str, address: int, words: list[int]) -> None:
        table = self.input if function == "input" else self.holding
        for i, word in enumerate(words):
            table[address + i] = word


class MeterServer:
    """A pymodbus server in its own thread and loop, serving `units` (unit id -> Unit)."""

    def __init__(self, units: dict[int, Unit], *, ranges: tuple[tuple[int, int], ...] = ((0, 400),)) -> None:
        self.units = units
        self.ranges = ranges
        self.loop = asyncio.new_event_loop()
        self.server: Any = None
        self.port = 0
        self._thread: threading.Thread | None = None
        #: units that do not answer at all (as if unplugged from the bus)
        self.silent: set[int] = set()
        self.silence_s = 2.0

    def _device(self, unit_id: int) -> SimDevice:
        unit = self.units[unit_id]

        async def action(function_code: int, start_address: int, address: int, count: int,
                         registers: list[int], set_values: Any) -> ExcCodes | None:
            unit.requests.append((function_code, address, count))
            if unit_id in self.silent:  # answer only after the client has given up: a unit that is not there
                await asyncio.sleep(self.silence_s)
            if unit.exception is not None:
                return unit.exception
            table = unit.input if function_code == 4 else unit.holding
            for a in range(address, address + count):
                registers[a - start_address] = table.get(a, 0)
            return None

        def block() -> list[SimData]:
            return [SimData(start, count=size, values=0, datatype=DataType.REGISTERS) for start, size in self.ranges]

        bits = [SimData(0, count=16, values=False, datatype=DataType.BITS)]
        return SimDevice(id=unit_id, simdata=(bits, list(bits), block(), block()), action=action)

    def _devices(self) -> list[SimDevice]:
        return [self._device(u) for u in self.units]

    def _start(self, make: Callable[[], Any]) -> None:
        ready = threading.Event()

        def run() -> None:
            asyncio.set_event_loop(self.loop)

            async def begin() -> None:
                self.server = make()  # pymodbus binds the server to the running loop
                await self.server.serve_forever(background=True)

            self.loop.run_until_complete(begin())
            ready.set()
            self.loop.run_forever()

        self._thread = threading.Thread(target=run, daemon=True)
        self._thread.start()
        assert ready.wait(10), "server did not start"

    def start_tcp(self, port: int = 0) -> "MeterServer":
        if port == 0:
            with socket.socket() as s:
                s.bind(("127.0.0.1", 0))
                port = s.getsockname()[1]
        self.port = port
        self._start(lambda: ModbusTcpServer(self._devices(), address=("127.0.0.1", port),
                                            ignore_missing_devices=True))
        return self

    def start_rtu(self, path: str, baud: int = 9600) -> "MeterServer":
        self._start(lambda: ModbusSerialServer(self._devices(), port=path, baudrate=baud,
                                               ignore_missing_devices=True))
        return self

    def stop(self) -> None:
        if self._thread is None:
            return
        asyncio.run_coroutine_threadsafe(self.server.shutdown(), self.loop).result(10)
        self.loop.call_soon_threadsafe(self.loop.stop)
        self._thread.join(10)
        self._thread = None


class NullModem:
    """Two pseudo-terminal pairs joined master to master: the driver opens one slave by path, the server the
    other, and every byte crosses as on an RS-485 cable (`cut()` pulls the cable: bytes are dropped)."""

    def __init__(self) -> None:
        self.m1, self.s1 = os.openpty()
        self.m2, self.s2 = os.openpty()
        for fd in (self.s1, self.s2):
            tty.setraw(fd)
        self.path_driver = os.ttyname(self.s1)
        self.path_meter = os.ttyname(self.s2)
        self.cable = threading.Event()
        self.cable.set()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        other = {self.m1: self.m2, self.m2: self.m1}
        while not self._stop.is_set():
            ready, _, _ = select.select(list(other), [], [], 0.05)
            for fd in ready:
                try:
                    data = os.read(fd, 4096)
                except OSError:
                    continue
                if self.cable.is_set():
                    os.write(other[fd], data)

    def close(self) -> None:
        self._stop.set()
        self._thread.join(5)
        for fd in (self.m1, self.s1, self.m2, self.s2):
            try:
                os.close(fd)
            except OSError:
                pass


def sdm630_tcp_devices(port: int, units: tuple[int, ...], **device: object) -> str:
    """The [energy.devices] and [energy.meters] TOML of SDM630s `units` on a TCP gateway at 127.0.0.1:`port`, one
    household `h<unit>` each (its consumption from `import_wh`, power `power_w`); `device` adds settings."""
    extra = "".join(f"{key} = {value}\n" for key, value in device.items())
    devices = "".join(f"""
[energy.devices.m{u}]
driver = "modbus"
transport = "tcp"
host = "127.0.0.1"
port = {port}
unit = {u}
profile = "sdm630"
timeout_s = 0.5
{extra}""" for u in units)
    meters = "".join(f"""
[energy.meters.h{u}]
device = "m{u}"
circuit = "consumption"
party = "h{u}"
register = "import_wh"
power = "power_w"
""" for u in units)
    return devices + meters

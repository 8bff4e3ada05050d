"""The `serial` driver: an emonTx-style device writing `key:value,...` lines to a serial port (pyserial).

A reader thread owns the port: it reads lines, parses them (`energy_manager.emontx`), keeps the newest good
frame and reports bad lines as events with the raw bytes. When the port cannot be opened or fails (USB
unplugged, cable pulled) it closes it and retries with backoff until the device returns - the sampling loop and
the other meters carry on meanwhile. Why a thread: pyserial reads block; a thread per port keeps one slow or
silent device from delaying the samples of the others.

After every (re)open the input buffer is flushed and the first, probably partial, line is dropped: a line cut
in half still parses (`E1:123` from `E1:12345`) and would look like a counter reset.
"""
from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable

import serial

from energy_manager.drivers.base import Device, DeviceSample, InputEvent, LatestFrame
from energy_manager.emontx import MAX_LINE_BYTES, TOO_LONG, LineError, parse_line
from scb.retry import Backoff

log = logging.getLogger("energy_manager.serial")

UNAVAILABLE = "unavailable"
RECONNECTED = "reconnected"


def _wall_ms() -> int:
    return int(time.time() * 1000)


def show_raw(raw: bytes, limit: int = 160) -> str:
    """A raw line for a log message: printable, quoted, cut to `limit` characters (a line can be noise)."""
    text = repr(bytes(raw[:limit]))
    return text + ("..." if len(raw) > limit else "")


class SerialDevice(Device):
    """One serial port with an emonTx-style device on it."""

    driver = "serial"

    def __init__(
        self,
        name: str,
        port: str,
        baud: int,
        *,
        read_timeout_s: float = 0.5,
        retry_min_s: float = 0.5,
        retry_max_s: float = 30.0,
        clock_ms: Callable[[], int] = _wall_ms,
    ) -> None:
        super().__init__(name)
        self.port = port
        self.baud = baud
        self.read_timeout_s = read_timeout_s
        self.retry_min_s = retry_min_s
        self.retry_max_s = retry_max_s
        self.clock_ms = clock_ms
        self._stop = threading.Event()
        self._latest = LatestFrame()
        self._thread: threading.Thread | None = None
        #: True while the port is open and readable (for status and tests)
        self.connected = threading.Event()
        self.opens = 0

    # -- sampling-loop side -------------------------------------------------------------------------------
    def open(self) -> None:
        if self._thread is None:
            self._thread = threading.Thread(target=self._run, name=f"serial-{self.name}", daemon=True)
            self._thread.start()

    def read(self, now_ms: int) -> DeviceSample | None:
        return self._latest.take()

    def close(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=max(2.0, 4 * self.read_timeout_s))
            self._thread = None

    # -- reader thread ------------------------------------------------------------------------------------
    def _run(self) -> None:
        backoff = Backoff(self.retry_min_s, self.retry_max_s)
        down_since: float | None = None
        while not self._stop.is_set():
            try:
                port = serial.Serial(self.port, self.baud, timeout=self.read_timeout_s)
            except (serial.SerialException, OSError, ValueError) as exc:
                if down_since is None:
                    down_since = time.monotonic()
                    log.warning("meter device %s: cannot open %s (%s); retrying until it returns",
                                self.name, self.port, _reason(exc))
                    self.events.add(InputEvent(UNAVAILABLE, f"cannot open {self.port}: {_reason(exc)}"))
                self._stop.wait(backoff.fail(time.monotonic(), _reason(exc)))
                continue
            self.opens += 1
            if down_since is not None:
                log.info("meter device %s: %s is back after %.0f s", self.name, self.port,
                         time.monotonic() - down_since)
                self.events.add(InputEvent(RECONNECTED, f"{self.port} opened again"))
            down_since = None
            backoff.succeed()
            try:
                self.connected.set()
                self._read_lines(port)
            except (serial.SerialException, OSError, TypeError) as exc:
                # pyserial raises TypeError from inside read() when the fd vanishes under it
                down_since = time.monotonic()
                log.warning("meter device %s: lost %s (%s); retrying until it returns",
                            self.name, self.port, _reason(exc))
                self.events.add(InputEvent(UNAVAILABLE, f"lost {self.port}: {_reason(exc)}"))
            finally:
                self.connected.clear()
                try:
                    port.close()
                except (serial.SerialException, OSError):
                    pass

    def _read_lines(self, port: serial.Serial) -> None:
        port.reset_input_buffer()
        buffer = bytearray()
        skip_first = True  # the first line after opening is probably the tail of a line
        overlong = False
        while not self._stop.is_set():
            chunk = port.read(max(1, min(port.in_waiting, 4096)))
            if not chunk:
                continue
            buffer += chunk
            while True:
                end = buffer.find(b"\n")
                if end < 0:
                    break
                line = bytes(buffer[: end + 1])
                del buffer[: end + 1]
                if overlong:  # the rest of a line already reported as too long
                    overlong = False
                    continue
                if skip_first:
                    skip_first = False
                    continue
                self._handle_line(line)
            if len(buffer) > MAX_LINE_BYTES:
                if not overlong and not skip_first:
                    self._bad(LineError(TOO_LONG, f"no line end within {MAX_LINE_BYTES} bytes"), bytes(buffer))
                overlong = True
                buffer.clear()

    def _handle_line(self, line: bytes) -> None:
        try:
            values = parse_line(line)
        except LineError as exc:
            self._bad(exc, line)
            return
        now = self.clock_ms()
        self._latest.put(now, values, line)

    def _bad(self, exc: LineError, raw: bytes) -> None:
        log.warning("meter device %s: %s: %s", self.name, exc.message, show_raw(raw))
        self.events.add(InputEvent(exc.kind, exc.message, raw))


def _reason(exc: BaseException) -> str:
    text = str(exc).strip() or type(exc).__name__
    return text if len(text) <= 200 else text[:200] + "..."

"""A raw Modbus RTU responder on a pseudo-terminal, for the answers pymodbus's own server never gives: another
unit's id, a corrupted CRC, noise. It reads each request frame byte by byte and writes back a frame the test
crafts, with its CRC computed by `crc16_modbus` below, written from the specification (Modbus over serial line
V1.02, section 6.2.2) and independent of the code under test and of pymodbus."""
from __future__ import annotations

import os
import select
import threading
import tty
from collections.abc import Callable
from dataclasses import dataclass, field


def crc16_modbus(data: bytes) -> int:
    """CRC-16/MODBUS, bit by bit: init 0xFFFF, reflected polynomial 0xA001, no final xor."""
    crc = 0xFFFF
    for byte in data:
        crc ^= byte
        for _ in range(8):
            crc = (crc >> 1) ^ 0xA001 if crc & 1 else crc >> 1
    return crc


def with_crc(frame: bytes) -> bytes:
    """The frame with its CRC appended, low byte first as the specification sends it."""
    return frame + crc16_modbus(frame).to_bytes(2, "little")


#: an answer to a request: (unit, function, address, count) -> bytes to send, or None to stay silent
Answer = Callable[[int, int, int, int], bytes | None]


@dataclass
class RawResponder:
    """The meter end of a pty pair: the driver opens `path`; `answer` decides what goes back for each request."""

    answer: Answer
    requests: list[bytes] = field(default_factory=list)

    def __post_init__(self) -> None:
        self.master, self.slave = os.openpty()
        tty.setraw(self.slave)
        tty.setraw(self.master)
        self.path = os.ttyname(self.slave)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        buffer = b""
        while not self._stop.is_set():
            ready, _, _ = select.select([self.master], [], [], 0.05)
            if not ready:
                continue
            try:
                buffer += os.read(self.master, 256)
            except OSError:
                continue
            # a read request is always 8 bytes: unit, function, address (2), count (2), CRC (2)
            while len(buffer) >= 8:
                frame, buffer = buffer[:8], buffer[8:]
                if with_crc(frame[:6]) != frame:
                    buffer = b""  # out of step: drop what is there, as a meter would
                    break
                self.requests.append(frame)
                reply = self.answer(frame[0], frame[1], int.from_bytes(frame[2:4], "big"),
                                    int.from_bytes(frame[4:6], "big"))
                if reply:
                    os.write(self.master, reply)

    def close(self) -> None:
        self._stop.set()
        self._thread.join(5)
        for fd in (self.master, self.slave):
            try:
                os.close(fd)
            except OSError:
                pass


def registers_answer(unit: int, function: int, registers: list[int]) -> bytes:
    """The body of a read-registers answer (no CRC): unit, function, byte count, the words high byte first."""
    data = b"".join(w.to_bytes(2, "big") for w in registers)
    return bytes([unit, function, len(data)]) + data

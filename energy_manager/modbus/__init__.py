"""Modbus meters: register maps as data and their pure decoding (no I/O here).

`decode` turns register words into named device values; `profiles` loads the shipped register maps (one TOML
file per meter model in `profiles/`, with the manufacturer's register numbers, types, word order and scale)
and validates a user's own (`profile = "custom"`); `sunspec` walks a SunSpec model chain. The I/O (pymodbus,
threads, buses) lives in `energy_manager.drivers.modbus`, so everything here is testable with plain lists.
"""

"""Meter drivers: the small interface between a physical (or simulated) device and the sampling loop.

A *device* is one thing the hub talks to (the simulator, an emonTx on a serial port, later a Modbus meter); it
reports named values (`E1`, `P1`, `pv_wh`, ...). The configuration maps values to *meters* (one register with
a role); the sampling loop turns each meter's values into a reading. Drivers know nothing of meters, readings
or the database, so a new driver (pymodbus) is one class implementing `Device` and one entry in `DRIVERS`.
"""
from __future__ import annotations

from energy_manager.drivers.base import Device, DeviceSample, InputEvent

__all__ = ["Device", "DeviceSample", "InputEvent"]

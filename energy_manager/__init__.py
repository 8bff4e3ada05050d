"""The energy manager: meter drivers, the sampling loop, readings and their canonical encoding (docs/energy-manager.md).

Pure core: `reading`, `registers`, `message`, `emontx`, `simulation`. I/O around it: `drivers`, `monitor`,
`service`, `models`. It never talks to IOTA or Ethereum: readings reach the tangle through the publisher's outbox.
"""

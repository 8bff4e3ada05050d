"""The local IOTA dev node (`scb tangle-node`): a single-node legacy tangle speaking IRI's HTTP API.

Submodules: `transaction` (layout, hash, bundle checks; pure), `store` (its SQLite file), `server` (the aiohttp
app and the IRI commands), `settings` (the `[tangle_node]` configuration section), `cli` (the subcommand).
This package file imports nothing heavy so that `mam_client.pow` can use `transaction` without aiohttp.
"""

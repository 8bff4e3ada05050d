"""web3.py on a ChainClient's node: the tests' independent reader and driver of the chain.

The hub speaks JSON-RPC itself (settlement.chain encodes, signs and sends; settlement.solar_property encodes and
decodes the contract's calls): web3 is what the tests check it against, and how they act as someone other than
the hub (a household paying, a stranger), so that a mistake in the hub's own encoding cannot also be in the test.
"""
from __future__ import annotations

from typing import Any

from web3 import HTTPProvider, Web3
from web3.contract import Contract

from settlement.chain import ChainClient, ContractCall


def web3_of(client: ChainClient) -> Web3:
    """web3 on the node `client` talks to (its provider, when the client was given one)."""
    provider = getattr(client.transport, "provider", None)
    return Web3(provider if provider is not None else HTTPProvider(client.rpc_url))


def contract_of(client: ChainClient, address: str) -> Contract:
    """web3's contract object for SolarProperty at `address`, on `client`'s node."""
    return web3_of(client).eth.contract(address=Web3.to_checksum_address(address), abi=client.abi)


def call_of(contract: Contract, name: str, *args: Any) -> ContractCall:
    """Function `name` of `contract` with `args`, encoded by web3, for the client to sign and send."""
    return ContractCall(name, contract.address, bytes.fromhex(contract.encode_abi(name, args=list(args))[2:]))

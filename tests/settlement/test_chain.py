"""The chain client against anvil: unreachable nodes, decoded custom errors, accounts, confirmations."""
from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
from eth_account import Account

from scb.config import Config
from scb.errors import ChainUnavailable, ConfigError, SecretFileError
from settlement.chain import (
    ChainClient,
    ContractCall,
    ContractReverted,
    StaleNonce,
    connect,
    dev_account,
    hub_account,
    load_keystore,
)
from settlement.settings import ethereum_settings
from tests.settlement.conftest import Anvil, start_anvil
from tests.web3_reference import call_of, contract_of, web3_of


def settings(url: str, **kw):  # type: ignore[no-untyped-def]
    return ethereum_settings(Config(data={"ethereum": {"rpc_url": url, **kw}}))


def test_unreachable_node_is_chain_unavailable() -> None:
    client = ChainClient(settings("http://127.0.0.1:9", timeout_s=1))
    with pytest.raises(ChainUnavailable, match="unreachable"):
        client.chain_id
    client.account = dev_account(0)
    with pytest.raises(ChainUnavailable):
        client.sign(call_of(contract_of(client, "0x" + "11" * 20), "systemCount"), "systemCount")


def test_dev_chain_account_deploy_and_decoded_errors(anvil: Anvil) -> None:
    client = connect(settings(anvil.url))
    assert client.is_dev_chain() and client.sender == web3_of(client).eth.accounts[0]
    address = client.deploy(client.sender, client.sender)
    c = contract_of(client, address)
    with pytest.raises(ContractReverted) as err:
        client.eth_call("periodInfo", call_of(c, "periodInfo", 1, 7).fields())
    assert err.value.name == "PeriodNotSettled" and err.value.args_ == (1, 7)
    assert "periodInfo reverted: PeriodNotSettled(1, 7)" == str(err.value)
    # a transaction the contract refuses fails at estimation, before anything is signed or paid
    stranger = ChainClient(settings(anvil.url))
    stranger.account = dev_account(7)
    before = web3_of(client).eth.get_transaction_count(stranger.sender)
    with pytest.raises(ContractReverted) as err:
        stranger.sign(call_of(c, "registerSystem",
                              (stranger.sender, stranger.sender, 1, 1, 3600, 1, 0), "A" * 81, [stranger.sender],
                              [10000], [1]), "registerSystem")
    assert err.value.name == "AccessControlUnauthorizedAccount"
    assert web3_of(client).eth.get_transaction_count(stranger.sender) == before


def test_chain_id_mismatch_is_a_configuration_error(anvil: Anvil) -> None:
    with pytest.raises(ConfigError, match="chain_id is 5"):
        ChainClient(settings(anvil.url, chain_id=5)).chain_id


def test_confirmation_depth(anvil: Anvil) -> None:
    client = connect(settings(anvil.url, confirmations=3, receipt_timeout_s=1))
    signed = client.sign(ContractCall("deploy", None, b"\x00"), "deploy")  # creation code: STOP
    client.send(signed)
    with pytest.raises(ChainUnavailable, match="not deep enough"):
        client.wait(signed.tx_hash, "deploy", timeout_s=0.5)
    client.mine()
    client.mine()
    assert client.wait(signed.tx_hash, "deploy", timeout_s=2)["status"] == 1
    # sending it again: the node knows the nonce is used (the job asks for the receipt before re-broadcasting)
    with pytest.raises(StaleNonce):
        client.send(signed.raw)


def write_secret(path: Path, text: str, mode: int = 0o600) -> Path:
    path.write_text(text)
    os.chmod(path, mode)
    return path


def test_keystore_account(tmp_path: Path) -> None:
    account = dev_account(5)
    keystore = write_secret(tmp_path / "hub.json", json.dumps(Account.encrypt(account.key, "correct horse")))
    password = write_secret(tmp_path / "hub.pw", "correct horse\n")
    assert load_keystore(keystore, password).address == account.address
    wrong = write_secret(tmp_path / "wrong.pw", "battery staple")
    with pytest.raises(ConfigError, match="wrong password"):
        load_keystore(keystore, wrong)
    os.chmod(password, 0o644)
    with pytest.raises(SecretFileError, match="readable by others"):
        load_keystore(keystore, password)


def test_a_non_development_chain_needs_a_keystore() -> None:
    node = start_anvil(extra=["--chain-id", "4242"])
    try:
        client = ChainClient(settings(node.url))
        assert not client.is_dev_chain()
        with pytest.raises(ConfigError, match="keystore_file"):
            hub_account(client.settings, client)
    finally:
        node.stop()


def test_scb_chain_deploy(anvil: Anvil, tmp_path: Path) -> None:
    from tests.settlement.test_verify import scb

    config = tmp_path / "scb.toml"
    config.write_text(f'[hub]\ndata_dir = "{tmp_path / "data"}"\n[ethereum]\nrpc_url = "{anvil.url}"\n')
    deployed = scb("--config", str(config), "chain", "deploy", "--approver", dev_account(3).address)
    assert deployed.returncode == 0, deployed.stderr
    address = deployed.stdout.strip()
    client = ChainClient(settings(anvil.url))
    assert client.has_code(address)
    c = contract_of(client, address)
    approver_role = c.functions.APPROVER_ROLE().call()
    assert c.functions.hasRole(approver_role, dev_account(3).address).call()
    assert not c.functions.hasRole(approver_role, dev_account(0).address).call()


def test_scb_chain_deploy_with_the_approvers_keystore_records_the_deployment(anvil: Anvil, tmp_path: Path) -> None:
    import json as _json

    import requests
    from eth_account import Account

    from scb.config import load_config
    from scb.db import open_database
    from settlement.logscan import DeploymentStore
    from tests.settlement.test_verify import scb

    approver = Account.create()
    requests.post(anvil.url, json={"jsonrpc": "2.0", "id": 1, "method": "anvil_setBalance",
                                   "params": [approver.address, hex(10**18)]}, timeout=10)
    keystore, password = tmp_path / "approver.json", tmp_path / "approver.password"
    password.write_text("s3cret", encoding="utf-8")
    keystore.write_text(_json.dumps(Account.encrypt(approver.key, "s3cret")), encoding="utf-8")
    keystore.chmod(0o600)
    password.chmod(0o600)
    config = tmp_path / "scb.toml"
    config.write_text(f'[hub]\ndata_dir = "{tmp_path / "data"}"\n[ethereum]\nrpc_url = "{anvil.url}"\n')
    deployed = scb("--config", str(config), "chain", "deploy", "--keystore", str(keystore), "--password-file",
                   str(password))
    assert deployed.returncode == 0, deployed.stderr
    address = deployed.stdout.strip()
    assert f"signed by {approver.address}" in deployed.stderr and "in block 1" in deployed.stderr
    client = ChainClient(settings(anvil.url))
    c = contract_of(client, address)
    assert c.functions.hasRole(c.functions.APPROVER_ROLE().call(), approver.address).call()
    store = DeploymentStore(open_database(load_config(str(config))))
    assert store.load(31337, address) == 1  # the first block of this fresh anvil holds the deployment
    password.chmod(0o644)
    refused = scb("--config", str(config), "chain", "deploy", "--keystore", str(keystore), "--password-file",
                  str(password))
    assert refused.returncode == 2 and "readable by others" in refused.stderr and "Traceback" not in refused.stderr


def test_call_many_batches_reverts_per_call_and_falls_back_when_a_provider_refuses_batches(anvil: Anvil) -> None:
    from scb.errors import ChainUnavailable as Unavailable
    from settlement.chain import RateLimited
    from tests.settlement.rpc_proxy import RpcProxy

    address = connect(settings(anvil.url)).deploy(dev_account(0).address, dev_account(0).address)
    c = contract_of(ChainClient(settings(anvil.url)), address)
    calls = [("systemCount", {"to": address, "data": c.encode_abi("systemCount", args=[])}, "latest"),
             ("periodInfo", {"to": address, "data": c.encode_abi("periodInfo", args=[1, 7])}, "latest"),
             ("systemCount", {"to": address, "data": c.encode_abi("systemCount", args=[])}, 1)]

    def check(results: list) -> None:  # type: ignore[type-arg]
        assert results[0] == bytes(32) and results[2] == bytes(32)  # no system registered on a fresh contract
        assert isinstance(results[1], ContractReverted)
        assert results[1].name == "PeriodNotSettled" and results[1].args_ == (1, 7)

    # a provider that takes batches: one request for all three calls
    proxy = RpcProxy(anvil.url, http_429_every=0, rpc_limit_every=0).start()
    try:
        client = ChainClient(settings(proxy.url))
        check(client.call_many(calls))
        assert proxy.counters.requests == 1 and proxy.counters.batches == 1 and client.batches
    finally:
        proxy.stop()
    # a provider that refuses batches of more than two: the same answers, by single calls, and no batch again
    proxy = RpcProxy(anvil.url, http_429_every=0, rpc_limit_every=0, max_batch=2).start()
    try:
        client = ChainClient(settings(proxy.url))
        check(client.call_many(calls))
        assert proxy.counters.batches_refused == 1 and not client.batches
        check(client.call_many(calls))
        assert proxy.counters.batches_refused == 1 and proxy.counters.batches == 0
    finally:
        proxy.stop()
    # HTTP 429 on a batch is waited out and the batch sent again; it is not taken for a refusal of batches
    proxy = RpcProxy(anvil.url, http_429_every=2, rpc_limit_every=0).start()
    try:
        client = ChainClient(settings(proxy.url))
        check(client.call_many(calls))
        check(client.call_many(calls))
        assert proxy.counters.http_429 == 1 and proxy.counters.batches == 2 and client.batches
    finally:
        proxy.stop()
    # a JSON-RPC "limit exceeded" for the whole batch, every time: RateLimited once the wait is used up
    proxy = RpcProxy(anvil.url, http_429_every=0, rpc_limit_every=1).start()
    try:
        client = ChainClient(settings(proxy.url, rate_limit_wait_s=0.5))
        with pytest.raises(RateLimited):
            client.call_many(calls)
        assert client.batches and proxy.counters.rpc_limited >= 2
    finally:
        proxy.stop()
    # unreachable: ChainUnavailable, as for a single call
    with pytest.raises(Unavailable, match="unreachable"):
        ChainClient(settings("http://127.0.0.1:9", timeout_s=1)).call_many(calls)


def test_eth_chain_id_is_asked_once_per_client(anvil: Anvil) -> None:
    from tests.settlement.rpc_proxy import RpcProxy

    address = connect(settings(anvil.url)).deploy(dev_account(0).address, dev_account(0).address)
    proxy = RpcProxy(anvil.url, http_429_every=0, rpc_limit_every=0).start()
    seen: list[str] = []
    original = proxy._upstream

    async def counting(body):  # type: ignore[no-untyped-def]
        seen.extend([b.get("method") for b in body] if isinstance(body, list) else [body.get("method")])
        return await original(body)

    proxy._upstream = counting  # type: ignore[method-assign]
    try:
        client = ChainClient(settings(proxy.url))
        c = contract_of(client, address)
        for _ in range(5):
            client.eth_call("systemCount", call_of(c, "systemCount").fields())
        assert seen.count("eth_call") == 5 and seen.count("eth_chainId") <= 1, seen
    finally:
        proxy.stop()

// SPDX-License-Identifier: MIT
pragma solidity ^0.8.24;

/// Test helper: a contract holding a system's hub role that settles two periods in one transaction,
/// so both bills get the same due time (the merge path of SolarProperty's debt ledger).
interface ISolarSettle {
    function settle(
        uint256 systemId,
        uint64 periodId,
        uint64 start,
        uint64 end,
        bytes32 readingsRoot,
        string calldata mamRoot,
        uint32 readingCount,
        uint64 generationWh,
        uint64[] calldata consumptionWh
    ) external;
}

contract HubBatcher {
    function settleTwice(
        ISolarSettle target,
        uint256 systemId,
        uint64[2] calldata ids,
        uint64[2] calldata starts,
        uint64[2] calldata ends,
        bytes32 root,
        string calldata mamRoot,
        uint64 generationWh,
        uint64[] calldata consumptionWh
    ) external {
        for (uint256 i; i < 2; ++i) {
            target.settle(systemId, ids[i], starts[i], ends[i], root, mamRoot, 1, generationWh, consumptionWh);
        }
    }
}

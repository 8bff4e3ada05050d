// SPDX-License-Identifier: MIT
pragma solidity ^0.8.24;

/// Benchmark reference (benchmarks/gas.py): the least a contract can do to anchor one period's Merkle root -
/// one storage slot and one event. SolarProperty.settle is reported as a multiple of this.
contract BareAnchor {
    mapping(uint256 periodId => bytes32 root) public roots;

    event Anchored(uint256 indexed periodId, bytes32 root);

    function anchor(uint256 periodId, bytes32 root) external {
        roots[periodId] = root;
        emit Anchored(periodId, root);
    }
}

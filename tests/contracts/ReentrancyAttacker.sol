// SPDX-License-Identifier: MIT
pragma solidity ^0.8.24;

/// Test helper: a holder/beneficiary contract that tries to re-enter SolarProperty while receiving ether.
interface ISolarPull {
    function pay(uint256 systemId) external payable;
    function deposit(uint256 systemId) external payable;
    function withdraw() external;
    function withdrawDeposit(uint256 systemId, uint256 amount) external;
}

contract ReentrancyAttacker {
    enum Mode {
        NONE,
        WITHDRAW, // re-enter withdraw()
        WITHDRAW_DEPOSIT, // re-enter withdrawDeposit()
        PAY // re-enter pay() with the ether just received
    }

    ISolarPull public immutable target;
    Mode public mode;
    bool public bubble; // propagate the re-entrant call's revert instead of swallowing it
    uint256 public systemId;
    uint256 public amount;
    uint256 public reentries; // successful re-entrant calls (must stay 0)
    uint256 public attempts;
    bytes public lastError;
    uint256 public received;

    constructor(ISolarPull target_) {
        target = target_;
    }

    function configure(Mode mode_, bool bubble_, uint256 systemId_, uint256 amount_) external {
        mode = mode_;
        bubble = bubble_;
        systemId = systemId_;
        amount = amount_;
    }

    function pay(uint256 id) external payable {
        target.pay{value: msg.value}(id);
    }

    function deposit(uint256 id) external payable {
        target.deposit{value: msg.value}(id);
    }

    function withdraw() external {
        target.withdraw();
    }

    function withdrawDeposit(uint256 id, uint256 value) external {
        target.withdrawDeposit(id, value);
    }

    receive() external payable {
        received += msg.value;
        if (mode == Mode.NONE || attempts > 0) return;
        attempts += 1;
        bool ok;
        bytes memory err;
        if (mode == Mode.WITHDRAW) {
            (ok, err) = address(target).call(abi.encodeCall(ISolarPull.withdraw, ()));
        } else if (mode == Mode.WITHDRAW_DEPOSIT) {
            (ok, err) = address(target).call(abi.encodeCall(ISolarPull.withdrawDeposit, (systemId, amount)));
        } else {
            (ok, err) = address(target).call{value: msg.value}(abi.encodeCall(ISolarPull.pay, (systemId)));
        }
        if (ok) {
            reentries += 1;
        } else {
            lastError = err;
            if (bubble) {
                assembly {
                    revert(add(err, 32), mload(err))
                }
            }
        }
    }
}

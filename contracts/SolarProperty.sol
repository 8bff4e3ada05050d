// SPDX-License-Identifier: MIT
pragma solidity ^0.8.24;

import {AccessControl} from "@openzeppelin/contracts/access/AccessControl.sol";
import {ReentrancyGuardTransient} from "@openzeppelin/contracts/utils/ReentrancyGuardTransient.sol";
import {MerkleProof} from "@openzeppelin/contracts/utils/cryptography/MerkleProof.sol";
import {SafeCast} from "@openzeppelin/contracts/utils/math/SafeCast.sol";

/**
 * @title SolarProperty: shared ownership and periodic settlement of community solar systems
 * @notice An approver registers a solar system with its holders and their shares. The system's hub settles
 * each period once: it anchors the Merkle root of the period's readings and bills every holder who is still
 * paying off a share for the energy of their portion that they consumed. Holders pay bills (oldest first)
 * and pay off their holding; they may prepay a deposit that each settlement draws from. A bill unpaid past
 * the grace period puts the holder out of good standing, and then anyone may repossess the share: it moves
 * to the grid portion and the holder's equity, net of debt, becomes withdrawable. All outgoing money is
 * pulled (`withdraw`, `withdrawDeposit`), never pushed.
 * @dev See docs/contract.md for the money flows, rounding and bounds. Invariant kept by every function:
 * address(this).balance == sum(withdrawable) + sum(prepaid) + sum(equityPaid of holders still paying).
 * Bills are not stored as such: a bill paid from the deposit leaves no record but its event, and only the part
 * a deposit did not cover becomes an entry of the holder's prefix-summed debt ledger, so paying clears the
 * oldest debt first in O(1) and finding the oldest unpaid due time is a binary search (O(log n)). Everything
 * settle needs about a holder fits in 128 bits, two holders per storage slot, so settle touches half a slot
 * per holder while deposits cover the bills; ledger entries are also packed two per slot.
 */
contract SolarProperty is AccessControl, ReentrancyGuardTransient {
    // ---------------------------------------------------------------- constants

    /// @notice Role that registers systems and administers their hub roles.
    bytes32 public constant APPROVER_ROLE = keccak256("APPROVER_ROLE");
    /// @notice Seed of the per-system hub role; see {hubRole}.
    bytes32 public constant HUB_ROLE = keccak256("HUB_ROLE");
    /// @notice Shares are in basis points and must sum to exactly this.
    uint16 public constant TOTAL_SHARES_BPS = 10_000;
    /// @notice Upper bound on holders per system: bounds the work of settle and registerSystem.
    uint256 public constant MAX_HOLDERS = 64;
    /// @notice Length of a MAM channel root (and of any IOTA address/hash) in trytes.
    uint256 public constant TRYTES_LENGTH = 81;
    /// @dev Divisor of a bill: prices are per kWh (1000 Wh) and shares in basis points (10000).
    uint256 private constant BILL_DIVISOR = 1000 * 10_000;

    // A holder's hot state, 128 bits, two holders per slot (holder i in slot i/2, low half if i is even):
    //   bits 0..79 prepaid (wei) | 80..95 shareBps | 96..103 status | 104..127 debt-ledger entry count.
    // Debt-ledger entries are 128 bits too, two per slot: cumulative unpaid amount (88 bits) << 40 | due time.
    uint256 private constant HALF_MASK = type(uint128).max;
    uint256 private constant PREPAID_MASK = type(uint80).max;
    uint256 private constant SHARE_SHIFT = 80;
    uint256 private constant STATUS_SHIFT = 96;
    uint256 private constant COUNT_SHIFT = 104;
    uint256 private constant DUE_BITS = 40;
    uint256 private constant DUE_MASK = type(uint40).max;
    /// @dev Bit c is set for every tryte character c: "9" (57) and "A".."Z" (65..90).
    uint256 private constant TRYTE_ALPHABET = (1 << 57) | (((1 << 26) - 1) << 65);

    // ---------------------------------------------------------------- types

    /// @notice Where a holder stands: NONE is never stored for a registered holder.
    enum HolderStatus {
        NONE,
        PAYING,
        OWNED,
        REPOSSESSED
    }

    /// @dev Four storage slots; settle reads slots 0, 1 and 3 and writes slot 3.
    struct System {
        address beneficiary;
        uint32 gracePeriod;
        uint16 gridShareBps;
        uint8 holderCount;
        uint40 registeredAt;
        uint128 pricePerKWh;
        uint128 totalValue;
        bytes32 mamChannelRootHash;
        uint64 lastPeriodId;
        uint48 lastPeriodEnd;
    }

    /// @dev Three storage slots: the cost of anchoring a period, independent of its reading count.
    struct Period {
        bytes32 readingsRoot;
        bytes32 mamRootHash;
        uint48 start;
        uint48 end;
        uint48 settledAt;
        uint32 readingCount;
        uint64 generationWh;
    }

    /// @dev A holder's hot state, unpacked (in storage it is 128 bits, see HALF_MASK and the shifts above).
    struct HolderState {
        uint256 prepaid;
        uint256 shareBps;
        HolderStatus status;
        uint256 debtCount;
    }

    /// @dev Cold per-holder ledger, untouched by settle.
    struct HolderLedger {
        uint128 equityPaid;
        uint128 debtCleared;
    }

    /// @notice Everything about a system, as returned by {systemInfo}.
    struct SystemView {
        address beneficiary;
        uint256 pricePerKWh;
        uint256 totalValue;
        uint256 gracePeriod;
        bytes32 mamChannelRootHash;
        uint256 holderCount;
        uint256 gridShareBps;
        uint64 lastPeriodId;
        uint256 lastPeriodEnd;
        uint256 registeredAt;
    }

    /// @notice Everything about a holder of a system, as returned by {holderInfo}.
    struct HolderView {
        address account;
        uint256 index;
        uint256 shareBps;
        HolderStatus status;
        uint256 holdingValue;
        uint256 equityPaid;
        uint256 debt;
        uint256 prepaid;
        bool inGoodStanding;
        uint64 nextDueTime;
    }

    /// @notice A settled period, as returned by {periodInfo}.
    struct PeriodView {
        bytes32 readingsRoot;
        bytes32 mamRootHash;
        uint256 readingCount;
        uint256 start;
        uint256 end;
        uint256 settledAt;
        uint256 dueTime;
        uint256 generationWh;
    }

    // ---------------------------------------------------------------- storage

    /// @notice Number of registered systems; system ids are 1..systemCount.
    uint256 public systemCount;
    /// @notice Pull-payment balances: what each account can take out with {withdraw}.
    mapping(address account => uint256 amount) public withdrawable;

    mapping(uint256 systemId => System) private _systems;
    mapping(uint256 systemId => mapping(uint256 periodId => Period)) private _periods;
    /// @dev Two packed HolderStates per word: holder i lives in word i / 2.
    mapping(uint256 systemId => mapping(uint256 pair => uint256 word)) private _holderWords;
    mapping(uint256 systemId => mapping(uint256 index => HolderLedger)) private _ledgers;
    mapping(uint256 systemId => mapping(uint256 index => address)) private _holderAccounts;
    mapping(uint256 systemId => mapping(address account => uint256 indexPlusOne)) private _holderIndexPlusOne;
    /// @dev A holder's debt ledger, two entries per word: entry k = (cumulative unpaid amount through entry k) << 40
    /// | due time, in word k / 2.
    mapping(uint256 systemId => mapping(uint256 index => mapping(uint256 pair => uint256 word))) private _debtWords;

    // ---------------------------------------------------------------- events

    event SystemRegistered(
        uint256 indexed systemId,
        address indexed hub,
        address indexed beneficiary,
        uint256 pricePerKWh,
        uint256 totalValue,
        uint256 gracePeriod,
        string mamChannelRoot,
        address[] holders,
        uint16[] sharesBps
    );
    event PeriodSettled(
        uint256 indexed systemId,
        uint256 indexed periodId,
        uint256 start,
        uint256 end,
        bytes32 readingsRoot,
        string mamRoot,
        uint256 readingCount,
        uint256 generationWh,
        uint256 dueTime
    );
    /// @notice Bills of a period in holder order: `amounts[i]` billed to holder i, of which `unpaid[i]` became
    /// debt and the rest was paid from their deposit.
    event Billed(uint256 indexed systemId, uint256 indexed periodId, uint256[] amounts, uint256[] unpaid);
    event Paid(uint256 indexed systemId, address indexed holder, uint256 toDebt, uint256 toEquity, uint256 toCredit);
    event Deposited(uint256 indexed systemId, address indexed holder, uint256 toDebt, uint256 toPrepaid);
    event DepositWithdrawn(uint256 indexed systemId, address indexed holder, uint256 amount);
    event ShareOwned(uint256 indexed systemId, address indexed holder, uint256 shareBps, uint256 holdingValue);
    event Repossessed(
        uint256 indexed systemId,
        address indexed holder,
        uint256 shareBps,
        uint256 equityReturned,
        uint256 debtRecovered,
        uint256 debtRemaining
    );
    /// @notice `account`'s withdrawable balance grew by `amount` because of something in system `systemId`.
    event Credited(address indexed account, uint256 indexed systemId, uint256 amount);
    event Withdrawn(address indexed account, uint256 amount);

    // ---------------------------------------------------------------- errors

    error ZeroAddress();
    error InvalidPrice();
    error InvalidTotalValue();
    error InvalidTrytes();
    error InvalidHolderCount(uint256 count);
    error LengthMismatch(uint256 expected, uint256 actual);
    error ZeroShare(address holder);
    error DuplicateHolder(address holder);
    error SharesDoNotSum(uint256 sum);
    error UnknownSystem(uint256 systemId);
    error PeriodAlreadySettled(uint256 systemId, uint256 periodId);
    error PeriodOutOfOrder(uint256 periodId, uint256 lastPeriodId);
    error InvalidPeriodRange(uint256 start, uint256 end);
    error PeriodOverlap(uint256 start, uint256 lastPeriodEnd);
    error PeriodNotEnded(uint256 end, uint256 nowTime);
    error EmptyPeriod();
    error PeriodNotSettled(uint256 systemId, uint256 periodId);
    error NotHolder(uint256 systemId, address account);
    error HolderNotPaying(uint256 systemId, address holder, HolderStatus status);
    error HolderInGoodStanding(uint256 systemId, address holder);
    error ZeroAmount();
    error InsufficientPrepaid(uint256 available, uint256 requested);
    error NothingToWithdraw();
    error TransferFailed(address to, uint256 amount);

    // ---------------------------------------------------------------- construction

    /// @param admin gets DEFAULT_ADMIN_ROLE (grants and revokes approvers).
    /// @param approver gets APPROVER_ROLE (registers systems, administers their hub roles).
    constructor(address admin, address approver) {
        if (admin == address(0) || approver == address(0)) revert ZeroAddress();
        _grantRole(DEFAULT_ADMIN_ROLE, admin);
        _grantRole(APPROVER_ROLE, approver);
    }

    /// @notice The role that may settle system `systemId`. Its admin is APPROVER_ROLE, so approvers rotate hubs
    /// with grantRole/revokeRole.
    function hubRole(uint256 systemId) public pure returns (bytes32) {
        return keccak256(abi.encode(HUB_ROLE, systemId));
    }

    // ---------------------------------------------------------------- registration

    /**
     * @notice Register a solar system. Shares are basis points summing to exactly 10000; 1..64 distinct
     * holders; the MAM channel root is 81 trytes (A-Z, 9), stored as keccak256 of its ASCII bytes and emitted.
     * @return systemId the new system's id (1, 2, ...).
     */
    function registerSystem(
        address hub,
        address beneficiary,
        uint128 pricePerKWh,
        uint128 totalValue,
        uint32 gracePeriod,
        string calldata mamChannelRoot,
        address[] calldata holders,
        uint16[] calldata sharesBps
    ) external onlyRole(APPROVER_ROLE) returns (uint256 systemId) {
        if (hub == address(0) || beneficiary == address(0)) revert ZeroAddress();
        if (pricePerKWh == 0) revert InvalidPrice();
        if (totalValue == 0) revert InvalidTotalValue();
        bytes32 channelHash = _trytesHash(mamChannelRoot);
        uint256 n = holders.length;
        if (n == 0 || n > MAX_HOLDERS) revert InvalidHolderCount(n);
        if (sharesBps.length != n) revert LengthMismatch(n, sharesBps.length);

        systemId = ++systemCount;
        _storeHolders(systemId, holders, sharesBps);

        System storage s = _systems[systemId];
        s.beneficiary = beneficiary;
        s.gracePeriod = gracePeriod;
        s.holderCount = uint8(n); // n <= MAX_HOLDERS (64)
        s.registeredAt = uint40(block.timestamp);
        s.pricePerKWh = pricePerKWh;
        s.totalValue = totalValue;
        s.mamChannelRootHash = channelHash;

        bytes32 role = hubRole(systemId);
        _setRoleAdmin(role, APPROVER_ROLE);
        _grantRole(role, hub);
        emit SystemRegistered(
            systemId, hub, beneficiary, pricePerKWh, totalValue, gracePeriod, mamChannelRoot, holders, sharesBps
        );
    }

    /// @dev Validates and stores the holders; bounded by MAX_HOLDERS.
    function _storeHolders(uint256 systemId, address[] calldata holders, uint16[] calldata sharesBps) private {
        mapping(address => uint256) storage indexOf = _holderIndexPlusOne[systemId];
        mapping(uint256 => uint256) storage words = _holderWords[systemId];
        mapping(uint256 => address) storage accounts = _holderAccounts[systemId];
        uint256 sum = 0;
        uint256 word = 0;
        uint256 n = holders.length;
        for (uint256 i; i < n; ++i) {
            address holder = holders[i];
            uint16 share = sharesBps[i];
            if (holder == address(0)) revert ZeroAddress();
            if (share == 0) revert ZeroShare(holder);
            if (indexOf[holder] != 0) revert DuplicateHolder(holder);
            sum += share;
            indexOf[holder] = i + 1;
            accounts[i] = holder;
            word = _withHalf(
                word,
                i,
                _packHolder(HolderState({prepaid: 0, shareBps: share, status: HolderStatus.PAYING, debtCount: 0}))
            );
            if (i % 2 == 1 || i + 1 == n) {
                words[i / 2] = word;
                word = 0;
            }
        }
        if (sum != TOTAL_SHARES_BPS) revert SharesDoNotSum(sum);
    }

    // ---------------------------------------------------------------- settlement

    /**
     * @notice Settle one period of system `systemId` (its hub only). Period ids strictly increase (gaps allowed)
     * and periods may not overlap in time, so a retried settlement reverts instead of billing twice.
     * Each holder still paying is billed floor(min(consumed * 10000, generation * share) * price / 10^7) wei,
     * i.e. min(consumed, generation * share / 10000) Wh at `price` per kWh, multiplied before the one division;
     * the bill is paid from the holder's deposit first and the rest becomes debt due at now + grace period.
     * @param consumptionWh each holder's consumption in Wh, in holder order (entries of holders that own or lost
     * their share are ignored).
     */
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
    ) external nonReentrant {
        _checkRole(hubRole(systemId));
        System storage s = _systems[systemId];
        uint256 n = s.holderCount;
        if (n == 0) revert UnknownSystem(systemId);
        _checkPeriod(systemId, s, periodId, start, end);
        if (readingCount == 0 || readingsRoot == bytes32(0)) revert EmptyPeriod();
        if (consumptionWh.length != n) revert LengthMismatch(n, consumptionWh.length);
        bytes32 mamRootHash = _trytesHash(mamRoot);

        s.lastPeriodId = periodId;
        s.lastPeriodEnd = uint48(end); // end <= block.timestamp, checked
        _periods[systemId][periodId] = Period({
            readingsRoot: readingsRoot,
            mamRootHash: mamRootHash,
            start: uint48(start),
            end: uint48(end),
            settledAt: uint48(block.timestamp),
            readingCount: readingCount,
            generationWh: generationWh
        });
        uint256 dueTime = block.timestamp + s.gracePeriod;
        emit PeriodSettled(
            systemId, periodId, start, end, readingsRoot, mamRoot, readingCount, generationWh, dueTime
        );
        _bill(systemId, periodId, s, generationWh, consumptionWh, dueTime);
    }

    /// @dev Reverts unless the period comes after the last settled one, in id and in time, and has ended.
    function _checkPeriod(uint256 systemId, System storage s, uint64 periodId, uint64 start, uint64 end)
        private
        view
    {
        uint64 lastId = s.lastPeriodId;
        if (periodId <= lastId) {
            if (_periods[systemId][periodId].settledAt != 0) revert PeriodAlreadySettled(systemId, periodId);
            revert PeriodOutOfOrder(periodId, lastId);
        }
        if (start >= end) revert InvalidPeriodRange(start, end);
        if (start < s.lastPeriodEnd) revert PeriodOverlap(start, s.lastPeriodEnd);
        if (end > block.timestamp) revert PeriodNotEnded(end, block.timestamp);
    }

    /// @dev Bills every paying holder (bounded by MAX_HOLDERS), two holders per storage word. While deposits
    /// cover the bills this reads and writes each word once; a bill the deposit cannot cover appends (or extends)
    /// one entry of the holder's debt ledger.
    function _bill(
        uint256 systemId,
        uint64 periodId,
        System storage s,
        uint64 generationWh,
        uint64[] calldata consumptionWh,
        uint256 dueTime
    ) private {
        uint256 n = consumptionWh.length;
        uint256 price = s.pricePerKWh;
        mapping(uint256 => uint256) storage words = _holderWords[systemId];
        uint256[] memory amounts = new uint256[](n);
        uint256[] memory unpaid = new uint256[](n);
        uint256 fromDeposits = 0;
        for (uint256 w; w * 2 < n; ++w) {
            uint256 word = words[w];
            uint256 updated = word;
            for (uint256 i = w * 2; i < w * 2 + 2 && i < n; ++i) {
                uint256 half = _half(word, i);
                if (((half >> STATUS_SHIFT) & 0xff) != uint256(HolderStatus.PAYING)) continue;
                uint256 shareBps = (half >> SHARE_SHIFT) & 0xffff;
                uint256 billedBpsWh =
                    _min(uint256(consumptionWh[i]) * TOTAL_SHARES_BPS, uint256(generationWh) * shareBps);
                uint256 amount = (billedBpsWh * price) / BILL_DIVISOR;
                if (amount > 0) {
                    amounts[i] = amount;
                    uint256 covered = _min(amount, half & PREPAID_MASK);
                    fromDeposits += covered;
                    half -= covered; // prepaid is the lowest field and covered <= prepaid
                    if (covered < amount) {
                        unpaid[i] = amount - covered;
                        uint256 count = _addDebt(systemId, i, half >> COUNT_SHIFT, amount - covered, dueTime);
                        half = (half & ((1 << COUNT_SHIFT) - 1)) | (uint256(SafeCast.toUint24(count)) << COUNT_SHIFT);
                    }
                    updated = _withHalf(updated, i, half);
                }
            }
            if (updated != word) words[w] = updated;
        }
        if (fromDeposits != 0) _credit(s.beneficiary, systemId, fromDeposits);
        emit Billed(systemId, periodId, amounts, unpaid);
    }

    /// @dev Appends `amount` due at `dueTime` to holder `index`'s debt ledger; returns the new entry count.
    function _addDebt(uint256 systemId, uint256 index, uint256 count, uint256 amount, uint256 dueTime)
        private
        returns (uint256)
    {
        mapping(uint256 => uint256) storage words = _debtWords[systemId][index];
        uint256 cumulative = amount;
        if (count != 0) {
            uint256 last = _ledgerEntry(words, count - 1);
            cumulative += last >> DUE_BITS;
            if ((last & DUE_MASK) >= dueTime) {
                // Same due time (two periods settled in one block; due times never decrease because block time
                // does not and the grace period is fixed): extend the last entry instead of adding one.
                _setEntry(words, count - 1, _entry(cumulative, last & DUE_MASK));
                return count;
            }
        }
        _setEntry(words, count, _entry(cumulative, dueTime));
        return count + 1;
    }

    // ---------------------------------------------------------------- payments

    /**
     * @notice Pay as holder of system `systemId`: the payment clears your oldest debt first, then pays off your
     * holding until you own your share outright (status OWNED); anything beyond is credited to you and can be
     * withdrawn. Equity is held by the contract until you own your share, then released to the beneficiary.
     */
    function pay(uint256 systemId) external payable nonReentrant {
        if (msg.value == 0) revert ZeroAmount();
        uint256 index = _indexOf(systemId, msg.sender);
        HolderState memory h = _holder(systemId, index);
        HolderLedger storage ledger = _ledgers[systemId][index];
        address beneficiary = _systems[systemId].beneficiary;

        uint256 toDebt = _clearDebt(systemId, index, h.debtCount, ledger, msg.value);
        uint256 remaining = msg.value - toDebt;
        uint256 toEquity = 0;
        uint256 released = 0;
        if (remaining != 0 && h.status == HolderStatus.PAYING) {
            uint256 holding = _holdingValue(_systems[systemId].totalValue, h.shareBps);
            uint256 equity = ledger.equityPaid;
            toEquity = _min(remaining, holding - equity);
            remaining -= toEquity;
            ledger.equityPaid = uint128(equity + toEquity); // <= holding < 2^128
            if (equity + toEquity >= holding) {
                h.status = HolderStatus.OWNED;
                _setHolder(systemId, index, h);
                released = holding;
                emit ShareOwned(systemId, msg.sender, h.shareBps, holding);
            }
        }
        emit Paid(systemId, msg.sender, toDebt, toEquity, remaining);
        if (toDebt + released != 0) _credit(beneficiary, systemId, toDebt + released);
        if (remaining != 0) _credit(msg.sender, systemId, remaining);
    }

    /**
     * @notice Prepay as a holder still paying off a share: clears any debt first, the rest is kept as a deposit
     * that each settlement draws the new bills from. Withdraw what is left with {withdrawDeposit}.
     */
    function deposit(uint256 systemId) external payable nonReentrant {
        if (msg.value == 0) revert ZeroAmount();
        uint256 index = _indexOf(systemId, msg.sender);
        HolderState memory h = _holder(systemId, index);
        if (h.status != HolderStatus.PAYING) revert HolderNotPaying(systemId, msg.sender, h.status);
        uint256 toDebt = _clearDebt(systemId, index, h.debtCount, _ledgers[systemId][index], msg.value);
        uint256 toPrepaid = msg.value - toDebt;
        if (toPrepaid != 0) {
            h.prepaid += toPrepaid; // packing reverts above 2^80 - 1 wei (1.2 million ether)
            _setHolder(systemId, index, h);
        }
        emit Deposited(systemId, msg.sender, toDebt, toPrepaid);
        if (toDebt != 0) _credit(_systems[systemId].beneficiary, systemId, toDebt);
    }

    /// @notice Take `amount` of your unused deposit in system `systemId` back (any time, any status).
    /// @dev One of the two places ether leaves the contract ({withdraw} is the other): only to the caller, out of
    /// the caller's own balance, debited first (checks-effects-interactions) under the reentrancy lock. A failing
    /// recipient reverts the whole call, so nothing is lost.
    function withdrawDeposit(uint256 systemId, uint256 amount) external nonReentrant {
        if (amount == 0) revert ZeroAmount();
        uint256 indexPlusOne = _holderIndexPlusOne[systemId][msg.sender];
        if (indexPlusOne == 0) revert NotHolder(systemId, msg.sender);
        HolderState memory h = _holder(systemId, indexPlusOne - 1);
        if (amount > h.prepaid) revert InsufficientPrepaid(h.prepaid, amount);
        h.prepaid -= amount;
        _setHolder(systemId, indexPlusOne - 1, h);
        emit DepositWithdrawn(systemId, msg.sender, amount);
        (bool ok,) = payable(msg.sender).call{value: amount}("");
        if (!ok) revert TransferFailed(msg.sender, amount);
    }

    /// @notice Withdraw everything credited to you (beneficiary income, overpayments, refunded equity).
    /// @dev Same pattern as {withdrawDeposit}: debit, event, then the transfer to the caller.
    function withdraw() external nonReentrant {
        uint256 amount = withdrawable[msg.sender];
        if (amount == 0) revert NothingToWithdraw();
        withdrawable[msg.sender] = 0;
        emit Withdrawn(msg.sender, amount);
        (bool ok,) = payable(msg.sender).call{value: amount}("");
        if (!ok) revert TransferFailed(msg.sender, amount);
    }

    // ---------------------------------------------------------------- grace and repossession

    /**
     * @notice Repossess `holder`'s share of system `systemId` once they are out of good standing (anyone may
     * call). The share moves to the grid portion; the holder's escrowed equity first pays their debt (to the
     * beneficiary) and the rest is credited to them; debt beyond their equity stays on record and can still be
     * paid with {pay}.
     */
    function repossess(uint256 systemId, address holder) external nonReentrant {
        uint256 index = _indexOf(systemId, holder);
        HolderState memory h = _holder(systemId, index);
        if (h.status != HolderStatus.PAYING) revert HolderNotPaying(systemId, holder, h.status);
        HolderLedger storage ledger = _ledgers[systemId][index];
        (uint256 debt, uint64 nextDue) = _debtAndNextDue(systemId, index, h.debtCount, ledger.debtCleared);
        if (debt == 0 || block.timestamp <= nextDue) revert HolderInGoodStanding(systemId, holder);

        System storage s = _systems[systemId];
        uint256 share = h.shareBps;
        s.gridShareBps += uint16(share); // shares sum to 10000
        h.shareBps = 0;
        h.status = HolderStatus.REPOSSESSED;
        _setHolder(systemId, index, h);

        uint256 equity = ledger.equityPaid;
        uint256 recovered = _min(equity, debt);
        ledger.equityPaid = 0;
        ledger.debtCleared += uint128(recovered); // recovered <= equity < 2^128
        emit Repossessed(systemId, holder, share, equity - recovered, recovered, debt - recovered);
        if (recovered != 0) _credit(s.beneficiary, systemId, recovered);
        if (equity != recovered) _credit(holder, systemId, equity - recovered);
    }

    // ---------------------------------------------------------------- views

    /// @notice True unless a bill of `holder` is unpaid past its due time, or their share was repossessed.
    function isInGoodStanding(uint256 systemId, address holder) external view returns (bool) {
        uint256 index = _indexOf(systemId, holder);
        HolderState memory h = _holder(systemId, index);
        (uint256 debt, uint64 nextDue) =
            _debtAndNextDue(systemId, index, h.debtCount, _ledgers[systemId][index].debtCleared);
        return _standing(h.status, debt, nextDue);
    }

    /**
     * @notice What the hub needs, in one eth_call, to decide whether to keep supplying `holder`'s loads.
     * @return prepaid the unused deposit (pays the next bills)
     * @return debt unpaid bills
     * @return nextDueTime due time of the oldest unpaid bill (0 without debt)
     * @return inGoodStanding see {isInGoodStanding}
     * @return owned the holder owns their share outright (never billed)
     */
    function supplyStatus(uint256 systemId, address holder)
        external
        view
        returns (uint256 prepaid, uint256 debt, uint64 nextDueTime, bool inGoodStanding, bool owned)
    {
        uint256 index = _indexOf(systemId, holder);
        HolderState memory h = _holder(systemId, index);
        (debt, nextDueTime) = _debtAndNextDue(systemId, index, h.debtCount, _ledgers[systemId][index].debtCleared);
        prepaid = h.prepaid;
        inGoodStanding = _standing(h.status, debt, nextDueTime);
        owned = h.status == HolderStatus.OWNED;
    }

    /// @notice A holder's full status; reverts with NotHolder for an account that is not a holder.
    function holderInfo(uint256 systemId, address holder) external view returns (HolderView memory v) {
        uint256 index = _indexOf(systemId, holder);
        HolderState memory h = _holder(systemId, index);
        HolderLedger memory ledger = _ledgers[systemId][index];
        (uint256 debt, uint64 nextDue) = _debtAndNextDue(systemId, index, h.debtCount, ledger.debtCleared);
        v.account = holder;
        v.index = index;
        v.shareBps = h.shareBps;
        v.status = h.status;
        v.holdingValue = h.shareBps == 0 ? 0 : _holdingValue(_systems[systemId].totalValue, h.shareBps);
        v.equityPaid = ledger.equityPaid;
        v.debt = debt;
        v.prepaid = h.prepaid;
        v.inGoodStanding = _standing(h.status, debt, nextDue);
        v.nextDueTime = nextDue;
    }

    /// @notice The holders of a system and their current shares, in holder (settlement) order.
    function holderList(uint256 systemId)
        external
        view
        returns (address[] memory accounts, uint16[] memory sharesBps)
    {
        _requireSystem(systemId);
        uint256 n = _systems[systemId].holderCount;
        accounts = new address[](n);
        sharesBps = new uint16[](n);
        for (uint256 i; i < n; ++i) {
            accounts[i] = _holderAccounts[systemId][i];
            sharesBps[i] = uint16(_holder(systemId, i).shareBps);
        }
    }

    /// @notice A registered system; reverts with UnknownSystem otherwise.
    function systemInfo(uint256 systemId) external view returns (SystemView memory v) {
        _requireSystem(systemId);
        System storage s = _systems[systemId];
        v.beneficiary = s.beneficiary;
        v.pricePerKWh = s.pricePerKWh;
        v.totalValue = s.totalValue;
        v.gracePeriod = s.gracePeriod;
        v.mamChannelRootHash = s.mamChannelRootHash;
        v.holderCount = s.holderCount;
        v.gridShareBps = s.gridShareBps;
        v.lastPeriodId = s.lastPeriodId;
        v.lastPeriodEnd = s.lastPeriodEnd;
        v.registeredAt = s.registeredAt;
    }

    /// @notice A settled period; reverts with PeriodNotSettled otherwise.
    function periodInfo(uint256 systemId, uint256 periodId) external view returns (PeriodView memory v) {
        Period storage p = _periods[systemId][periodId];
        uint256 settledAt = p.settledAt;
        if (settledAt == 0) revert PeriodNotSettled(systemId, periodId);
        v.readingsRoot = p.readingsRoot;
        v.mamRootHash = p.mamRootHash;
        v.readingCount = p.readingCount;
        v.start = p.start;
        v.end = p.end;
        v.settledAt = settledAt;
        v.dueTime = settledAt + _systems[systemId].gracePeriod;
        v.generationWh = p.generationWh;
    }

    /**
     * @notice Whether `leaf` is one of the readings anchored for period `periodId` of system `systemId`.
     * @param leaf the leaf *value*: the reading's digest, keccak256 of its canonical bytes. The contract applies
     * the StandardMerkleTree leaf hash keccak256(keccak256(abi.encode(leaf))) itself, so an inner node can never
     * pass as a leaf.
     * @param proof the sibling hashes from @openzeppelin/merkle-tree's getProof (or settlement/merkle.py).
     */
    function verifyReading(uint256 systemId, uint256 periodId, bytes32 leaf, bytes32[] calldata proof)
        external
        view
        returns (bool)
    {
        bytes32 root = _periods[systemId][periodId].readingsRoot;
        if (root == bytes32(0)) revert PeriodNotSettled(systemId, periodId);
        return MerkleProof.verifyCalldata(proof, root, keccak256(bytes.concat(keccak256(abi.encode(leaf)))));
    }

    // ---------------------------------------------------------------- internals

    /// @dev Index of `account` among the holders of `systemId`, or revert NotHolder.
    function _indexOf(uint256 systemId, address account) private view returns (uint256) {
        uint256 indexPlusOne = _holderIndexPlusOne[systemId][account];
        if (indexPlusOne == 0) revert NotHolder(systemId, account);
        return indexPlusOne - 1;
    }

    /// @dev Systems are numbered 1..systemCount.
    function _requireSystem(uint256 systemId) private view {
        if (systemId == 0 || systemId > systemCount) revert UnknownSystem(systemId);
    }

    /// @dev Value of a holding: ceil(totalValue * share / 10000), so the beneficiary is paid at least the
    /// system's total value and every positive share has a positive value.
    /// totalValue < 2^128 and shareBps <= 10000, so the product cannot overflow.
    function _holdingValue(uint256 totalValue, uint256 shareBps) private pure returns (uint256) {
        return (totalValue * shareBps + (TOTAL_SHARES_BPS - 1)) / TOTAL_SHARES_BPS;
    }

    function _min(uint256 a, uint256 b) private pure returns (uint256) {
        return a < b ? a : b;
    }

    function _standing(HolderStatus status, uint256 debt, uint64 nextDue) private view returns (bool) {
        if (status == HolderStatus.REPOSSESSED) return false;
        return debt == 0 || block.timestamp <= nextDue;
    }

    /// @dev Clears up to `available` of the holder's debt (oldest first: the ledger is a prefix sum, so this
    /// is a single counter update) and returns the amount cleared.
    function _clearDebt(
        uint256 systemId,
        uint256 index,
        uint256 count,
        HolderLedger storage ledger,
        uint256 available
    ) private returns (uint256 cleared) {
        if (count == 0) return 0;
        uint256 already = ledger.debtCleared;
        uint256 debt = (_ledgerEntry(_debtWords[systemId][index], count - 1) >> DUE_BITS) - already;
        cleared = _min(debt, available);
        if (cleared != 0) ledger.debtCleared = uint128(already + cleared); // <= cumulative billed, see below
    }

    /// @dev Outstanding debt and the due time of the oldest entry not fully cleared (0 without debt).
    /// Binary search over the holder's ledger: at most log2(count) + 1 reads, count < 2^32.
    function _debtAndNextDue(uint256 systemId, uint256 index, uint256 count, uint256 debtCleared)
        private
        view
        returns (uint256 debt, uint64 nextDue)
    {
        if (count == 0) return (0, 0);
        mapping(uint256 => uint256) storage words = _debtWords[systemId][index];
        debt = (_ledgerEntry(words, count - 1) >> DUE_BITS) - debtCleared;
        if (debt == 0) return (0, 0);
        uint256 lo = 0;
        uint256 hi = count - 1;
        while (lo < hi) {
            uint256 mid = (lo + hi) / 2;
            if ((_ledgerEntry(words, mid) >> DUE_BITS) > debtCleared) hi = mid;
            else lo = mid + 1;
        }
        nextDue = uint64(_ledgerEntry(words, lo) & DUE_MASK);
    }

    // ---------------------------------------------------------------- packing

    // Holder words and ledger words have separate helpers on purpose: ledger entries carry due times, and
    // sharing one packing function would make every holder field look timestamp-derived to data-flow analysis.

    /// @dev Holder `index`'s 128-bit half of its word.
    function _half(uint256 word, uint256 index) private pure returns (uint256) {
        return (word >> ((index % 2) * 128)) & HALF_MASK;
    }

    /// @dev `word` with holder `index`'s half replaced by `half` (< 2^128).
    function _withHalf(uint256 word, uint256 index, uint256 half) private pure returns (uint256) {
        uint256 shift = (index % 2) * 128;
        return (word & ~(HALF_MASK << shift)) | (half << shift);
    }

    function _packHolder(HolderState memory h) private pure returns (uint256) {
        return uint256(SafeCast.toUint80(h.prepaid)) | (h.shareBps << SHARE_SHIFT)
            | (uint256(h.status) << STATUS_SHIFT) | (uint256(SafeCast.toUint24(h.debtCount)) << COUNT_SHIFT);
    }

    function _holder(uint256 systemId, uint256 index) private view returns (HolderState memory h) {
        uint256 half = _half(_holderWords[systemId][index / 2], index);
        h.prepaid = half & PREPAID_MASK;
        h.shareBps = (half >> SHARE_SHIFT) & 0xffff;
        h.status = HolderStatus((half >> STATUS_SHIFT) & 0xff);
        h.debtCount = half >> COUNT_SHIFT;
    }

    function _setHolder(uint256 systemId, uint256 index, HolderState memory h) private {
        mapping(uint256 => uint256) storage words = _holderWords[systemId];
        words[index / 2] = _withHalf(words[index / 2], index, _packHolder(h));
    }

    /// @dev A ledger entry: cumulative unpaid amount (at most 2^88 - 1 wei) << 40 | due time.
    function _entry(uint256 cumulative, uint256 dueTime) private pure returns (uint256) {
        return (uint256(SafeCast.toUint88(cumulative)) << DUE_BITS) | dueTime;
    }

    /// @dev Ledger entry `k` (two per word, entry k in word k / 2).
    function _ledgerEntry(mapping(uint256 => uint256) storage words, uint256 k) private view returns (uint256) {
        return (words[k / 2] >> ((k % 2) * 128)) & HALF_MASK;
    }

    function _setEntry(mapping(uint256 => uint256) storage words, uint256 k, uint256 entry) private {
        uint256 shift = (k % 2) * 128;
        words[k / 2] = (words[k / 2] & ~(HALF_MASK << shift)) | (entry << shift);
    }

    /// @dev Keccak256 of an 81-tryte string, or revert InvalidTrytes. Reads the string 32 bytes at a time and
    /// looks each byte up in a 256-bit alphabet mask (bit c set for c in "9A..Z"): a fixed 81 steps, about 7k
    /// gas cheaper than indexing the calldata string byte by byte with bounds checks (measured 16.7k -> 9.4k).
    function _trytesHash(string calldata trytes) private pure returns (bytes32) {
        bytes calldata b = bytes(trytes);
        if (b.length != TRYTES_LENGTH) revert InvalidTrytes();
        uint256 invalid = 0;
        for (uint256 i; i < TRYTES_LENGTH; i += 32) {
            uint256 word = uint256(bytes32(b[i:])); // zero-padded past the end
            uint256 m = TRYTES_LENGTH - i < 32 ? TRYTES_LENGTH - i : 32;
            unchecked {
                // j < 32: no arithmetic here can overflow
                for (uint256 j; j < m; ++j) {
                    invalid |= ~(TRYTE_ALPHABET >> ((word >> (248 - 8 * j)) & 0xff)) & 1;
                }
            }
        }
        if (invalid != 0) revert InvalidTrytes();
        return keccak256(b);
    }

    function _credit(address account, uint256 systemId, uint256 amount) private {
        withdrawable[account] += amount;
        emit Credited(account, systemId, amount);
    }
}

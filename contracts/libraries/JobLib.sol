// SPDX-License-Identifier: Apache-2.0
pragma solidity ^0.8.28;

import {ILilypadMarketTypes} from "../interfaces/ILilypadMarket.sol";

/// @title JobLib: the arithmetic of a job, written once.
/// @notice Each non-final state of a job has a window that opens when the state begins and
/// closes at its deadline: the state's action may be taken while `block.timestamp <= deadline`,
/// and the state's timeout once `block.timestamp > deadline`. A posted result is committed to as
/// `keccak256(abi.encode(dataId, resultHash))`, and a `Job` is stored as the keccak256 of its
/// ABI encoding.
library JobLib {
    /// @dev A `Job` has only value-type fields, so its ABI encoding (in calldata) and its
    /// memory layout are both these 24 words.
    uint256 internal constant JOB_WORDS_SIZE = 24 * 32;

    // ------------------------------------------------------------------ deadlines

    /// @dev An open job may be matched until this time.
    function matchDeadline(ILilypadMarketTypes.Job calldata job) internal pure returns (uint256) {
        return uint256(job.createdAt) + job.matchTimeout;
    }

    /// @dev A matched job's provider may post (or give the job back) until this time.
    function runDeadline(ILilypadMarketTypes.Job calldata job) internal pure returns (uint256) {
        return uint256(job.matchedAt) + job.runTimeout;
    }

    /// @dev A posted result may be challenged until this time, and settled after it.
    function challengeDeadline(ILilypadMarketTypes.Job calldata job) internal pure returns (uint256) {
        return uint256(job.submittedAt) + job.challengeWindow;
    }

    /// @dev A challenged job's mediator may rule until this time.
    function mediationDeadline(ILilypadMarketTypes.Job calldata job) internal pure returns (uint256) {
        return uint256(job.challengedAt) + job.mediationTimeout;
    }

    /// @dev Reverts with DeadlinePassed unless job `id`'s window closing at `deadline` is open.
    function requireBefore(uint256 id, uint256 deadline) internal view {
        if (block.timestamp > deadline) revert ILilypadMarketTypes.DeadlinePassed(id, deadline);
    }

    /// @dev Reverts with DeadlineNotReached unless job `id`'s window closing at `deadline` is over.
    function requireAfter(uint256 id, uint256 deadline) internal view {
        if (block.timestamp <= deadline) revert ILilypadMarketTypes.DeadlineNotReached(id, deadline);
    }

    /// @dev What a provider that gives matched job `job` back now pays the payee: nothing in
    /// the first half of the run window, then a share of its collateral growing linearly to
    /// all of it at the run deadline (where a timeout would take all of it too), so holding a
    /// job to the last second and releasing it costs about what failing it does.
    function releasePenalty(ILilypadMarketTypes.Job calldata job) internal view returns (uint128) {
        uint256 window = job.runTimeout; // >= 1
        uint256 grace = window / 2; // < window
        uint256 elapsed = block.timestamp - job.matchedAt; // <= window (before the run deadline)
        if (elapsed <= grace) return 0;
        return uint128(uint256(job.collateral) * (elapsed - grace) / (window - grace));
    }

    // ------------------------------------------------------------------ hashes

    /// @dev The commitment a posted result is stored as, and checked against at settlement.
    function commitment(string calldata dataId, bytes32 resultHash) internal pure returns (bytes32) {
        return keccak256(abi.encode(dataId, resultHash));
    }

    /// @dev keccak256(abi.encode(job)) of a `Job` in calldata: its encoding copied as is.
    function hashCalldata(ILilypadMarketTypes.Job calldata job) internal pure returns (bytes32 h) {
        assembly ("memory-safe") {
            let m := mload(0x40)
            calldatacopy(m, job, JOB_WORDS_SIZE)
            h := keccak256(m, JOB_WORDS_SIZE)
        }
    }

    /// @dev keccak256(abi.encode(job)) of a `Job` in memory, which is laid out as its encoding.
    function hashMemory(ILilypadMarketTypes.Job memory job) internal pure returns (bytes32 h) {
        assembly ("memory-safe") {
            h := keccak256(job, JOB_WORDS_SIZE)
        }
    }
}

// SPDX-License-Identifier: Apache-2.0
pragma solidity ^0.8.0;

/// @notice The Lilypad reference's client-side interfaces, verbatim in ABI.
/// A contract that runs jobs implements `ILilypadJobClient` and calls `runJob` on the
/// job manager; the manager calls `submitResults` back on it once the job is settled.
/// `LilypadMarket.runJob` has exactly this selector and ABI, so a client compiled against
/// these interfaces works unchanged.
interface ILilypadJobClient {
    function submitResults(uint256 id, string memory dealId, string memory dataId) external;
}

interface ILilypadJobManager is ILilypadJobClient {
    function runJob(string memory module, string[] memory inputs, address payee) external returns (uint256);
}

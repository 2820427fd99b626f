// SPDX-License-Identifier: Apache-2.0
pragma solidity ^0.8.0;

import {ILilypadJobClient, ILilypadJobManager} from "../interfaces/ILilypadJobManager.sol";

/// @title ExampleClient: a contract that runs Lilypad jobs, written against the reference's
/// interfaces only (it would work unchanged against the reference's job manager).
/// @notice `runLilysay("hi")` asks for `lilysay:0.1.0` with `Message=hi`, paid by the caller
/// (who has approved the manager on the token and authorised this contract in it). The
/// manager calls `submitResults` when the job is settled.
contract ExampleClient is ILilypadJobClient {
    string public constant MODULE = "lilysay:0.1.0";
    ILilypadJobManager public immutable manager;

    event JobRequested(uint256 indexed id, address indexed payee, string message);
    event JobCompleted(uint256 indexed id, string dealId, string dataId);

    error OnlyManager(address caller);

    constructor(ILilypadJobManager manager_) {
        manager = manager_;
    }

    function runLilysay(string calldata message) external returns (uint256 id) {
        string[] memory inputs = new string[](1);
        inputs[0] = string.concat("Message=", message);
        id = manager.runJob(MODULE, inputs, msg.sender);
        emit JobRequested(id, msg.sender, message);
    }

    /// @notice Only emits, as the gas benchmark's client must; see StoringClient for one that stores.
    function submitResults(uint256 id, string memory dealId, string memory dataId) external {
        if (msg.sender != address(manager)) revert OnlyManager(msg.sender);
        emit JobCompleted(id, dealId, dataId);
    }
}

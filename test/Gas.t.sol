// SPDX-License-Identifier: Apache-2.0
pragma solidity ^0.8.28;

import {MarketFixture, JobFlow} from "./utils/MarketFixture.sol";

/// @notice Gas of one job's lifecycle on the contract path: the payee approves exactly the
/// payment and runs lilysay through ExampleClient; a solver matches it; the provider submits;
/// anyone settles after the challenge window and the client is called back. Each step is
/// recorded with snapshotGasLastCall (snapshots/lifecycle.json). The market, token and client
/// are cooled (vm.cool) before each step, so every step pays for cold storage as a transaction
/// of its own would.
contract GasTest is MarketFixture {
    function _coolAll() internal {
        vm.cool(address(market));
        vm.cool(address(token));
        vm.cool(address(client));
    }

    function test_lifecycle_contractPath() public {
        vm.startPrank(alice);
        token.approve(address(market), PAYMENT);
        // no total (as the authorisation before spending caps): see test_runJob_cappedClient for the
        // storage write a total adds
        market.authorizeClient(
            address(client),
            ClientAllowance({remaining: type(uint128).max, maxPayment: uint96(PAYMENT), minChallengeWindow: 60})
        );
        vm.stopPrank();
        JobRequest memory r = _request(alice);
        Job memory job = JobFlow.created(market, address(client), r);

        _coolAll();
        vm.prank(alice);
        uint256 id = client.runLilysay("hi");
        uint256 total = vm.snapshotGasLastCall("lifecycle", "runJob");
        assertEq(market.jobHash(id), market.hashJob(job), "created");
        assertEq(token.allowance(alice, address(market)), 0, "exactly the payment was approved");

        Job memory matched = _matched(job, provider);
        _coolAll();
        vm.prank(solver);
        market.matchJob(id, job, provider, mediatorIndex);
        total += vm.snapshotGasLastCall("lifecycle", "matchJob");
        job = matched;
        assertEq(market.jobHash(id), market.hashJob(job), "matched");

        _coolAll();
        vm.prank(provider);
        market.submitResult(id, job, CID, RESULT_HASH);
        total += vm.snapshotGasLastCall("lifecycle", "submitResult");
        job = JobFlow.submitted(job, CID, RESULT_HASH);
        assertEq(market.jobHash(id), market.hashJob(job), "submitted");

        _pastChallengeWindow(job);
        _coolAll();
        vm.prank(stranger);
        market.settle(id, job, CID, RESULT_HASH);
        total += vm.snapshotGasLastCall("lifecycle", "settle");
        assertEq(market.jobHash(id), bytes32(0), "settled");

        vm.snapshotValue("lifecycle", "total", total);
    }

    /// @dev runJob through a client whose authorisation has a total, counted down by each job.
    function test_runJob_cappedClient() public {
        vm.startPrank(alice);
        token.approve(address(market), PAYMENT);
        market.authorizeClient(
            address(client), ClientAllowance({remaining: 100 * PAYMENT, maxPayment: uint96(PAYMENT), minChallengeWindow: 60})
        );
        vm.stopPrank();
        _coolAll();
        vm.prank(alice);
        client.runLilysay("hi");
        vm.snapshotGasLastCall("lifecycle", "runJob_cappedClient");
        assertEq(market.clientAllowance(alice, address(client)).remaining, 99 * PAYMENT, "counted down");
    }
}

// SPDX-License-Identifier: Apache-2.0
pragma solidity ^0.8.28;

import {MarketFixture, JobFlow} from "./utils/MarketFixture.sol";

/// @notice Gas of one job's lifecycle on the contract path: the payee, who deposited into its
/// market balance once, runs lilysay through ExampleClient (the payment comes off that balance);
/// a solver matches it; the provider submits; anyone settles after the challenge window and the
/// client is called back. The same job paid by token approval (approve + transferFrom), a
/// client with a total cap, and matches and results of ten jobs in one matchMany / submitMany
/// are recorded too. Each step is recorded with snapshotGasLastCall (snapshots/lifecycle.json).
/// The market, token and client are cooled (vm.cool) before each step, so every step pays for
/// cold storage as a transaction of its own would.
contract GasTest is MarketFixture {
    uint256 internal constant BATCH = 10;

    function _coolAll() internal {
        vm.cool(address(market));
        vm.cool(address(token));
        vm.cool(address(client));
    }

    /// @dev alice authorises the client: no total (see test_runJob_cappedClient for the storage
    /// write a total adds), at most the payment per job.
    function _authorize() internal {
        vm.prank(alice);
        market.authorizeClient(
            address(client),
            ClientAllowance({remaining: type(uint128).max, maxPayment: uint96(PAYMENT), minChallengeWindow: 60})
        );
    }

    /// @dev alice's prepaid balance, and no token allowance left (only the balance can pay).
    function _prepay(uint256 amount) internal {
        vm.startPrank(alice);
        market.deposit(alice, amount);
        token.approve(address(market), 0);
        vm.stopPrank();
    }

    /// @dev Runs one job from runJob to settle; records each step under `prefix` + its name.
    function _lifecycle(string memory prefix) internal returns (uint256 total) {
        JobRequest memory r = _request(alice);
        Job memory job = JobFlow.created(market, address(client), r);

        _coolAll();
        vm.prank(alice);
        uint256 id = client.runLilysay("hi");
        total = vm.snapshotGasLastCall("lifecycle", string.concat(prefix, "runJob"));
        assertEq(market.jobHash(id), market.hashJob(job), "created");

        Job memory matched = _matched(job, provider);
        _coolAll();
        vm.prank(solver);
        market.matchJob(id, job, provider, mediatorIndex);
        total += vm.snapshotGasLastCall("lifecycle", string.concat(prefix, "matchJob"));
        job = matched;
        assertEq(market.jobHash(id), market.hashJob(job), "matched");

        _coolAll();
        vm.prank(provider);
        market.submitResult(id, job, CID, RESULT_HASH);
        total += vm.snapshotGasLastCall("lifecycle", string.concat(prefix, "submitResult"));
        job = JobFlow.submitted(job, CID, RESULT_HASH);
        assertEq(market.jobHash(id), market.hashJob(job), "submitted");

        _pastChallengeWindow(job);
        _coolAll();
        vm.prank(stranger);
        market.settle(id, job, CID, RESULT_HASH);
        total += vm.snapshotGasLastCall("lifecycle", string.concat(prefix, "settle"));
        assertEq(market.jobHash(id), bytes32(0), "settled");
    }

    function test_lifecycle_contractPath() public {
        _authorize();
        _prepay(5 * PAYMENT);
        uint256 total = _lifecycle("");
        assertEq(market.balanceOf(alice), 4 * PAYMENT + (PAYMENT - PRICE - PRICE / 20), "paid off the balance, refund back");
        vm.snapshotValue("lifecycle", "total", total);
    }

    function test_lifecycle_contractPathPaidByApproval() public {
        _authorize();
        _coolAll();
        vm.prank(alice);
        token.approve(address(market), PAYMENT);
        uint256 total = vm.snapshotGasLastCall("lifecycle", "approved_approve");
        total += _lifecycle("approved_");
        assertEq(token.allowance(alice, address(market)), 0, "exactly the payment was approved");
        vm.snapshotValue("lifecycle", "approved_total", total);
    }

    /// @dev runJob through a client whose authorisation has a total, counted down by each job.
    function test_runJob_cappedClient() public {
        _prepay(5 * PAYMENT);
        vm.prank(alice);
        market.authorizeClient(
            address(client), ClientAllowance({remaining: 100 * PAYMENT, maxPayment: uint96(PAYMENT), minChallengeWindow: 60})
        );
        _coolAll();
        vm.prank(alice);
        client.runLilysay("hi");
        vm.snapshotGasLastCall("lifecycle", "runJob_cappedClient");
        assertEq(market.clientAllowance(alice, address(client)).remaining, 99 * PAYMENT, "counted down");
    }

    /// @dev BATCH jobs of one payee matched by one matchMany and posted by one submitMany: the
    /// execution gas of each call for all ten (one transaction's 21,000 is shared on top).
    function test_batch_matchManyAndSubmitMany() public {
        _authorize();
        _prepay(BATCH * PAYMENT);
        JobRequest memory r = _request(alice);
        Match[] memory matches = new Match[](BATCH);
        for (uint256 i; i < BATCH; ++i) {
            Job memory job = JobFlow.created(market, address(client), r);
            vm.prank(alice);
            uint256 id = client.runLilysay("hi");
            matches[i] = Match({id: id, job: job, provider: provider, mediator: mediatorIndex});
        }
        _coolAll();
        vm.prank(solver);
        market.matchMany(matches);
        vm.snapshotGasLastCall("lifecycle", "matchMany_10jobs");

        Submission[] memory results = new Submission[](BATCH);
        for (uint256 i; i < BATCH; ++i) {
            Job memory job = _matched(matches[i].job, provider);
            assertEq(market.jobHash(matches[i].id), market.hashJob(job), "matched");
            results[i] = Submission({id: matches[i].id, job: job, dataId: CID, resultHash: RESULT_HASH});
        }
        _coolAll();
        vm.prank(provider);
        market.submitMany(results);
        vm.snapshotGasLastCall("lifecycle", "submitMany_10jobs");
        for (uint256 i; i < BATCH; ++i) {
            Job memory job = JobFlow.submitted(results[i].job, CID, RESULT_HASH);
            assertEq(market.jobHash(results[i].id), market.hashJob(job), "submitted");
        }
    }
}

// SPDX-License-Identifier: Apache-2.0
pragma solidity ^0.8.28;

import {MarketFixture, JobFlow} from "../utils/MarketFixture.sol";
import {MarketHandler} from "./MarketHandler.sol";

/// @notice Invariants of the market under random sequences of every action (see MarketHandler):
/// escrow solvency to the unit, conservation of the token supply, at most one payout per job,
/// the handler's model of every live job matching the chain, and an exit for every live job.
contract MarketInvariantsTest is MarketFixture {
    MarketHandler internal handler;
    address internal mediator2 = address(0x3ED2);
    uint256 internal initialSupply;

    function setUp() public override {
        super.setUp();
        _addMediator(mediator2); // index 1
        vm.prank(owner);
        market.setDefaultMediators(0x3);
        vm.prank(provider);
        market.setProviderMediators(0x3);
        vm.prank(provider2);
        market.setProviderMediators(0x3);
        vm.prank(alice);
        market.authorizeClient(address(client), _unlimited());
        vm.prank(bob);
        market.authorizeClient(address(client), _unlimited());
        vm.prank(stranger);
        token.approve(address(market), type(uint256).max);

        MarketHandler.Setup memory s;
        s.market = market;
        s.token = token;
        s.client = client;
        s.module = MODULE;
        s.creators = _list2(alice, bob);
        s.providers = _list2(provider, provider2);
        s.mediators = _list2(mediator, mediator2);
        s.challengers = new address[](3);
        s.challengers[0] = auditor;
        s.challengers[1] = alice;
        s.challengers[2] = bob;
        s.actors = _actors();
        s.solver = solver;
        s.stranger = stranger;
        handler = new MarketHandler(s);

        initialSupply = token.totalSupply();
        targetContract(address(handler));
        targetSelector(address(handler), handler.actions());
    }

    function _list2(address a, address b) internal pure returns (address[] memory l) {
        l = new address[](2);
        l[0] = a;
        l[1] = b;
    }

    function _actors() internal view returns (address[] memory l) {
        l = new address[](9);
        l[0] = alice;
        l[1] = bob;
        l[2] = solver;
        l[3] = provider;
        l[4] = provider2;
        l[5] = mediator;
        l[6] = mediator2;
        l[7] = auditor;
        l[8] = stranger;
    }

    function _sumCredits() internal view returns (uint256 sum) {
        address[] memory a = _actors();
        for (uint256 i; i < a.length; ++i) sum += market.balanceOf(a[i]);
        sum += market.balanceOf(address(client)) + market.balanceOf(owner) + market.balanceOf(address(handler));
    }

    function _sumEscrow() internal view returns (uint256 sum) {
        uint256[] memory ids = handler.ids();
        for (uint256 i; i < ids.length; ++i) {
            if (handler.live(ids[i])) sum += JobFlow.escrow(market, handler.jobOf(ids[i]));
        }
    }

    // ================================================================ invariants

    /// @dev A fixed pseudo-random walk of handler calls reaches a success of every action the
    /// fuzzer calls (the batched ones included), so none of them is dead code that the invariant
    /// runs would pass over silently; the invariants hold after it.
    function test_marketHandler_everyActionSucceedsSometimes() public {
        for (uint256 i; i < 40; ++i) {
            uint256 r = uint256(keccak256(abi.encode(i)));
            uint256 x = r >> 8;
            uint256 y = r >> 64;
            // odd seeds pick a live job in the state the action needs (see MarketHandler._pickId)
            uint256 gx = x | 1;
            uint256 gy = y | 1;
            handler.setOffer(i, uint128(1 ether + (y % 5) * 0.1 ether), i % 7 != 6);
            handler.deposit(x, y, y);
            handler.runJob(x, i % 2 == 0);
            handler.createJob(y, uint128(x), uint32(y >> 32), uint32(y >> 64), uint32(y >> 96), uint32(y >> 128));
            handler.matchJob(gx, y, i % 2, true); // mediator 0 or 1 (2 is not registered)
            handler.matchMany(gx, gy, ((i % 2) << 8) | (i >> 1), i % 6 != 5);
            if (i % 5 == 0) handler.releaseJob(gy, true);
            handler.submitResult(gx, y, i % 6 != 5);
            handler.submitMany(gy, gx, y >> 16, true);
            handler.challenge(gx, y);
            if (i % 4 == 0) handler.upholdChallenge(gy, true);
            if (i % 4 == 1) handler.rejectChallenge(gx, true, false); // the rest time out below
            if (i % 5 == 4) handler.cancelJob(y, x);
            handler.warp(302); // past the challenge window (300 s)
            handler.settle(gx, y, i % 6 == 5);
            handler.settleMany(gy, gx, i);
            if (i % 4 == 3) {
                handler.warp(4 * (3 hours)); // about 3 hours: past every other window
                handler.expireJob(gx);
                handler.timeoutResult(gy);
                handler.timeoutMediation(gx);
            }
            handler.withdraw(x, y, x);
        }
        string[20] memory names = [
            "runJob",
            "createJob",
            "matchJob",
            "releaseJob",
            "matchMany",
            "submitMany",
            "submitResult",
            "challenge",
            "upholdChallenge",
            "rejectChallenge",
            "settle",
            "settleMany",
            "cancelJob",
            "expireJob",
            "timeoutResult",
            "timeoutMediation",
            "deposit",
            "withdraw",
            "setOffer",
            "warp"
        ];
        for (uint256 i; i < names.length; ++i) {
            emit log_named_uint(names[i], handler.calls(keccak256(bytes(names[i]))));
        }
        for (uint256 i; i < names.length; ++i) {
            assertGt(handler.calls(keccak256(bytes(names[i]))), 0, string.concat(names[i], " never succeeded"));
        }
        invariant_escrowIsExactlySolvent();
        invariant_tokenSupplyIsConserved();
        invariant_jobsAreFinalizedAtMostOnce();
        invariant_everyLiveJobHasAnExit();
    }

    /// @dev The market's tokens are exactly what it owes: free balances plus, for each live
    /// job, its payment, the collateral once matched and the challenge deposit once challenged.
    function invariant_escrowIsExactlySolvent() public view {
        assertEq(token.balanceOf(address(market)), _sumCredits() + _sumEscrow(), "market tokens == credits + escrow");
    }

    /// @dev No value is created or destroyed: the supply is constant and all of it sits with
    /// the actors and the market.
    function invariant_tokenSupplyIsConserved() public view {
        assertEq(token.totalSupply(), initialSupply, "supply constant");
        address[] memory a = _actors();
        uint256 sum = token.balanceOf(address(market)) + token.balanceOf(owner) + token.balanceOf(address(client))
            + token.balanceOf(address(handler)) + token.balanceOf(address(this));
        for (uint256 i; i < a.length; ++i) sum += token.balanceOf(a[i]);
        assertEq(sum, initialSupply, "every token accounted for");
    }

    /// @dev A job is paid out at most once; a finished job has no stored hash; a live job's
    /// stored hash is the hash of the Job the handler's model carries (JobFlow == market).
    function invariant_jobsAreFinalizedAtMostOnce() public view {
        uint256[] memory ids = handler.ids();
        for (uint256 i; i < ids.length; ++i) {
            uint256 id = ids[i];
            uint256 n = handler.finalizations(id);
            assertLe(n, 1, "finalized at most once");
            if (handler.live(id)) {
                assertEq(n, 0, "live jobs are not finalized");
                assertEq(market.jobHash(id), keccak256(abi.encode(handler.jobOf(id))), "model == chain");
            } else {
                assertEq(n, 1, "a job leaves the live set only by finalization");
                assertEq(market.jobHash(id), bytes32(0), "finalized jobs have no hash");
            }
        }
        assertEq(market.jobCount(), ids.length, "every created job is tracked");
    }

    /// @dev Every live job is in a non-final state whose window began in the past and ends at
    /// most MAX_TIMEOUT later, after which a timeout (or settlement) is open to anyone.
    function invariant_everyLiveJobHasAnExit() public view {
        uint256[] memory ids = handler.ids();
        uint256 maxT = market.MAX_TIMEOUT();
        for (uint256 i; i < ids.length; ++i) {
            if (!handler.live(ids[i])) continue;
            Job memory job = handler.jobOf(ids[i]);
            assertTrue(job.state != JobState.None, "non-final state");
            uint256 stamp = JobFlow.stamp(job);
            uint256 deadline = JobFlow.deadline(job);
            assertLe(stamp, handler.time(), "state began in the past");
            assertGe(deadline, stamp + 1, "window is at least a second");
            assertLe(deadline - stamp, maxT, "window is at most MAX_TIMEOUT");
        }
    }

    /// @dev After each run: past every deadline, a stranger ends every live job, after which the
    /// market owes exactly what it holds and everyone can withdraw it all. (Run on a snapshot.)
    function afterInvariant() public {
        uint256 snap = vm.snapshotState();
        uint256[] memory ids = handler.ids();
        uint256 latest = handler.time();
        for (uint256 i; i < ids.length; ++i) {
            if (!handler.live(ids[i])) continue;
            uint256 d = JobFlow.deadline(handler.jobOf(ids[i]));
            if (d > latest) latest = d;
        }
        vm.warp(latest + 1);
        for (uint256 i; i < ids.length; ++i) {
            uint256 id = ids[i];
            if (!handler.live(id)) continue;
            Job memory job = handler.jobOf(id);
            (string memory dataId, bytes32 resultHash) = handler.resultOf(id);
            vm.prank(stranger);
            if (job.state == JobState.Open) {
                market.expireJob(id, job);
            } else if (job.state == JobState.Matched) {
                market.timeoutResult(id, job);
            } else if (job.state == JobState.Submitted) {
                market.settle(id, job, dataId, resultHash);
            } else {
                market.timeoutMediation(id, job, dataId, resultHash);
            }
            assertEq(market.jobHash(id), bytes32(0), "exited");
        }
        assertEq(token.balanceOf(address(market)), _sumCredits(), "all escrow released to balances");
        address[] memory a = _actors();
        for (uint256 i; i < a.length; ++i) {
            uint256 b = market.balanceOf(a[i]);
            if (b == 0) continue;
            vm.prank(a[i]);
            market.withdraw(b, a[i]);
        }
        assertEq(token.balanceOf(address(market)), 0, "market drained to zero");
        vm.revertToState(snap);
    }
}

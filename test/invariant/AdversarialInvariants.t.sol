// SPDX-License-Identifier: Apache-2.0
pragma solidity ^0.8.28;

import {MarketFixture, JobFlow} from "../utils/MarketFixture.sol";
import {ProbeClient} from "../utils/Clients.sol";
import {AdversarialHandler} from "./AdversarialHandler.sol";

/// @notice Issue 12's properties under arbitrary calls by attackers (see AdversarialHandler):
/// the honest provider never loses collateral (it never posts a wrong result, so no mediator
/// ever proves one), the honest creator gets a correct result or its payment back, value is
/// conserved, and every attack that fails, fails with one of the market's own errors.
contract AdversarialInvariantsTest is MarketFixture {
    AdversarialHandler internal handler;
    address internal eve = address(0xE5E);
    address internal evilMed = address(0xE5ED);
    ProbeClient internal dapp;
    uint256 internal initialSupply;
    uint256 internal providerStart;
    uint256 internal creatorStart;

    function setUp() public override {
        super.setUp();
        _fund(eve);
        _fund(evilMed);
        // the attackers' set-up: eve is a solver and a provider accepting its own mediator too
        uint8 evilIndex = _addMediator(evilMed); // the owner approved it; honest parties do not accept it
        assertEq(evilIndex, 1, "index 1");
        vm.startPrank(eve);
        market.registerSolver();
        market.registerProvider(0x3);
        market.deposit(eve, 200 ether);
        market.setOffer(moduleId, _offer(PRICE, true));
        ModuleSpec memory quick = _spec();
        quick.runTimeout = 1;
        quick.requirements = Resources({cpuMilli: 0, ramMb: 0, diskMb: 0, vramMb: 0, gpus: 0});
        market.publishModule("evil", "1", quick);
        vm.stopPrank();
        vm.prank(provider2);
        market.setProviderMediators(0x3);
        // the honest creator's dapp, authorised within a cap
        dapp = new ProbeClient(market);
        vm.prank(alice);
        market.authorizeClient(
            address(dapp), ClientAllowance({remaining: 100 ether, maxPayment: 20 ether, minChallengeWindow: 60})
        );
        // the honest provider: its fixture offer, any module that fits too, the default mediators
        vm.startPrank(provider);
        market.registerProvider(0);
        market.setResources(Resources({cpuMilli: 8000, ramMb: 8192, diskMb: 10_000, vramMb: 0, gpus: 0}));
        market.setOffer(bytes32(0), _offer(PRICE, true));
        vm.stopPrank();

        AdversarialHandler.Actors memory a = AdversarialHandler.Actors({
            honestProvider: provider,
            honestCreator: alice,
            honestSolver: solver,
            honestMediator: mediator,
            eve: eve,
            other: provider2,
            evilMed: evilMed,
            dapp: dapp
        });
        handler = new AdversarialHandler(market, a, MODULE, "evil:1");
        initialSupply = token.totalSupply();
        providerStart = _wealth(provider);
        creatorStart = _wealth(alice);
        targetContract(address(handler));
        targetSelector(address(handler), handler.actions());
    }

    function _wealth(address who) internal view returns (uint256) {
        return token.balanceOf(who) + market.balanceOf(who);
    }

    /// @dev The honest provider's collateral locked in live jobs, and the honest creator's
    /// money in escrow (payments of live jobs it pays for, deposits of its challenges).
    function _escrowed() internal view returns (uint256 providerLocked, uint256 creatorEscrow) {
        uint256[] memory ids = handler.ids();
        uint256 deposit = market.challengeDeposit();
        for (uint256 i; i < ids.length; ++i) {
            if (!handler.live(ids[i])) continue;
            Job memory job = handler.jobOf(ids[i]);
            if (job.provider == provider && uint8(job.state) >= uint8(JobState.Matched)) {
                providerLocked += job.collateral;
            }
            if (job.payee == alice) creatorEscrow += job.payment;
            if (job.state == JobState.Challenged && job.challenger == alice) creatorEscrow += deposit;
        }
    }

    function _sumEscrow() internal view returns (uint256 sum) {
        uint256[] memory ids = handler.ids();
        for (uint256 i; i < ids.length; ++i) {
            if (handler.live(ids[i])) sum += JobFlow.escrow(market, handler.jobOf(ids[i]));
        }
    }

    function _sumCredits() internal view returns (uint256 sum) {
        address[11] memory who =
            [alice, bob, solver, provider, provider2, mediator, auditor, stranger, eve, evilMed, address(dapp)];
        for (uint256 i; i < who.length; ++i) sum += market.balanceOf(who[i]);
    }

    // ================================================================ the handler reaches every outcome

    /// @dev A fixed pseudo-random walk of 600 handler calls reaches a success of every action,
    /// so none of them is dead code that the invariant runs would pass over silently.
    function test_adversarialHandler_everyActionSucceedsSometimes() public {
        for (uint256 i; i < 30; ++i) {
            uint256 r = uint256(keccak256(abi.encode(i)));
            uint256 x = r >> 8;
            uint256 y = r >> 64;
            handler.attackerOffer(uint128(y) | 1, uint32(y >> 128), uint32(y >> 160), uint32(x), false, i % 2 == 0);
            handler.honestCreate(i % 3 == 0);
            handler.attackerCreate(x, uint32(y), uint32(y >> 32), uint32(y >> 64), uint128(y >> 96), uint32(x >> 40));
            handler.attackerMatch(x, y, i % 4 == 0);
            handler.attackerMatch(y, x, i % 4 == 1);
            handler.honestMatch(x);
            handler.attackerSubmit(x, i % 2 == 0, i % 3 == 0);
            handler.attackerSubmit(y, i % 3 == 0, i % 2 == 0);
            handler.attackerRelease(x, i % 2 == 1);
            handler.attackerChallenge(y, i);
            handler.attackerRule(x, i);
            handler.attackerSquats(i);
            handler.warp(i % 5 == 0 ? 3 hours : 30);
            handler.anyoneEnds(x, i);
            handler.anyoneEnds(y, i + 2);
        }
        string[12] memory names = handler.actionNames();
        for (uint256 i; i < names.length; ++i) {
            assertGt(handler.successes(keccak256(bytes(names[i]))), 0, string.concat(names[i], " never succeeded"));
        }
        invariant_honestProviderNeverLosesCollateral();
        invariant_honestCreatorGetsAResultOrItsPaymentBack();
        invariant_valueIsConserved();
        invariant_attacksFailCleanly();
    }

    // ================================================================ invariants

    /// @dev The honest provider's collateral only falls for a result a mediator proved wrong,
    /// and it never posts one: whatever the attackers do, it ends with at least what it had.
    function invariant_honestProviderNeverLosesCollateral() public view {
        (uint256 locked,) = _escrowed();
        assertGe(_wealth(provider) + locked, providerStart, "honest provider lost funds");
        assertEq(handler.honestProviderSlashings(), 0, "a correct result was ruled wrong");
    }

    /// @dev The honest creator gets a correct result or its payment back: it pays, at most,
    /// price + fee for jobs that ended with a correct result, and no wrong result ever stands on
    /// a job it pays for.
    function invariant_honestCreatorGetsAResultOrItsPaymentBack() public view {
        (, uint256 escrow) = _escrowed();
        assertGe(
            _wealth(alice) + escrow + handler.creatorPaidForResults(), creatorStart, "honest creator lost funds"
        );
        assertEq(handler.creatorWrongResultsPaid(), 0, "a wrong result stood on the creator's job");
    }

    /// @dev Conservation as in MarketInvariantsTest: the supply is constant and the market
    /// holds exactly the free balances plus every live job's escrow.
    function invariant_valueIsConserved() public view {
        assertEq(token.totalSupply(), initialSupply, "supply constant");
        assertEq(token.balanceOf(address(market)), _sumCredits() + _sumEscrow(), "market tokens == credits + escrow");
    }

    /// @dev Failed attacks fail with the market's own errors; honest duties never fail.
    function invariant_attacksFailCleanly() public view {
        assertEq(handler.unexpectedReverts(), 0, "a call reverted without a market error");
        assertEq(handler.honestDutyFailures(), 0, "an honest party could not do its duty");
    }

    /// @dev The handler's counters: every action was called and none of them is dead (a call
    /// either succeeded or failed with a market error). A handler whose calls all revert for
    /// another reason (a wrong prank, a bad argument) fails the run.
    function afterInvariant() public view {
        string[12] memory names = handler.actionNames();
        uint256 total;
        for (uint256 i; i < names.length; ++i) {
            bytes32 key = keccak256(bytes(names[i]));
            total += handler.attempts(key);
            if (keccak256(bytes(names[i])) == keccak256("warp") || keccak256(bytes(names[i])) == keccak256("attackerSquats")) {
                assertEq(handler.successes(key), handler.attempts(key), string.concat(names[i], ": every call succeeds"));
            }
            if (keccak256(bytes(names[i])) == keccak256("honestCreate") && handler.attempts(key) != 0) {
                assertGt(handler.successes(key), 0, "honestCreate: never succeeded");
            }
        }
        assertGt(total, 0, "the handler was called");
        assertEq(handler.unexpectedReverts(), 0, "unexpected reverts");
    }
}

// SPDX-License-Identifier: Apache-2.0
pragma solidity ^0.8.28;

import {MarketFixture, JobFlow} from "./utils/MarketFixture.sol";
import {ProbeClient} from "./utils/Clients.sol";
import {Vm} from "./utils/Vm.sol";
import {ExampleClient} from "../contracts/examples/ExampleClient.sol";
import {ILilypadJobClient} from "../contracts/interfaces/ILilypadJobManager.sol";

/// @notice Challenges, the mediator's rulings and the mediation timeout, with every party's
/// exact payout.
contract MarketMediationTest is MarketFixture {
    uint256 internal constant DEPOSIT = 3 ether; // mediatorFee 1 + challengeBond 2
    uint256 internal constant COLLATERAL = 10 ether; // 2 x PRICE
    uint256 internal constant FEE = 0.25 ether; // 5 % of PRICE
    /// @dev Of a slashed collateral, after the mediator's fee: half to the challenger, half to the payee.
    uint256 internal constant REWARD = (COLLATERAL - 1 ether) / 2;

    /// @dev Internal balances of every party, before and after.
    struct Books {
        uint256 alice;
        uint256 provider;
        uint256 solver;
        uint256 mediator;
        uint256 auditor;
        uint256 auditorTokens;
        uint256 marketTokens;
    }

    function _books() internal view returns (Books memory b) {
        b.alice = market.balanceOf(alice);
        b.provider = market.balanceOf(provider);
        b.solver = market.balanceOf(solver);
        b.mediator = market.balanceOf(mediator);
        b.auditor = market.balanceOf(auditor);
        b.auditorTokens = token.balanceOf(auditor);
        b.marketTokens = token.balanceOf(address(market));
    }

    // ================================================================ challenge

    function test_challenge_takesDepositFromAllowanceWhenBalanceShort() public {
        (uint256 id, Job memory job) = _submittedJob();
        vm.prank(auditor);
        market.deposit(auditor, DEPOSIT - 1); // not enough: the whole deposit comes from the allowance
        Books memory b = _books();
        vm.expectEmit(true, true, true, true, address(market));
        emit ResultChallenged(id, auditor, mediatorIndex, uint40(block.timestamp));
        Job memory next = _challenge(id, job, auditor);
        assertEq(token.balanceOf(auditor), b.auditorTokens - DEPOSIT, "tokens pulled");
        assertEq(market.balanceOf(auditor), b.auditor, "internal balance untouched");
        assertEq(token.balanceOf(address(market)), b.marketTokens + DEPOSIT, "market holds deposit");
        assertEq(next.challenger, auditor, "challenger");
    }

    function test_challenge_takesDepositFromInternalBalance() public {
        (uint256 id, Job memory job) = _submittedJob();
        vm.prank(auditor);
        market.deposit(auditor, DEPOSIT);
        Books memory b = _books();
        _challenge(id, job, auditor);
        assertEq(market.balanceOf(auditor), b.auditor - DEPOSIT, "internal balance debited");
        assertEq(token.balanceOf(auditor), b.auditorTokens, "no tokens pulled");
        assertEq(token.balanceOf(address(market)), b.marketTokens, "market tokens unchanged");
    }

    function test_challenge_revertsWithoutAllowanceOrBalance() public {
        (uint256 id, Job memory job) = _submittedJob();
        vm.expectRevert(TRANSFER_FROM_FAILED);
        vm.prank(stranger);
        market.challenge(id, job);
    }

    function test_challenge_byJobCreator() public {
        (uint256 id, Job memory job) = _submittedJob();
        _challenge(id, job, alice);
    }

    function test_challenge_revertsAfterWindow() public {
        (uint256 id, Job memory job) = _submittedJob();
        uint256 deadline = uint256(job.submittedAt) + job.challengeWindow;
        vm.warp(deadline + 1);
        vm.expectRevert(abi.encodeWithSelector(DeadlinePassed.selector, id, deadline));
        vm.prank(auditor);
        market.challenge(id, job);
    }

    function test_challenge_succeedsAtWindowEnd() public {
        (uint256 id, Job memory job) = _submittedJob();
        vm.warp(uint256(job.submittedAt) + job.challengeWindow);
        _challenge(id, job, auditor);
    }

    function test_challenge_revertsWhenMatched() public {
        (uint256 id, Job memory job) = _matchedJob();
        vm.expectRevert(abi.encodeWithSelector(WrongState.selector, id, JobState.Matched));
        vm.prank(auditor);
        market.challenge(id, job);
    }

    function test_challenge_revertsWhenAlreadyChallenged() public {
        (uint256 id, Job memory job) = _challengedJob();
        vm.expectRevert(abi.encodeWithSelector(WrongState.selector, id, JobState.Challenged));
        vm.prank(alice);
        market.challenge(id, job);
    }

    function test_challenge_revertsOnStaleJob() public {
        (uint256 id, Job memory job) = _submittedJob();
        job.result = keccak256("what I wish it said");
        vm.expectRevert(abi.encodeWithSelector(StaleJob.selector, id));
        vm.prank(auditor);
        market.challenge(id, job);
    }

    function test_challenge_freeWhenDepositIsZero() public {
        Config memory c = _config();
        c.mediatorFee = 0;
        c.challengeBond = 0;
        _deployMarket(c);
        assertEq(market.challengeDeposit(), 0, "no deposit");
        (uint256 id, Job memory job) = _submittedJob();
        uint256 before = token.balanceOf(stranger);
        _challenge(id, job, stranger); // no tokens, no allowance
        assertEq(token.balanceOf(stranger), before, "nothing paid");
    }

    // ================================================================ upholdChallenge

    function test_upholdChallenge_paysEveryPartyExactly() public {
        (uint256 id, Job memory job) = _challengedJob();
        Books memory b = _books();
        vm.expectEmit(true, true, true, true, address(market));
        emit ChallengeRuled(id, mediator, true, "bafycorrect");
        vm.prank(mediator);
        market.upholdChallenge(id, job, "bafycorrect");
        assertEq(market.jobHash(id), bytes32(0), "final");
        assertEq(market.balanceOf(mediator), b.mediator + 1 ether, "mediator: its fee");
        assertEq(market.balanceOf(auditor), b.auditor + DEPOSIT + REWARD, "challenger: deposit + reward");
        uint256 payeeShare = COLLATERAL - 1 ether - REWARD;
        assertEq(market.balanceOf(alice), b.alice + PAYMENT + payeeShare, "payee: whole payment + the rest");
        assertEq(market.balanceOf(provider), b.provider, "provider: nothing");
        assertEq(market.balanceOf(solver), b.solver, "solver: nothing");
        uint256 paid = 1 ether + DEPOSIT + REWARD + PAYMENT + payeeShare;
        assertEq(paid, PAYMENT + COLLATERAL + DEPOSIT, "out == in");
        assertEq(token.balanceOf(address(market)), b.marketTokens, "no tokens move");
    }

    function test_upholdChallenge_revertsForNonMediator() public {
        (uint256 id, Job memory job) = _challengedJob();
        _addMediator(bob); // a mediator, but not this job's
        address[4] memory who = [stranger, alice, provider, bob];
        for (uint256 i; i < who.length; ++i) {
            vm.expectRevert(abi.encodeWithSelector(NotMediatorOfJob.selector, id, who[i]));
            vm.prank(who[i]);
            market.upholdChallenge(id, job, "x");
        }
    }

    function test_upholdChallenge_revertsAfterMediationDeadline() public {
        (uint256 id, Job memory job) = _challengedJob();
        uint256 deadline = uint256(job.challengedAt) + job.mediationTimeout;
        vm.warp(deadline + 1);
        vm.expectRevert(abi.encodeWithSelector(DeadlinePassed.selector, id, deadline));
        vm.prank(mediator);
        market.upholdChallenge(id, job, "x");
    }

    function test_upholdChallenge_succeedsAtMediationDeadline() public {
        (uint256 id, Job memory job) = _challengedJob();
        vm.warp(uint256(job.challengedAt) + job.mediationTimeout);
        vm.prank(mediator);
        market.upholdChallenge(id, job, "x");
        assertEq(market.jobHash(id), bytes32(0), "final");
    }

    function test_upholdChallenge_revertsWhenNotChallenged() public {
        (uint256 id, Job memory job) = _submittedJob();
        vm.expectRevert(abi.encodeWithSelector(WrongState.selector, id, JobState.Submitted));
        vm.prank(mediator);
        market.upholdChallenge(id, job, "x");
    }

    function test_upholdChallenge_mediatorThatLeftStillRules() public {
        (uint256 id, Job memory job) = _challengedJob();
        vm.prank(mediator);
        market.leaveRoles(ROLE_MEDIATOR);
        vm.prank(mediator);
        market.upholdChallenge(id, job, "x");
        assertEq(market.jobHash(id), bytes32(0), "final");
    }

    function test_upholdChallenge_suspendedMediatorStillRules() public {
        (uint256 id, Job memory job) = _challengedJob();
        vm.prank(owner);
        market.setMediatorSuspended(mediatorIndex, true);
        vm.prank(mediator);
        market.upholdChallenge(id, job, "x");
        assertEq(market.jobHash(id), bytes32(0), "final");
    }

    function test_upholdChallenge_doesNotCallBackClient() public {
        ProbeClient probe = new ProbeClient(market);
        vm.prank(alice);
        market.authorizeClient(address(probe), _unlimited());
        JobRequest memory r = _request(alice);
        Job memory job = JobFlow.created(market, address(probe), r);
        uint256 id = probe.create(r);
        job = _challenge(id, _submit(id, _match(id, job, provider)), auditor);
        vm.prank(mediator);
        market.upholdChallenge(id, job, "x");
        assertEq(probe.calls(), 0, "no callback for a wrong result");
    }

    function test_upholdChallenge_whenPayeeChallenged() public {
        (uint256 id, Job memory job) = _submittedJob();
        job = _challenge(id, job, alice);
        Books memory b = _books();
        vm.prank(mediator);
        market.upholdChallenge(id, job, "x");
        assertEq(market.balanceOf(alice), b.alice + PAYMENT + COLLATERAL + 2 ether, "payee = challenger: all of it");
    }

    // ================================================================ rejectChallenge

    function test_rejectChallenge_paysEveryPartyExactly() public {
        (uint256 id, Job memory job) = _challengedJob();
        Books memory b = _books();
        vm.expectEmit(true, true, true, true, address(market));
        emit ChallengeRuled(id, mediator, false, CID);
        vm.expectEmit(true, true, true, true, address(market));
        emit JobSettled(id, provider, PRICE, uint128(FEE), uint128(PAYMENT - PRICE - FEE));
        vm.prank(mediator);
        market.rejectChallenge(id, job, CID, RESULT_HASH);
        assertEq(market.jobHash(id), bytes32(0), "final");
        assertEq(market.balanceOf(mediator), b.mediator + 1 ether, "mediator: its fee");
        assertEq(market.balanceOf(provider), b.provider + PRICE + COLLATERAL + 2 ether, "provider: price + collateral + bond");
        assertEq(market.balanceOf(solver), b.solver + FEE, "solver: fee");
        assertEq(market.balanceOf(alice), b.alice + PAYMENT - PRICE - FEE, "payee: refund");
        assertEq(market.balanceOf(auditor), b.auditor, "challenger: loses deposit");
        assertEq(token.balanceOf(address(market)), b.marketTokens, "no tokens move");
    }

    function test_rejectChallenge_revertsOnResultMismatch() public {
        (uint256 id, Job memory job) = _challengedJob();
        vm.expectRevert(abi.encodeWithSelector(ResultMismatch.selector, id));
        vm.prank(mediator);
        market.rejectChallenge(id, job, "bafyother", RESULT_HASH);
    }

    function test_rejectChallenge_revertsForNonMediator() public {
        (uint256 id, Job memory job) = _challengedJob();
        vm.expectRevert(abi.encodeWithSelector(NotMediatorOfJob.selector, id, provider));
        vm.prank(provider);
        market.rejectChallenge(id, job, CID, RESULT_HASH);
    }

    function test_rejectChallenge_revertsAfterMediationDeadline() public {
        (uint256 id, Job memory job) = _challengedJob();
        uint256 deadline = uint256(job.challengedAt) + job.mediationTimeout;
        vm.warp(deadline + 1);
        vm.expectRevert(abi.encodeWithSelector(DeadlinePassed.selector, id, deadline));
        vm.prank(mediator);
        market.rejectChallenge(id, job, CID, RESULT_HASH);
    }

    function test_rejectChallenge_revertsWhenNotChallenged() public {
        (uint256 id, Job memory job) = _submittedJob();
        vm.expectRevert(abi.encodeWithSelector(WrongState.selector, id, JobState.Submitted));
        vm.prank(mediator);
        market.rejectChallenge(id, job, CID, RESULT_HASH);
    }

    function test_rejectChallenge_callsBackClient() public {
        (uint256 id, Job memory job) = _clientJobChallenged();
        vm.expectCall(address(client), 0, 100_000, abi.encodeCall(ILilypadJobClient.submitResults, (id, "1", CID)));
        vm.expectEmit(true, true, true, true, address(client));
        emit ExampleClient.JobCompleted(id, "1", CID);
        vm.prank(mediator);
        market.rejectChallenge(id, job, CID, RESULT_HASH);
    }

    function test_rejectChallenge_revertsWithInsufficientGasForCallback() public {
        (uint256 id, Job memory job) = _clientJobChallenged();
        uint256 needed = 100_000 + uint256(100_000) / 63 + 12_000;
        vm.expectRevert(abi.encodeWithSelector(InsufficientGasForCallback.selector, id, needed));
        vm.prank(mediator);
        market.rejectChallenge{gas: 100_000}(id, job, CID, RESULT_HASH);
        assertEq(market.jobHash(id), market.hashJob(job), "still challenged");
    }

    function _clientJobChallenged() internal returns (uint256 id, Job memory job) {
        (id, job) = _runViaClient(alice);
        job = _challenge(id, _submit(id, _match(id, job, provider)), auditor);
    }

    // ================================================================ ruleNondeterministic

    function test_ruleNondeterministic_slashesNobodyAndSettles() public {
        (uint256 id, Job memory job) = _challengedJob();
        Books memory b = _books();
        vm.expectEmit(true, true, true, true, address(market));
        emit ChallengeRuled(id, mediator, false, CID);
        vm.expectEmit(true, true, true, true, address(market));
        emit ModuleRuledNondeterministic(id, moduleId, mediator);
        vm.expectEmit(true, true, true, true, address(market));
        emit JobSettled(id, provider, PRICE, uint128(FEE), uint128(PAYMENT - PRICE - FEE));
        vm.prank(mediator);
        market.ruleNondeterministic(id, job, CID, RESULT_HASH);
        assertEq(market.jobHash(id), bytes32(0), "final");
        assertTrue(market.ruledNondeterministic(moduleId), "recorded");
        assertEq(market.balanceOf(mediator), b.mediator + 1 ether, "mediator: its fee, from the challenger");
        assertEq(market.balanceOf(provider), b.provider + PRICE + COLLATERAL, "provider: price + collateral, not slashed");
        assertEq(market.balanceOf(solver), b.solver + FEE, "solver: fee");
        assertEq(market.balanceOf(alice), b.alice + PAYMENT - PRICE - FEE, "payee: refund");
        assertEq(market.balanceOf(auditor), b.auditor + 2 ether, "challenger: bond back, fee spent");
        assertEq(token.balanceOf(address(market)), b.marketTokens, "no tokens move");
    }

    /// @dev Issue 12, sequence 8: a creator that published a random module calling itself
    /// deterministic, ran it and challenged the honest result got the provider slashed when the
    /// mediator's re-run differed. Ruled non-deterministic, the provider keeps its collateral
    /// and is paid, and the creator (also the publisher) only loses: it paid for the job and
    /// the mediator's fee.
    function test_nondeterministicModule_creatorChallengingItsOwnRandomModuleOnlyLoses() public {
        uint256 aliceBefore = _wealth(alice);
        uint256 providerBefore = _wealth(provider);
        (uint256 id, Job memory job) = _submittedJob(); // alice created it and pays PAYMENT
        job = _challenge(id, job, alice);
        vm.prank(mediator);
        market.ruleNondeterministic(id, job, CID, RESULT_HASH);
        assertEq(_wealth(provider), providerBefore + PRICE, "provider: paid, not slashed");
        assertEq(_wealth(alice), aliceBefore - PRICE - FEE - 1 ether, "creator: pays for the job and the mediator");
    }

    function _wealth(address who) internal view returns (uint256) {
        return market.balanceOf(who) + token.balanceOf(who);
    }

    function test_ruleNondeterministic_revertsForNonMediatorAndOnResultMismatch() public {
        (uint256 id, Job memory job) = _challengedJob();
        vm.expectRevert(abi.encodeWithSelector(NotMediatorOfJob.selector, id, alice));
        vm.prank(alice);
        market.ruleNondeterministic(id, job, CID, RESULT_HASH);
        vm.expectRevert(abi.encodeWithSelector(ResultMismatch.selector, id));
        vm.prank(mediator);
        market.ruleNondeterministic(id, job, "bafyother", RESULT_HASH);
    }

    function test_ruleNondeterministic_callsBackClient() public {
        (uint256 id, Job memory job) = _clientJobChallenged();
        vm.expectEmit(true, true, true, true, address(client));
        emit ExampleClient.JobCompleted(id, "1", CID);
        vm.prank(mediator);
        market.ruleNondeterministic(id, job, CID, RESULT_HASH);
    }

    // ================================================================ timeoutMediation

    /// @dev Issue 12, sequence 2: a creator that challenged an honest result under a mediator
    /// that never ruled got its payment and deposit back, and the work for free. Now nobody
    /// proved the result wrong, so it stands: provider and solver are paid, the challenger
    /// gets only its deposit back.
    function test_timeoutMediation_resultStandsAndChallengerIsRefunded() public {
        (uint256 id, Job memory job) = _challengedJob();
        Books memory b = _books();
        vm.warp(uint256(job.challengedAt) + job.mediationTimeout + 1);
        vm.expectEmit(true, true, true, true, address(market));
        emit MediationTimedOut(id, mediatorIndex);
        vm.expectEmit(true, true, true, true, address(market));
        emit JobSettled(id, provider, PRICE, uint128(FEE), uint128(PAYMENT - PRICE - FEE));
        vm.prank(stranger);
        market.timeoutMediation(id, job, CID, RESULT_HASH);
        assertEq(market.jobHash(id), bytes32(0), "final");
        assertEq(market.balanceOf(alice), b.alice + PAYMENT - PRICE - FEE, "payee: pays for the work");
        assertEq(market.balanceOf(provider), b.provider + PRICE + COLLATERAL, "provider: price + collateral");
        assertEq(market.balanceOf(auditor), b.auditor + DEPOSIT, "challenger: deposit");
        assertEq(market.balanceOf(mediator), b.mediator, "mediator: nothing");
        assertEq(market.balanceOf(solver), b.solver + FEE, "solver: fee");
        assertEq(market.balanceOf(stranger), 0, "caller: nothing");
    }

    function test_timeoutMediation_callsBackClient() public {
        (uint256 id, Job memory job) = _clientJobChallenged();
        vm.warp(uint256(job.challengedAt) + job.mediationTimeout + 1);
        vm.expectEmit(true, true, true, true, address(client));
        emit ExampleClient.JobCompleted(id, "1", CID);
        market.timeoutMediation(id, job, CID, RESULT_HASH);
    }

    function test_timeoutMediation_revertsOnResultMismatch() public {
        (uint256 id, Job memory job) = _challengedJob();
        vm.warp(uint256(job.challengedAt) + job.mediationTimeout + 1);
        vm.expectRevert(abi.encodeWithSelector(ResultMismatch.selector, id));
        market.timeoutMediation(id, job, "bafyother", RESULT_HASH);
    }

    function test_timeoutMediation_revertsUntilDeadlinePassed() public {
        (uint256 id, Job memory job) = _challengedJob();
        uint256 deadline = uint256(job.challengedAt) + job.mediationTimeout;
        vm.expectRevert(abi.encodeWithSelector(DeadlineNotReached.selector, id, deadline));
        market.timeoutMediation(id, job, CID, RESULT_HASH);
        vm.warp(deadline);
        vm.expectRevert(abi.encodeWithSelector(DeadlineNotReached.selector, id, deadline));
        market.timeoutMediation(id, job, CID, RESULT_HASH);
    }

    function test_timeoutMediation_revertsWhenNotChallenged() public {
        (uint256 id, Job memory job) = _submittedJob();
        vm.warp(block.timestamp + 10 days);
        vm.expectRevert(abi.encodeWithSelector(WrongState.selector, id, JobState.Submitted));
        market.timeoutMediation(id, job, CID, RESULT_HASH);
    }

    function test_timeoutMediation_revertsAfterRuling() public {
        (uint256 id, Job memory job) = _challengedJob();
        vm.prank(mediator);
        market.upholdChallenge(id, job, "x");
        vm.warp(block.timestamp + 10 days);
        vm.expectRevert(abi.encodeWithSelector(JobNotFound.selector, id));
        market.timeoutMediation(id, job, CID, RESULT_HASH);
    }
}

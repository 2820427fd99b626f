// SPDX-License-Identifier: Apache-2.0
pragma solidity ^0.8.28;

import {MarketFixture, JobFlow} from "./utils/MarketFixture.sol";
import {GasGuzzlerClient, ProbeClient, SettlingClient} from "./utils/Clients.sol";

/// @notice The attack sequences of issue 12 ("open-market safety"), each tried as the attacker
/// would, with the attacker `eve` holding every role anyone can take without the owner: solver,
/// provider, module publisher, job creator, client contract. On the market before the fix each
/// sequence worked; every test here fails there (a call that went through now reverts, or a
/// payout that favoured the attacker no longer does).
contract MarketAttacksTest is MarketFixture {
    address internal eve = address(0xE5E);
    address internal eveSybil = address(0xE5E2); // another account of the same attacker

    function setUp() public override {
        super.setUp();
        _fund(eve);
        _fund(eveSybil);
        vm.startPrank(eve);
        market.registerSolver();
        market.registerProvider(0);
        market.deposit(eve, 100 ether);
        market.setOffer(moduleId, _offer(PRICE, true));
        vm.stopPrank();
    }

    function _wealth(address who) internal view returns (uint256) {
        return token.balanceOf(who) + market.balanceOf(who);
    }

    /// @dev `who` publishes `name:1` with run timeout `runTimeout` and no resource needs.
    function _publish(address who, string memory name, uint32 runTimeout, uint128 payment) internal returns (bytes32) {
        ModuleSpec memory spec = _spec();
        spec.runTimeout = runTimeout;
        spec.defaultPayment = payment;
        spec.requirements = Resources({cpuMilli: 0, ramMb: 0, diskMb: 0, vramMb: 0, gpus: 0});
        vm.prank(who);
        return market.publishModule(name, "1", spec);
    }

    // ================================================================ 1. collateral theft

    /// @dev Before: a job with `runTimeout = 1` matched to any provider gave the attacker the
    /// victim's collateral two seconds later through timeoutResult.
    function test_attack1_jobWithARunWindowUnderTheModulesCannotBeCreated() public {
        JobRequest memory r = _request(eve);
        r.runTimeout = 1;
        vm.expectRevert(abi.encodeWithSelector(InvalidTimeout.selector, "runTimeout", uint256(1)));
        vm.prank(eve);
        market.createJob(r);
    }

    /// @dev Before: publishing its own module with run timeout 1 and no resource needs, the
    /// attacker's job fit every provider's any-module offer and timed out two seconds later.
    /// Now the victim's collateral is put at risk only within the run window its offer states.
    function test_attack1_providerIsNotMatchedToARunWindowItDidNotOffer() public {
        bytes32 quick = _publish(eve, "quick", 1, PAYMENT);
        vm.startPrank(provider);
        market.setResources(Resources({cpuMilli: 4000, ramMb: 4096, diskMb: 1000, vramMb: 0, gpus: 0}));
        market.setOffer(bytes32(0), _offer(PRICE, true)); // any module that fits, from 60 s
        vm.stopPrank();
        uint256 before = _wealth(provider);

        JobRequest memory r = _request(eve);
        r.module = "quick:1";
        (uint256 id, Job memory job) = _create(eve, r);
        assertEq(job.runTimeout, 1, "the module's run timeout");
        assertEq(job.moduleId, quick, "module");
        vm.expectRevert(abi.encodeWithSelector(RunTimeoutNotOffered.selector, id, provider, uint256(1)));
        vm.prank(eve);
        market.matchJob(id, job, provider, mediatorIndex);

        vm.warp(block.timestamp + 2);
        vm.expectRevert(abi.encodeWithSelector(WrongState.selector, id, JobState.Open));
        market.timeoutResult(id, job);
        assertEq(_wealth(provider), before, "victim untouched");
    }

    /// @dev A provider offering a bounded run window is not matched to jobs that would lock its
    /// collateral longer either.
    function testFuzz_matchJob_onlyWithinTheOfferedRunWindow(uint32 minRun, uint32 maxRun, uint32 run) public {
        minRun = uint32(bound(minRun, 1, 10 days));
        maxRun = uint32(bound(maxRun, minRun, 30 days));
        run = uint32(bound(run, RUN_TIMEOUT, 30 days));
        Offer memory o = _offer(PRICE, true);
        o.minRunTimeout = minRun;
        o.maxRunTimeout = maxRun;
        vm.prank(provider);
        market.setOffer(moduleId, o);
        JobRequest memory r = _request(alice);
        r.runTimeout = run;
        (uint256 id, Job memory job) = _create(alice, r);
        if (run < minRun || run > maxRun) {
            vm.expectRevert(abi.encodeWithSelector(RunTimeoutNotOffered.selector, id, provider, uint256(run)));
            vm.prank(solver);
            market.matchJob(id, job, provider, mediatorIndex);
        } else {
            _match(id, job, provider);
        }
    }

    // ================================================================ 2. free compute

    /// @dev Before: `mediationTimeout = 1`; the creator challenged the honest result and two
    /// seconds later timeoutMediation refunded its payment and deposit.
    function test_attack2_mediationWindowShorterThanTheRunCannotBeSet() public {
        JobRequest memory r = _request(eve);
        r.mediationTimeout = 1;
        vm.expectRevert(abi.encodeWithSelector(InvalidTimeout.selector, "mediationTimeout", uint256(1)));
        vm.prank(eve);
        market.createJob(r);
        r.mediationTimeout = RUN_TIMEOUT - 1; // "any mediation timeout shorter than the run"
        vm.expectRevert(abi.encodeWithSelector(InvalidTimeout.selector, "mediationTimeout", uint256(RUN_TIMEOUT - 1)));
        vm.prank(eve);
        market.createJob(r);
    }

    /// @dev And when the mediator does not rule in its window after all, the challenger does not
    /// get the work for free: the unproven result stands and is paid for.
    function test_attack2_challengerDoesNotGetTheWorkFreeWhenMediationTimesOut() public {
        uint256 eveBefore = _wealth(eve);
        uint256 providerBefore = _wealth(provider);
        (uint256 id, Job memory job) = _run(eve);
        job = _submit(id, _match(id, job, provider));
        job = _challenge(id, job, eve);
        vm.warp(uint256(job.challengedAt) + job.mediationTimeout + 1);
        market.timeoutMediation(id, job, CID, RESULT_HASH);
        assertEq(_wealth(provider), providerBefore + job.price, "provider: paid, collateral back");
        assertEq(_wealth(eve), eveBefore - job.price - job.solverFee, "creator: paid for the work, deposit back");
    }

    // ================================================================ 3. judge in one's own case

    /// @dev Before: the attacker registered as mediator (a new slot), created a job accepting
    /// only itself, matched it to a provider accepting every mediator, challenged the honest
    /// result and upheld its own challenge.
    function test_attack3_strangerCannotBecomeAMediator() public {
        vm.expectRevert(abi.encodeWithSelector(MediatorNotApproved.selector, eve));
        vm.prank(eve);
        market.registerMediator();
    }

    /// @dev Even an approved mediator cannot judge a job it is a party to, and a provider that
    /// said "all mediators" accepts only the ones there were then.
    function test_attack3_mediatorCannotBeMatchedToAJobItIsAPartyTo() public {
        vm.prank(provider);
        market.registerProvider(type(uint64).max); // "all": the one mediator there is
        uint8 eveIndex = _addMediator(eve); // approved later, by the owner
        assertEq(market.accountOf(provider).mediators & (uint64(1) << eveIndex), 0, "not accepted by the provider");

        JobRequest memory r = _request(eve);
        r.mediators = uint64(1) << eveIndex;
        (uint256 id, Job memory job) = _create(eve, r);
        vm.expectRevert(abi.encodeWithSelector(MediatorNotAcceptable.selector, id, eveIndex));
        vm.prank(eve);
        market.matchJob(id, job, provider, eveIndex);
        // a provider that does accept it: still not, the mediator is the job's payee
        vm.prank(provider2);
        market.setProviderMediators(type(uint64).max);
        vm.expectRevert(abi.encodeWithSelector(MediatorNotAcceptable.selector, id, eveIndex));
        vm.prank(solver);
        market.matchJob(id, job, provider2, eveIndex);
    }

    // ================================================================ 4. escape by front-running

    /// @dev Before: a provider that posted a wrong result challenged it first itself; the
    /// auditor's challenge went stale and the slashed collateral came back to the provider.
    function test_attack4_providerCannotChallengeItsOwnResult() public {
        (uint256 id, Job memory job) = _run(alice);
        vm.prank(solver);
        market.matchJob(id, job, eve, mediatorIndex);
        job = JobFlow.matched(market, job, solver, eve, mediatorIndex);
        vm.prank(eve);
        market.submitResult(id, job, "bafywrong", keccak256("wrong"));
        job = JobFlow.submitted(job, "bafywrong", keccak256("wrong"));
        vm.expectRevert(abi.encodeWithSelector(ChallengerIsParty.selector, id, eve));
        vm.prank(eve);
        market.challenge(id, job);
        vm.expectRevert(abi.encodeWithSelector(ChallengerIsParty.selector, id, solver));
        vm.prank(solver);
        market.challenge(id, job);
        vm.expectRevert(abi.encodeWithSelector(ChallengerIsParty.selector, id, mediator));
        vm.prank(mediator);
        market.challenge(id, job);
    }

    /// @dev Through another account the cheater can still challenge first, but it gets back only
    /// half of what remains of its collateral after the mediator's fee: cheating and escaping
    /// costs it more than the job paid, and the payee is compensated with the other half.
    function test_attack4_cheaterFrontRunningThroughAnotherAccountStillLoses() public {
        (uint256 id, Job memory job) = _run(alice);
        uint256 cheaterBefore = _wealth(eve) + _wealth(eveSybil);
        uint256 aliceBefore = _wealth(alice) + PAYMENT; // what it had before paying for the job
        vm.prank(solver);
        market.matchJob(id, job, eve, mediatorIndex);
        job = JobFlow.matched(market, job, solver, eve, mediatorIndex);
        vm.prank(eve);
        market.submitResult(id, job, "bafywrong", keccak256("wrong"));
        job = JobFlow.submitted(job, "bafywrong", keccak256("wrong"));
        Job memory seenByAuditor = job;
        job = _challenge(id, job, eveSybil); // first
        vm.expectRevert(abi.encodeWithSelector(StaleJob.selector, id));
        vm.prank(auditor);
        market.challenge(id, seenByAuditor);
        vm.prank(mediator);
        market.upholdChallenge(id, job, CID);
        uint256 cheaterAfter = _wealth(eve) + _wealth(eveSybil);
        uint256 rest = job.collateral - market.mediatorFee();
        assertEq(cheaterBefore - cheaterAfter, job.collateral - rest / 2, "loses the fee and half the rest");
        assertGt(cheaterBefore - cheaterAfter, job.price, "more than an honest run earns");
        assertEq(_wealth(alice), aliceBefore + (rest - rest / 2), "payee: payment back + the other half");
    }

    /// @dev Whoever catches a cheat is paid for it: the auditor gets its deposit back and half
    /// of the slashed collateral after the mediator's fee.
    function test_attack4_auditorThatCatchesACheatIsPaid() public {
        (uint256 id, Job memory job) = _run(alice);
        vm.prank(solver);
        market.matchJob(id, job, eve, mediatorIndex);
        job = JobFlow.matched(market, job, solver, eve, mediatorIndex);
        vm.prank(eve);
        market.submitResult(id, job, "bafywrong", keccak256("wrong"));
        job = JobFlow.submitted(job, "bafywrong", keccak256("wrong"));
        uint256 before = _wealth(auditor);
        job = _challenge(id, job, auditor);
        vm.prank(mediator);
        market.upholdChallenge(id, job, CID);
        assertEq(_wealth(auditor), before + (job.collateral - market.mediatorFee()) / 2, "paid");
    }

    // ================================================================ 5. squatting

    /// @dev Before: 64 registerMediator calls filled every mediator slot for good.
    function test_attack5_strangersCannotFillTheMediatorSlots() public {
        for (uint160 i = 1; i <= 64; ++i) {
            address squatter = address(0x5000 + i);
            vm.expectRevert(abi.encodeWithSelector(MediatorNotApproved.selector, squatter));
            vm.prank(squatter);
            market.registerMediator();
        }
        assertEq(market.mediatorCount(), 1, "only the approved one");
        _addMediator(auditor); // the owner can still add one
        assertEq(market.mediatorCount(), 2, "a slot was free");
    }

    /// @dev Before: anyone claimed another author's repository path by publishing it first.
    function test_attack5_repositoryPathCannotBeSquatted() public {
        vm.expectRevert(abi.encodeWithSelector(ModuleNameReserved.selector, "github.com/org/repo"));
        vm.prank(eve);
        market.publishModule("github.com/org/repo", "1", _spec());
    }

    /// @dev Before: runJob escrowed whatever default payment a squatter set. A client can now
    /// escrow no more than the payee allowed it per job and in total.
    function test_attack5_squattersDefaultPaymentIsNotEscrowedBeyondTheClientsAllowance() public {
        _publish(eve, "popular", RUN_TIMEOUT, 500 ether);
        ProbeClient dapp = new ProbeClient(market);
        vm.prank(alice);
        market.authorizeClient(
            address(dapp), ClientAllowance({remaining: 50 ether, maxPayment: uint96(PAYMENT), minChallengeWindow: 0})
        );
        uint256 before = token.balanceOf(alice);
        vm.expectRevert(
            abi.encodeWithSelector(ClientAllowanceExceeded.selector, alice, address(dapp), 500 ether, PAYMENT)
        );
        dapp.run("popular:1", _inputs("hi"), alice);
        assertEq(token.balanceOf(alice), before, "nothing escrowed");
    }

    // ================================================================ 6. overcharging

    /// @dev Before: a solver that is also a provider matched jobs to itself at the creator's cap
    /// although cheaper offers existed. A creator that names its solver cannot be matched by
    /// another, and pays exactly the matched offer's price plus the solver fee.
    function test_attack6_jobNamingItsSolverCannotBeMatchedByAnother() public {
        vm.prank(eve);
        market.setOffer(moduleId, _offer(uint128(uint256(PAYMENT) * 10_000 / 10_500), true)); // at the cap
        JobRequest memory r = _request(alice);
        r.solver = solver;
        (uint256 id, Job memory job) = _create(alice, r);
        vm.expectRevert(abi.encodeWithSelector(NotJobSolver.selector, id, eve));
        vm.prank(eve);
        market.matchJob(id, job, eve, mediatorIndex);

        uint256 before = _wealth(alice);
        job = _submit(id, _match(id, job, provider)); // the named solver picks the cheap offer
        _pastChallengeWindow(job);
        _settle(id, job);
        assertEq(before + PAYMENT - _wealth(alice), uint256(PRICE) + PRICE * 500 / 10_000, "price + fee, not the cap");
    }

    /// @dev The named solver stays the job's only solver after a release.
    function test_attack6_namedSolverSurvivesARelease() public {
        JobRequest memory r = _request(alice);
        r.solver = solver;
        (uint256 id, Job memory job) = _create(alice, r);
        job = _release(id, _match(id, job, provider));
        assertEq(job.onlySolver, solver, "kept");
        vm.expectRevert(abi.encodeWithSelector(NotJobSolver.selector, id, eve));
        vm.prank(eve);
        market.matchJob(id, job, eve, mediatorIndex);
    }

    // ================================================================ 7. griefing

    /// @dev Before: a client whose callback settled another item of the same settleMany batch
    /// made the whole batch revert. Items already final are now skipped.
    function test_attack7_callbackSettlingAnotherItemDoesNotRevertTheBatch() public {
        SettlingClient griefer = new SettlingClient(market);
        vm.prank(alice);
        market.authorizeClient(address(griefer), _unlimited());
        JobRequest memory r = _request(alice);
        Job memory ja = JobFlow.created(market, address(griefer), r);
        uint256 a = griefer.create(r);
        ja = _submit(a, _match(a, ja, provider));
        (uint256 b, Job memory jb) = _submittedJob();
        _pastChallengeWindow(jb);
        griefer.arm(b, jb, CID, RESULT_HASH);
        Settlement[] memory items = new Settlement[](2);
        items[0] = Settlement({id: a, job: ja, dataId: CID, resultHash: RESULT_HASH});
        items[1] = Settlement({id: b, job: jb, dataId: CID, resultHash: RESULT_HASH});
        vm.prank(provider);
        market.settleMany(items);
        assertTrue(griefer.settledOther(), "the callback settled b");
        assertEq(market.jobHash(a), bytes32(0), "a settled");
        assertEq(market.jobHash(b), bytes32(0), "b settled (once)");
    }

    /// @dev Before: a creator set callbackGas to 2,000,000 with a client that burns it, so
    /// whoever settled needed 2.04M gas. Callback gas is now bounded by what the provider's
    /// offer accepts.
    function test_attack7_callbackGasAboveWhatTheProviderAcceptedCannotBeMatched() public {
        Offer memory o = _offer(PRICE, true);
        o.maxCallbackGas = 100_000;
        vm.prank(provider);
        market.setOffer(moduleId, o);
        GasGuzzlerClient guzzler = new GasGuzzlerClient(market);
        vm.prank(alice);
        market.authorizeClient(address(guzzler), _unlimited());
        JobRequest memory r = _request(alice);
        r.callbackGas = 2_000_000;
        Job memory job = JobFlow.created(market, address(guzzler), r);
        uint256 id = guzzler.create(r);
        vm.expectRevert(abi.encodeWithSelector(CallbackGasNotOffered.selector, id, provider, uint256(2_000_000)));
        vm.prank(solver);
        market.matchJob(id, job, provider, mediatorIndex);
    }

    /// @dev Before: a provider held a job to the last second of its run window and released it
    /// for free. (The share is fuzzed in testFuzz_releaseJob_lateReleaseCostsAGrowingShareOfCollateral.)
    function test_attack7_releaseAtTheLastSecondCostsTheCollateral() public {
        (uint256 id, Job memory job) = _matchedJob();
        vm.warp(uint256(job.matchedAt) + job.runTimeout);
        uint256 before = _wealth(provider);
        _release(id, job);
        assertEq(_wealth(provider) + job.collateral, before + job.collateral, "collateral not returned");
        assertEq(_wealth(provider), before, "it went to the payee");
    }

    /// @dev Before: authorizeClient granted unlimited spending, so an authorised client set
    /// maxPayment to the whole allowance and challengeWindow to 1. It is now held to the
    /// payee's cap, per job and in total, to its challenge-window floor and to the default
    /// mediators.
    function test_attack7_authorisedClientIsHeldToThePayeesBounds() public {
        ProbeClient dapp = new ProbeClient(market);
        vm.prank(alice);
        market.authorizeClient(
            address(dapp), ClientAllowance({remaining: 20 ether, maxPayment: 10 ether, minChallengeWindow: 300})
        );
        JobRequest memory r = _request(alice);
        r.maxPayment = 1000 ether;
        vm.expectRevert(abi.encodeWithSelector(ClientAllowanceExceeded.selector, alice, address(dapp), 1000 ether, 10 ether));
        dapp.create(r);
        r.maxPayment = 10 ether;
        r.challengeWindow = 1;
        vm.expectRevert(abi.encodeWithSelector(ChallengeWindowTooShort.selector, alice, address(dapp), 1, 300));
        dapp.create(r);
        r.challengeWindow = 0; // the default, 300
        uint8 other = _addMediator(bob);
        r.mediators = uint64(1) << other;
        vm.expectRevert(abi.encodeWithSelector(ClientMediatorsNotDefault.selector, alice, address(dapp), uint64(1) << other));
        dapp.create(r);
        r.mediators = 0;
        dapp.create(r);
        dapp.create(r);
        assertEq(market.clientAllowance(alice, address(dapp)).remaining, 0, "spent");
        vm.expectRevert(abi.encodeWithSelector(ClientAllowanceExceeded.selector, alice, address(dapp), 10 ether, 0));
        dapp.create(r);
    }

    /// @dev A client never escrows more than its cap, whatever the sequence of job payments.
    function testFuzz_clientAllowance_escrowsAtMostTheCap(uint96 cap, uint96 perJob, uint128[6] memory payments)
        public
    {
        cap = uint96(bound(cap, 1, 100 ether));
        perJob = uint96(bound(perJob, 1, 50 ether));
        ProbeClient dapp = new ProbeClient(market);
        vm.prank(alice);
        market.authorizeClient(address(dapp), ClientAllowance({remaining: cap, maxPayment: perJob, minChallengeWindow: 0}));
        uint256 before = token.balanceOf(alice);
        for (uint256 i; i < payments.length; ++i) {
            JobRequest memory r = _request(alice);
            r.maxPayment = uint128(bound(payments[i], 1, 60 ether));
            try dapp.create(r) {} catch {}
        }
        uint256 spent = before - token.balanceOf(alice);
        assertLe(spent, cap, "within the total");
        assertEq(market.clientAllowance(alice, address(dapp)).remaining, cap - spent, "counted down");
    }
}

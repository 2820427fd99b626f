// SPDX-License-Identifier: Apache-2.0
pragma solidity ^0.8.28;

import {MarketFixture, JobFlow} from "./utils/MarketFixture.sol";
import {ClientBase, ProbeClient, RevertingClient, GasGuzzlerClient, ReturnBombClient, ReentrantClient} from "./utils/Clients.sol";
import {Vm} from "./utils/Vm.sol";
import {LilypadMarket} from "../contracts/LilypadMarket.sol";
import {ExampleClient} from "../contracts/examples/ExampleClient.sol";
import {ILilypadJobManager, ILilypadJobClient} from "../contracts/interfaces/ILilypadJobManager.sol";

/// @notice The job lifecycle without disputes: creation, matching, release, results,
/// settlement with client callbacks, and the exits of unmatched or unrun jobs.
contract MarketJobsTest is MarketFixture {
    ProbeClient internal probe;

    function setUp() public override {
        super.setUp();
        probe = new ProbeClient(market);
        vm.prank(alice);
        market.authorizeClient(address(probe), _unlimited());
    }

    // ================================================================ constructor

    function test_constructor_setsParametersAndOwner() public view {
        Config memory c = _config();
        assertEq(market.token(), address(token), "token");
        assertEq(market.owner(), owner, "owner");
        assertEq(market.solverFeeBps(), c.solverFeeBps, "solverFeeBps");
        assertEq(market.collateralBps(), c.collateralBps, "collateralBps");
        assertEq(market.mediatorFee(), c.mediatorFee, "mediatorFee");
        assertEq(market.challengeBond(), c.challengeBond, "challengeBond");
        assertEq(market.defaultMatchTimeout(), c.matchTimeout, "matchTimeout");
        assertEq(market.defaultChallengeWindow(), c.challengeWindow, "challengeWindow");
        assertEq(market.defaultMediationTimeout(), c.mediationTimeout, "mediationTimeout");
        assertEq(market.defaultCallbackGas(), c.callbackGas, "callbackGas");
        assertEq(market.challengeDeposit(), uint256(c.mediatorFee) + c.challengeBond, "challengeDeposit");
    }

    function test_constructor_revertsOnZeroToken() public {
        vm.expectRevert(abi.encodeWithSelector(ZeroAddress.selector));
        new LilypadMarket(address(0), _config(), owner);
    }

    function test_constructor_revertsOnZeroOwner() public {
        vm.expectRevert(abi.encodeWithSelector(ZeroAddress.selector));
        new LilypadMarket(address(token), _config(), address(0));
    }

    function test_constructor_revertsOnInvalidConfig() public {
        uint32 maxT = uint32(market.MAX_TIMEOUT());
        for (uint256 i; i < 10; ++i) {
            Config memory c = _config();
            if (i == 0) c.solverFeeBps = 10_001;
            if (i == 1) c.collateralBps = 1_000_001;
            if (i == 2) c.matchTimeout = 0;
            if (i == 3) c.matchTimeout = maxT + 1;
            if (i == 4) c.challengeWindow = 0;
            if (i == 5) c.challengeWindow = maxT + 1;
            if (i == 6) c.mediationTimeout = 0;
            if (i == 7) c.mediationTimeout = maxT + 1;
            if (i == 8) c.callbackGas = 2_000_001;
            if (i == 9) c.solverFeeBps = type(uint16).max;
            vm.expectRevert(abi.encodeWithSelector(InvalidConfig.selector));
            new LilypadMarket(address(token), c, owner);
        }
    }

    function test_constructor_acceptsLimits() public {
        uint32 maxT = uint32(market.MAX_TIMEOUT());
        Config memory c = Config({
            solverFeeBps: 10_000,
            collateralBps: 1_000_000,
            mediatorFee: 0,
            challengeBond: 0,
            matchTimeout: maxT,
            challengeWindow: maxT,
            mediationTimeout: maxT,
            callbackGas: 2_000_000
        });
        LilypadMarket m = new LilypadMarket(address(token), c, owner);
        assertEq(m.collateralBps(), 1_000_000, "collateralBps");
        assertEq(m.defaultCallbackGas(), 2_000_000, "callbackGas");
    }

    // ================================================================ runJob

    function test_runJob_storesJobHashAndEmitsJobCreated() public {
        string[] memory inputs = _inputs("hi");
        Job memory job = _expectedJob(alice, alice, inputs, 0);
        vm.expectEmit(true, true, true, true, address(market));
        emit JobCreated(1, alice, alice, moduleId, inputs, PAYMENT, job.mediators, job.createdAt, 3600, RUN_TIMEOUT, 300, 3600, 0, address(0));
        vm.prank(alice);
        uint256 id = market.runJob(MODULE, inputs, alice);
        assertEq(id, 1, "first id");
        assertEq(market.jobHash(id), keccak256(abi.encode(job)), "jobHash");
        assertEq(market.jobCount(), 1, "jobCount");
        assertEq(job.mediators, uint256(1) << mediatorIndex, "default mediators");
    }

    function test_runJob_pullsPaymentIntoEscrow() public {
        uint256 aliceBefore = token.balanceOf(alice);
        uint256 marketBefore = token.balanceOf(address(market));
        _run(alice);
        assertEq(token.balanceOf(alice), aliceBefore - PAYMENT, "alice paid");
        assertEq(token.balanceOf(address(market)), marketBefore + PAYMENT, "market holds payment");
        assertEq(market.balanceOf(alice), 0, "nothing credited");
    }

    function test_runJob_assignsConsecutiveIds() public {
        (uint256 a,) = _run(alice);
        (uint256 b,) = _run(bob);
        (uint256 c,) = _run(alice);
        assertEq(a, 1, "a");
        assertEq(b, 2, "b");
        assertEq(c, 3, "c");
        assertEq(market.jobCount(), 3, "jobCount");
    }

    function test_runJob_revertsOnUnknownModule() public {
        vm.expectRevert(abi.encodeWithSelector(UnknownModule.selector, "lilysay:9.9.9"));
        vm.prank(alice);
        market.runJob("lilysay:9.9.9", _inputs("hi"), alice);
    }

    function test_runJob_revertsOnZeroPayee() public {
        vm.expectRevert(abi.encodeWithSelector(ZeroAddress.selector));
        vm.prank(alice);
        market.runJob(MODULE, _inputs("hi"), address(0));
    }

    function test_runJob_revertsWhenClientNotAuthorized() public {
        vm.expectRevert(abi.encodeWithSelector(ClientNotAuthorized.selector, alice, bob));
        vm.prank(bob);
        market.runJob(MODULE, _inputs("hi"), alice);
    }

    function test_runJob_authorizedClientChargesPayee() public {
        vm.prank(alice);
        market.authorizeClient(bob, _unlimited());
        string[] memory inputs = _inputs("hi");
        Job memory job = _expectedJob(bob, alice, inputs, 0);
        uint256 aliceBefore = token.balanceOf(alice);
        uint256 bobBefore = token.balanceOf(bob);
        vm.prank(bob);
        uint256 id = market.runJob(MODULE, inputs, alice);
        assertEq(market.jobHash(id), market.hashJob(job), "client bob, payee alice");
        assertEq(token.balanceOf(alice), aliceBefore - PAYMENT, "alice paid");
        assertEq(token.balanceOf(bob), bobBefore, "bob paid nothing");
    }

    function test_runJob_revokedAuthorizationReverts() public {
        vm.startPrank(alice);
        market.authorizeClient(bob, _unlimited());
        market.authorizeClient(bob, _revoked());
        vm.stopPrank();
        vm.expectRevert(abi.encodeWithSelector(ClientNotAuthorized.selector, alice, bob));
        vm.prank(bob);
        market.runJob(MODULE, _inputs("hi"), alice);
    }

    function test_runJob_revertsOnInsufficientAllowance() public {
        vm.prank(bob);
        token.approve(address(market), PAYMENT - 1);
        vm.expectRevert(TRANSFER_FROM_FAILED);
        vm.prank(bob);
        market.runJob(MODULE, _inputs("hi"), bob);
    }

    function test_runJob_revertsOnInsufficientTokenBalance() public {
        vm.prank(stranger);
        token.approve(address(market), type(uint256).max);
        vm.expectRevert(TRANSFER_FROM_FAILED);
        vm.prank(stranger);
        market.runJob(MODULE, _inputs("hi"), stranger);
    }

    function test_runJob_eoaCallerGetsNoCallbackGas() public {
        (, Job memory job) = _run(alice); // _run checks the stored hash with callbackGas 0
        assertEq(job.callbackGas, 0, "callbackGas");
    }

    function test_runJob_contractCallerGetsDefaultCallbackGas() public {
        string[] memory inputs = _inputs("hi");
        Job memory job = _expectedJob(address(probe), alice, inputs, 100_000);
        uint256 id = probe.run(MODULE, inputs, alice);
        assertEq(market.jobHash(id), market.hashJob(job), "contract client job");
    }

    function test_runJob_zeroPaymentModulePullsNothing() public {
        ModuleSpec memory spec = _spec();
        spec.defaultPayment = 0;
        market.publishModule("free", "1", spec);
        uint256 before = token.balanceOf(address(market));
        vm.prank(stranger); // no tokens, no allowance
        uint256 id = market.runJob("free:1", _inputs("hi"), stranger);
        assertTrue(market.jobHash(id) != 0, "created");
        assertEq(token.balanceOf(address(market)), before, "nothing pulled");
    }

    /// @dev The inputs are told by JobCreated (the record agents run the job from); the stored
    /// Job does not carry them.
    function test_runJob_emitsEveryInput() public {
        string[] memory inputs = new string[](3);
        inputs[0] = "Message=a";
        inputs[1] = "Seed=42";
        inputs[2] = "";
        Job memory job = _expectedJob(alice, alice, inputs, 0);
        vm.expectEmit(true, true, true, true, address(market));
        emit JobCreated(1, alice, alice, moduleId, inputs, PAYMENT, job.mediators, job.createdAt, 3600, RUN_TIMEOUT, 300, 3600, 0, address(0));
        vm.prank(alice);
        uint256 id = market.runJob(MODULE, inputs, alice);
        assertEq(market.jobHash(id), market.hashJob(job), "stored job");
    }

    // ================================================================ createJob

    function test_createJob_zeroFieldsTakeRunJobDefaults() public {
        (uint256 a, Job memory viaCreate) = _create(alice, _request(alice));
        (uint256 b, Job memory viaRun) = _run(alice);
        viaCreate.createdAt = viaRun.createdAt;
        assertEq(keccak256(abi.encode(viaCreate)), keccak256(abi.encode(viaRun)), "same terms");
        assertEq(b, a + 1, "ids");
    }

    function test_createJob_acceptsMatchingSpecHashPin() public {
        JobRequest memory r = _request(alice);
        r.specHash = SPEC_HASH;
        _create(alice, r);
    }

    function test_createJob_revertsOnSpecHashMismatch() public {
        JobRequest memory r = _request(alice);
        r.specHash = keccak256("another module folder");
        vm.expectRevert(abi.encodeWithSelector(SpecHashMismatch.selector, MODULE, SPEC_HASH, r.specHash));
        vm.prank(alice);
        market.createJob(r);
    }

    function test_createJob_revertsOnUnknownModule() public {
        JobRequest memory r = _request(alice);
        r.module = "nope:1";
        vm.expectRevert(abi.encodeWithSelector(UnknownModule.selector, "nope:1"));
        vm.prank(alice);
        market.createJob(r);
    }

    function test_createJob_revertsOnZeroPayee() public {
        vm.expectRevert(abi.encodeWithSelector(ZeroAddress.selector));
        vm.prank(alice);
        market.createJob(_request(address(0)));
    }

    function test_createJob_revertsWhenClientNotAuthorized() public {
        vm.expectRevert(abi.encodeWithSelector(ClientNotAuthorized.selector, bob, alice));
        vm.prank(alice);
        market.createJob(_request(bob));
    }

    function test_createJob_storesTimeoutOverrides() public {
        JobRequest memory r = _request(alice);
        r.matchTimeout = 11;
        r.runTimeout = 2200;
        r.challengeWindow = 33;
        r.mediationTimeout = 4400;
        (, Job memory job) = _create(alice, r);
        assertEq(job.matchTimeout, 11, "match");
        assertEq(job.runTimeout, 2200, "run");
        assertEq(job.challengeWindow, 33, "challenge");
        assertEq(job.mediationTimeout, 4400, "mediation");
    }

    function test_createJob_revertsOnRunTimeoutUnderModuleRunTimeout() public {
        JobRequest memory r = _request(alice);
        r.runTimeout = RUN_TIMEOUT - 1; // an honest run of the module may take RUN_TIMEOUT
        vm.expectRevert(abi.encodeWithSelector(InvalidTimeout.selector, "runTimeout", uint256(RUN_TIMEOUT - 1)));
        vm.prank(alice);
        market.createJob(r);
    }

    function test_createJob_revertsOnMediationTimeoutUnderRunTimeout() public {
        JobRequest memory r = _request(alice);
        r.runTimeout = 1000;
        r.mediationTimeout = 999; // the mediator could not re-run the job
        vm.expectRevert(abi.encodeWithSelector(InvalidTimeout.selector, "mediationTimeout", uint256(999)));
        vm.prank(alice);
        market.createJob(r);
    }

    function test_createJob_defaultMediationTimeoutCoversLongRuns() public {
        JobRequest memory r = _request(alice);
        r.runTimeout = 5000; // longer than the default mediation timeout (3600)
        (, Job memory job) = _create(alice, r);
        assertEq(job.mediationTimeout, 5000, "the mediator gets the run window");
    }

    function test_createJob_acceptsMaxTimeouts() public {
        uint32 maxT = uint32(market.MAX_TIMEOUT());
        JobRequest memory r = _request(alice);
        r.matchTimeout = maxT;
        r.runTimeout = maxT;
        r.challengeWindow = maxT;
        r.mediationTimeout = maxT;
        _create(alice, r);
    }

    function test_createJob_revertsOnMatchTimeoutTooLarge() public {
        _expectTimeoutRevert(0, "matchTimeout");
    }

    function test_createJob_revertsOnRunTimeoutTooLarge() public {
        _expectTimeoutRevert(1, "runTimeout");
    }

    function test_createJob_revertsOnChallengeWindowTooLarge() public {
        _expectTimeoutRevert(2, "challengeWindow");
    }

    function test_createJob_revertsOnMediationTimeoutTooLarge() public {
        _expectTimeoutRevert(3, "mediationTimeout");
    }

    function _expectTimeoutRevert(uint256 which, string memory name) internal {
        uint32 bad = uint32(market.MAX_TIMEOUT()) + 1;
        JobRequest memory r = _request(alice);
        if (which == 0) r.matchTimeout = bad;
        if (which == 1) r.runTimeout = bad;
        if (which == 2) r.challengeWindow = bad;
        if (which == 3) r.mediationTimeout = bad;
        vm.expectRevert(abi.encodeWithSelector(InvalidTimeout.selector, name, uint256(bad)));
        vm.prank(alice);
        market.createJob(r);
    }

    function test_createJob_contractCallerGetsDefaultCallbackGas() public {
        JobRequest memory r = _request(alice);
        Job memory job = JobFlow.created(market, address(probe), r);
        uint256 id = probe.create(r);
        assertEq(job.callbackGas, 100_000, "default");
        assertEq(market.jobHash(id), market.hashJob(job), "stored");
    }

    function test_createJob_contractCallerCallbackGasOverride() public {
        JobRequest memory r = _request(alice);
        r.callbackGas = 2_000_000; // MAX_CALLBACK_GAS
        Job memory job = JobFlow.created(market, address(probe), r);
        uint256 id = probe.create(r);
        assertEq(job.callbackGas, 2_000_000, "override");
        assertEq(market.jobHash(id), market.hashJob(job), "stored");
    }

    function test_createJob_revertsOnCallbackGasTooHigh() public {
        JobRequest memory r = _request(alice);
        r.callbackGas = 2_000_001;
        vm.expectRevert(abi.encodeWithSelector(CallbackGasTooHigh.selector, 2_000_001, 2_000_000));
        probe.create(r);
    }

    function test_createJob_eoaCallbackGasIsIgnored() public {
        JobRequest memory r = _request(alice);
        r.callbackGas = type(uint32).max; // not even checked for an EOA: it gets no callback
        (, Job memory job) = _create(alice, r);
        assertEq(job.callbackGas, 0, "no callback for an EOA");
    }

    function test_createJob_maxPaymentOverridesDefault() public {
        JobRequest memory r = _request(alice);
        r.maxPayment = 7 ether;
        uint256 before = token.balanceOf(alice);
        (, Job memory job) = _create(alice, r);
        assertEq(job.payment, 7 ether, "payment");
        assertEq(token.balanceOf(alice), before - 7 ether, "pulled maxPayment");
    }

    function test_createJob_explicitMediatorsOverrideDefault() public {
        JobRequest memory r = _request(alice);
        _addMediator(bob); // index 1
        _addMediator(stranger); // index 2
        r.mediators = 0x6;
        (, Job memory job) = _create(alice, r);
        assertEq(job.mediators, 0x6, "mediators");
    }

    function test_createJob_explicitMediatorsKeepOnlySlotsTakenNow() public {
        JobRequest memory r = _request(alice);
        r.mediators = type(uint64).max; // "all": only the one mediator registered so far
        (, Job memory job) = _create(alice, r);
        assertEq(job.mediators, 0x1, "later mediators are not accepted");
    }

    function test_createJob_revertsWhenNoNamedMediatorExists() public {
        JobRequest memory r = _request(alice);
        r.mediators = 0x6; // slots 1 and 2: nobody
        vm.expectRevert(abi.encodeWithSelector(InvalidMediators.selector, uint64(0x6)));
        vm.prank(alice);
        market.createJob(r);
    }

    function test_createJob_emitsJobCreated() public {
        JobRequest memory r = _request(alice);
        r.maxPayment = 8 ether;
        r.matchTimeout = 100;
        r.runTimeout = 700;
        r.challengeWindow = 300;
        r.mediationTimeout = 800;
        _addMediator(bob); // index 1
        r.mediators = 0x3;
        r.solver = solver;
        vm.expectEmit(true, true, true, true, address(market));
        emit JobCreated(
            1, alice, alice, moduleId, r.inputs, 8 ether, 0x3, uint40(block.timestamp), 100, 700, 300, 800, 0, solver
        );
        vm.prank(alice);
        market.createJob(r);
    }

    // ================================================================ matchJob

    function test_matchJob_locksCollateralAndEmits() public {
        (uint256 id, Job memory job) = _run(alice);
        Job memory next = _matched(job, provider);
        uint256 before = market.balanceOf(provider);
        vm.expectEmit(true, true, true, true, address(market));
        emit JobMatched(id, provider, solver, mediatorIndex, PRICE, 0.25 ether, 10 ether, uint40(block.timestamp));
        vm.prank(solver);
        market.matchJob(id, job, provider, mediatorIndex);
        assertEq(market.balanceOf(provider), before - 10 ether, "collateral locked (2x price)");
        assertEq(market.jobHash(id), keccak256(abi.encode(next)), "matched hash");
    }

    function test_matchJob_revertsOnUnknownJob() public {
        (, Job memory job) = _run(alice);
        vm.expectRevert(abi.encodeWithSelector(JobNotFound.selector, 2));
        vm.prank(solver);
        market.matchJob(2, job, provider, mediatorIndex);
    }

    function test_matchJob_revertsOnStaleJob() public {
        (uint256 id, Job memory job) = _run(alice);
        job.payment += 1;
        vm.expectRevert(abi.encodeWithSelector(StaleJob.selector, id));
        vm.prank(solver);
        market.matchJob(id, job, provider, mediatorIndex);
    }

    function test_matchJob_revertsOnJobOfAnotherId() public {
        (, Job memory job1) = _run(alice);
        vm.warp(block.timestamp + 1);
        (uint256 id2,) = _run(alice);
        vm.expectRevert(abi.encodeWithSelector(StaleJob.selector, id2));
        vm.prank(solver);
        market.matchJob(id2, job1, provider, mediatorIndex);
    }

    function test_matchJob_revertsWhenAlreadyMatched() public {
        (uint256 id, Job memory job) = _matchedJob();
        vm.expectRevert(abi.encodeWithSelector(WrongState.selector, id, JobState.Matched));
        vm.prank(solver);
        market.matchJob(id, job, provider2, mediatorIndex);
    }

    function test_matchJob_revertsAfterMatchDeadline() public {
        (uint256 id, Job memory job) = _run(alice);
        uint256 deadline = uint256(job.createdAt) + job.matchTimeout;
        vm.warp(deadline + 1);
        vm.expectRevert(abi.encodeWithSelector(DeadlinePassed.selector, id, deadline));
        vm.prank(solver);
        market.matchJob(id, job, provider, mediatorIndex);
    }

    function test_matchJob_succeedsAtMatchDeadline() public {
        (uint256 id, Job memory job) = _run(alice);
        vm.warp(uint256(job.createdAt) + job.matchTimeout);
        _match(id, job, provider);
    }

    function test_matchJob_revertsForNonSolver() public {
        (uint256 id, Job memory job) = _run(alice);
        vm.expectRevert(abi.encodeWithSelector(NotSolver.selector, stranger));
        vm.prank(stranger);
        market.matchJob(id, job, provider, mediatorIndex);
    }

    function test_matchJob_revertsForSolverThatLeft() public {
        (uint256 id, Job memory job) = _run(alice);
        vm.prank(solver);
        market.leaveRoles(ROLE_SOLVER);
        vm.expectRevert(abi.encodeWithSelector(NotSolver.selector, solver));
        vm.prank(solver);
        market.matchJob(id, job, provider, mediatorIndex);
    }

    function test_matchJob_revertsForNonProvider() public {
        (uint256 id, Job memory job) = _run(alice);
        vm.expectRevert(abi.encodeWithSelector(NotProvider.selector, stranger));
        vm.prank(solver);
        market.matchJob(id, job, stranger, mediatorIndex);
    }

    function test_matchJob_revertsForProviderThatLeft() public {
        (uint256 id, Job memory job) = _run(alice);
        vm.prank(provider);
        market.leaveRoles(ROLE_PROVIDER);
        vm.expectRevert(abi.encodeWithSelector(NotProvider.selector, provider));
        vm.prank(solver);
        market.matchJob(id, job, provider, mediatorIndex);
    }

    function test_matchJob_revertsWithoutOffer() public {
        (uint256 id, Job memory job) = _run(alice);
        vm.prank(provider);
        market.setOffer(moduleId, _offer(PRICE, false));
        vm.expectRevert(abi.encodeWithSelector(NoOffer.selector, provider, moduleId));
        vm.prank(solver);
        market.matchJob(id, job, provider, mediatorIndex);
    }

    function test_matchJob_wildcardOfferWithFittingResources() public {
        (uint256 id, Job memory job) = _run(alice);
        vm.startPrank(provider);
        market.setOffer(moduleId, _offer(PRICE, false));
        market.setOffer(bytes32(0), _offer(3 ether, true));
        market.setResources(Resources({cpuMilli: 1000, ramMb: 512, diskMb: 100, vramMb: 0, gpus: 0})); // exactly
        vm.stopPrank();
        Job memory next = _match(id, job, provider);
        assertEq(next.price, 3 ether, "wildcard price");
    }

    function test_matchJob_wildcardOfferRevertsWhenResourcesDoNotFit() public {
        (uint256 id, Job memory job) = _run(alice);
        vm.startPrank(provider);
        market.setOffer(moduleId, _offer(PRICE, false));
        market.setOffer(bytes32(0), _offer(3 ether, true));
        market.setResources(Resources({cpuMilli: 999, ramMb: 512, diskMb: 100, vramMb: 0, gpus: 0}));
        vm.stopPrank();
        vm.expectRevert(abi.encodeWithSelector(ResourcesInsufficient.selector, provider, moduleId));
        vm.prank(solver);
        market.matchJob(id, job, provider, mediatorIndex);
    }

    function test_matchJob_specificOfferTakesPrecedenceOverWildcard() public {
        (uint256 id, Job memory job) = _run(alice);
        vm.prank(provider);
        market.setOffer(bytes32(0), _offer(1 ether, true)); // no resources declared: would not fit
        Job memory next = _match(id, job, provider);
        assertEq(next.price, PRICE, "module offer price");
    }

    function test_matchJob_revertsWhenPriceAboveCap() public {
        (uint256 id, Job memory job) = _run(alice);
        vm.prank(provider);
        market.setOffer(moduleId, _offer(9.6 ether, true)); // + 5 % = 10.08 > 10
        vm.expectRevert(abi.encodeWithSelector(PriceAboveCap.selector, id, 10.08 ether, PAYMENT));
        vm.prank(solver);
        market.matchJob(id, job, provider, mediatorIndex);
    }

    function test_matchJob_priceWithFeeExactlyAtCapSucceeds() public {
        (uint256 id, Job memory job) = _run(alice);
        uint128 price = uint128(uint256(PAYMENT) * 10_000 / 10_500); // 9.5238... ether
        vm.prank(provider);
        market.setOffer(moduleId, _offer(price, true));
        Job memory next = _match(id, job, provider);
        assertLe(uint256(next.price) + next.solverFee, PAYMENT, "within cap");
    }

    function test_matchJob_revertsWhenMediatorNotAcceptedByJob() public {
        uint8 other = _addMediator(auditor);
        vm.prank(provider);
        market.setProviderMediators(type(uint64).max); // now both
        JobRequest memory r = _request(alice);
        r.mediators = uint64(1) << other;
        (uint256 id, Job memory job) = _create(alice, r);
        vm.expectRevert(abi.encodeWithSelector(MediatorNotAcceptable.selector, id, mediatorIndex));
        vm.prank(solver);
        market.matchJob(id, job, provider, mediatorIndex);
        // the mediator the job accepts works
        vm.prank(solver);
        market.matchJob(id, job, provider, other);
    }

    function test_matchJob_revertsWhenMediatorNotAcceptedByProvider() public {
        (uint256 id, Job memory job) = _run(alice);
        _addMediator(auditor);
        vm.prank(provider);
        market.setProviderMediators(~(uint64(1) << mediatorIndex));
        vm.expectRevert(abi.encodeWithSelector(MediatorNotAcceptable.selector, id, mediatorIndex));
        vm.prank(solver);
        market.matchJob(id, job, provider, mediatorIndex);
    }

    function test_matchJob_revertsWhenMediatorSuspended() public {
        (uint256 id, Job memory job) = _run(alice);
        vm.prank(owner);
        market.setMediatorSuspended(mediatorIndex, true);
        vm.expectRevert(abi.encodeWithSelector(MediatorNotAcceptable.selector, id, mediatorIndex));
        vm.prank(solver);
        market.matchJob(id, job, provider, mediatorIndex);
    }

    function test_matchJob_revertsWhenMediatorLeft() public {
        (uint256 id, Job memory job) = _run(alice);
        vm.prank(mediator);
        market.leaveRoles(ROLE_MEDIATOR);
        vm.expectRevert(abi.encodeWithSelector(MediatorNotAcceptable.selector, id, mediatorIndex));
        vm.prank(solver);
        market.matchJob(id, job, provider, mediatorIndex);
    }

    function test_matchJob_revertsWhenMediatorUnregistered() public {
        (uint256 id, Job memory job) = _create(alice, _requestAllMediators());
        vm.expectRevert(abi.encodeWithSelector(MediatorNotAcceptable.selector, id, 5));
        vm.prank(solver);
        market.matchJob(id, job, provider, 5);
    }

    function test_matchJob_revertsWhenMediatorIndexOutOfRange() public {
        (uint256 id, Job memory job) = _create(alice, _requestAllMediators());
        uint8[3] memory bad = [uint8(64), 65, 255];
        for (uint256 i; i < bad.length; ++i) {
            vm.expectRevert(abi.encodeWithSelector(MediatorNotAcceptable.selector, id, bad[i]));
            vm.prank(solver);
            market.matchJob(id, job, provider, bad[i]);
        }
    }

    function _requestAllMediators() internal view returns (JobRequest memory r) {
        r = _request(alice);
        r.mediators = type(uint64).max;
    }

    function test_matchJob_revertsOnInsufficientCollateral() public {
        (uint256 id, Job memory job) = _run(alice);
        vm.prank(provider);
        market.withdraw(95 ether, provider); // 5 ether left, 10 needed
        vm.expectRevert(abi.encodeWithSelector(InsufficientBalance.selector, provider, 5 ether, 10 ether));
        vm.prank(solver);
        market.matchJob(id, job, provider, mediatorIndex);
    }

    function test_matchJob_collateralLockedForOneJobCannotBackASecond() public {
        (uint256 id1, Job memory job1) = _run(alice);
        vm.warp(block.timestamp + 1);
        (uint256 id2, Job memory job2) = _run(alice);
        vm.prank(provider);
        market.withdraw(90 ether, provider); // 10 ether left: one job's collateral
        _match(id1, job1, provider);
        assertEq(market.balanceOf(provider), 0, "the first job locked all of it");
        vm.expectRevert(abi.encodeWithSelector(InsufficientBalance.selector, provider, 0, 10 ether));
        vm.prank(solver);
        market.matchJob(id2, job2, provider, mediatorIndex);
    }

    function test_matchJob_collateralIsAtLeastMediatorFee() public {
        (uint256 id, Job memory job) = _run(alice);
        vm.prank(provider);
        market.setOffer(moduleId, _offer(0.1 ether, true)); // 2x = 0.2 < mediatorFee 1
        uint256 before = market.balanceOf(provider);
        Job memory next = _match(id, job, provider);
        assertEq(next.collateral, 1 ether, "collateral floor");
        assertEq(market.balanceOf(provider), before - 1 ether, "locked");
    }

    function test_matchJob_zeroPriceOffer() public {
        (uint256 id, Job memory job) = _run(alice);
        vm.prank(provider);
        market.setOffer(moduleId, _offer(0, true));
        Job memory next = _match(id, job, provider);
        assertEq(next.price, 0, "price");
        assertEq(next.solverFee, 0, "fee");
        assertEq(next.collateral, 1 ether, "collateral = mediatorFee");
    }

    // ================================================================ releaseJob

    function test_releaseJob_reopensJobAndUnlocksCollateral() public {
        (uint256 id, Job memory job) = _matchedJob();
        uint256 before = market.balanceOf(provider);
        vm.expectEmit(true, true, true, true, address(market));
        emit JobReleased(id, provider, 0);
        Job memory open = _release(id, job);
        assertEq(market.balanceOf(provider), before + job.collateral, "collateral back");
        assertEq(uint256(open.state), uint256(JobState.Open), "open");
        // and it can be matched again, to another provider
        _match(id, open, provider2);
    }

    function test_releaseJob_revertsForNonProvider() public {
        (uint256 id, Job memory job) = _matchedJob();
        address[3] memory who = [solver, alice, provider2];
        for (uint256 i; i < who.length; ++i) {
            vm.expectRevert(abi.encodeWithSelector(NotJobProvider.selector, id, who[i]));
            vm.prank(who[i]);
            market.releaseJob(id, job);
        }
    }

    function test_releaseJob_revertsAfterRunDeadline() public {
        (uint256 id, Job memory job) = _matchedJob();
        uint256 deadline = uint256(job.matchedAt) + job.runTimeout;
        vm.warp(deadline + 1);
        vm.expectRevert(abi.encodeWithSelector(DeadlinePassed.selector, id, deadline));
        vm.prank(provider);
        market.releaseJob(id, job);
    }

    function test_releaseJob_succeedsAtRunDeadlineForTheWholeCollateral() public {
        (uint256 id, Job memory job) = _matchedJob();
        vm.warp(uint256(job.matchedAt) + job.runTimeout);
        uint256 providerBefore = market.balanceOf(provider);
        uint256 payeeBefore = market.balanceOf(alice);
        vm.expectEmit(true, true, true, true, address(market));
        emit JobReleased(id, provider, job.collateral);
        _release(id, job);
        assertEq(market.balanceOf(provider), providerBefore, "provider: nothing back");
        assertEq(market.balanceOf(alice), payeeBefore + job.collateral, "payee: the collateral");
    }

    function test_releaseJob_isFreeInTheFirstHalfOfTheRunWindow() public {
        (uint256 id, Job memory job) = _matchedJob();
        vm.warp(uint256(job.matchedAt) + job.runTimeout / 2);
        uint256 before = market.balanceOf(provider);
        _release(id, job);
        assertEq(market.balanceOf(provider), before + job.collateral, "all of it back");
    }

    /// @dev Issue 12, sequence 7: a provider held a job to the last second of its run window
    /// and released it for free. A late release now costs a share of the collateral that
    /// grows to all of it at the deadline, paid to the payee; value is conserved.
    function testFuzz_releaseJob_lateReleaseCostsAGrowingShareOfCollateral(uint256 late) public {
        (uint256 id, Job memory job) = _matchedJob();
        uint256 grace = job.runTimeout / 2;
        late = bound(late, 1, job.runTimeout - grace);
        vm.warp(uint256(job.matchedAt) + grace + late);
        uint128 penalty = JobFlow.releasePenalty(job);
        assertEq(penalty, uint256(job.collateral) * late / (job.runTimeout - grace), "linear from the half");
        assertGt(penalty, 0, "not free");
        uint256 providerBefore = market.balanceOf(provider);
        uint256 payeeBefore = market.balanceOf(alice);
        vm.expectEmit(true, true, true, true, address(market));
        emit JobReleased(id, provider, penalty);
        _release(id, job);
        assertEq(market.balanceOf(provider), providerBefore + job.collateral - penalty, "provider: the rest");
        assertEq(market.balanceOf(alice), payeeBefore + penalty, "payee: the penalty");
    }

    function test_releaseJob_revertsWhenOpen() public {
        (uint256 id, Job memory job) = _run(alice);
        vm.expectRevert(abi.encodeWithSelector(WrongState.selector, id, JobState.Open));
        vm.prank(provider);
        market.releaseJob(id, job);
    }

    function test_releaseJob_revertsWhenSubmitted() public {
        (uint256 id, Job memory job) = _submittedJob();
        vm.expectRevert(abi.encodeWithSelector(WrongState.selector, id, JobState.Submitted));
        vm.prank(provider);
        market.releaseJob(id, job);
    }

    function test_releaseJob_keepsMatchDeadline() public {
        (uint256 id, Job memory job) = _run(alice);
        vm.warp(uint256(job.createdAt) + job.matchTimeout - 10);
        job = _match(id, job, provider);
        vm.warp(block.timestamp + 20); // past the match deadline, within the run deadline
        job = _release(id, job);
        uint256 deadline = uint256(job.createdAt) + job.matchTimeout;
        vm.expectRevert(abi.encodeWithSelector(DeadlinePassed.selector, id, deadline));
        vm.prank(solver);
        market.matchJob(id, job, provider2, mediatorIndex);
        vm.prank(stranger);
        market.expireJob(id, job);
        assertEq(market.jobHash(id), bytes32(0), "expired");
    }

    // ================================================================ submitResult

    function test_submitResult_storesResultAndEmits() public {
        (uint256 id, Job memory job) = _matchedJob();
        vm.expectEmit(true, true, true, true, address(market));
        emit ResultSubmitted(id, provider, CID, RESULT_HASH, uint40(block.timestamp));
        Job memory next = _submit(id, job);
        assertEq(next.result, keccak256(abi.encode(CID, RESULT_HASH)), "result");
    }

    function test_submitResult_revertsForNonProvider() public {
        (uint256 id, Job memory job) = _matchedJob();
        vm.expectRevert(abi.encodeWithSelector(NotJobProvider.selector, id, provider2));
        vm.prank(provider2);
        market.submitResult(id, job, CID, RESULT_HASH);
    }

    function test_submitResult_revertsAfterRunDeadline() public {
        (uint256 id, Job memory job) = _matchedJob();
        uint256 deadline = uint256(job.matchedAt) + job.runTimeout;
        vm.warp(deadline + 1);
        vm.expectRevert(abi.encodeWithSelector(DeadlinePassed.selector, id, deadline));
        vm.prank(provider);
        market.submitResult(id, job, CID, RESULT_HASH);
    }

    function test_submitResult_succeedsAtRunDeadline() public {
        (uint256 id, Job memory job) = _matchedJob();
        vm.warp(uint256(job.matchedAt) + job.runTimeout);
        _submit(id, job);
    }

    function test_submitResult_revertsOnEmptyDataId() public {
        (uint256 id, Job memory job) = _matchedJob();
        vm.expectRevert(abi.encodeWithSelector(InvalidDataId.selector, id));
        vm.prank(provider);
        market.submitResult(id, job, "", RESULT_HASH);
    }

    function test_submitResult_revertsOnTooLongDataId() public {
        (uint256 id, Job memory job) = _matchedJob();
        vm.expectRevert(abi.encodeWithSelector(InvalidDataId.selector, id));
        vm.prank(provider);
        market.submitResult(id, job, string(new bytes(257)), RESULT_HASH);
    }

    function test_submitResult_acceptsMaxLengthDataId() public {
        (uint256 id, Job memory job) = _matchedJob();
        string memory dataId = string(new bytes(256));
        vm.prank(provider);
        market.submitResult(id, job, dataId, RESULT_HASH);
        assertEq(market.jobHash(id), market.hashJob(JobFlow.submitted(job, dataId, RESULT_HASH)), "stored");
    }

    function test_submitResult_revertsWhenOpen() public {
        (uint256 id, Job memory job) = _run(alice);
        vm.expectRevert(abi.encodeWithSelector(WrongState.selector, id, JobState.Open));
        vm.prank(provider);
        market.submitResult(id, job, CID, RESULT_HASH);
    }

    function test_submitResult_revertsWhenAlreadySubmitted() public {
        (uint256 id, Job memory job) = _submittedJob();
        vm.expectRevert(abi.encodeWithSelector(WrongState.selector, id, JobState.Submitted));
        vm.prank(provider);
        market.submitResult(id, job, CID, RESULT_HASH);
    }

    // ================================================================ settle

    function test_settle_revertsBeforeChallengeWindowEnds() public {
        (uint256 id, Job memory job) = _submittedJob();
        uint256 deadline = uint256(job.submittedAt) + job.challengeWindow;
        vm.expectRevert(abi.encodeWithSelector(DeadlineNotReached.selector, id, deadline));
        market.settle(id, job, CID, RESULT_HASH);
        vm.warp(deadline); // the window is still open at the deadline itself
        vm.expectRevert(abi.encodeWithSelector(DeadlineNotReached.selector, id, deadline));
        market.settle(id, job, CID, RESULT_HASH);
    }

    function test_settle_revertsOnResultMismatch() public {
        (uint256 id, Job memory job) = _submittedJob();
        _pastChallengeWindow(job);
        vm.expectRevert(abi.encodeWithSelector(ResultMismatch.selector, id));
        market.settle(id, job, "bafyother", RESULT_HASH);
        vm.expectRevert(abi.encodeWithSelector(ResultMismatch.selector, id));
        market.settle(id, job, CID, keccak256("other outputs"));
    }

    function test_settle_revertsWhenMatched() public {
        (uint256 id, Job memory job) = _matchedJob();
        vm.expectRevert(abi.encodeWithSelector(WrongState.selector, id, JobState.Matched));
        market.settle(id, job, CID, RESULT_HASH);
    }

    function test_settle_paysProviderSolverAndRefundsPayee() public {
        (uint256 id, Job memory job) = _submittedJob();
        _pastChallengeWindow(job);
        uint256 p = market.balanceOf(provider);
        uint256 s = market.balanceOf(solver);
        uint256 a = market.balanceOf(alice);
        uint256 held = token.balanceOf(address(market));
        _settle(id, job);
        assertEq(market.balanceOf(provider), p + PRICE + 10 ether, "provider: price + collateral");
        assertEq(market.balanceOf(solver), s + 0.25 ether, "solver: 5 % of the price");
        assertEq(market.balanceOf(alice), a + 4.75 ether, "payee: payment - price - fee");
        assertEq(token.balanceOf(address(market)), held, "no tokens move on settle");
        assertEq(market.balanceOf(stranger), 0, "the settler gets nothing");
    }

    function test_settle_noRefundWhenPriceUsesWholePayment() public {
        vm.prank(provider);
        market.setOffer(moduleId, _offer(8 ether, true)); // fee 0.4
        JobRequest memory r = _request(alice);
        r.maxPayment = 8.4 ether;
        (uint256 id, Job memory job) = _create(alice, r);
        job = _submit(id, _match(id, job, provider));
        _pastChallengeWindow(job);
        uint256 a = market.balanceOf(alice);
        vm.expectEmit(true, true, true, true, address(market));
        emit JobSettled(id, provider, 8 ether, 0.4 ether, 0);
        _settle(id, job);
        assertEq(market.balanceOf(alice), a, "no refund");
    }

    function test_settle_emitsJobSettledAndDeletesHash() public {
        (uint256 id, Job memory job) = _submittedJob();
        _pastChallengeWindow(job);
        vm.expectEmit(true, true, true, true, address(market));
        emit JobSettled(id, provider, PRICE, 0.25 ether, 4.75 ether);
        _settle(id, job);
        assertEq(market.jobHash(id), bytes32(0), "deleted");
    }

    function test_settle_revertsWhenSettledTwice() public {
        (uint256 id, Job memory job) = _submittedJob();
        _pastChallengeWindow(job);
        _settle(id, job);
        vm.expectRevert(abi.encodeWithSelector(JobNotFound.selector, id));
        market.settle(id, job, CID, RESULT_HASH);
    }

    // ================================================================ settleMany

    function _settlement(uint256 id, Job memory job) internal pure returns (Settlement memory) {
        return Settlement({id: id, job: job, dataId: CID, resultHash: RESULT_HASH});
    }

    function test_settleMany_settlesEachJobAndPaysOnce() public {
        (uint256 a, Job memory ja) = _submittedJob();
        (uint256 b, Job memory jb) = _runViaClient(bob);
        jb = _submit(b, _match(b, jb, provider2));
        _pastChallengeWindow(jb);
        Settlement[] memory items = new Settlement[](2);
        items[0] = _settlement(a, ja);
        items[1] = _settlement(b, jb);
        uint256 p1 = market.balanceOf(provider);
        uint256 p2 = market.balanceOf(provider2);
        uint256 s = market.balanceOf(solver);
        vm.expectEmit(true, true, true, true, address(client));
        emit ExampleClient.JobCompleted(b, "2", CID);
        vm.prank(stranger);
        market.settleMany(items);
        assertEq(market.jobHash(a), bytes32(0), "a settled");
        assertEq(market.jobHash(b), bytes32(0), "b settled");
        assertEq(market.balanceOf(provider) - p1, uint256(ja.price) + ja.collateral, "provider paid");
        assertEq(market.balanceOf(provider2) - p2, uint256(jb.price) + jb.collateral, "provider2 paid");
        assertEq(market.balanceOf(solver) - s, uint256(ja.solverFee) + jb.solverFee, "solver paid both fees");
    }

    function test_settleMany_isAllOrNothing() public {
        (uint256 a, Job memory ja) = _submittedJob();
        (uint256 b, Job memory jb) = _matchedJob(); // not submitted: cannot settle
        _pastChallengeWindow(ja);
        Settlement[] memory items = new Settlement[](2);
        items[0] = _settlement(a, ja);
        items[1] = _settlement(b, jb);
        vm.expectRevert(abi.encodeWithSelector(WrongState.selector, b, JobState.Matched));
        market.settleMany(items);
        assertEq(market.jobHash(a), market.hashJob(ja), "a untouched");
    }

    function test_settleMany_settlesTheSameJobListedTwiceOnce() public {
        (uint256 a, Job memory ja) = _submittedJob();
        _pastChallengeWindow(ja);
        Settlement[] memory items = new Settlement[](2);
        items[0] = _settlement(a, ja);
        items[1] = _settlement(a, ja);
        uint256 before = market.balanceOf(provider);
        market.settleMany(items);
        assertEq(market.jobHash(a), bytes32(0), "settled");
        assertEq(market.balanceOf(provider), before + ja.price + ja.collateral, "paid once");
    }

    function test_settleMany_emptyListDoesNothing() public {
        uint256 before = token.balanceOf(address(market));
        market.settleMany(new Settlement[](0));
        assertEq(token.balanceOf(address(market)), before, "nothing moved");
    }

    function test_settle_callsBackClientWithDecimalDealIdAndCid() public {
        // ids 1..9 are used first so the callback's dealId has two digits
        for (uint256 i; i < 9; ++i) _run(bob);
        (uint256 id, Job memory job) = _runViaClient(alice);
        assertEq(id, 10, "id");
        job = _submit(id, _match(id, job, provider));
        _pastChallengeWindow(job);
        vm.expectCall(
            address(client), 0, 100_000, abi.encodeCall(ILilypadJobClient.submitResults, (id, "10", CID))
        );
        vm.expectEmit(true, true, true, true, address(client));
        emit ExampleClient.JobCompleted(id, "10", CID);
        _settle(id, job);
    }

    function test_settle_callbackReceivesItsGas() public {
        JobRequest memory r = _request(alice);
        r.callbackGas = 500_000;
        (uint256 id, Job memory job) = _createVia(probe, r);
        job = _submit(id, _match(id, job, provider));
        _pastChallengeWindow(job);
        _settle(id, job);
        assertEq(probe.calls(), 1, "called once");
        assertEq(probe.lastId(), id, "id");
        assertEq(probe.lastDealId(), "1", "dealId");
        assertEq(probe.lastDataId(), CID, "dataId");
        assertEq(probe.lastCaller(), address(market), "caller");
        assertGe(probe.gasAtEntry(), 500_000 - 2_000, "gas on entry");
        assertLe(probe.gasAtEntry(), 500_000, "no more than callbackGas");
    }

    function test_settle_revertingClientDoesNotBlockSettlement() public {
        RevertingClient c = new RevertingClient(market);
        _settleWithClientExpectingFailure(address(c), 500_000);
    }

    function test_settle_gasGuzzlingClientDoesNotBlockSettlement() public {
        GasGuzzlerClient c = new GasGuzzlerClient(market);
        _settleWithClientExpectingFailure(address(c), 1_000_000);
    }

    function test_settle_gasGuzzlingClientAtMaxCallbackGas() public {
        GasGuzzlerClient c = new GasGuzzlerClient(market);
        _settleWithClientExpectingFailure(address(c), 2_000_000);
    }

    function _settleWithClientExpectingFailure(address c, uint32 callbackGas) internal {
        vm.prank(alice);
        market.authorizeClient(c, _unlimited());
        JobRequest memory r = _request(alice);
        r.callbackGas = callbackGas;
        (uint256 id, Job memory job) = _createVia(ClientBase(c), r);
        job = _submit(id, _match(id, job, provider));
        _pastChallengeWindow(job);
        uint256 p = market.balanceOf(provider);
        vm.expectEmit(true, true, true, true, address(market));
        emit JobSettled(id, provider, PRICE, 0.25 ether, 4.75 ether);
        vm.expectEmit(true, true, true, true, address(market));
        emit CallbackFailed(id, c);
        market.settle{gas: uint256(callbackGas) * 2 + 200_000}(id, job, CID, RESULT_HASH);
        assertEq(market.jobHash(id), bytes32(0), "settled");
        assertEq(market.balanceOf(provider), p + PRICE + job.collateral, "provider paid");
    }

    function test_settle_returnBombClientIsHarmless() public {
        ReturnBombClient c = new ReturnBombClient(market);
        vm.prank(alice);
        market.authorizeClient(address(c), _unlimited());
        (uint256 id, Job memory job) = _createVia(c, _request(alice));
        job = _submit(id, _match(id, job, provider));
        _pastChallengeWindow(job);
        vm.recordLogs();
        market.settle{gas: 300_000}(id, job, CID, RESULT_HASH);
        assertEq(_countLogs(vm.getRecordedLogs(), CallbackFailed.selector), 0, "callback succeeded");
        assertEq(market.jobHash(id), bytes32(0), "settled");
    }

    function test_settle_reentrantClientCannotSettleTwice() public {
        ReentrantClient c = new ReentrantClient(market);
        vm.prank(alice);
        market.authorizeClient(address(c), _unlimited());
        JobRequest memory r = _request(alice);
        r.callbackGas = 500_000;
        (uint256 id, Job memory job) = _createVia(c, r);
        job = _submit(id, _match(id, job, provider));
        _pastChallengeWindow(job);
        c.arm(job, CID, RESULT_HASH);
        uint256 p = market.balanceOf(provider);
        _settle(id, job);
        assertTrue(c.attempted(), "callback ran");
        assertFalse(c.reentered(), "second settle failed");
        assertEq(keccak256(c.reentryError()), keccak256(abi.encodeWithSelector(JobNotFound.selector, id)), "why");
        assertEq(market.balanceOf(provider), p + PRICE + job.collateral, "paid once");
    }

    function test_settle_revertsWithInsufficientGasForCallback() public {
        (uint256 id, Job memory job) = _runViaClient(alice);
        job = _submit(id, _match(id, job, provider));
        _pastChallengeWindow(job);
        uint256 needed = 100_000 + uint256(100_000) / 63 + 12_000;
        vm.expectRevert(abi.encodeWithSelector(InsufficientGasForCallback.selector, id, needed));
        market.settle{gas: 100_000}(id, job, CID, RESULT_HASH);
        // nothing happened; with enough gas it settles
        assertEq(market.jobHash(id), market.hashJob(job), "still submitted");
        market.settle{gas: 400_000}(id, job, CID, RESULT_HASH);
        assertEq(market.jobHash(id), bytes32(0), "settled");
    }

    function test_settle_eoaClientGetsNoCallback() public {
        (uint256 id, Job memory job) = _submittedJob();
        _pastChallengeWindow(job);
        vm.recordLogs();
        market.settle{gas: 150_000}(id, job, CID, RESULT_HASH); // too little for a callback, enough without
        Vm.Log[] memory logs = vm.getRecordedLogs();
        assertEq(_countLogs(logs, CallbackFailed.selector), 0, "no callback attempted");
        assertEq(_countLogs(logs, JobSettled.selector), 1, "settled");
    }

    // ================================================================ cancelJob

    function test_cancelJob_byPayeeRefundsPayment() public {
        (uint256 id, Job memory job) = _run(alice);
        vm.expectEmit(true, true, true, true, address(market));
        emit JobCancelled(id, alice);
        vm.prank(alice);
        market.cancelJob(id, job);
        assertEq(market.jobHash(id), bytes32(0), "deleted");
        assertEq(market.balanceOf(alice), PAYMENT, "refund credited");
    }

    function test_cancelJob_byClientRefundsPayee() public {
        (uint256 id, Job memory job) = _createVia(probe, _request(alice));
        probe.cancel(id, job);
        assertEq(market.jobHash(id), bytes32(0), "deleted");
        assertEq(market.balanceOf(alice), PAYMENT, "payee refunded");
        assertEq(market.balanceOf(address(probe)), 0, "client gets nothing");
    }

    function test_cancelJob_payeeCanCancelJobItsClientCreated() public {
        (uint256 id, Job memory job) = _createVia(probe, _request(alice));
        vm.prank(alice);
        market.cancelJob(id, job);
        assertEq(market.balanceOf(alice), PAYMENT, "payee refunded");
    }

    function test_cancelJob_revertsForStranger() public {
        (uint256 id, Job memory job) = _run(alice);
        address[3] memory who = [stranger, solver, provider];
        for (uint256 i; i < who.length; ++i) {
            vm.expectRevert(abi.encodeWithSelector(NotJobCreator.selector, id, who[i]));
            vm.prank(who[i]);
            market.cancelJob(id, job);
        }
    }

    function test_cancelJob_revertsWhenMatched() public {
        (uint256 id, Job memory job) = _matchedJob();
        vm.expectRevert(abi.encodeWithSelector(WrongState.selector, id, JobState.Matched));
        vm.prank(alice);
        market.cancelJob(id, job);
    }

    function test_cancelJob_worksAfterMatchDeadline() public {
        (uint256 id, Job memory job) = _run(alice);
        vm.warp(block.timestamp + 10 days);
        vm.prank(alice);
        market.cancelJob(id, job);
        assertEq(market.balanceOf(alice), PAYMENT, "refund");
    }

    // ================================================================ expireJob

    function test_expireJob_refundsPayeeAfterMatchDeadline() public {
        (uint256 id, Job memory job) = _run(alice);
        vm.warp(uint256(job.createdAt) + job.matchTimeout + 1);
        vm.expectEmit(true, true, true, true, address(market));
        emit JobExpired(id);
        vm.prank(stranger);
        market.expireJob(id, job);
        assertEq(market.jobHash(id), bytes32(0), "deleted");
        assertEq(market.balanceOf(alice), PAYMENT, "refund");
        assertEq(market.balanceOf(stranger), 0, "caller gets nothing");
    }

    function test_expireJob_revertsUntilMatchDeadlinePassed() public {
        (uint256 id, Job memory job) = _run(alice);
        uint256 deadline = uint256(job.createdAt) + job.matchTimeout;
        vm.expectRevert(abi.encodeWithSelector(DeadlineNotReached.selector, id, deadline));
        market.expireJob(id, job);
        vm.warp(deadline);
        vm.expectRevert(abi.encodeWithSelector(DeadlineNotReached.selector, id, deadline));
        market.expireJob(id, job);
    }

    function test_expireJob_revertsWhenMatched() public {
        (uint256 id, Job memory job) = _matchedJob();
        vm.warp(block.timestamp + 10 days);
        vm.expectRevert(abi.encodeWithSelector(WrongState.selector, id, JobState.Matched));
        market.expireJob(id, job);
    }

    // ================================================================ timeoutResult

    function test_timeoutResult_refundsPaymentAndSlashesCollateralToPayee() public {
        (uint256 id, Job memory job) = _matchedJob();
        uint256 p = market.balanceOf(provider);
        vm.warp(uint256(job.matchedAt) + job.runTimeout + 1);
        vm.expectEmit(true, true, true, true, address(market));
        emit ResultTimedOut(id, provider, 10 ether);
        vm.prank(stranger);
        market.timeoutResult(id, job);
        assertEq(market.jobHash(id), bytes32(0), "deleted");
        assertEq(market.balanceOf(alice), PAYMENT + 10 ether, "payee: payment + collateral");
        assertEq(market.balanceOf(provider), p, "provider loses collateral");
        assertEq(market.balanceOf(solver), 0, "solver: nothing");
    }

    function test_timeoutResult_revertsUntilRunDeadlinePassed() public {
        (uint256 id, Job memory job) = _matchedJob();
        uint256 deadline = uint256(job.matchedAt) + job.runTimeout;
        vm.expectRevert(abi.encodeWithSelector(DeadlineNotReached.selector, id, deadline));
        market.timeoutResult(id, job);
        vm.warp(deadline);
        vm.expectRevert(abi.encodeWithSelector(DeadlineNotReached.selector, id, deadline));
        market.timeoutResult(id, job);
    }

    function test_timeoutResult_revertsAfterSubmission() public {
        (uint256 id, Job memory job) = _submittedJob();
        vm.warp(block.timestamp + 10 days);
        vm.expectRevert(abi.encodeWithSelector(WrongState.selector, id, JobState.Submitted));
        market.timeoutResult(id, job);
    }

    function test_timeoutResult_revertsWhenOpen() public {
        (uint256 id, Job memory job) = _run(alice);
        vm.warp(block.timestamp + 10 days);
        vm.expectRevert(abi.encodeWithSelector(WrongState.selector, id, JobState.Open));
        market.timeoutResult(id, job);
    }

    // ================================================================ every state has an exit

    /// @dev Drives a job into each non-final state and ends it, as a stranger, once its
    /// deadline has passed: no live job can be stuck, and nobody's cooperation is needed.
    function test_everyStateHasAnExit() public {
        uint256 held = token.balanceOf(address(market));
        uint256 credits = _sumCredits();

        (uint256 id, Job memory job) = _openJob();
        vm.warp(JobFlow.deadline(job) + 1);
        vm.prank(stranger);
        market.expireJob(id, job);
        assertEq(market.jobHash(id), bytes32(0), "open job expired");

        (id, job) = _matchedJob();
        vm.warp(JobFlow.deadline(job) + 1);
        vm.prank(stranger);
        market.timeoutResult(id, job);
        assertEq(market.jobHash(id), bytes32(0), "matched job timed out");

        (id, job) = _submittedJob();
        vm.warp(JobFlow.deadline(job) + 1);
        vm.prank(stranger);
        market.settle(id, job, CID, RESULT_HASH);
        assertEq(market.jobHash(id), bytes32(0), "submitted job settled");

        (id, job) = _challengedJob();
        vm.warp(JobFlow.deadline(job) + 1);
        vm.prank(stranger);
        market.timeoutMediation(id, job, CID, RESULT_HASH);
        assertEq(market.jobHash(id), bytes32(0), "challenged job timed out");

        // everything that came in is credited to someone
        uint256 inflow = token.balanceOf(address(market)) - held;
        assertEq(_sumCredits() - credits, inflow, "all escrow released to balances");
        assertEq(market.balanceOf(stranger), 0, "the stranger earned nothing");
    }

    function _sumCredits() internal view returns (uint256 sum) {
        address[9] memory who = [alice, bob, solver, provider, provider2, mediator, auditor, stranger, owner];
        for (uint256 i; i < who.length; ++i) {
            sum += market.balanceOf(who[i]);
        }
    }

    // ================================================================ views

    function test_hashJob_equalsKeccakOfAbiEncode() public {
        (uint256 id, Job memory job) = _challengedJob();
        assertEq(market.hashJob(job), keccak256(abi.encode(job)), "hashJob");
        assertEq(market.jobHash(id), keccak256(abi.encode(job)), "stored");
        Job memory empty;
        assertEq(market.hashJob(empty), keccak256(abi.encode(empty)), "empty job");
    }

    function test_jobHash_isZeroForUnknownIds() public view {
        assertEq(market.jobHash(0), bytes32(0), "0");
        assertEq(market.jobHash(1), bytes32(0), "1");
        assertEq(market.jobCount(), 0, "no jobs");
    }

    function test_priceOf_returnsModuleOffer() public view {
        assertEq(market.priceOf(provider, moduleId), PRICE, "price");
    }

    function test_priceOf_revertsWithoutOffer() public {
        vm.expectRevert(abi.encodeWithSelector(NoOffer.selector, stranger, moduleId));
        market.priceOf(stranger, moduleId);
    }

    function test_priceOf_wildcardChecksEachResource() public {
        ModuleSpec memory spec = _spec();
        spec.requirements = Resources({cpuMilli: 2000, ramMb: 4096, diskMb: 1000, vramMb: 8000, gpus: 1});
        bytes32 gpuModule = market.publishModule("sdxl", "1.0", spec);
        Resources memory fits = Resources({cpuMilli: 2000, ramMb: 4096, diskMb: 1000, vramMb: 8000, gpus: 1});
        vm.startPrank(provider);
        market.setOffer(bytes32(0), _offer(2 ether, true));
        market.setResources(fits);
        assertEq(market.priceOf(provider, gpuModule), 2 ether, "fits exactly");
        for (uint256 i; i < 5; ++i) {
            Resources memory r = Resources(fits.cpuMilli, fits.ramMb, fits.diskMb, fits.vramMb, fits.gpus);
            if (i == 0) r.cpuMilli -= 1;
            if (i == 1) r.ramMb -= 1;
            if (i == 2) r.diskMb -= 1;
            if (i == 3) r.vramMb -= 1;
            if (i == 4) r.gpus = 0;
            market.setResources(r);
            vm.expectRevert(abi.encodeWithSelector(ResourcesInsufficient.selector, provider, gpuModule));
            market.priceOf(provider, gpuModule);
        }
        vm.stopPrank();
    }

    function test_priceOf_vramIgnoredWithoutGpus() public {
        // lilysay needs no GPU: a provider with no VRAM but more of everything else fits
        vm.startPrank(stranger);
        market.setOffer(bytes32(0), _offer(1 ether, true));
        market.setResources(Resources({cpuMilli: 4000, ramMb: 8192, diskMb: 10_000, vramMb: 0, gpus: 0}));
        vm.stopPrank();
        assertEq(market.priceOf(stranger, moduleId), 1 ether, "fits");
    }

    function test_priceOf_inactiveWildcardIsNoOffer() public {
        vm.startPrank(stranger);
        market.setOffer(bytes32(0), _offer(1 ether, false));
        market.setResources(Resources({cpuMilli: 4000, ramMb: 8192, diskMb: 10_000, vramMb: 0, gpus: 0}));
        vm.stopPrank();
        vm.expectRevert(abi.encodeWithSelector(NoOffer.selector, stranger, moduleId));
        market.priceOf(stranger, moduleId);
    }

    // ================================================================ reference client

    /// @dev ExampleClient is compiled against ILilypadJobManager only: it creates the job
    /// through the reference's `runJob` ABI and receives the reference's `submitResults`.
    function test_exampleClient_runsThroughReferenceInterfaceAndReceivesResults() public {
        assertEq(
            uint256(uint32(ILilypadJobManager.runJob.selector)),
            uint256(uint32(LilypadMarket.runJob.selector)),
            "same selector"
        );
        vm.prank(alice);
        market.authorizeClient(address(client), _unlimited());
        uint256 before = token.balanceOf(alice);
        vm.expectEmit(true, true, true, true, address(client));
        emit ExampleClient.JobRequested(1, alice, "hello");
        vm.prank(alice);
        uint256 id = client.runLilysay("hello");
        assertEq(token.balanceOf(alice), before - PAYMENT, "alice paid through the client");

        JobRequest memory r = _request(alice);
        r.inputs = _inputs("hello");
        Job memory job = JobFlow.created(market, address(client), r);
        assertEq(market.jobHash(id), market.hashJob(job), "client job");
        assertEq(job.callbackGas, 100_000, "callback");

        job = _submit(id, _match(id, job, provider));
        _pastChallengeWindow(job);
        vm.expectEmit(true, true, true, true, address(client));
        emit ExampleClient.JobCompleted(id, "1", CID);
        _settle(id, job);
    }

    function test_exampleClient_rejectsCallbacksNotFromManager() public {
        vm.expectRevert(abi.encodeWithSelector(ExampleClient.OnlyManager.selector, stranger));
        vm.prank(stranger);
        client.submitResults(1, "1", CID);
    }

    // ================================================================ helpers

    function _createVia(ClientBase c, JobRequest memory r) internal returns (uint256 id, Job memory job) {
        job = JobFlow.created(market, address(c), r);
        id = c.create(r);
        assertEq(market.jobHash(id), market.hashJob(job), "stored job hash");
    }

    function _countLogs(Vm.Log[] memory logs, bytes32 topic0) internal pure returns (uint256 n) {
        for (uint256 i; i < logs.length; ++i) {
            if (logs[i].topics.length != 0 && logs[i].topics[0] == topic0) ++n;
        }
    }
}

// SPDX-License-Identifier: Apache-2.0
pragma solidity ^0.8.28;

import {Test} from "./Test.sol";
import {LilypadMarket} from "../../contracts/LilypadMarket.sol";
import {LilypadDevToken} from "../../contracts/LilypadToken.sol";
import {ILilypadMarketTypes} from "../../contracts/interfaces/ILilypadMarket.sol";
import {ExampleClient} from "../../contracts/examples/ExampleClient.sol";
import {ILilypadJobManager} from "../../contracts/interfaces/ILilypadJobManager.sol";

/// @notice How the market moves a `Job` from one state to the next, written out independently
/// of the market's code (the market's own views supply only its parameters: module specs,
/// defaults, offers and fee rates). The fixture and the invariant handler build every `Job`
/// they pass to the market with these functions; nothing else in test/ constructs one.
/// Every function returns a fresh copy: the `Job` passed in is never modified.
library JobFlow {
    uint256 internal constant BPS = 10_000;

    function copy(ILilypadMarketTypes.Job memory job) internal pure returns (ILilypadMarketTypes.Job memory) {
        return abi.decode(abi.encode(job), (ILilypadMarketTypes.Job));
    }

    /// @dev The Job `createJob(r)` (or `runJob(r.module, r.inputs, r.payee)`, which equals a
    /// request with every other field zero) stores when `creator` calls it now.
    function created(LilypadMarket m, address creator, ILilypadMarketTypes.JobRequest memory r)
        internal
        view
        returns (ILilypadMarketTypes.Job memory job)
    {
        bytes32 id = keccak256(bytes(r.module));
        (ILilypadMarketTypes.ModuleSpec memory spec,) = m.getModule(id);
        job.client = creator;
        job.payee = r.payee;
        job.moduleId = id;
        job.payment = r.maxPayment == 0 ? spec.defaultPayment : r.maxPayment;
        // explicit mediators are kept to the slots taken now
        job.mediators = r.mediators == 0 ? m.defaultMediators() : r.mediators & takenSlots(m.mediatorCount());
        job.createdAt = uint40(block.timestamp);
        job.matchTimeout = r.matchTimeout == 0 ? m.defaultMatchTimeout() : r.matchTimeout;
        job.runTimeout = r.runTimeout == 0 ? spec.runTimeout : r.runTimeout;
        job.challengeWindow = r.challengeWindow == 0 ? m.defaultChallengeWindow() : r.challengeWindow;
        // by default the mediator gets at least the run window
        uint32 mediation = m.defaultMediationTimeout();
        if (mediation < job.runTimeout) mediation = job.runTimeout;
        job.mediationTimeout = r.mediationTimeout == 0 ? mediation : r.mediationTimeout;
        if (creator.code.length != 0) job.callbackGas = r.callbackGas == 0 ? m.defaultCallbackGas() : r.callbackGas;
        job.onlySolver = r.solver;
        job.state = ILilypadMarketTypes.JobState.Open;
    }

    /// @dev The Job after `solver_` matched it now to `provider_` with mediator `mediator_`.
    function matched(
        LilypadMarket m,
        ILilypadMarketTypes.Job memory job,
        address solver_,
        address provider_,
        uint8 mediator_
    ) internal view returns (ILilypadMarketTypes.Job memory next) {
        next = copy(job);
        uint256 price = m.priceOf(provider_, job.moduleId);
        next.solver = solver_;
        next.provider = provider_;
        next.price = uint128(price);
        next.solverFee = uint128(price * m.solverFeeBps() / BPS);
        uint256 collateral = price * m.collateralBps() / BPS;
        if (collateral < m.mediatorFee()) collateral = m.mediatorFee();
        next.collateral = uint128(collateral);
        next.mediator = mediator_;
        next.matchedAt = uint40(block.timestamp);
        next.state = ILilypadMarketTypes.JobState.Matched;
    }

    /// @dev The bitmask of the first `count` mediator slots.
    function takenSlots(uint256 count) internal pure returns (uint64) {
        return count >= 64 ? type(uint64).max : uint64((uint256(1) << count) - 1);
    }

    /// @dev What a provider releasing `job` now pays the payee: nothing in the first half of
    /// the run window, then linearly up to the whole collateral at the run deadline.
    function releasePenalty(ILilypadMarketTypes.Job memory job) internal view returns (uint128) {
        uint256 grace = job.runTimeout / 2;
        uint256 elapsed = block.timestamp - job.matchedAt;
        if (elapsed <= grace) return 0;
        return uint128(uint256(job.collateral) * (elapsed - grace) / (job.runTimeout - grace));
    }

    /// @dev The Job after its provider released it: the deal is wiped, the terms kept.
    function released(ILilypadMarketTypes.Job memory job) internal pure returns (ILilypadMarketTypes.Job memory next) {
        next = copy(job);
        next.solver = address(0);
        next.provider = address(0);
        next.price = 0;
        next.solverFee = 0;
        next.collateral = 0;
        next.mediator = 0;
        next.matchedAt = 0;
        next.state = ILilypadMarketTypes.JobState.Open;
    }

    function submitted(ILilypadMarketTypes.Job memory job, string memory dataId, bytes32 resultHash)
        internal
        view
        returns (ILilypadMarketTypes.Job memory next)
    {
        next = copy(job);
        next.result = resultOf(dataId, resultHash);
        next.submittedAt = uint40(block.timestamp);
        next.state = ILilypadMarketTypes.JobState.Submitted;
    }

    function challenged(ILilypadMarketTypes.Job memory job, address who)
        internal
        view
        returns (ILilypadMarketTypes.Job memory next)
    {
        next = copy(job);
        next.challenger = who;
        next.challengedAt = uint40(block.timestamp);
        next.state = ILilypadMarketTypes.JobState.Challenged;
    }

    function resultOf(string memory dataId, bytes32 resultHash) internal pure returns (bytes32) {
        return keccak256(abi.encode(dataId, resultHash));
    }

    /// @dev What the market holds in escrow for a live job in its current state.
    function escrow(LilypadMarket m, ILilypadMarketTypes.Job memory job) internal view returns (uint256 amount) {
        amount = job.payment;
        if (uint8(job.state) >= uint8(ILilypadMarketTypes.JobState.Matched)) amount += job.collateral;
        if (job.state == ILilypadMarketTypes.JobState.Challenged) amount += m.challengeDeposit();
    }

    /// @dev The time the current state's window ends: the state may be acted on while
    /// `block.timestamp <= deadline`, and timed out once `block.timestamp > deadline`.
    function deadline(ILilypadMarketTypes.Job memory job) internal pure returns (uint256) {
        ILilypadMarketTypes.JobState s = job.state;
        if (s == ILilypadMarketTypes.JobState.Open) return uint256(job.createdAt) + job.matchTimeout;
        if (s == ILilypadMarketTypes.JobState.Matched) return uint256(job.matchedAt) + job.runTimeout;
        if (s == ILilypadMarketTypes.JobState.Submitted) return uint256(job.submittedAt) + job.challengeWindow;
        if (s == ILilypadMarketTypes.JobState.Challenged) return uint256(job.challengedAt) + job.mediationTimeout;
        return 0;
    }

    /// @dev When the current state began.
    function stamp(ILilypadMarketTypes.Job memory job) internal pure returns (uint256) {
        ILilypadMarketTypes.JobState s = job.state;
        if (s == ILilypadMarketTypes.JobState.Open) return job.createdAt;
        if (s == ILilypadMarketTypes.JobState.Matched) return job.matchedAt;
        if (s == ILilypadMarketTypes.JobState.Submitted) return job.submittedAt;
        if (s == ILilypadMarketTypes.JobState.Challenged) return job.challengedAt;
        return 0;
    }
}

/// @notice A deployed market with one solver, one provider, one mediator and the lilysay
/// module, plus helpers that carry each job's `Job` along as the contract transitions it.
abstract contract MarketFixture is Test, ILilypadMarketTypes {
    LilypadDevToken internal token;
    LilypadMarket internal market;
    ExampleClient internal client;

    address internal owner = address(0xA11CE);
    address internal alice = address(0xA1); // job creator
    address internal bob = address(0xB0B); // another job creator
    address internal solver = address(0x5017);
    address internal provider = address(0x9D);
    address internal provider2 = address(0x9D2);
    address internal mediator = address(0x3ED);
    address internal auditor = address(0xA0D);
    address internal stranger = address(0x57A);

    string internal constant MODULE_NAME = "lilysay";
    string internal constant MODULE_VERSION = "0.1.0";
    string internal constant MODULE = "lilysay:0.1.0";
    bytes32 internal constant SPEC_HASH = keccak256("lilysay module folder");
    uint128 internal constant PAYMENT = 10 ether;
    uint128 internal constant PRICE = 5 ether;
    uint32 internal constant RUN_TIMEOUT = 600;
    string internal constant CID = "bafybeigdyrzt5sfp7udm7hu76uh7y26nf3efuylqabf3oclgtqy55fbzdi";
    bytes32 internal constant RESULT_HASH = keccak256("outputs");
    uint256 internal constant FUNDS = 1000 ether; // faucet per person
    uint256 internal constant PROVIDER_DEPOSIT = 100 ether;
    /// @dev The shortest run window the fixture's providers offer to work in.
    uint32 internal constant PROVIDER_MIN_RUN = 60;
    /// @dev Solady SafeTransferLib's `TransferFromFailed()`.
    bytes4 internal constant TRANSFER_FROM_FAILED = 0x7939f424;
    /// @dev Solady Ownable's `Unauthorized()`.
    bytes4 internal constant UNAUTHORIZED = 0x82b42900;

    uint8 internal constant ROLE_SOLVER = 1;
    uint8 internal constant ROLE_PROVIDER = 2;
    uint8 internal constant ROLE_MEDIATOR = 4;

    bytes32 internal moduleId;
    uint8 internal mediatorIndex;

    function _config() internal pure virtual returns (Config memory) {
        return Config({
            solverFeeBps: 500, // 5 %
            collateralBps: 20_000, // 2x the price
            mediatorFee: 1 ether,
            challengeBond: 2 ether,
            matchTimeout: 3600,
            challengeWindow: 300,
            mediationTimeout: 3600,
            callbackGas: 100_000
        });
    }

    function setUp() public virtual {
        vm.warp(1_700_000_000);
        token = new LilypadDevToken(owner, 0);
        address[7] memory people = _people();
        for (uint256 i; i < people.length; ++i) {
            token.faucet(people[i], FUNDS);
        }
        _deployMarket(_config());
    }

    function _people() internal view returns (address[7] memory) {
        return [alice, bob, solver, provider, provider2, mediator, auditor];
    }

    /// @dev Deploys a market with `c` on `token` (and an ExampleClient for it) and sets it up as
    /// described above: everyone approves it, `solver` and `mediator` register (the mediator is
    /// the default set), lilysay is published and both providers offer it with collateral.
    function _deployMarket(Config memory c) internal {
        market = new LilypadMarket(address(token), c, owner);
        client = new ExampleClient(ILilypadJobManager(address(market)));

        address[7] memory people = _people();
        for (uint256 i; i < people.length; ++i) {
            vm.prank(people[i]);
            token.approve(address(market), type(uint256).max);
        }

        vm.prank(solver);
        market.registerSolver();
        mediatorIndex = _addMediator(mediator);
        vm.prank(owner);
        market.setDefaultMediators(uint64(1) << mediatorIndex);

        moduleId = market.publishModule(MODULE_NAME, MODULE_VERSION, _spec());
        _setUpProvider(provider);
        _setUpProvider(provider2);
    }

    /// @dev Gives `who` FUNDS tokens and approves the market for all of them.
    function _fund(address who) internal {
        token.faucet(who, FUNDS);
        vm.prank(who);
        token.approve(address(market), type(uint256).max);
    }

    function _spec() internal pure returns (ModuleSpec memory) {
        return ModuleSpec({
            specHash: SPEC_HASH,
            imageHash: 0,
            defaultPayment: PAYMENT,
            runTimeout: RUN_TIMEOUT,
            flags: 0,
            requirements: Resources({cpuMilli: 1000, ramMb: 512, diskMb: 100, vramMb: 0, gpus: 0})
        });
    }

    /// @dev The owner approves `who` as a mediator, which then registers: returns its index.
    function _addMediator(address who) internal returns (uint8 index) {
        vm.prank(owner);
        market.approveMediator(who, true);
        vm.prank(who);
        index = market.registerMediator();
    }

    /// @dev An offer at `price` with the fixture providers' terms: any run window from
    /// PROVIDER_MIN_RUN to MAX_TIMEOUT, any callback gas the market allows.
    /// Pure (no call to the market), so it can sit in the arguments of a pranked call.
    function _offer(uint128 price, bool active) internal pure returns (Offer memory) {
        return Offer({
            price: price,
            active: active,
            minRunTimeout: PROVIDER_MIN_RUN,
            maxRunTimeout: 30 days, // MAX_TIMEOUT
            maxCallbackGas: 2_000_000 // MAX_CALLBACK_GAS
        });
    }

    /// @dev A client authorisation with no total, no per-job limit and no window floor.
    function _unlimited() internal pure returns (ClientAllowance memory) {
        return ClientAllowance({remaining: type(uint128).max, maxPayment: type(uint96).max, minChallengeWindow: 0});
    }

    /// @dev No authorisation (revokes one).
    function _revoked() internal pure returns (ClientAllowance memory a) {}

    function _setUpProvider(address p) internal {
        vm.startPrank(p);
        market.registerProvider(type(uint64).max);
        market.setOffer(moduleId, _offer(PRICE, true));
        market.deposit(p, PROVIDER_DEPOSIT);
        vm.stopPrank();
    }

    function _inputs(string memory message) internal pure returns (string[] memory inputs) {
        inputs = new string[](1);
        inputs[0] = string.concat("Message=", message);
    }

    /// @dev A request with every optional field zero (what runJob does).
    function _request(address payee) internal pure returns (JobRequest memory r) {
        r.module = MODULE;
        r.inputs = _inputs("hi");
        r.payee = payee;
    }

    // ---------------------------------------------------------------- job helpers

    /// @dev The Job runJob stores for a job created now by `creator`, paid by `payee`.
    /// `callbackGas` must be what the market gives this caller (0 for an EOA).
    function _expectedJob(address creator, address payee, string[] memory inputs, uint32 callbackGas)
        internal
        view
        returns (Job memory job)
    {
        JobRequest memory r = _request(payee);
        r.inputs = inputs;
        job = JobFlow.created(market, creator, r);
        job.callbackGas = callbackGas;
    }

    /// @dev `creator` runs lilysay for itself with runJob.
    function _run(address creator) internal returns (uint256 id, Job memory job) {
        string[] memory inputs = _inputs("hi");
        job = _expectedJob(creator, creator, inputs, 0);
        vm.prank(creator);
        id = market.runJob(MODULE, inputs, creator);
        assertEq(market.jobHash(id), market.hashJob(job), "stored job hash");
    }

    /// @dev `creator` (an EOA or a contract) calls createJob(r).
    function _create(address creator, JobRequest memory r) internal returns (uint256 id, Job memory job) {
        job = JobFlow.created(market, creator, r);
        vm.prank(creator);
        id = market.createJob(r);
        assertEq(market.jobHash(id), market.hashJob(job), "stored job hash");
    }

    /// @dev `payee` authorises the ExampleClient and runs lilysay through it.
    function _runViaClient(address payee) internal returns (uint256 id, Job memory job) {
        vm.prank(payee);
        market.authorizeClient(address(client), _unlimited());
        JobRequest memory r = _request(payee);
        job = JobFlow.created(market, address(client), r);
        vm.prank(payee);
        id = client.runLilysay("hi");
        assertEq(market.jobHash(id), market.hashJob(job), "stored job hash");
    }

    function _match(uint256 id, Job memory job, address p) internal returns (Job memory next) {
        next = _matched(job, p);
        vm.prank(solver);
        market.matchJob(id, job, p, mediatorIndex);
        assertEq(market.jobHash(id), market.hashJob(next), "matched job hash");
    }

    function _matched(Job memory job, address p) internal view returns (Job memory next) {
        return JobFlow.matched(market, job, solver, p, mediatorIndex);
    }

    function _submit(uint256 id, Job memory job) internal returns (Job memory next) {
        vm.prank(job.provider);
        market.submitResult(id, job, CID, RESULT_HASH);
        next = JobFlow.submitted(job, CID, RESULT_HASH);
        assertEq(market.jobHash(id), market.hashJob(next), "submitted job hash");
    }

    function _challenge(uint256 id, Job memory job, address who) internal returns (Job memory next) {
        vm.prank(who);
        market.challenge(id, job);
        next = JobFlow.challenged(job, who);
        assertEq(market.jobHash(id), market.hashJob(next), "challenged job hash");
    }

    function _release(uint256 id, Job memory job) internal returns (Job memory next) {
        vm.prank(job.provider);
        market.releaseJob(id, job);
        next = JobFlow.released(job);
        assertEq(market.jobHash(id), market.hashJob(next), "released job hash");
    }

    function _settle(uint256 id, Job memory job) internal {
        vm.prank(stranger);
        market.settle(id, job, CID, RESULT_HASH);
        assertEq(market.jobHash(id), bytes32(0), "settled job hash cleared");
    }

    function _pastChallengeWindow(Job memory job) internal {
        vm.warp(uint256(job.submittedAt) + job.challengeWindow + 1);
    }

    /// @dev Jobs by alice in each live state, matched to `provider`.
    function _openJob() internal returns (uint256 id, Job memory job) {
        return _run(alice);
    }

    function _matchedJob() internal returns (uint256 id, Job memory job) {
        (id, job) = _run(alice);
        job = _match(id, job, provider);
    }

    function _submittedJob() internal returns (uint256 id, Job memory job) {
        (id, job) = _matchedJob();
        job = _submit(id, job);
    }

    function _challengedJob() internal returns (uint256 id, Job memory job) {
        (id, job) = _submittedJob();
        job = _challenge(id, job, auditor);
    }

    function _escrow(Job memory job) internal view returns (uint256) {
        return JobFlow.escrow(market, job);
    }

    function _copy(Job memory job) internal pure returns (Job memory) {
        return JobFlow.copy(job);
    }
}

// SPDX-License-Identifier: Apache-2.0
pragma solidity ^0.8.28;

import {Test} from "./Test.sol";
import {LilypadMarket} from "../../contracts/LilypadMarket.sol";
import {LilypadDevToken} from "../../contracts/LilypadToken.sol";
import {ILilypadMarketTypes} from "../../contracts/interfaces/ILilypadMarket.sol";
import {ExampleClient} from "../../contracts/examples/ExampleClient.sol";
import {ILilypadJobManager} from "../../contracts/interfaces/ILilypadJobManager.sol";

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
        market = new LilypadMarket(address(token), _config(), owner);
        client = new ExampleClient(ILilypadJobManager(address(market)));

        address[7] memory people = [alice, bob, solver, provider, provider2, mediator, auditor];
        for (uint256 i; i < people.length; ++i) {
            token.faucet(people[i], 1000 ether);
            vm.prank(people[i]);
            token.approve(address(market), type(uint256).max);
        }

        vm.prank(solver);
        market.registerSolver();
        vm.prank(mediator);
        mediatorIndex = market.registerMediator();
        vm.prank(owner);
        market.setDefaultMediators(uint64(1) << mediatorIndex);

        moduleId = market.publishModule(MODULE_NAME, MODULE_VERSION, _spec());
        _setUpProvider(provider);
        _setUpProvider(provider2);
    }

    function _spec() internal pure returns (ModuleSpec memory) {
        return ModuleSpec({
            specHash: SPEC_HASH,
            defaultPayment: PAYMENT,
            runTimeout: RUN_TIMEOUT,
            flags: 0,
            requirements: Resources({cpuMilli: 1000, ramMb: 512, diskMb: 100, vramMb: 0, gpus: 0})
        });
    }

    function _setUpProvider(address p) internal {
        vm.startPrank(p);
        market.registerProvider(type(uint64).max);
        market.setOffer(moduleId, PRICE, true);
        market.deposit(p, 100 ether);
        vm.stopPrank();
    }

    function _inputs(string memory message) internal pure returns (string[] memory inputs) {
        inputs = new string[](1);
        inputs[0] = string.concat("Message=", message);
    }

    // ---------------------------------------------------------------- job helpers

    /// @dev The Job runJob stores for a job created now by `creator` for itself.
    function _expectedJob(address creator, address payee, string[] memory, uint32 callbackGas)
        internal
        view
        returns (Job memory job)
    {
        Config memory c = _config();
        job.client = creator;
        job.payee = payee;
        job.moduleId = moduleId;
        job.payment = PAYMENT;
        job.mediators = market.defaultMediators();
        job.createdAt = uint40(block.timestamp);
        job.matchTimeout = c.matchTimeout;
        job.runTimeout = RUN_TIMEOUT;
        job.challengeWindow = c.challengeWindow;
        job.mediationTimeout = c.mediationTimeout;
        job.callbackGas = callbackGas;
        job.state = JobState.Open;
    }

    function _run(address creator) internal returns (uint256 id, Job memory job) {
        string[] memory inputs = _inputs("hi");
        job = _expectedJob(creator, creator, inputs, 0);
        vm.prank(creator);
        id = market.runJob(MODULE, inputs, creator);
        assertEq(market.jobHash(id), market.hashJob(job), "stored job hash");
    }

    function _match(uint256 id, Job memory job, address p) internal returns (Job memory next) {
        vm.prank(solver);
        market.matchJob(id, job, p, mediatorIndex);
        next = _matched(job, p);
    }

    function _matched(Job memory job, address p) internal view returns (Job memory next) {
        Config memory c = _config();
        next = job;
        uint128 price = market.offerOf(p, job.moduleId).price;
        next.solver = solver;
        next.provider = p;
        next.price = price;
        next.solverFee = uint128(uint256(price) * c.solverFeeBps / 10_000);
        uint256 collateral = uint256(price) * c.collateralBps / 10_000;
        if (collateral < c.mediatorFee) collateral = c.mediatorFee;
        next.collateral = uint128(collateral);
        next.mediator = mediatorIndex;
        next.matchedAt = uint40(block.timestamp);
        next.state = JobState.Matched;
    }

    function _submit(uint256 id, Job memory job) internal returns (Job memory next) {
        vm.prank(job.provider);
        market.submitResult(id, job, CID, RESULT_HASH);
        next = job;
        next.result = keccak256(abi.encode(CID, RESULT_HASH));
        next.submittedAt = uint40(block.timestamp);
        next.state = JobState.Submitted;
    }

    function _challenge(uint256 id, Job memory job, address who) internal returns (Job memory next) {
        vm.prank(who);
        market.challenge(id, job);
        next = job;
        next.challenger = who;
        next.challengedAt = uint40(block.timestamp);
        next.state = JobState.Challenged;
    }

    function _pastChallengeWindow(Job memory job) internal {
        vm.warp(uint256(job.submittedAt) + job.challengeWindow + 1);
    }
}

// SPDX-License-Identifier: Apache-2.0
pragma solidity ^0.8.28;

import {Vm} from "../utils/Vm.sol";
import {JobFlow} from "../utils/MarketFixture.sol";
import {LilypadMarket} from "../../contracts/LilypadMarket.sol";
import {LilypadDevToken} from "../../contracts/LilypadToken.sol";
import {ILilypadMarketTypes} from "../../contracts/interfaces/ILilypadMarket.sol";
import {ExampleClient} from "../../contracts/examples/ExampleClient.sol";

/// @notice What the invariant fuzzer drives: random sequences of every market action by
/// several actors over several jobs. Each action picks its job among all jobs ever created
/// (finished ones included, so replays are tried too), calls the market as the party entitled
/// to act (or, by seed, as someone who is not), and, when the call succeeds, moves its own copy
/// of the job's `Job` on with JobFlow. Ghosts record what happened for the invariants.
contract MarketHandler is ILilypadMarketTypes {
    Vm internal constant vm = Vm(address(uint160(uint256(keccak256("hevm cheat code")))));

    uint256 public constant MAX_JOBS = 24;

    LilypadMarket public immutable market;
    LilypadDevToken public immutable token;
    ExampleClient public immutable client;
    string internal module;
    bytes32 internal moduleId;

    address[] internal _creators; // alice, bob: payees, and they authorised `client`
    address[] internal _providers;
    address[] internal _mediators; // index i = mediator index i
    address[] internal _challengers;
    address[] internal _actors; // everyone who holds tokens or can be credited
    address internal _solver;
    address internal _stranger;

    uint256 public time; // the block time every action runs at
    uint256[] internal _ids;
    mapping(uint256 => Job) internal _jobs; // the latest Job of each id
    mapping(uint256 => bool) public live;
    mapping(uint256 => uint256) public finalizations; // ghost: final transitions that succeeded per id
    mapping(uint256 => string) internal _dataIds;
    mapping(uint256 => bytes32) internal _resultHashes;
    mapping(bytes32 => uint256) public calls; // ghost: successful calls per action

    struct Setup {
        LilypadMarket market;
        LilypadDevToken token;
        ExampleClient client;
        string module;
        address[] creators;
        address[] providers;
        address[] mediators;
        address[] challengers;
        address[] actors;
        address solver;
        address stranger;
    }

    constructor(Setup memory s) {
        market = s.market;
        token = s.token;
        client = s.client;
        module = s.module;
        moduleId = keccak256(bytes(s.module));
        _creators = s.creators;
        _providers = s.providers;
        _mediators = s.mediators;
        _challengers = s.challengers;
        _actors = s.actors;
        _solver = s.solver;
        _stranger = s.stranger;
        time = block.timestamp;
    }

    // ================================================================ views for the invariants

    function ids() external view returns (uint256[] memory) {
        return _ids;
    }

    function jobOf(uint256 id) external view returns (Job memory) {
        return _jobs[id];
    }

    function resultOf(uint256 id) external view returns (string memory dataId, bytes32 resultHash) {
        return (_dataIds[id], _resultHashes[id]);
    }

    function actors() external view returns (address[] memory) {
        return _actors;
    }

    /// @dev The selectors the fuzzer calls: the actions below, nothing else.
    function actions() external pure returns (bytes4[] memory s) {
        s = new bytes4[](20);
        s[0] = this.runJob.selector;
        s[1] = this.createJob.selector;
        s[2] = this.matchJob.selector;
        s[3] = this.releaseJob.selector;
        s[4] = this.submitResult.selector;
        s[5] = this.challenge.selector;
        s[6] = this.upholdChallenge.selector;
        s[7] = this.rejectChallenge.selector;
        s[8] = this.settle.selector;
        s[9] = this.cancelJob.selector;
        s[10] = this.expireJob.selector;
        s[11] = this.timeoutResult.selector;
        s[12] = this.timeoutMediation.selector;
        s[13] = this.deposit.selector;
        s[14] = this.withdraw.selector;
        s[15] = this.warp.selector;
        s[16] = this.setOffer.selector;
        s[17] = this.settleMany.selector;
        s[18] = this.matchMany.selector;
        s[19] = this.submitMany.selector;
    }

    // ================================================================ helpers

    function _bound(uint256 x, uint256 min, uint256 max) internal pure returns (uint256) {
        if (x >= min && x <= max) return x;
        return min + (x % (max - min + 1));
    }

    function _pick(address[] storage list, uint256 seed) internal view returns (address) {
        return list[seed % list.length];
    }

    /// @dev A job id: mostly a live job in state `wanted` (the one the action applies to), else
    /// any id ever created (wrong states, replays of finished jobs), sometimes one that does not
    /// exist.
    function _pickId(uint256 seed, JobState wanted) internal view returns (uint256 id, Job memory job) {
        uint256 n = _ids.length;
        if (n == 0 || seed % 16 == 0) return (n + 1 + seed % 3, job);
        uint256 start = (seed >> 8) % n;
        id = _ids[start];
        if (seed % 4 != 0) {
            for (uint256 i; i < n; ++i) {
                uint256 other = _ids[(start + i) % n];
                if (live[other] && _jobs[other].state == wanted) {
                    id = other;
                    break;
                }
            }
        }
        job = _jobs[id];
    }

    function _begin() internal {
        vm.warp(time);
    }

    function _count(string memory action) internal {
        calls[keccak256(bytes(action))] += 1;
    }

    function _finalize(uint256 id) internal {
        live[id] = false;
        finalizations[id] += 1;
    }

    function _inputs(uint256 seed) internal pure returns (string[] memory inputs) {
        inputs = new string[](1);
        inputs[0] = seed % 2 == 0 ? "Message=hi" : "Message=there";
    }

    // ================================================================ creation

    function runJob(uint256 creatorSeed, bool viaClient) external {
        if (_ids.length >= MAX_JOBS) return;
        _begin();
        address payee = _pick(_creators, creatorSeed);
        JobRequest memory r;
        r.module = module;
        r.inputs = _inputs(viaClient ? 0 : creatorSeed >> 8); // ExampleClient sends Message=hi
        r.payee = payee;
        Job memory job = JobFlow.created(market, viaClient ? address(client) : payee, r);
        uint256 id;
        vm.prank(payee);
        if (viaClient) {
            try client.runLilysay("hi") returns (uint256 got) {
                id = got;
            } catch {
                return;
            }
        } else {
            try market.runJob(module, r.inputs, payee) returns (uint256 got) {
                id = got;
            } catch {
                return;
            }
        }
        _track(id, job);
        _count("runJob");
    }

    function createJob(
        uint256 creatorSeed,
        uint128 payment,
        uint32 matchTimeout,
        uint32 runTimeout,
        uint32 challengeWindow,
        uint32 mediationTimeout
    ) external {
        if (_ids.length >= MAX_JOBS) return;
        _begin();
        address payee = _pick(_creators, creatorSeed);
        JobRequest memory r;
        r.module = module;
        r.inputs = _inputs(creatorSeed >> 8);
        r.payee = payee;
        r.maxPayment = uint128(_bound(payment, 0, 20 ether));
        r.mediators = creatorSeed % 3 == 0 ? 0 : uint64(1 + (creatorSeed >> 16) % 3); // 0 = default
        r.matchTimeout = uint32(_bound(matchTimeout, 0, 4 hours));
        // 0 (the defaults) or at least the floors: the module's run timeout (600 s), the run window
        r.runTimeout = runTimeout % 3 == 0 ? 0 : uint32(_bound(runTimeout, 600, 2 hours));
        r.challengeWindow = uint32(_bound(challengeWindow, 0, 1 hours));
        uint32 run = r.runTimeout == 0 ? 600 : r.runTimeout;
        r.mediationTimeout = mediationTimeout % 3 == 0 ? 0 : uint32(_bound(mediationTimeout, run, 4 hours));
        Job memory job = JobFlow.created(market, payee, r);
        vm.prank(payee);
        try market.createJob(r) returns (uint256 id) {
            _track(id, job);
            _count("createJob");
        } catch {}
    }

    function _track(uint256 id, Job memory job) internal {
        _ids.push(id);
        _jobs[id] = job;
        live[id] = true;
    }

    // ================================================================ transitions

    function matchJob(uint256 jobSeed, uint256 providerSeed, uint256 mediatorSeed, bool bySolver) external {
        _begin();
        (uint256 id, Job memory job) = _pickId(jobSeed, JobState.Open);
        address p = _pick(_providers, providerSeed);
        uint8 med = uint8(mediatorSeed % (_mediators.length + 1)); // one index past the registered ones
        address caller = bySolver ? _solver : _stranger;
        vm.prank(caller);
        try market.matchJob(id, job, p, med) {
            _jobs[id] = JobFlow.matched(market, job, caller, p, med);
            _count("matchJob");
        } catch {}
    }

    function releaseJob(uint256 jobSeed, bool byProvider) external {
        _begin();
        (uint256 id, Job memory job) = _pickId(jobSeed, JobState.Matched);
        vm.prank(byProvider ? job.provider : _stranger);
        try market.releaseJob(id, job) {
            _jobs[id] = JobFlow.released(job);
            _count("releaseJob");
        } catch {}
    }

    /// @dev Two picks matched in one matchMany (the same job twice, a final one or a wrong state
    /// among them: the market skips the final ones and reverts the whole call for the others).
    function matchMany(uint256 seedA, uint256 seedB, uint256 providerSeed, bool bySolver) external {
        _begin();
        (uint256 a, Job memory ja) = _pickId(seedA, JobState.Open);
        (uint256 b, Job memory jb) = _pickId(seedB, JobState.Open);
        address p = _pick(_providers, providerSeed);
        uint8 med = uint8((providerSeed >> 8) % (_mediators.length + 1));
        address caller = bySolver ? _solver : _stranger;
        Match[] memory items = new Match[](2);
        items[0] = Match({id: a, job: ja, provider: p, mediator: med});
        items[1] = Match({id: b, job: jb, provider: p, mediator: med});
        vm.prank(caller);
        try market.matchMany(items) {
            if (live[a]) _jobs[a] = JobFlow.matched(market, ja, caller, p, med);
            if (live[b]) _jobs[b] = JobFlow.matched(market, jb, caller, p, med);
            // counted when a job was matched: a call whose items were all final (skipped) is not
            if (live[a] || live[b]) _count("matchMany");
        } catch {}
    }

    /// @dev Two picks posted in one submitMany, by the first one's provider (or a stranger).
    function submitMany(uint256 seedA, uint256 seedB, uint256 resultSeed, bool byProvider) external {
        _begin();
        (uint256 a, Job memory ja) = _pickId(seedA, JobState.Matched);
        (uint256 b, Job memory jb) = _pickId(seedB, JobState.Matched);
        string memory dataId = resultSeed % 2 == 0 ? "bafyresult" : "bafyother";
        bytes32 resultHash = keccak256(abi.encode(resultSeed % 3));
        Submission[] memory items = new Submission[](2);
        items[0] = Submission({id: a, job: ja, dataId: dataId, resultHash: resultHash});
        items[1] = Submission({id: b, job: jb, dataId: dataId, resultHash: resultHash});
        vm.prank(byProvider ? ja.provider : _stranger);
        try market.submitMany(items) {
            uint256[2] memory picked = [a, b];
            Job[2] memory jobs = [ja, jb];
            for (uint256 i; i < 2; ++i) {
                if (!live[picked[i]]) continue;
                _jobs[picked[i]] = JobFlow.submitted(jobs[i], dataId, resultHash);
                _dataIds[picked[i]] = dataId;
                _resultHashes[picked[i]] = resultHash;
            }
            if (live[a] || live[b]) _count("submitMany");
        } catch {}
    }

    function submitResult(uint256 jobSeed, uint256 resultSeed, bool byProvider) external {
        _begin();
        (uint256 id, Job memory job) = _pickId(jobSeed, JobState.Matched);
        string memory dataId = resultSeed % 2 == 0 ? "bafyresult" : "bafyother";
        bytes32 resultHash = keccak256(abi.encode(resultSeed % 3));
        vm.prank(byProvider ? job.provider : _stranger);
        try market.submitResult(id, job, dataId, resultHash) {
            _jobs[id] = JobFlow.submitted(job, dataId, resultHash);
            _dataIds[id] = dataId;
            _resultHashes[id] = resultHash;
            _count("submitResult");
        } catch {}
    }

    function challenge(uint256 jobSeed, uint256 challengerSeed) external {
        _begin();
        (uint256 id, Job memory job) = _pickId(jobSeed, JobState.Submitted);
        address who = _pick(_challengers, challengerSeed);
        vm.prank(who);
        try market.challenge(id, job) {
            _jobs[id] = JobFlow.challenged(job, who);
            _count("challenge");
        } catch {}
    }

    function upholdChallenge(uint256 jobSeed, bool byMediator) external {
        _begin();
        (uint256 id, Job memory job) = _pickId(jobSeed, JobState.Challenged);
        vm.prank(byMediator ? _mediatorOf(job) : _stranger);
        try market.upholdChallenge(id, job, "bafycorrect") {
            _finalize(id);
            _count("upholdChallenge");
        } catch {}
    }

    function rejectChallenge(uint256 jobSeed, bool byMediator, bool wrongResult) external {
        _begin();
        (uint256 id, Job memory job) = _pickId(jobSeed, JobState.Challenged);
        string memory dataId = wrongResult ? "bafywrong" : _dataIds[id];
        vm.prank(byMediator ? _mediatorOf(job) : _stranger);
        try market.rejectChallenge(id, job, dataId, _resultHashes[id]) {
            _finalize(id);
            _count("rejectChallenge");
        } catch {}
    }

    function _mediatorOf(Job memory job) internal view returns (address) {
        return job.mediator < _mediators.length ? _mediators[job.mediator] : _stranger;
    }

    function settle(uint256 jobSeed, uint256 callerSeed, bool wrongResult) external {
        _begin();
        (uint256 id, Job memory job) = _pickId(jobSeed, JobState.Submitted);
        string memory dataId = wrongResult ? "bafywrong" : _dataIds[id];
        vm.prank(_pick(_actors, callerSeed));
        try market.settle(id, job, dataId, _resultHashes[id]) {
            _finalize(id);
            _count("settle");
        } catch {}
    }

    /// @dev A live submitted job and, when there is one, another (or, one time in eight, the
    /// same one twice, which settles it once: an item already final is skipped).
    function settleMany(uint256 seedA, uint256 seedB, uint256 callerSeed) external {
        _begin();
        (uint256 a, Job memory ja) = _pickId(seedA, JobState.Submitted);
        uint256 b = a;
        if (seedB % 8 != 0) {
            for (uint256 i; i < _ids.length; ++i) {
                uint256 other = _ids[(seedB + i) % _ids.length];
                if (other != a && live[other] && _jobs[other].state == JobState.Submitted) {
                    b = other;
                    break;
                }
            }
        }
        uint256 n = (b == a && seedB % 8 != 0) ? 1 : 2;
        Settlement[] memory items = new Settlement[](n);
        items[0] = Settlement({id: a, job: ja, dataId: _dataIds[a], resultHash: _resultHashes[a]});
        if (n == 2) items[1] = Settlement({id: b, job: _jobs[b], dataId: _dataIds[b], resultHash: _resultHashes[b]});
        vm.prank(_pick(_actors, callerSeed));
        bool liveA = live[a];
        bool liveB = live[b];
        try market.settleMany(items) {
            // items already final (or never created) are skipped; the same job twice settles once
            if (liveA) _finalize(a);
            if (b != a && liveB) _finalize(b);
            if (liveA || liveB) _count("settleMany");
        } catch {}
    }

    function cancelJob(uint256 jobSeed, uint256 callerSeed) external {
        _begin();
        (uint256 id, Job memory job) = _pickId(jobSeed, JobState.Open);
        address caller = callerSeed % 3 == 0 ? _stranger : job.payee;
        vm.prank(caller);
        try market.cancelJob(id, job) {
            _finalize(id);
            _count("cancelJob");
        } catch {}
    }

    function expireJob(uint256 jobSeed) external {
        _begin();
        (uint256 id, Job memory job) = _pickId(jobSeed, JobState.Open);
        vm.prank(_stranger);
        try market.expireJob(id, job) {
            _finalize(id);
            _count("expireJob");
        } catch {}
    }

    function timeoutResult(uint256 jobSeed) external {
        _begin();
        (uint256 id, Job memory job) = _pickId(jobSeed, JobState.Matched);
        vm.prank(_stranger);
        try market.timeoutResult(id, job) {
            _finalize(id);
            _count("timeoutResult");
        } catch {}
    }

    function timeoutMediation(uint256 jobSeed) external {
        _begin();
        (uint256 id, Job memory job) = _pickId(jobSeed, JobState.Challenged);
        vm.prank(_stranger);
        try market.timeoutMediation(id, job, _dataIds[id], _resultHashes[id]) {
            _finalize(id);
            _count("timeoutMediation");
        } catch {}
    }

    // ================================================================ balances, offers, time

    function deposit(uint256 fromSeed, uint256 toSeed, uint256 amount) external {
        _begin();
        address from = _pick(_actors, fromSeed);
        address to = _pick(_actors, toSeed);
        amount = _bound(amount, 1, 50 ether);
        vm.prank(from);
        try market.deposit(to, amount) {
            _count("deposit");
        } catch {}
    }

    function withdraw(uint256 whoSeed, uint256 toSeed, uint256 amount) external {
        _begin();
        address who = _pick(_actors, whoSeed);
        address to = _pick(_actors, toSeed);
        uint256 balance = market.balanceOf(who);
        amount = toSeed % 5 == 0 ? amount : _bound(amount, 1, balance == 0 ? 1 : balance);
        vm.prank(who);
        try market.withdraw(amount, to) {
            _count("withdraw");
        } catch {}
    }

    function setOffer(uint256 providerSeed, uint128 price, bool active) external {
        _begin();
        address p = _pick(_providers, providerSeed);
        Offer memory offer = Offer({
            price: uint128(_bound(price, 0, 12 ether)),
            active: active || price % 4 != 0,
            minRunTimeout: 60,
            maxRunTimeout: 30 days,
            maxCallbackGas: 2_000_000
        });
        vm.prank(p);
        market.setOffer(moduleId, offer);
        _count("setOffer");
    }

    function warp(uint256 dt) external {
        time += dt % 4 == 0 ? _bound(dt, 0, 3 hours) : _bound(dt, 0, 10 minutes);
        vm.warp(time);
        _count("warp");
    }
}

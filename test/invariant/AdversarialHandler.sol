// SPDX-License-Identifier: Apache-2.0
pragma solidity ^0.8.28;

import {Vm} from "../utils/Vm.sol";
import {JobFlow} from "../utils/MarketFixture.sol";
import {ClientBase} from "../utils/Clients.sol";
import {LilypadMarket} from "../../contracts/LilypadMarket.sol";
import {ILilypadMarketTypes} from "../../contracts/interfaces/ILilypadMarket.sol";

/// @notice The open market under attack (issue 12): an honest provider, an honest creator, an
/// honest solver and an honest mediator follow the protocol, while attackers make arbitrary
/// calls: `eve` (solver, provider, creator, publisher), `other` (a second provider), `evilMed`
/// (a mediator the owner approved, whom the honest parties do not accept) and `dapp` (a client
/// contract the honest creator authorised, within a cap).
///
/// Honest parties act promptly: `warp`, before it moves the clock, lets the honest provider
/// post the correct result of every job it was matched to, the honest mediator rule on every
/// challenge it has (uphold a wrong result, reject a correct one), and the honest creator
/// challenge every wrong result posted on a job it pays for. Every call is counted; a revert
/// that is not one of the market's own errors is counted as unexpected.
contract AdversarialHandler is ILilypadMarketTypes {
    Vm internal constant vm = Vm(address(uint160(uint256(keccak256("hevm cheat code")))));

    uint256 public constant MAX_JOBS = 40;
    string public constant GOOD_CID = "bafygood";
    bytes32 public constant GOOD_HASH = keccak256("the module's one true output");
    string internal constant BAD_CID = "bafybad";
    bytes32 internal constant BAD_HASH = keccak256("made up");

    struct Actors {
        address honestProvider;
        address honestCreator;
        address honestSolver;
        address honestMediator;
        address eve;
        address other;
        address evilMed;
        ClientBase dapp;
    }

    LilypadMarket public immutable market;
    Actors internal _a;
    string internal _module; // the honest creator's module
    string internal _evilModule; // eve's, with a 1 s run timeout

    uint256 public time;
    uint256[] internal _ids;
    mapping(uint256 => Job) internal _jobs;
    mapping(uint256 => bool) public live;
    mapping(uint256 => bool) internal _wrong; // the posted result is wrong

    // ghosts
    mapping(bytes32 => uint256) public attempts;
    mapping(bytes32 => uint256) public successes;
    uint256 public unexpectedReverts;
    bytes4 public lastError; // the last revert's selector (for debugging a dead action)
    bytes public lastUnexpected;
    uint256 public honestDutyFailures;
    /// @dev What the honest creator paid (price + fee) for jobs that ended with a correct result.
    uint256 public creatorPaidForResults;
    /// @dev Jobs paid by the honest creator that ended with a wrong result standing.
    uint256 public creatorWrongResultsPaid;
    /// @dev Results of the honest provider that a ruling found wrong (must stay 0).
    uint256 public honestProviderSlashings;

    constructor(LilypadMarket market_, Actors memory a, string memory module_, string memory evilModule_) {
        market = market_;
        _a = a;
        _module = module_;
        _evilModule = evilModule_;
        time = block.timestamp;
    }

    // ================================================================ views for the invariants

    function ids() external view returns (uint256[] memory) {
        return _ids;
    }

    function jobOf(uint256 id) external view returns (Job memory) {
        return _jobs[id];
    }

    function resultOf(uint256 id) public view returns (string memory, bytes32) {
        return _wrong[id] ? (BAD_CID, BAD_HASH) : (GOOD_CID, GOOD_HASH);
    }

    /// @dev The selectors the fuzzer calls.
    function actions() external pure returns (bytes4[] memory s) {
        s = new bytes4[](12);
        s[0] = this.honestCreate.selector;
        s[1] = this.honestMatch.selector;
        s[2] = this.attackerCreate.selector;
        s[3] = this.attackerMatch.selector;
        s[4] = this.attackerSubmit.selector;
        s[5] = this.attackerRelease.selector;
        s[6] = this.attackerChallenge.selector;
        s[7] = this.attackerRule.selector;
        s[8] = this.anyoneEnds.selector;
        s[9] = this.attackerOffer.selector;
        s[10] = this.attackerSquats.selector;
        s[11] = this.warp.selector;
    }

    /// @dev The actions whose counters the test checks.
    function actionNames() external pure returns (string[12] memory) {
        return [
            "honestCreate",
            "honestMatch",
            "attackerCreate",
            "attackerMatch",
            "attackerSubmit",
            "attackerRelease",
            "attackerChallenge",
            "attackerRule",
            "anyoneEnds",
            "attackerOffer",
            "attackerSquats",
            "warp"
        ];
    }

    // ================================================================ helpers

    function _bound(uint256 x, uint256 min, uint256 max) internal pure returns (uint256) {
        if (x >= min && x <= max) return x;
        return min + (x % (max - min + 1));
    }

    function _try(string memory action) internal returns (bytes32 key) {
        vm.warp(time);
        key = keccak256(bytes(action));
        attempts[key] += 1;
    }

    function _ok(bytes32 key) internal {
        successes[key] += 1;
    }

    /// @dev A revert is expected when it is one of the market's own errors: an attack that
    /// fails must fail with a clear reason, never a panic, an empty revert or a token error.
    function _reverted(bytes memory err) internal {
        if (err.length >= 4) lastError = bytes4(err);
        if (err.length >= 4 && _isMarketError(bytes4(err))) return;
        unexpectedReverts += 1;
        lastUnexpected = err;
    }

    function _isMarketError(bytes4 s) internal pure returns (bool) {
        return s == JobNotFound.selector || s == StaleJob.selector || s == WrongState.selector
            || s == DeadlinePassed.selector || s == DeadlineNotReached.selector || s == NotSolver.selector
            || s == NotProvider.selector || s == NotMediatorOfJob.selector || s == NotJobCreator.selector
            || s == NotJobProvider.selector || s == NotJobSolver.selector || s == ChallengerIsParty.selector
            || s == RunTimeoutNotOffered.selector || s == CallbackGasNotOffered.selector || s == InvalidOffer.selector
            || s == NoOffer.selector || s == ResourcesInsufficient.selector || s == PriceAboveCap.selector
            || s == MediatorNotAcceptable.selector || s == InsufficientBalance.selector
            || s == ClientNotAuthorized.selector || s == ClientAllowanceExceeded.selector
            || s == ClientMediatorsNotDefault.selector || s == ChallengeWindowTooShort.selector
            || s == UnknownModule.selector || s == NotNameOwner.selector || s == ModuleNameReserved.selector
            || s == ModuleExists.selector || s == InvalidTimeout.selector || s == CallbackGasTooHigh.selector
            || s == ResultMismatch.selector || s == InvalidDataId.selector || s == MediatorNotApproved.selector
            || s == InvalidMediators.selector || s == AlreadyMediator.selector || s == InvalidModuleSpec.selector;
    }

    /// @dev A job id: mostly a live one in state `wanted` whose window is still open (to act
    /// on) or over (`ended`, to end it), else any (replays, wrong states, closed windows).
    function _pick(uint256 seed, JobState wanted) internal view returns (uint256 id, Job memory job) {
        return _pickWindow(seed, wanted, false);
    }

    function _pickWindow(uint256 seed, JobState wanted, bool ended) internal view returns (uint256 id, Job memory job) {
        uint256 n = _ids.length;
        if (n == 0) return (1, job);
        uint256 start = (seed >> 8) % n;
        id = _ids[start];
        if (seed % 5 != 0) {
            bool found;
            for (uint256 i; i < n; ++i) {
                uint256 other = _ids[(start + i) % n];
                if (!live[other] || _jobs[other].state != wanted) continue;
                if (!found) id = other; // any live one in the state, failing a better one
                found = true;
                if ((JobFlow.deadline(_jobs[other]) < time) == ended) {
                    id = other;
                    break;
                }
            }
        }
        job = _jobs[id];
    }

    /// @dev Like `_pick`, preferring a job matched to `provider_`.
    function _pickOwn(uint256 seed, address provider_) internal view returns (uint256 id, Job memory job) {
        (id, job) = _pick(seed, JobState.Matched);
        if (seed % 5 == 0) return (id, job);
        for (uint256 i; i < _ids.length; ++i) {
            uint256 other = _ids[i];
            if (live[other] && _jobs[other].state == JobState.Matched && _jobs[other].provider == provider_) {
                return (other, _jobs[other]);
            }
        }
    }

    function _track(uint256 id, Job memory job) internal {
        _ids.push(id);
        _jobs[id] = job;
        live[id] = true;
    }

    function _paidByCreator(Job memory job) internal view returns (bool) {
        return job.payee == _a.honestCreator;
    }

    /// @dev Bookkeeping when job `id` ends with its posted result standing (settled, challenge
    /// rejected, ruled non-deterministic, or mediation timed out).
    function _endWithResult(uint256 id) internal {
        Job memory job = _jobs[id];
        live[id] = false;
        if (_paidByCreator(job)) {
            if (_wrong[id]) creatorWrongResultsPaid += 1;
            else creatorPaidForResults += uint256(job.price) + job.solverFee;
        }
    }

    /// @dev Bookkeeping when job `id` ends with the payee refunded (cancelled, expired, timed
    /// out, challenge upheld).
    function _endRefunded(uint256 id, bool upheld) internal {
        live[id] = false;
        if (upheld && _jobs[id].provider == _a.honestProvider) honestProviderSlashings += 1;
    }

    // ================================================================ honest parties

    /// @dev The honest creator runs the module with the defaults, or names the honest solver.
    function honestCreate(bool named) external {
        bytes32 key = _try("honestCreate");
        if (_ids.length >= MAX_JOBS) return;
        JobRequest memory r;
        r.module = _module;
        r.inputs = new string[](1);
        r.inputs[0] = "Message=hi";
        r.payee = _a.honestCreator;
        if (named) r.solver = _a.honestSolver;
        Job memory job = JobFlow.created(market, _a.honestCreator, r);
        vm.prank(_a.honestCreator);
        try market.createJob(r) returns (uint256 id) {
            _track(id, job);
            _ok(key);
        } catch (bytes memory err) {
            _reverted(err);
        }
    }

    /// @dev The honest solver matches an open job to the honest provider, with the honest mediator.
    function honestMatch(uint256 jobSeed) external {
        bytes32 key = _try("honestMatch");
        (uint256 id, Job memory job) = _pick(jobSeed, JobState.Open);
        vm.prank(_a.honestSolver);
        try market.matchJob(id, job, _a.honestProvider, 0) {
            _jobs[id] = JobFlow.matched(market, job, _a.honestSolver, _a.honestProvider, 0);
            _ok(key);
        } catch (bytes memory err) {
            _reverted(err);
        }
    }

    /// @dev The honest parties' duties, then the clock moves on. Two passes: results are posted
    /// and wrong ones challenged, then every challenge the honest mediator has is ruled on, all
    /// before any time passes.
    function warp(uint256 dt) external {
        bytes32 key = _try("warp");
        for (uint256 i; i < _ids.length; ++i) {
            uint256 id = _ids[i];
            if (!live[id]) continue;
            Job memory job = _jobs[id];
            if (job.state == JobState.Matched && job.provider == _a.honestProvider) {
                vm.prank(_a.honestProvider);
                try market.submitResult(id, job, GOOD_CID, GOOD_HASH) {
                    _jobs[id] = JobFlow.submitted(job, GOOD_CID, GOOD_HASH);
                    _wrong[id] = false;
                } catch {
                    honestDutyFailures += 1;
                }
            } else if (job.state == JobState.Submitted && _paidByCreator(job) && _wrong[id]) {
                vm.prank(_a.honestCreator);
                try market.challenge(id, job) {
                    _jobs[id] = JobFlow.challenged(job, _a.honestCreator);
                } catch {
                    honestDutyFailures += 1;
                }
            }
        }
        for (uint256 i; i < _ids.length; ++i) {
            uint256 id = _ids[i];
            Job memory job = _jobs[id];
            if (!live[id] || job.state != JobState.Challenged || job.mediator != 0) continue;
            vm.prank(_a.honestMediator);
            if (_wrong[id]) {
                try market.upholdChallenge(id, job, GOOD_CID) {
                    _endRefunded(id, true);
                } catch {
                    honestDutyFailures += 1;
                }
            } else {
                try market.rejectChallenge(id, job, GOOD_CID, GOOD_HASH) {
                    _endWithResult(id);
                } catch {
                    honestDutyFailures += 1;
                }
            }
        }
        time += dt % 8 == 0 ? _bound(dt, 0, 3 hours) : _bound(dt, 0, 2 minutes);
        vm.warp(time);
        _ok(key);
    }

    // ================================================================ attackers

    /// @dev Eve (paying itself) or the dapp (charging the honest creator) creates a job on
    /// arbitrary terms.
    function attackerCreate(uint256 seed, uint32 run, uint32 mediation, uint32 window, uint128 payment, uint32 cb)
        external
    {
        bytes32 key = _try("attackerCreate");
        if (_ids.length >= MAX_JOBS) return;
        bool viaDapp = seed % 2 == 0;
        JobRequest memory r;
        r.module = seed % 3 == 0 ? _evilModule : _module;
        r.inputs = new string[](0);
        r.payee = viaDapp ? _a.honestCreator : _a.eve;
        r.maxPayment = uint128(_bound(payment, 0, 40 ether));
        r.runTimeout = uint32(_bound(run, 0, 2 hours));
        r.mediationTimeout = uint32(_bound(mediation, 0, 4 hours));
        r.challengeWindow = uint32(_bound(window, 0, 1 hours));
        r.mediators = uint64((seed >> 8) % 4); // 0 = default; 1 = honest mediator; 2 = evilMed; 3 = both
        r.callbackGas = uint32(_bound(cb, 0, 2_000_000));
        uint256 who = (seed >> 16) % 3;
        r.solver = who == 0 ? address(0) : who == 1 ? _a.eve : _a.honestSolver;
        address creator = viaDapp ? address(_a.dapp) : _a.eve;
        Job memory job = JobFlow.created(market, creator, r);
        if (viaDapp) {
            try _a.dapp.create(r) returns (uint256 id) {
                _track(id, job);
                _ok(key);
            } catch (bytes memory err) {
                _reverted(err);
            }
        } else {
            vm.prank(_a.eve);
            try market.createJob(r) returns (uint256 id) {
                _track(id, job);
                _ok(key);
            } catch (bytes memory err) {
                _reverted(err);
            }
        }
    }

    /// @dev Eve, as solver, matches any open job to any provider (the honest one included) with
    /// any mediator.
    function attackerMatch(uint256 jobSeed, uint256 providerSeed, bool evil) external {
        bytes32 key = _try("attackerMatch");
        (uint256 id, Job memory job) = _pick(jobSeed, JobState.Open);
        uint256 w = providerSeed % 3;
        address p = w == 0 ? _a.honestProvider : w == 1 ? _a.eve : _a.other;
        uint8 med = evil ? 1 : 0;
        vm.prank(_a.eve);
        try market.matchJob(id, job, p, med) {
            _jobs[id] = JobFlow.matched(market, job, _a.eve, p, med);
            _ok(key);
        } catch (bytes memory err) {
            _reverted(err);
        }
    }

    /// @dev The attacking providers post right or wrong results on their jobs.
    function attackerSubmit(uint256 jobSeed, bool wrong, bool byOther) external {
        bytes32 key = _try("attackerSubmit");
        address p = byOther ? _a.other : _a.eve;
        (uint256 id, Job memory job) = _pickOwn(jobSeed, p);
        (string memory cid, bytes32 h) = wrong ? (BAD_CID, BAD_HASH) : (GOOD_CID, GOOD_HASH);
        vm.prank(p);
        try market.submitResult(id, job, cid, h) {
            _jobs[id] = JobFlow.submitted(job, cid, h);
            _wrong[id] = wrong;
            _ok(key);
        } catch (bytes memory err) {
            _reverted(err);
        }
    }

    function attackerRelease(uint256 jobSeed, bool byOther) external {
        bytes32 key = _try("attackerRelease");
        address p = byOther ? _a.other : _a.eve;
        (uint256 id, Job memory job) = _pickOwn(jobSeed, p);
        vm.prank(p);
        try market.releaseJob(id, job) {
            _jobs[id] = JobFlow.released(job);
            _ok(key);
        } catch (bytes memory err) {
            _reverted(err);
        }
    }

    /// @dev An attacker challenges any posted result, the honest provider's included.
    function attackerChallenge(uint256 jobSeed, uint256 whoSeed) external {
        bytes32 key = _try("attackerChallenge");
        (uint256 id, Job memory job) = _pick(jobSeed, JobState.Submitted);
        uint256 w = whoSeed % 3;
        address who = w == 0 ? _a.eve : w == 1 ? _a.other : _a.evilMed;
        vm.prank(who);
        try market.challenge(id, job) {
            _jobs[id] = JobFlow.challenged(job, who);
            _ok(key);
        } catch (bytes memory err) {
            _reverted(err);
        }
    }

    /// @dev The attacking mediator rules however suits it, on any challenged job.
    function attackerRule(uint256 jobSeed, uint256 kind) external {
        bytes32 key = _try("attackerRule");
        (uint256 id, Job memory job) = _pick(jobSeed, JobState.Challenged);
        (string memory cid, bytes32 h) = resultOf(id);
        uint256 k = kind % 3;
        vm.prank(_a.evilMed);
        if (k == 0) {
            try market.upholdChallenge(id, job, "bafywhatever") {
                _endRefunded(id, true);
                _ok(key);
            } catch (bytes memory err) {
                _reverted(err);
            }
        } else if (k == 1) {
            try market.rejectChallenge(id, job, cid, h) {
                _endWithResult(id);
                _ok(key);
            } catch (bytes memory err) {
                _reverted(err);
            }
        } else {
            try market.ruleNondeterministic(id, job, cid, h) {
                _endWithResult(id);
                _ok(key);
            } catch (bytes memory err) {
                _reverted(err);
            }
        }
    }

    /// @dev Eve ends whatever it can: expiry, timeouts, settlement (alone or in a batch).
    function anyoneEnds(uint256 jobSeed, uint256 kind) external {
        bytes32 key = _try("anyoneEnds");
        uint256 k = kind % 5;
        JobState wanted = k == 0 ? JobState.Open : k == 1 ? JobState.Matched : k == 4 ? JobState.Challenged : JobState.Submitted;
        (uint256 id, Job memory job) = _pickWindow(jobSeed, wanted, true);
        (string memory cid, bytes32 h) = resultOf(id);
        vm.prank(_a.eve);
        if (k == 0) {
            try market.expireJob(id, job) {
                _endRefunded(id, false);
                _ok(key);
            } catch (bytes memory err) {
                _reverted(err);
            }
        } else if (k == 1) {
            try market.timeoutResult(id, job) {
                _endRefunded(id, false);
                _ok(key);
            } catch (bytes memory err) {
                _reverted(err);
            }
        } else if (k == 2) {
            try market.settle(id, job, cid, h) {
                _endWithResult(id);
                _ok(key);
            } catch (bytes memory err) {
                _reverted(err);
            }
        } else if (k == 3) {
            Settlement[] memory items = new Settlement[](2);
            items[0] = Settlement({id: id, job: job, dataId: cid, resultHash: h});
            items[1] = items[0]; // listed twice: settled once
            try market.settleMany(items) {
                if (live[id]) _endWithResult(id);
                _ok(key);
            } catch (bytes memory err) {
                _reverted(err);
            }
        } else {
            try market.timeoutMediation(id, job, cid, h) {
                _endWithResult(id);
                _ok(key);
            } catch (bytes memory err) {
                _reverted(err);
            }
        }
    }

    /// @dev The attacking providers change their offers: any price, any terms.
    function attackerOffer(uint128 price, uint32 minRun, uint32 maxRun, uint32 cb, bool any, bool byOther) external {
        bytes32 key = _try("attackerOffer");
        // mostly offers that jobs can match (the attacker wants matches), sometimes anything
        bool wild = price % 4 == 0;
        Offer memory o = Offer({
            price: uint128(_bound(price, 0, wild ? 40 ether : 9 ether)),
            active: true,
            minRunTimeout: uint32(_bound(minRun, 0, wild ? 1 hours : 600)),
            maxRunTimeout: uint32(_bound(maxRun, wild ? 1 hours : 2 hours, 30 days)),
            maxCallbackGas: uint32(_bound(cb, 0, 2_000_000))
        });
        bytes32 id = any ? bytes32(0) : keccak256(bytes(seedModule(price)));
        vm.prank(byOther ? _a.other : _a.eve);
        try market.setOffer(id, o) {
            _ok(key);
        } catch (bytes memory err) {
            _reverted(err);
        }
    }

    function seedModule(uint256 seed) internal view returns (string memory) {
        return seed % 2 == 0 ? _module : _evilModule;
    }

    /// @dev What strangers cannot take: a mediator slot, a repository path.
    function attackerSquats(uint256 seed) external {
        bytes32 key = _try("attackerSquats");
        address squatter = address(uint160(0xBAD000 + seed % 1000));
        vm.prank(squatter);
        if (seed % 2 == 0) {
            try market.registerMediator() {
                unexpectedReverts += 1; // must not succeed
            } catch (bytes memory err) {
                if (bytes4(err) == MediatorNotApproved.selector) _ok(key);
                else _reverted(err);
            }
        } else {
            ModuleSpec memory spec;
            spec.specHash = keccak256("squat");
            spec.runTimeout = 1;
            try market.publishModule("github.com/lilypad-tech/lilysay", "1", spec) {
                unexpectedReverts += 1;
            } catch (bytes memory err) {
                if (bytes4(err) == ModuleNameReserved.selector) _ok(key);
                else _reverted(err);
            }
        }
    }
}

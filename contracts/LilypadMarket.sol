// SPDX-License-Identifier: Apache-2.0
pragma solidity ^0.8.28;

import {LibString} from "solady/utils/LibString.sol";
import {SafeTransferLib} from "solady/utils/SafeTransferLib.sol";
import {ILilypadJobClient} from "./interfaces/ILilypadJobManager.sol";
import {ILilypadMarket} from "./interfaces/ILilypadMarket.sol";
import {JobLib} from "./libraries/JobLib.sol";
import {MarketAccounts} from "./MarketAccounts.sol";

/// @title LilypadMarket: escrow, matching, results, mediation and timeouts for compute jobs.
/// @notice The system of record of the network. A job's payment is taken into escrow when it
/// is created (from the payee's balance here when that covers it, else from its tokens); a solver matches it to a resource provider whose collateral is then locked; the
/// provider posts its result; after a challenge window anyone settles it (provider, solver and
/// refund credited, client called back). A challenged result is re-run by a mediator both sides
/// accept, and the loser pays. Every non-final state has a deadline after which anyone can end
/// the job and return the funds to whoever is owed them.
///
/// Money owed to an account is credited to its balance here and withdrawn with `withdraw`
/// (pull payments: no settlement can be blocked by a recipient). Accounts, roles, offers and
/// mediators are in MarketAccounts; the job arithmetic (deadlines, result commitment, job
/// hash) is JobLib.
///
/// Storage per live job is one hash; callers pass the `Job` back (see ILilypadMarketTypes).
/// @dev `runJob` has the selector and ABI of the Lilypad reference's ILilypadJobManager.
contract LilypadMarket is MarketAccounts {
    using SafeTransferLib for address;

    /*//////////////////////////////////////////////////////////////
                               CONSTANTS
    //////////////////////////////////////////////////////////////*/

    uint256 public constant MAX_DATA_ID_LENGTH = 256;
    uint256 internal constant BPS = 10_000;
    /// @dev Gas kept back around the client callback (cold account access, memory, the
    /// bookkeeping after the call) on top of the 1/64 the EVM withholds.
    uint256 internal constant CALLBACK_RESERVE = 12_000;

    /*//////////////////////////////////////////////////////////////
                              IMMUTABLES
    //////////////////////////////////////////////////////////////*/

    uint256 public immutable solverFeeBps;
    uint256 public immutable collateralBps;
    uint128 public immutable mediatorFee;
    uint128 public immutable challengeBond;
    uint32 public immutable defaultMatchTimeout;
    uint32 public immutable defaultChallengeWindow;
    uint32 public immutable defaultMediationTimeout;
    uint32 public immutable defaultCallbackGas;

    /*//////////////////////////////////////////////////////////////
                                STORAGE
    //////////////////////////////////////////////////////////////*/

    /// @inheritdoc ILilypadMarket
    mapping(uint256 id => bytes32) public override jobHash;
    /// @inheritdoc ILilypadMarket
    mapping(bytes32 moduleId => bool) public override ruledNondeterministic;

    constructor(address token_, Config memory config, address owner_) MarketAccounts(token_, owner_) {
        if (
            config.solverFeeBps > BPS || config.collateralBps > 100 * BPS || config.matchTimeout == 0
                || config.matchTimeout > MAX_TIMEOUT || config.challengeWindow == 0
                || config.challengeWindow > MAX_TIMEOUT || config.mediationTimeout == 0
                || config.mediationTimeout > MAX_TIMEOUT || config.callbackGas > MAX_CALLBACK_GAS
        ) revert InvalidConfig();
        solverFeeBps = config.solverFeeBps;
        collateralBps = config.collateralBps;
        mediatorFee = config.mediatorFee;
        challengeBond = config.challengeBond;
        defaultMatchTimeout = config.matchTimeout;
        defaultChallengeWindow = config.challengeWindow;
        defaultMediationTimeout = config.mediationTimeout;
        defaultCallbackGas = config.callbackGas;
    }

    /*//////////////////////////////////////////////////////////////
                             JOB CREATION
    //////////////////////////////////////////////////////////////*/

    /// @inheritdoc ILilypadMarket
    function runJob(string calldata module, string[] calldata inputs, address payee) external returns (uint256 id) {
        bytes32 moduleId_ = keccak256(bytes(module));
        ModuleInfo memory info = _moduleInfo[moduleId_];
        // slither-disable-next-line incorrect-equality (0 = not published; not a balance; see contracts/SLITHER.md)
        if (info.publishedAt == 0) revert UnknownModule(module);
        // slither-disable-next-line uninitialized-local (zero-initialised on purpose, then filled)
        Job memory job;
        job.moduleId = moduleId_;
        job.payee = payee;
        job.payment = info.defaultPayment;
        job.matchTimeout = defaultMatchTimeout;
        job.runTimeout = info.runTimeout;
        job.challengeWindow = defaultChallengeWindow;
        // the mediator must have at least the run window to re-run the job
        uint32 mediation = defaultMediationTimeout;
        job.mediationTimeout = mediation < info.runTimeout ? info.runTimeout : mediation;
        job.callbackGas = msg.sender.code.length == 0 ? 0 : defaultCallbackGas;
        return _create(job, inputs);
    }

    /// @inheritdoc ILilypadMarket
    function createJob(JobRequest calldata request) external returns (uint256 id) {
        bytes32 moduleId_ = keccak256(bytes(request.module));
        ModuleInfo memory info = _moduleInfo[moduleId_];
        // slither-disable-next-line incorrect-equality (0 = not published; see contracts/SLITHER.md)
        if (info.publishedAt == 0) revert UnknownModule(request.module);
        if (request.specHash != 0) {
            bytes32 pinned = _moduleSpecHash[moduleId_];
            if (pinned != request.specHash) revert SpecHashMismatch(request.module, pinned, request.specHash);
        }
        // slither-disable-next-line uninitialized-local (zero-initialised on purpose, then filled)
        Job memory job;
        job.moduleId = moduleId_;
        job.payee = request.payee;
        job.payment = request.maxPayment == 0 ? info.defaultPayment : request.maxPayment;
        if (request.mediators != 0) {
            // only the slots taken now: "all" never takes in a mediator registered later
            job.mediators = request.mediators & _takenSlots(_counters.mediatorCount);
            // slither-disable-next-line incorrect-equality (0 = none of the named slots is taken; a bitmask, not a balance)
            if (job.mediators == 0) revert InvalidMediators(request.mediators);
        }
        job.matchTimeout = _timeout("matchTimeout", request.matchTimeout, defaultMatchTimeout, 1);
        // floors: an honest run fits the module's run timeout; the mediator can re-run it
        uint32 run = _timeout("runTimeout", request.runTimeout, info.runTimeout, info.runTimeout);
        job.runTimeout = run;
        job.challengeWindow = _timeout("challengeWindow", request.challengeWindow, defaultChallengeWindow, 1);
        uint32 mediation = defaultMediationTimeout;
        job.mediationTimeout =
            _timeout("mediationTimeout", request.mediationTimeout, mediation < run ? run : mediation, run);
        job.onlySolver = request.solver;
        if (msg.sender.code.length != 0) {
            uint256 cb = request.callbackGas == 0 ? defaultCallbackGas : request.callbackGas;
            if (cb > MAX_CALLBACK_GAS) revert CallbackGasTooHigh(cb, MAX_CALLBACK_GAS);
            job.callbackGas = uint32(cb);
        }
        return _create(job, request.inputs);
    }

    function _create(Job memory job, string[] calldata inputs) internal returns (uint256 id) {
        address payee = job.payee;
        if (payee == address(0)) revert ZeroAddress();
        Counters memory c = _counters;
        // slither-disable-next-line incorrect-equality (0 = use the default set; see contracts/SLITHER.md)
        if (job.mediators == 0) job.mediators = c.defaultMediators;
        if (payee != msg.sender) _spendAllowance(payee, job, c.defaultMediators);
        unchecked {
            id = uint256(c.jobCount) + 1; // cannot reach 2**184
        }
        _counters = Counters({defaultMediators: c.defaultMediators, mediatorCount: c.mediatorCount, jobCount: uint184(id)});

        job.client = msg.sender;
        job.createdAt = uint40(block.timestamp);
        job.state = JobState.Open;
        jobHash[id] = JobLib.hashMemory(job);

        emit JobCreated(
            id,
            msg.sender,
            payee,
            job.moduleId,
            inputs,
            job.payment,
            job.mediators,
            job.createdAt,
            job.matchTimeout,
            job.runTimeout,
            job.challengeWindow,
            job.mediationTimeout,
            job.callbackGas,
            job.onlySolver
        );
        // the payee's free balance here when it covers the payment, else its token allowance
        // (the payee is the caller or authorised it within a cap: _spendAllowance above)
        _collect(payee, job.payment);
    }

    /// @dev `value`, or `fallback_` for 0; reverts when `value` is under `floor` or over MAX_TIMEOUT.
    function _timeout(string memory which, uint32 value, uint32 fallback_, uint32 floor)
        private
        pure
        returns (uint32)
    {
        if (value == 0) return fallback_;
        if (value > MAX_TIMEOUT || value < floor) revert InvalidTimeout(which, value);
        return value;
    }

    /*//////////////////////////////////////////////////////////////
                          MATCHING AND RESULTS
    //////////////////////////////////////////////////////////////*/

    /// @inheritdoc ILilypadMarket
    function matchJob(uint256 id, Job calldata job, address provider, uint8 mediator) external {
        _match(id, job, provider, mediator, jobHash[id]);
    }

    /// @inheritdoc ILilypadMarket
    function matchMany(Match[] calldata items) external {
        for (uint256 i; i < items.length; ++i) {
            Match calldata m = items[i];
            bytes32 stored = jobHash[m.id];
            // slither-disable-next-line incorrect-equality (0 = already final: skipped; a hash, not a balance)
            if (stored == 0) continue;
            _match(m.id, m.job, m.provider, m.mediator, stored);
        }
    }

    /// @dev Matches open job `id`, whose stored hash is `stored` (see matchJob).
    function _match(uint256 id, Job calldata job, address provider, uint8 mediator, bytes32 stored) private {
        _checkStored(id, job, JobState.Open, stored);
        JobLib.requireBefore(id, JobLib.matchDeadline(job));
        if (_accounts[msg.sender].roles & ROLE_SOLVER == 0) revert NotSolver(msg.sender);
        address named = job.onlySolver;
        if (named != address(0) && named != msg.sender) revert NotJobSolver(id, msg.sender);

        Account memory p = _accounts[provider];
        if (p.roles & ROLE_PROVIDER == 0) revert NotProvider(provider);
        // the provider's collateral is put at risk only on the terms its offer states
        Offer memory offer = _offerFor(provider, job.moduleId);
        if (job.runTimeout < offer.minRunTimeout || job.runTimeout > offer.maxRunTimeout) {
            revert RunTimeoutNotOffered(id, provider, job.runTimeout);
        }
        if (job.callbackGas > offer.maxCallbackGas) revert CallbackGasNotOffered(id, provider, job.callbackGas);
        uint256 price = offer.price;
        uint256 fee = price * solverFeeBps / BPS;
        if (price + fee > job.payment) revert PriceAboveCap(id, price + fee, job.payment);

        uint64 bit = mediator < MAX_MEDIATORS ? uint64(1) << mediator : 0;
        Mediator memory m = _mediators[mediator];
        if (
            job.mediators & bit == 0 || p.mediators & bit == 0 || !m.active || m.suspended || m.account == provider
                || m.account == msg.sender || m.account == job.payee || m.account == job.client
        ) revert MediatorNotAcceptable(id, mediator);

        uint256 collateral = price * collateralBps / BPS;
        if (collateral < mediatorFee) collateral = mediatorFee;
        if (p.balance < collateral) revert InsufficientBalance(provider, p.balance, collateral);
        unchecked {
            _accounts[provider].balance = p.balance - uint128(collateral);
        }

        Job memory next = job;
        next.solver = msg.sender;
        next.provider = provider;
        next.price = uint128(price); // price <= payment <= uint128 max
        next.solverFee = uint128(fee);
        next.collateral = uint128(collateral);
        next.mediator = mediator;
        next.matchedAt = uint40(block.timestamp);
        next.state = JobState.Matched;
        jobHash[id] = JobLib.hashMemory(next);
        emit JobMatched(id, provider, msg.sender, mediator, next.price, next.solverFee, next.collateral, next.matchedAt);
    }

    /// @inheritdoc ILilypadMarket
    function releaseJob(uint256 id, Job calldata job) external {
        _check(id, job, JobState.Matched);
        if (msg.sender != job.provider) revert NotJobProvider(id, msg.sender);
        JobLib.requireBefore(id, JobLib.runDeadline(job));
        uint128 penalty = JobLib.releasePenalty(job);

        Job memory next = job;
        next.solver = address(0);
        next.provider = address(0);
        next.price = 0;
        next.solverFee = 0;
        next.collateral = 0;
        next.mediator = 0;
        next.matchedAt = 0;
        next.state = JobState.Open;
        jobHash[id] = JobLib.hashMemory(next);
        _credit(job.provider, job.collateral - penalty); // penalty <= collateral (JobLib)
        if (penalty != 0) _credit(job.payee, penalty);
        emit JobReleased(id, job.provider, penalty);
    }

    /// @inheritdoc ILilypadMarket
    function submitResult(uint256 id, Job calldata job, string calldata dataId, bytes32 resultHash) external {
        _submit(id, job, dataId, resultHash, jobHash[id]);
    }

    /// @inheritdoc ILilypadMarket
    function submitMany(Submission[] calldata items) external {
        for (uint256 i; i < items.length; ++i) {
            Submission calldata s = items[i];
            bytes32 stored = jobHash[s.id];
            // slither-disable-next-line incorrect-equality (0 = already final: skipped; a hash, not a balance)
            if (stored == 0) continue;
            _submit(s.id, s.job, s.dataId, s.resultHash, stored);
        }
    }

    /// @dev Posts the result of matched job `id`, whose stored hash is `stored` (see submitResult).
    function _submit(uint256 id, Job calldata job, string calldata dataId, bytes32 resultHash, bytes32 stored)
        private
    {
        _checkStored(id, job, JobState.Matched, stored);
        if (msg.sender != job.provider) revert NotJobProvider(id, msg.sender);
        JobLib.requireBefore(id, JobLib.runDeadline(job));
        uint256 n = bytes(dataId).length;
        if (n == 0 || n > MAX_DATA_ID_LENGTH) revert InvalidDataId(id);

        Job memory next = job;
        next.result = JobLib.commitment(dataId, resultHash);
        next.submittedAt = uint40(block.timestamp);
        next.state = JobState.Submitted;
        jobHash[id] = JobLib.hashMemory(next);
        emit ResultSubmitted(id, msg.sender, dataId, resultHash, next.submittedAt);
    }

    /// @inheritdoc ILilypadMarket
    function settle(uint256 id, Job calldata job, string calldata dataId, bytes32 resultHash) external {
        _settle(id, job, dataId, resultHash, jobHash[id]);
    }

    /// @dev Settles job `id`, whose stored hash is `stored`.
    function _settle(uint256 id, Job calldata job, string calldata dataId, bytes32 resultHash, bytes32 stored)
        private
    {
        _checkStored(id, job, JobState.Submitted, stored);
        JobLib.requireAfter(id, JobLib.challengeDeadline(job));
        if (JobLib.commitment(dataId, resultHash) != job.result) revert ResultMismatch(id);

        delete jobHash[id];
        uint128 refund = _payDeal(job, 0);
        emit JobSettled(id, job.provider, job.price, job.solverFee, refund);
        _callback(id, job, dataId);
    }

    /// @inheritdoc ILilypadMarket
    function settleMany(Settlement[] calldata items) external {
        for (uint256 i; i < items.length; ++i) {
            Settlement calldata s = items[i];
            bytes32 stored = jobHash[s.id];
            // slither-disable-next-line incorrect-equality (0 = already final: skipped; a hash, not a balance)
            if (stored == 0) continue;
            _settle(s.id, s.job, s.dataId, s.resultHash, stored);
        }
    }

    /*//////////////////////////////////////////////////////////////
                               MEDIATION
    //////////////////////////////////////////////////////////////*/

    /// @inheritdoc ILilypadMarket
    function challenge(uint256 id, Job calldata job) external {
        _check(id, job, JobState.Submitted);
        JobLib.requireBefore(id, JobLib.challengeDeadline(job));
        // a job's own parties gain nothing by challenging it (a provider could otherwise slash
        // itself to its own benefit, a mediator judge its own case)
        if (msg.sender == job.provider || msg.sender == job.solver || msg.sender == _mediators[job.mediator].account) {
            revert ChallengerIsParty(id, msg.sender);
        }

        Job memory next = job;
        next.challenger = msg.sender;
        next.challengedAt = uint40(block.timestamp);
        next.state = JobState.Challenged;
        jobHash[id] = JobLib.hashMemory(next);
        emit ResultChallenged(id, msg.sender, job.mediator, next.challengedAt);

        _collect(msg.sender, uint256(mediatorFee) + challengeBond);
    }

    /// @inheritdoc ILilypadMarket
    function upholdChallenge(uint256 id, Job calldata job, string calldata correctDataId) external {
        _checkRuling(id, job);
        delete jobHash[id];
        uint128 fee = mediatorFee;
        uint256 rest = job.collateral - fee; // collateral >= mediatorFee (matchJob)
        uint256 reward = rest / 2;
        _credit(msg.sender, fee);
        _credit(job.challenger, uint256(fee) + challengeBond + reward); // its deposit back + the reward
        _credit(job.payee, uint256(job.payment) + (rest - reward));
        emit ChallengeRuled(id, msg.sender, true, correctDataId);
    }

    /// @inheritdoc ILilypadMarket
    function rejectChallenge(uint256 id, Job calldata job, string calldata dataId, bytes32 resultHash) external {
        _checkRuling(id, job);
        _resultStands(id, job, dataId, resultHash, Standing.Rejected);
    }

    /// @inheritdoc ILilypadMarket
    function ruleNondeterministic(uint256 id, Job calldata job, string calldata dataId, bytes32 resultHash) external {
        _checkRuling(id, job);
        _resultStands(id, job, dataId, resultHash, Standing.Nondeterministic);
    }

    /// @dev Why a challenged result stands.
    enum Standing {
        Rejected, // the mediator found it right: the challenger pays the mediator, the bond goes to the provider
        Nondeterministic, // the module is not reproducible: the challenger pays the mediator, keeps its bond
        MediationTimedOut // nobody ruled: the challenger gets its deposit back
    }

    /// @dev Ends challenged job `id` with its posted result standing: the deal is paid as at
    /// settlement (client callback included), the challenge deposit as `how` says.
    function _resultStands(uint256 id, Job calldata job, string calldata dataId, bytes32 resultHash, Standing how)
        private
    {
        if (JobLib.commitment(dataId, resultHash) != job.result) revert ResultMismatch(id);
        delete jobHash[id];
        // slither-disable-next-line uninitialized-local (0 unless the challenge was rejected)
        uint128 bonus;
        if (how == Standing.MediationTimedOut) {
            _credit(job.challenger, uint256(mediatorFee) + challengeBond);
            emit MediationTimedOut(id, job.mediator);
        } else {
            _credit(msg.sender, mediatorFee);
            emit ChallengeRuled(id, msg.sender, false, dataId);
            if (how == Standing.Rejected) {
                bonus = challengeBond;
            } else {
                ruledNondeterministic[job.moduleId] = true;
                _credit(job.challenger, challengeBond);
                emit ModuleRuledNondeterministic(id, job.moduleId, msg.sender);
            }
        }
        uint128 refund = _payDeal(job, bonus);
        emit JobSettled(id, job.provider, job.price, job.solverFee, refund);
        _callback(id, job, dataId);
    }

    function _checkRuling(uint256 id, Job calldata job) private view {
        _check(id, job, JobState.Challenged);
        if (msg.sender != _mediators[job.mediator].account) revert NotMediatorOfJob(id, msg.sender);
        JobLib.requireBefore(id, JobLib.mediationDeadline(job));
    }

    /*//////////////////////////////////////////////////////////////
                          TIMEOUTS AND EXITS
    //////////////////////////////////////////////////////////////*/

    /// @inheritdoc ILilypadMarket
    function cancelJob(uint256 id, Job calldata job) external {
        _check(id, job, JobState.Open);
        if (msg.sender != job.payee && msg.sender != job.client) revert NotJobCreator(id, msg.sender);
        delete jobHash[id];
        _credit(job.payee, job.payment);
        emit JobCancelled(id, msg.sender);
    }

    /// @inheritdoc ILilypadMarket
    function expireJob(uint256 id, Job calldata job) external {
        _check(id, job, JobState.Open);
        JobLib.requireAfter(id, JobLib.matchDeadline(job));
        delete jobHash[id];
        _credit(job.payee, job.payment);
        emit JobExpired(id);
    }

    /// @inheritdoc ILilypadMarket
    function timeoutResult(uint256 id, Job calldata job) external {
        _check(id, job, JobState.Matched);
        JobLib.requireAfter(id, JobLib.runDeadline(job));
        delete jobHash[id];
        _credit(job.payee, job.payment + job.collateral);
        emit ResultTimedOut(id, job.provider, job.collateral);
    }

    /// @inheritdoc ILilypadMarket
    function timeoutMediation(uint256 id, Job calldata job, string calldata dataId, bytes32 resultHash) external {
        _check(id, job, JobState.Challenged);
        JobLib.requireAfter(id, JobLib.mediationDeadline(job));
        _resultStands(id, job, dataId, resultHash, Standing.MediationTimedOut);
    }

    /*//////////////////////////////////////////////////////////////
                                 VIEWS
    //////////////////////////////////////////////////////////////*/

    /// @inheritdoc ILilypadMarket
    function jobCount() external view returns (uint256) {
        return _counters.jobCount;
    }

    /// @inheritdoc ILilypadMarket
    function challengeDeposit() external view returns (uint256) {
        return uint256(mediatorFee) + challengeBond;
    }

    /// @inheritdoc ILilypadMarket
    function hashJob(Job calldata job) external pure returns (bytes32 h) {
        h = JobLib.hashCalldata(job);
    }

    /*//////////////////////////////////////////////////////////////
                               INTERNALS
    //////////////////////////////////////////////////////////////*/

    /// @dev Checks that `job` is what is stored for `id` and is in `state`.
    function _check(uint256 id, Job calldata job, JobState state) private view {
        _checkStored(id, job, state, jobHash[id]);
    }

    /// @dev `_check` with the stored hash already read.
    function _checkStored(uint256 id, Job calldata job, JobState state, bytes32 stored) private pure {
        // slither-disable-next-line incorrect-equality (0 = no live job; a hash, not a balance)
        if (stored == 0) revert JobNotFound(id);
        if (JobLib.hashCalldata(job) != stored) revert StaleJob(id);
        if (job.state != state) revert WrongState(id, job.state);
    }

    /// @dev Takes `amount` from `from`: off its free balance here when that covers it (no token
    /// transfer), else with `transferFrom` (which needs `from`'s token allowance). Only ever called
    /// for the caller itself or for a payee that authorised the caller (_create).
    function _collect(address from, uint256 amount) private {
        // slither-disable-next-line incorrect-equality (nothing to take: an amount, not a balance read; see contracts/SLITHER.md)
        if (amount == 0) return;
        Account storage a = _accounts[from];
        uint128 balance = a.balance;
        if (balance >= amount) {
            unchecked {
                a.balance = balance - uint128(amount);
            }
        } else {
            // slither-disable-next-line arbitrary-send-erc20 (from is the caller, or a payee that authorised it within a cap: see _create and contracts/SLITHER.md)
            token.safeTransferFrom(from, address(this), amount);
        }
    }

    /// @dev Pays out a deal whose result stands: provider gets price + collateral + `bonus`,
    /// solver its fee, payee the rest of the payment. Returns the payee's refund.
    function _payDeal(Job calldata job, uint128 bonus) private returns (uint128 refund) {
        _credit(job.provider, uint256(job.price) + job.collateral + bonus);
        if (job.solverFee != 0) _credit(job.solver, job.solverFee);
        refund = job.payment - job.price - job.solverFee; // price + fee <= payment (matchJob)
        if (refund != 0) _credit(job.payee, refund);
    }

    /// @dev Calls `client.submitResults` with exactly `job.callbackGas` (no less: the caller
    /// must forward enough), copies no return data, and never reverts on the callee's failure.
    function _callback(uint256 id, Job calldata job, string calldata dataId) private {
        uint256 gasLimit = job.callbackGas;
        if (gasLimit == 0) return;
        bytes memory data = abi.encodeCall(ILilypadJobClient.submitResults, (id, LibString.toString(id), dataId));
        uint256 needed = gasLimit + gasLimit / 63 + CALLBACK_RESERVE;
        if (gasleft() < needed) revert InsufficientGasForCallback(id, needed);
        address client = job.client;
        bool ok;
        assembly ("memory-safe") {
            ok := call(gasLimit, client, 0, add(data, 0x20), mload(data), 0, 0)
        }
        if (!ok) emit CallbackFailed(id, client);
    }
}

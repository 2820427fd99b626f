// SPDX-License-Identifier: Apache-2.0
pragma solidity ^0.8.28;

import {Ownable} from "solady/auth/Ownable.sol";
import {LibString} from "solady/utils/LibString.sol";
import {SafeTransferLib} from "solady/utils/SafeTransferLib.sol";
import {ILilypadJobClient} from "./interfaces/ILilypadJobManager.sol";
import {ModuleDirectory} from "./ModuleDirectory.sol";

/// @title LilypadMarket: escrow, matching, results, mediation and timeouts for compute jobs.
/// @notice The system of record of the network. A job's payment is pulled into escrow when it
/// is created; a solver matches it to a resource provider whose collateral is then locked; the
/// provider posts its result; after a challenge window anyone settles it (provider, solver and
/// refund credited, client called back). A challenged result is re-run by a mediator both sides
/// accept, and the loser pays. Every non-final state has a deadline after which anyone can end
/// the job and return the funds to whoever is owed them.
///
/// Money owed to an account is credited to its balance here and withdrawn with `withdraw`
/// (pull payments: no settlement can be blocked by a recipient).
///
/// Storage per live job is one hash; callers pass the `Job` back (see ILilypadMarketTypes).
/// @dev `runJob` has the selector and ABI of the Lilypad reference's ILilypadJobManager.
contract LilypadMarket is ModuleDirectory, Ownable {
    using SafeTransferLib for address;

    /*//////////////////////////////////////////////////////////////
                               CONSTANTS
    //////////////////////////////////////////////////////////////*/

    uint8 public constant ROLE_SOLVER = 1;
    uint8 public constant ROLE_PROVIDER = 2;
    uint8 public constant ROLE_MEDIATOR = 4;
    uint256 public constant MAX_MEDIATORS = 64;
    uint256 public constant MAX_CALLBACK_GAS = 2_000_000;
    uint256 public constant MAX_DATA_ID_LENGTH = 256;
    uint256 internal constant BPS = 10_000;
    /// @dev Gas kept back around the client callback (cold account access, memory, the
    /// bookkeeping after the call) on top of the 1/64 the EVM withholds.
    uint256 internal constant CALLBACK_RESERVE = 12_000;
    uint256 internal constant JOB_WORDS_SIZE = 23 * 32;

    /*//////////////////////////////////////////////////////////////
                              IMMUTABLES
    //////////////////////////////////////////////////////////////*/

    address public immutable token;
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

    struct Account {
        uint128 balance; // free balance, withdrawable; collateral is taken from it
        uint64 mediators; // providers: the mediators they accept
        uint8 roles; // ROLE_* bits
        uint8 mediatorSlot; // mediators: index + 1 (0 = never registered)
    }

    struct Offer {
        uint128 price;
        bool active;
    }

    struct Mediator {
        address account;
        bool active; // registered and not left
        bool suspended; // by the owner; only the owner lifts it
    }

    /// @dev Read and written by every job creation: one slot.
    struct Counters {
        uint64 defaultMediators;
        uint192 jobCount;
    }

    mapping(address => Account) internal _accounts;
    mapping(address provider => mapping(bytes32 moduleId => Offer)) internal _offers;
    mapping(address provider => Resources) internal _resources;
    mapping(uint256 index => Mediator) internal _mediators;
    uint256 public mediatorCount;
    mapping(address payee => mapping(address client => bool)) public isClientAuthorized;
    mapping(uint256 id => bytes32) public jobHash;
    Counters internal _counters;

    constructor(address token_, Config memory config, address owner_) {
        if (token_ == address(0) || owner_ == address(0)) revert ZeroAddress();
        if (
            config.solverFeeBps > BPS || config.collateralBps > 100 * BPS || config.matchTimeout == 0
                || config.matchTimeout > MAX_TIMEOUT || config.challengeWindow == 0
                || config.challengeWindow > MAX_TIMEOUT || config.mediationTimeout == 0
                || config.mediationTimeout > MAX_TIMEOUT || config.callbackGas > MAX_CALLBACK_GAS
        ) revert InvalidConfig();
        token = token_;
        solverFeeBps = config.solverFeeBps;
        collateralBps = config.collateralBps;
        mediatorFee = config.mediatorFee;
        challengeBond = config.challengeBond;
        defaultMatchTimeout = config.matchTimeout;
        defaultChallengeWindow = config.challengeWindow;
        defaultMediationTimeout = config.mediationTimeout;
        defaultCallbackGas = config.callbackGas;
        _initializeOwner(owner_);
    }

    /*//////////////////////////////////////////////////////////////
                             JOB CREATION
    //////////////////////////////////////////////////////////////*/

    /// @notice Creates a job for `module` ("name:version") with `inputs` ("Key=Value"), paid by
    /// `payee`, with the module's default payment and the market's default timeouts and
    /// mediators. The payment is pulled from `payee` now: `payee` must have approved this
    /// contract on the token, and, when `payee` is not the caller, authorised the caller with
    /// `authorizeClient`. A contract caller is called back with `submitResults` at settlement.
    /// @return id The job id (1, 2, ...).
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
        job.mediationTimeout = defaultMediationTimeout;
        job.callbackGas = msg.sender.code.length == 0 ? 0 : defaultCallbackGas;
        return _create(job, inputs);
    }

    /// @notice Creates a job with explicit terms; zero fields of `request` take the defaults.
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
        job.mediators = request.mediators;
        job.matchTimeout = _timeout("matchTimeout", request.matchTimeout, defaultMatchTimeout);
        job.runTimeout = _timeout("runTimeout", request.runTimeout, info.runTimeout);
        job.challengeWindow = _timeout("challengeWindow", request.challengeWindow, defaultChallengeWindow);
        job.mediationTimeout = _timeout("mediationTimeout", request.mediationTimeout, defaultMediationTimeout);
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
        if (payee != msg.sender && !isClientAuthorized[payee][msg.sender]) {
            revert ClientNotAuthorized(payee, msg.sender);
        }
        Counters memory c = _counters;
        unchecked {
            id = uint256(c.jobCount) + 1; // cannot reach 2**192
        }
        _counters = Counters({defaultMediators: c.defaultMediators, jobCount: uint192(id)});

        job.client = msg.sender;
        // slither-disable-next-line incorrect-equality (0 = use the default set; see contracts/SLITHER.md)
        if (job.mediators == 0) job.mediators = c.defaultMediators;
        job.createdAt = uint40(block.timestamp);
        job.state = JobState.Open;
        jobHash[id] = _hashMemory(job);

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
            job.callbackGas
        );
        // slither-disable-next-line arbitrary-send-erc20 (payee is the caller or authorised it: see _create and contracts/SLITHER.md)
        if (job.payment != 0) token.safeTransferFrom(payee, address(this), job.payment);
    }

    function _timeout(string memory which, uint32 value, uint32 fallback_) private pure returns (uint32) {
        if (value == 0) return fallback_;
        if (value > MAX_TIMEOUT) revert InvalidTimeout(which, value);
        return value;
    }

    /*//////////////////////////////////////////////////////////////
                          MATCHING AND RESULTS
    //////////////////////////////////////////////////////////////*/

    /// @notice A registered solver matches open job `id` to `provider`, with mediator index
    /// `mediator`. Valid when: the provider is registered and offers the module (or offers
    /// resources that fit it), its price plus the solver fee is within the job's payment, both
    /// sides accept the mediator, and the provider's balance covers the collateral, which is
    /// locked here.
    function matchJob(uint256 id, Job calldata job, address provider, uint8 mediator) external {
        _check(id, job, JobState.Open);
        uint256 deadline = uint256(job.createdAt) + job.matchTimeout;
        if (block.timestamp > deadline) revert DeadlinePassed(id, deadline);
        if (_accounts[msg.sender].roles & ROLE_SOLVER == 0) revert NotSolver(msg.sender);

        Account memory p = _accounts[provider];
        if (p.roles & ROLE_PROVIDER == 0) revert NotProvider(provider);
        uint256 price = _priceOf(provider, job.moduleId);
        uint256 fee = price * solverFeeBps / BPS;
        if (price + fee > job.payment) revert PriceAboveCap(id, price + fee, job.payment);

        uint64 bit = mediator < MAX_MEDIATORS ? uint64(1) << mediator : 0;
        Mediator memory m = _mediators[mediator];
        if (job.mediators & bit == 0 || p.mediators & bit == 0 || !m.active || m.suspended) {
            revert MediatorNotAcceptable(id, mediator);
        }

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
        jobHash[id] = _hashMemory(next);
        emit JobMatched(id, provider, msg.sender, mediator, next.price, next.solverFee, next.collateral, next.matchedAt);
    }

    /// @notice The matched provider gives the job back before its run deadline (it cannot run
    /// it after all); its collateral is unlocked and the job is open to be matched again until
    /// its match deadline.
    function releaseJob(uint256 id, Job calldata job) external {
        _check(id, job, JobState.Matched);
        if (msg.sender != job.provider) revert NotJobProvider(id, msg.sender);
        uint256 deadline = uint256(job.matchedAt) + job.runTimeout;
        if (block.timestamp > deadline) revert DeadlinePassed(id, deadline);

        Job memory next = job;
        next.solver = address(0);
        next.provider = address(0);
        next.price = 0;
        next.solverFee = 0;
        next.collateral = 0;
        next.mediator = 0;
        next.matchedAt = 0;
        next.state = JobState.Open;
        jobHash[id] = _hashMemory(next);
        _credit(job.provider, job.collateral);
        emit JobReleased(id, job.provider);
    }

    /// @notice The matched provider posts its result: `dataId`, the IPFS CID of the outputs
    /// folder, and `resultHash`, the hash the module's comparison is made on.
    function submitResult(uint256 id, Job calldata job, string calldata dataId, bytes32 resultHash) external {
        _check(id, job, JobState.Matched);
        if (msg.sender != job.provider) revert NotJobProvider(id, msg.sender);
        uint256 deadline = uint256(job.matchedAt) + job.runTimeout;
        if (block.timestamp > deadline) revert DeadlinePassed(id, deadline);
        uint256 n = bytes(dataId).length;
        if (n == 0 || n > MAX_DATA_ID_LENGTH) revert InvalidDataId(id);

        Job memory next = job;
        next.result = keccak256(abi.encode(dataId, resultHash));
        next.submittedAt = uint40(block.timestamp);
        next.state = JobState.Submitted;
        jobHash[id] = _hashMemory(next);
        emit ResultSubmitted(id, msg.sender, dataId, resultHash, next.submittedAt);
    }

    /// @notice After the challenge window, anyone settles: the provider is paid its price and
    /// its collateral unlocked, the solver is paid its fee, the rest of the payment goes back to
    /// the payee, and a contract client gets `submitResults(id, dealId, dataId)`.
    /// @dev Forward enough gas for the callback: the call reverts with InsufficientGasForCallback
    /// rather than let the callback run short.
    function settle(uint256 id, Job calldata job, string calldata dataId, bytes32 resultHash) external {
        _settle(id, job, dataId, resultHash);
    }

    function _settle(uint256 id, Job calldata job, string calldata dataId, bytes32 resultHash) private {
        _check(id, job, JobState.Submitted);
        uint256 deadline = uint256(job.submittedAt) + job.challengeWindow;
        if (block.timestamp <= deadline) revert DeadlineNotReached(id, deadline);
        if (keccak256(abi.encode(dataId, resultHash)) != job.result) revert ResultMismatch(id);

        delete jobHash[id];
        uint128 refund = _payDeal(job, 0);
        emit JobSettled(id, job.provider, job.price, job.solverFee, refund);
        _callback(id, job, dataId);
    }

    /// @notice Settles several jobs in one transaction (e.g. a provider's jobs whose windows
    /// have passed). All or nothing: one item that cannot settle reverts the call.
    function settleMany(Settlement[] calldata items) external {
        for (uint256 i; i < items.length; ++i) {
            Settlement calldata s = items[i];
            _settle(s.id, s.job, s.dataId, s.resultHash);
        }
    }

    /*//////////////////////////////////////////////////////////////
                               MEDIATION
    //////////////////////////////////////////////////////////////*/

    /// @notice Within the challenge window anyone (the job creator, or an auditor) challenges
    /// the result by paying `mediatorFee + challengeBond`, from their balance here if it covers
    /// it, else from their token allowance. The job's mediator then re-runs the job and rules.
    function challenge(uint256 id, Job calldata job) external {
        _check(id, job, JobState.Submitted);
        uint256 deadline = uint256(job.submittedAt) + job.challengeWindow;
        if (block.timestamp > deadline) revert DeadlinePassed(id, deadline);

        Job memory next = job;
        next.challenger = msg.sender;
        next.challengedAt = uint40(block.timestamp);
        next.state = JobState.Challenged;
        jobHash[id] = _hashMemory(next);
        emit ResultChallenged(id, msg.sender, job.mediator, next.challengedAt);

        uint256 owed = uint256(mediatorFee) + challengeBond;
        if (owed != 0) {
            Account storage a = _accounts[msg.sender];
            uint128 balance = a.balance;
            if (balance >= owed) {
                unchecked {
                    a.balance = balance - uint128(owed);
                }
            } else {
                token.safeTransferFrom(msg.sender, address(this), owed);
            }
        }
    }

    /// @notice The mediator found the result wrong. The provider's collateral is slashed: the
    /// mediator's fee comes out of it and the rest goes to the challenger, who also gets its
    /// deposit back; the payee gets the whole payment back. `correctDataId` is the mediator's
    /// own result, for the job creator.
    function upholdChallenge(uint256 id, Job calldata job, string calldata correctDataId) external {
        _checkRuling(id, job);
        delete jobHash[id];
        uint128 fee = mediatorFee;
        _credit(msg.sender, fee);
        _credit(job.challenger, uint256(job.collateral) + challengeBond); // its deposit + collateral - fee
        _credit(job.payee, job.payment);
        emit ChallengeRuled(id, msg.sender, true, correctDataId);
    }

    /// @notice The mediator found the result right. The mediator is paid its fee from the
    /// challenger's deposit, the provider gets the challenger's bond on top of its price, and
    /// the job settles as if unchallenged (client callback included).
    function rejectChallenge(uint256 id, Job calldata job, string calldata dataId, bytes32 resultHash) external {
        _checkRuling(id, job);
        if (keccak256(abi.encode(dataId, resultHash)) != job.result) revert ResultMismatch(id);
        delete jobHash[id];
        _credit(msg.sender, mediatorFee);
        uint128 refund = _payDeal(job, challengeBond);
        emit ChallengeRuled(id, msg.sender, false, dataId);
        emit JobSettled(id, job.provider, job.price, job.solverFee, refund);
        _callback(id, job, dataId);
    }

    function _checkRuling(uint256 id, Job calldata job) private view {
        _check(id, job, JobState.Challenged);
        if (msg.sender != _mediators[job.mediator].account) revert NotMediatorOfJob(id, msg.sender);
        uint256 deadline = uint256(job.challengedAt) + job.mediationTimeout;
        if (block.timestamp > deadline) revert DeadlinePassed(id, deadline);
    }

    /*//////////////////////////////////////////////////////////////
                          TIMEOUTS AND EXITS
    //////////////////////////////////////////////////////////////*/

    /// @notice The payee or the client takes an unmatched job back; the payment is refunded.
    function cancelJob(uint256 id, Job calldata job) external {
        _check(id, job, JobState.Open);
        if (msg.sender != job.payee && msg.sender != job.client) revert NotJobCreator(id, msg.sender);
        delete jobHash[id];
        _credit(job.payee, job.payment);
        emit JobCancelled(id, msg.sender);
    }

    /// @notice Anyone ends a job nobody matched before its match deadline; the payee is refunded.
    function expireJob(uint256 id, Job calldata job) external {
        _check(id, job, JobState.Open);
        uint256 deadline = uint256(job.createdAt) + job.matchTimeout;
        if (block.timestamp <= deadline) revert DeadlineNotReached(id, deadline);
        delete jobHash[id];
        _credit(job.payee, job.payment);
        emit JobExpired(id);
    }

    /// @notice Anyone ends a matched job whose provider posted no result before its run
    /// deadline: the payee gets the payment back and the provider's collateral.
    function timeoutResult(uint256 id, Job calldata job) external {
        _check(id, job, JobState.Matched);
        uint256 deadline = uint256(job.matchedAt) + job.runTimeout;
        if (block.timestamp <= deadline) revert DeadlineNotReached(id, deadline);
        delete jobHash[id];
        _credit(job.payee, job.payment + job.collateral);
        emit ResultTimedOut(id, job.provider, job.collateral);
    }

    /// @notice Anyone ends a challenge the mediator did not rule on in time: everyone gets back
    /// what they put in (payee its payment, provider its collateral, challenger its deposit).
    function timeoutMediation(uint256 id, Job calldata job) external {
        _check(id, job, JobState.Challenged);
        uint256 deadline = uint256(job.challengedAt) + job.mediationTimeout;
        if (block.timestamp <= deadline) revert DeadlineNotReached(id, deadline);
        delete jobHash[id];
        _credit(job.payee, job.payment);
        _credit(job.provider, job.collateral);
        _credit(job.challenger, mediatorFee + challengeBond);
        emit MediationTimedOut(id, job.mediator);
    }

    /*//////////////////////////////////////////////////////////////
                               BALANCES
    //////////////////////////////////////////////////////////////*/

    /// @notice Adds `amount` tokens (pulled from the caller) to `account`'s balance here, e.g.
    /// a provider's collateral.
    function deposit(address account, uint256 amount) external {
        if (account == address(0)) revert ZeroAddress();
        if (amount == 0) revert ZeroAmount();
        _credit(account, amount);
        emit Deposited(account, msg.sender, amount);
        token.safeTransferFrom(msg.sender, address(this), amount);
    }

    /// @notice Sends `amount` of the caller's free balance to `to` (not the market itself,
    /// where tokens would be owed to no one).
    function withdraw(uint256 amount, address to) external {
        if (to == address(0) || to == address(this)) revert InvalidRecipient(to);
        if (amount == 0) revert ZeroAmount();
        Account storage a = _accounts[msg.sender];
        uint128 balance = a.balance;
        if (balance < amount) revert InsufficientBalance(msg.sender, balance, amount);
        unchecked {
            a.balance = balance - uint128(amount);
        }
        emit Withdrew(msg.sender, to, amount);
        token.safeTransfer(to, amount);
    }

    /// @notice Lets `client` (a contract such as a dapp) create jobs paid by the caller.
    function authorizeClient(address client, bool authorized) external {
        if (client == address(0)) revert ZeroAddress();
        isClientAuthorized[msg.sender][client] = authorized;
        emit ClientAuthorized(msg.sender, client, authorized);
    }

    /*//////////////////////////////////////////////////////////////
                                 ROLES
    //////////////////////////////////////////////////////////////*/

    function registerSolver() external {
        _setRoles(msg.sender, _accounts[msg.sender].roles | ROLE_SOLVER);
    }

    /// @notice Registers the caller as a resource provider accepting the `mediators` bitmask.
    function registerProvider(uint64 mediators) external {
        _accounts[msg.sender].mediators = mediators;
        emit ProviderMediatorsSet(msg.sender, mediators);
        _setRoles(msg.sender, _accounts[msg.sender].roles | ROLE_PROVIDER);
    }

    /// @notice Registers the caller as a mediator (again, if it left) and returns its index.
    function registerMediator() external returns (uint8 index) {
        Account storage a = _accounts[msg.sender];
        uint8 slot = a.mediatorSlot;
        if (slot == 0) {
            uint256 n = mediatorCount;
            if (n == MAX_MEDIATORS) revert TooManyMediators();
            index = uint8(n);
            mediatorCount = n + 1;
            a.mediatorSlot = index + 1;
            _mediators[index] = Mediator({account: msg.sender, active: true, suspended: false});
            emit MediatorRegistered(msg.sender, index);
        } else {
            index = slot - 1;
            if (_mediators[index].active) revert AlreadyMediator(msg.sender);
            _mediators[index].active = true;
            emit MediatorActiveSet(index, true);
        }
        _setRoles(msg.sender, a.roles | ROLE_MEDIATOR);
    }

    /// @notice Gives up the `roles` bits. Jobs already matched carry on; new matches need the
    /// role. A mediator that leaves still rules on challenges it already has.
    function leaveRoles(uint8 roles) external {
        Account storage a = _accounts[msg.sender];
        if (roles & ROLE_MEDIATOR != 0 && a.mediatorSlot != 0) {
            uint8 index = a.mediatorSlot - 1;
            if (_mediators[index].active) {
                _mediators[index].active = false;
                emit MediatorActiveSet(index, false);
            }
        }
        _setRoles(msg.sender, a.roles & ~roles);
    }

    function setProviderMediators(uint64 mediators) external {
        _accounts[msg.sender].mediators = mediators;
        emit ProviderMediatorsSet(msg.sender, mediators);
    }

    /// @notice Offers to run `moduleId` for `price`; `moduleId == 0` offers any module whose
    /// requirements fit the caller's declared resources.
    function setOffer(bytes32 moduleId_, uint128 price, bool active) external {
        _offers[msg.sender][moduleId_] = Offer({price: price, active: active});
        emit OfferSet(msg.sender, moduleId_, price, active);
    }

    /// @notice A registered provider announces that it has these modules' images ready (or
    /// no longer has them), so solvers can prefer it for jobs that then need no download.
    /// Emits an event only: it is a hint, and matching does not depend on it.
    function announceModules(bytes32[] calldata moduleIds, bool ready) external {
        if (_accounts[msg.sender].roles & ROLE_PROVIDER == 0) revert NotProvider(msg.sender);
        emit ModulesAnnounced(msg.sender, moduleIds, ready);
    }

    function setResources(Resources calldata resources) external {
        _resources[msg.sender] = resources;
        emit ResourcesSet(msg.sender, resources);
    }

    /// @notice Owner: the mediators that jobs created without an explicit set accept.
    function setDefaultMediators(uint64 mediators) external onlyOwner {
        _counters.defaultMediators = mediators;
        emit DefaultMediatorsSet(mediators);
    }

    /// @notice Owner: suspends (or reinstates) a mediator for new matches. A suspended
    /// mediator still rules on the challenges it already has; it cannot lift the suspension
    /// by registering again.
    function setMediatorSuspended(uint8 index, bool suspended) external onlyOwner {
        if (index >= mediatorCount) revert UnknownMediator(index);
        _mediators[index].suspended = suspended;
        emit MediatorSuspended(index, suspended);
    }

    function _setRoles(address account, uint8 roles) private {
        _accounts[account].roles = roles;
        emit RolesChanged(account, roles);
    }

    /*//////////////////////////////////////////////////////////////
                                 VIEWS
    //////////////////////////////////////////////////////////////*/

    function balanceOf(address account) external view returns (uint256) {
        return _accounts[account].balance;
    }

    function accountOf(address account) external view returns (Account memory) {
        return _accounts[account];
    }

    function offerOf(address provider, bytes32 moduleId_) external view returns (Offer memory) {
        return _offers[provider][moduleId_];
    }

    function resourcesOf(address provider) external view returns (Resources memory) {
        return _resources[provider];
    }

    function mediatorAt(uint8 index) external view returns (Mediator memory) {
        return _mediators[index];
    }

    function jobCount() external view returns (uint256) {
        return _counters.jobCount;
    }

    function defaultMediators() external view returns (uint64) {
        return _counters.defaultMediators;
    }

    /// @notice The deposit a challenge costs.
    function challengeDeposit() external view returns (uint256) {
        return uint256(mediatorFee) + challengeBond;
    }

    /// @notice The hash the market stores for `job` (== keccak256(abi.encode(job))).
    function hashJob(Job calldata job) external pure returns (bytes32 h) {
        assembly ("memory-safe") {
            let m := mload(0x40)
            calldatacopy(m, job, JOB_WORDS_SIZE)
            h := keccak256(m, JOB_WORDS_SIZE)
        }
    }

    /// @notice The price `provider` asks for `moduleId_`, or a revert saying why it has none.
    function priceOf(address provider, bytes32 moduleId_) external view returns (uint256) {
        return _priceOf(provider, moduleId_);
    }

    /*//////////////////////////////////////////////////////////////
                               INTERNALS
    //////////////////////////////////////////////////////////////*/

    /// @dev Checks that `job` is what is stored for `id` and is in `state`.
    function _check(uint256 id, Job calldata job, JobState state) private view {
        bytes32 stored = jobHash[id];
        // slither-disable-next-line incorrect-equality (0 = no live job; a hash, not a balance)
        if (stored == 0) revert JobNotFound(id);
        bytes32 h;
        assembly ("memory-safe") {
            let m := mload(0x40)
            calldatacopy(m, job, JOB_WORDS_SIZE)
            h := keccak256(m, JOB_WORDS_SIZE)
        }
        if (h != stored) revert StaleJob(id);
        if (job.state != state) revert WrongState(id, job.state);
    }

    /// @dev A Job of value types only is laid out in memory as its ABI encoding.
    function _hashMemory(Job memory job) private pure returns (bytes32 h) {
        assembly ("memory-safe") {
            h := keccak256(job, JOB_WORDS_SIZE)
        }
    }

    function _priceOf(address provider, bytes32 moduleId_) private view returns (uint256) {
        Offer memory offer = _offers[provider][moduleId_];
        if (offer.active) return offer.price;
        offer = _offers[provider][bytes32(0)];
        if (!offer.active) revert NoOffer(provider, moduleId_);
        Resources memory have = _resources[provider];
        Resources memory need = _moduleRequirements[moduleId_];
        if (
            need.cpuMilli > have.cpuMilli || need.ramMb > have.ramMb || need.diskMb > have.diskMb
                || need.gpus > have.gpus || (need.gpus != 0 && need.vramMb > have.vramMb)
        ) revert ResourcesInsufficient(provider, moduleId_);
        return offer.price;
    }

    /// @dev Pays out a deal whose result stands: provider gets price + collateral + `bonus`,
    /// solver its fee, payee the rest of the payment. Returns the payee's refund.
    function _payDeal(Job calldata job, uint128 bonus) private returns (uint128 refund) {
        _credit(job.provider, uint256(job.price) + job.collateral + bonus);
        if (job.solverFee != 0) _credit(job.solver, job.solverFee);
        refund = job.payment - job.price - job.solverFee; // price + fee <= payment (matchJob)
        if (refund != 0) _credit(job.payee, refund);
    }

    function _credit(address account, uint256 amount) private {
        Account storage a = _accounts[account];
        uint256 balance = uint256(a.balance) + amount;
        if (balance > type(uint128).max) revert InsufficientBalance(account, type(uint128).max, balance);
        a.balance = uint128(balance);
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

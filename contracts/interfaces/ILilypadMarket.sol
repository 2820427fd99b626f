// SPDX-License-Identifier: Apache-2.0
pragma solidity ^0.8.28;

/// @title Types, events and errors of the Lilypad market.
/// @notice The market stores one 32-byte hash per live job. Every call that moves a job on
/// passes the whole `Job` back in calldata; the market checks it against the stored hash,
/// applies the transition and stores the hash of the new `Job`. Agents rebuild each `Job`
/// from the events below (see `agents/` and README "Contracts").
interface ILilypadMarketTypes {
    /// @dev Non-final states. A job in a final state has no stored hash (its slot is cleared)
    /// and its outcome is told by the event that ended it.
    enum JobState {
        None,
        Open, // paid into escrow, waiting for a solver to match it with a resource provider
        Matched, // a provider's collateral is locked; waiting for its result
        Submitted, // result posted; challenge window running
        Challenged // a mediator is re-running the job
    }

    struct Job {
        // ---- terms, fixed when the job is created ----
        address client; // caller of runJob/createJob; receives submitResults when callbackGas > 0
        address payee; // paid the escrow; receives refunds
        bytes32 moduleId; // keccak256(bytes("name:version")); the inputs are in JobCreated
        uint128 payment; // escrowed; the most price + solver fee may reach
        uint64 mediators; // bit i set: the job creator accepts mediator i
        uint40 createdAt;
        uint32 matchTimeout; // seconds after createdAt a match may be recorded
        uint32 runTimeout; // seconds after matchedAt the provider has to submit
        uint32 challengeWindow; // seconds after submittedAt a challenge may be raised
        uint32 mediationTimeout; // seconds after challengedAt the mediator has to rule
        uint32 callbackGas; // gas given to client.submitResults; 0 = no callback
        address onlySolver; // the only solver that may match the job; 0 = any registered solver
        // ---- the deal, set by the solver's match ----
        address solver;
        address provider;
        uint128 price; // to the provider
        uint128 solverFee; // to the solver
        uint128 collateral; // locked from the provider's balance
        uint8 mediator; // index of the mediator both sides accept
        uint40 matchedAt;
        // ---- the result ----
        bytes32 result; // keccak256(abi.encode(string dataId, bytes32 resultHash))
        uint40 submittedAt;
        // ---- a dispute ----
        address challenger;
        uint40 challengedAt;
        JobState state;
    }

    /// @notice What a richer job creator can set; zero fields take the defaults `runJob` uses.
    struct JobRequest {
        string module; // "name:version"
        string[] inputs; // "Key=Value"
        address payee; // who pays; msg.sender or a payee that authorised msg.sender
        bytes32 specHash; // if non-zero, the module must be pinned to exactly this hash
        uint128 maxPayment; // cap on price + solver fee; 0 = the module's default payment
        uint64 mediators; // acceptable mediators; 0 = the market's default set
        uint32 matchTimeout; // 0 = default (likewise below)
        uint32 runTimeout; // 0 = the module's run timeout
        uint32 challengeWindow; // 0 = default
        uint32 mediationTimeout;
        uint32 callbackGas; // only for contract callers; 0 = default
        address solver; // the only solver that may match the job (Job.onlySolver); 0 = any
    }

    /// @notice Resources a provider offers for `moduleId == 0` ("any module that fits").
    struct Resources {
        uint32 cpuMilli;
        uint32 ramMb;
        uint32 diskMb;
        uint32 vramMb; // per GPU
        uint8 gpus;
    }

    /// @notice A module version as published in the directory. Versions are immutable.
    struct ModuleSpec {
        bytes32 specHash; // content hash of the module's folder (its UnixFS CID's sha2-256 digest)
        bytes32 imageHash; // content hash of its image archive (`docker save`, UnixFS file), 0 = none
        uint128 defaultPayment; // what runJob escrows for it
        uint32 runTimeout; // the most a run may take, seconds
        uint8 flags; // MODULE_* bits
        Resources requirements;
    }

    /// @notice One item of `settleMany`: what `settle` takes.
    struct Settlement {
        uint256 id;
        Job job;
        string dataId;
        bytes32 resultHash;
    }

    /// @notice One item of `matchMany`: what `matchJob` takes.
    struct Match {
        uint256 id;
        Job job;
        address provider;
        uint8 mediator;
    }

    /// @notice One item of `submitMany`: what `submitResult` takes.
    struct Submission {
        uint256 id;
        Job job;
        string dataId;
        bytes32 resultHash;
    }

    /// @notice What the market holds for an account (`accountOf`).
    struct Account {
        uint128 balance; // free balance, withdrawable; collateral is taken from it
        uint64 mediators; // providers: the mediators they accept (only slots taken when they set it)
        uint8 roles; // ROLE_* bits
        uint8 mediatorSlot; // mediators: index + 1 (0 = never registered)
        bool mediatorApproved; // the owner approved this account as a mediator
    }

    /// @notice A provider's offer for one module (`moduleId == 0`: any module that fits), with
    /// the terms under which it puts up collateral: a job is matched to it only when the job's
    /// run timeout is within [minRunTimeout, maxRunTimeout] and its callback gas at most
    /// maxCallbackGas.
    struct Offer {
        uint128 price;
        bool active;
        uint32 minRunTimeout; // the shortest run window (seconds from the match) it can work in
        uint32 maxRunTimeout; // the longest it locks collateral for a run
        uint32 maxCallbackGas; // the most gas it forwards to a client's callback when settling
    }

    /// @notice What a payee lets a client contract spend on jobs it pays for (`authorizeClient`).
    /// All zero: not authorised.
    struct ClientAllowance {
        uint128 remaining; // total payments the client may still escrow; type(uint128).max = no limit
        uint96 maxPayment; // the most one job's payment may be
        uint32 minChallengeWindow; // the client's jobs must leave at least this long to challenge
    }

    /// @notice A mediator slot (`mediatorAt`).
    struct Mediator {
        address account;
        bool active; // registered and not left
        bool suspended; // by the owner; only the owner lifts it
    }

    /// @notice Parameters fixed at deployment.
    struct Config {
        uint16 solverFeeBps; // solver fee as a share of the price
        uint32 collateralBps; // provider collateral as a share of the price (20000 = 2x)
        uint128 mediatorFee; // paid to the mediator for a ruling
        uint128 challengeBond; // paid by a challenger, to the provider if the result stands
        uint32 matchTimeout; // defaults for runJob
        uint32 challengeWindow;
        uint32 mediationTimeout;
        uint32 callbackGas;
    }

    // ------------------------------------------------------------------ events (past tense)

    /// @notice Job `id` was created and its `payment` taken into escrow from `payee` (its
    /// balance here when that covered it, else its tokens). The
    /// terms here (and `inputs`) are what `Job` carries from now on; `createdAt` starts the
    /// match window.
    event JobCreated(
        uint256 indexed id,
        address indexed client,
        address indexed payee,
        bytes32 moduleId,
        string[] inputs,
        uint128 payment,
        uint64 mediators,
        uint40 createdAt,
        uint32 matchTimeout,
        uint32 runTimeout,
        uint32 challengeWindow,
        uint32 mediationTimeout,
        uint32 callbackGas,
        address onlySolver
    );
    /// @notice `solver` matched job `id` to `provider` at `price` (plus `solverFee`) with
    /// mediator index `mediator`; `collateral` was locked from the provider's balance and the
    /// run window started at `matchedAt`.
    event JobMatched(
        uint256 indexed id,
        address indexed provider,
        address indexed solver,
        uint8 mediator,
        uint128 price,
        uint128 solverFee,
        uint128 collateral,
        uint40 matchedAt
    );
    /// @notice The matched `provider` gave job `id` back; its collateral was unlocked, less
    /// `penalty` (a late release, in the second half of the run window) paid to the payee, and
    /// the job is open again.
    event JobReleased(uint256 indexed id, address indexed provider, uint128 penalty);
    /// @notice `provider` posted its result for job `id`: `dataId` (the outputs' CID) and
    /// `resultHash`; the challenge window started at `submittedAt`.
    event ResultSubmitted(uint256 indexed id, address indexed provider, string dataId, bytes32 resultHash, uint40 submittedAt);
    /// @notice `challenger` paid the challenge deposit against job `id`'s result; mediator
    /// index `mediator` now has until `challengedAt + mediationTimeout` to rule.
    event ResultChallenged(uint256 indexed id, address indexed challenger, uint8 mediator, uint40 challengedAt);
    /// @notice Job `id` ended with its result standing: `provider` was paid `price` (and its
    /// collateral unlocked), the solver `solverFee`, and the payee `refund`.
    event JobSettled(uint256 indexed id, address indexed provider, uint128 price, uint128 solverFee, uint128 refund);
    /// @notice `mediator` ruled on job `id`'s challenge: `upheld` (the result was wrong;
    /// `correctDataId` is the mediator's own result) or rejected (`correctDataId` is the
    /// provider's, which stands).
    event ChallengeRuled(uint256 indexed id, address indexed mediator, bool upheld, string correctDataId);
    /// @notice The payee or client (`by`) took unmatched job `id` back; the payment was refunded.
    event JobCancelled(uint256 indexed id, address indexed by);
    /// @notice Nobody matched job `id` before its match deadline; the payment was refunded.
    event JobExpired(uint256 indexed id);
    /// @notice `provider` posted no result for job `id` before its run deadline; its
    /// collateral (`slashed`) and the payment went to the payee.
    event ResultTimedOut(uint256 indexed id, address indexed provider, uint128 slashed);
    /// @notice Mediator index `mediator` did not rule on job `id` in time: the challenger got its
    /// deposit back and the result stands (a JobSettled follows).
    event MediationTimedOut(uint256 indexed id, uint8 mediator);
    /// @notice `mediator`'s re-runs of module `moduleId` (job `id`) disagreed with each other:
    /// it was ruled non-deterministic. Nobody was slashed; the challenger paid the mediator.
    event ModuleRuledNondeterministic(uint256 indexed id, bytes32 indexed moduleId, address indexed mediator);
    /// @notice The `submitResults` callback to `client` for job `id` failed (reverted or ran
    /// out of its gas); the settlement stands.
    event CallbackFailed(uint256 indexed id, address indexed client);

    /// @notice `from` added `amount` to `account`'s balance in the market.
    event Deposited(address indexed account, address indexed from, uint256 amount);
    /// @notice `account` withdrew `amount` of its free balance to `to`.
    event Withdrew(address indexed account, address indexed to, uint256 amount);
    /// @notice `payee` set what `client` may spend on jobs it pays for (all zero: revoked).
    event ClientAuthorized(address indexed payee, address indexed client, ClientAllowance allowance);
    /// @notice `account`'s role bits (ROLE_*) are now `roles`.
    event RolesChanged(address indexed account, uint8 roles);
    /// @notice `provider` now accepts the mediators of bitmask `mediators` (bit i: index i).
    event ProviderMediatorsSet(address indexed provider, uint64 mediators);
    /// @notice `provider` declared the resources its any-module offer is matched against.
    event ResourcesSet(address indexed provider, Resources resources);
    /// @notice `provider` set its offer for `moduleId` (0: any module that fits), with the run
    /// window and callback gas it accepts.
    event OfferSet(
        address indexed provider,
        bytes32 indexed moduleId,
        uint128 price,
        bool active,
        uint32 minRunTimeout,
        uint32 maxRunTimeout,
        uint32 maxCallbackGas
    );
    /// @notice A provider says it has (ready) or no longer has these modules' images at hand,
    /// so solvers can prefer it for them. A hint for solvers only: nothing is stored.
    event ModulesAnnounced(address indexed provider, bytes32[] moduleIds, bool ready);
    /// @notice A provider says where its job outputs can be fetched by CID (IPFS trustless
    /// gateways: `<url>/ipfs/<cid>`), replacing what it announced before. Nothing is stored:
    /// creators, mediators and gateways read the provider's latest announcement from the logs,
    /// and verify every block they fetch against its CID.
    event EndpointsAnnounced(address indexed provider, string[] endpoints);
    /// @notice `mediator` took mediator slot `index` (bit `index` of every mediator bitmask).
    event MediatorRegistered(address indexed mediator, uint8 index);
    /// @notice The mediator of slot `index` left (`active` false) or came back (true).
    event MediatorActiveSet(uint8 indexed index, bool active);
    /// @notice The owner approved `account` to register as a mediator (or withdrew that, which
    /// also takes an active mediator out of new matches).
    event MediatorApproved(address indexed account, bool approved);
    /// @notice The owner suspended (or reinstated) the mediator of slot `index` for new matches.
    event MediatorSuspended(uint8 indexed index, bool suspended);
    /// @notice The owner set the mediators that jobs created without their own set accept.
    event DefaultMediatorsSet(uint64 mediators);
    /// @notice `publisher` published `name:version` (id `moduleId`) with `spec`; versions never change.
    event ModulePublished(bytes32 indexed moduleId, string name, string version, address indexed publisher, ModuleSpec spec);
    /// @notice The module name `name` (and the right to publish its versions) passed from `from`
    /// to `to` (`from` is 0 when the owner assigned a reserved name).
    event ModuleNameTransferred(bytes32 indexed nameHash, string name, address indexed from, address indexed to);

    // ------------------------------------------------------------------ errors

    /// @notice No live job has id `id` (never created, or already final).
    error JobNotFound(uint256 id);
    /// @notice The `Job` passed for `id` does not hash to what is stored: rebuild it from the events.
    error StaleJob(uint256 id);
    /// @notice Job `id` is in `state`, not the one this call acts on.
    error WrongState(uint256 id, JobState state);
    /// @notice The window of job `id`'s current state closed at `deadline`.
    error DeadlinePassed(uint256 id, uint256 deadline);
    /// @notice The window of job `id`'s current state is open until `deadline`: wait for it.
    error DeadlineNotReached(uint256 id, uint256 deadline);
    /// @notice `account` is not a registered solver.
    error NotSolver(address account);
    /// @notice `account` is not a registered resource provider.
    error NotProvider(address account);
    /// @notice An endpoint announcement holds more than MAX_ENDPOINTS URLs.
    error TooManyEndpoints(uint256 count, uint256 max);
    /// @notice Endpoint `index` is empty or longer than MAX_ENDPOINT_LENGTH bytes.
    error InvalidEndpoint(uint256 index);
    /// @notice `account` is not the mediator job `id` was matched with.
    error NotMediatorOfJob(uint256 id, address account);
    /// @notice `account` is neither the payee nor the client of job `id`.
    error NotJobCreator(uint256 id, address account);
    /// @notice `account` is not the provider job `id` was matched to.
    error NotJobProvider(uint256 id, address account);
    /// @notice Job `id` names another solver (`onlySolver`) than `account`.
    error NotJobSolver(uint256 id, address account);
    /// @notice `account` is job `id`'s provider, solver or mediator: it cannot challenge the job.
    error ChallengerIsParty(uint256 id, address account);
    /// @notice Job `id`'s run timeout `runTimeout` is outside what `provider`'s offer accepts.
    error RunTimeoutNotOffered(uint256 id, address provider, uint256 runTimeout);
    /// @notice Job `id`'s callback gas `callbackGas` is above what `provider`'s offer accepts.
    error CallbackGasNotOffered(uint256 id, address provider, uint256 callbackGas);
    /// @notice An active offer needs 0 < maxRunTimeout <= MAX_TIMEOUT, minRunTimeout <=
    /// maxRunTimeout and maxCallbackGas <= MAX_CALLBACK_GAS.
    error InvalidOffer(bytes32 moduleId);
    /// @notice `provider` has no active offer for `moduleId`, nor an any-module offer.
    error NoOffer(address provider, bytes32 moduleId);
    /// @notice `moduleId` needs more than the resources `provider` declared for its any-module offer.
    error ResourcesInsufficient(address provider, bytes32 moduleId);
    /// @notice The offer's price plus the solver fee (`priceWithFee`) exceeds job `id`'s `payment`.
    error PriceAboveCap(uint256 id, uint256 priceWithFee, uint256 payment);
    /// @notice Mediator index `mediator` is not accepted by both job `id` and the provider, or is
    /// not active.
    error MediatorNotAcceptable(uint256 id, uint8 mediator);
    /// @notice `account` has `available` in the market (or the sum would overflow) where `needed` is required.
    error InsufficientBalance(address account, uint256 available, uint256 needed);
    /// @notice `payee` has not authorised `client` (with `authorizeClient`) to create jobs it pays for.
    error ClientNotAuthorized(address payee, address client);
    /// @notice A job of `payment` is more than `payee` lets `client` spend (`allowed`: what is
    /// left, or the per-job maximum).
    error ClientAllowanceExceeded(address payee, address client, uint256 payment, uint256 allowed);
    /// @notice A client's job paid by `payee` may accept only the market's default mediators,
    /// not `mediators`.
    error ClientMediatorsNotDefault(address payee, address client, uint64 mediators);
    /// @notice `payee` requires `client`'s jobs to leave at least `minimum` seconds to challenge.
    error ChallengeWindowTooShort(address payee, address client, uint256 challengeWindow, uint256 minimum);
    /// @notice No module `module` ("name:version") is published.
    error UnknownModule(string module);
    /// @notice `module` is pinned to `pinned`, not the `requested` spec hash.
    error SpecHashMismatch(string module, bytes32 pinned, bytes32 requested);
    /// @notice `name` is not 1-128 of [A-Za-z0-9._/-] starting with a letter or digit.
    error InvalidModuleName(string name);
    /// @notice `version` is not 1-64 of [A-Za-z0-9._+-] starting with a letter or digit.
    error InvalidModuleVersion(string version);
    /// @notice `name:version` is already published; versions never change: publish a new one.
    error ModuleExists(string name, string version);
    /// @notice The module name `name` belongs to `owner`, not the caller.
    error NotNameOwner(string name, address owner);
    /// @notice `name` is a path (it has a '/', like `github.com/org/repo`): the chain cannot
    /// tell who owns it, so the market owner assigns it (`assignModuleName`) before it is published.
    error ModuleNameReserved(string name);
    /// @notice A spec needs a non-zero spec hash and a run timeout of 1 s to MAX_TIMEOUT.
    error InvalidModuleSpec();
    /// @notice The timeout `which` of `value` seconds is out of range: over MAX_TIMEOUT, or under
    /// its floor (a run window under the module's run timeout; a mediation window under the run
    /// window: the mediator must be able to re-run the job).
    error InvalidTimeout(string which, uint256 value);
    /// @notice `callbackGas` is above the market's `max`.
    error CallbackGasTooHigh(uint256 callbackGas, uint256 max);
    /// @notice The transaction left less gas than job `id`'s callback needs (`needed`): send more.
    error InsufficientGasForCallback(uint256 id, uint256 needed);
    /// @notice The dataId/resultHash passed for job `id` are not the result the provider posted.
    error ResultMismatch(uint256 id);
    /// @notice Job `id`'s dataId is empty or longer than MAX_DATA_ID_LENGTH bytes.
    error InvalidDataId(uint256 id);
    /// @notice All MAX_MEDIATORS mediator slots are taken.
    error TooManyMediators();
    /// @notice No mediator has slot `index`.
    error UnknownMediator(uint8 index);
    /// @notice `account` is already an active mediator.
    error AlreadyMediator(address account);
    /// @notice The owner has not approved `account` as a mediator (`approveMediator`).
    error MediatorNotApproved(address account);
    /// @notice The mediator bitmask `mediators` names no mediator slot that is taken.
    error InvalidMediators(uint64 mediators);
    /// @notice An address that must be set is zero.
    error ZeroAddress();
    /// @notice Tokens cannot be withdrawn to `to` (zero, or the market itself).
    error InvalidRecipient(address to);
    /// @notice An amount that must be positive is zero.
    error ZeroAmount();
    /// @notice A deployment parameter is out of range (fees, collateral, timeouts, callback gas).
    error InvalidConfig();
}

/// @title The module directory: `name:version` -> a module pinned by content hash.
interface IModuleDirectory is ILilypadMarketTypes {
    /// @notice Publishes `name:version` with `spec` and returns its id. The first account to
    /// publish a plain name owns it; only its owner publishes more versions of it. A name with
    /// a '/' (a repository path such as `github.com/org/repo`) must first be assigned to its
    /// publisher by the market owner (`assignModuleName`).
    function publishModule(string calldata name, string calldata version, ModuleSpec calldata spec)
        external
        returns (bytes32 id);

    /// @notice Hands the name `name` (and the right to publish new versions of it) to `to`.
    function transferModuleName(string calldata name, address to) external;

    /// @notice Owner: assigns the unclaimed path name `name` (it has a '/') to `to`, who shows
    /// off chain that it owns that repository path; `to` then publishes its versions.
    function assignModuleName(string calldata name, address to) external;

    /// @notice The owner of the module name whose keccak256 is `nameHash` (0 = unclaimed).
    function moduleNameOwner(bytes32 nameHash) external view returns (address);

    /// @notice `keccak256(bytes("name:version"))`: the id jobs carry.
    function moduleId(string calldata name, string calldata version) external pure returns (bytes32);

    /// @notice The published spec of `moduleId_` and when it was published (0 = unknown).
    function getModule(bytes32 moduleId_) external view returns (ModuleSpec memory spec, uint40 publishedAt);
}

/// @title The functions of the Lilypad market (LilypadMarket implements them).
/// @notice Every call that moves a job on takes the job's `id` and its whole current `Job`
/// (rebuilt from the events); see ILilypadMarketTypes.
interface ILilypadMarket is IModuleDirectory {
    // ------------------------------------------------------------------ job steps

    /// @notice Creates a job for `module` ("name:version") with `inputs` ("Key=Value"), paid by
    /// `payee`, with the module's default payment and the market's default timeouts and
    /// mediators. The payment is taken from `payee` now: from its free balance here when that
    /// covers it (`deposit` once, then no token approval or transfer per job), else pulled with
    /// `transferFrom` (`payee` must have approved this contract on the token). When `payee` is
    /// not the caller it must have authorised the caller with `authorizeClient`, whose caps apply
    /// whichever way the payment is taken. Refunds are credited to `payee`'s balance here. A
    /// contract caller is called back with `submitResults` at settlement.
    /// Same selector and ABI as the Lilypad reference's `ILilypadJobManager.runJob`.
    /// @return id The job id (1, 2, ...).
    function runJob(string calldata module, string[] calldata inputs, address payee) external returns (uint256 id);

    /// @notice Creates a job with explicit terms; zero fields of `request` take the defaults.
    /// Floors: the run timeout is at least the module's, the mediation timeout at least the run
    /// timeout (so a mediator can always re-run the job). `request.solver`, when set, is the only
    /// solver that may match the job. Explicit mediators are kept to the slots taken now. The
    /// payment is taken as `runJob` takes it (the payee's balance here, else its token allowance).
    /// @return id The job id (1, 2, ...).
    function createJob(JobRequest calldata request) external returns (uint256 id);

    /// @notice A registered solver (the job's `onlySolver`, when it names one) matches open job
    /// `id` to `provider`, with mediator index `mediator`. Valid when: the provider is
    /// registered and offers the module (or offers resources that fit it), the job's run
    /// timeout and callback gas are within the offer's terms, its price plus the solver fee is
    /// within the job's payment, both sides accept the mediator, the mediator is none of the
    /// job's parties (payee, client, solver, provider), and the provider's balance covers the
    /// collateral, which is locked here.
    function matchJob(uint256 id, Job calldata job, address provider, uint8 mediator) external;

    /// @notice Several `matchJob`s in one transaction (a solver's matches decided together: one
    /// transaction's intrinsic gas and cold reads shared). Items whose job is already final
    /// (cancelled or expired meanwhile) are skipped; any other item that cannot be matched
    /// reverts the call, as `matchJob` would.
    function matchMany(Match[] calldata items) external;

    /// @notice The matched provider gives the job back before its run deadline (it cannot run
    /// it after all); its collateral is unlocked and the job is open to be matched again until
    /// its match deadline. Free in the first half of the run window; later, a share of the
    /// collateral growing from 0 to all of it at the deadline goes to the payee.
    function releaseJob(uint256 id, Job calldata job) external;

    /// @notice The matched provider posts its result: `dataId`, the IPFS CID of the outputs
    /// folder, and `resultHash`, the hash the module's comparison is made on.
    function submitResult(uint256 id, Job calldata job, string calldata dataId, bytes32 resultHash) external;

    /// @notice Several `submitResult`s in one transaction (a provider's results ready together).
    /// Items whose job is already final are skipped; any other item that cannot be posted
    /// reverts the call, as `submitResult` would.
    function submitMany(Submission[] calldata items) external;

    /// @notice After the challenge window, anyone settles: the provider is paid its price and
    /// its collateral unlocked, the solver is paid its fee, the rest of the payment goes back to
    /// the payee, and a contract client gets `submitResults(id, dealId, dataId)`.
    /// @dev Forward enough gas for the callback: the call reverts with InsufficientGasForCallback
    /// rather than let the callback run short.
    function settle(uint256 id, Job calldata job, string calldata dataId, bytes32 resultHash) external;

    /// @notice Settles several jobs in one transaction (e.g. a provider's jobs whose windows
    /// have passed). Items whose job is already final (settled by someone else, or by a client
    /// callback in this very batch) are skipped; any other item that cannot settle reverts the
    /// call.
    function settleMany(Settlement[] calldata items) external;

    /// @notice Within the challenge window anyone but the job's provider, solver and mediator
    /// (the job creator, or an auditor) challenges the result by paying `mediatorFee +
    /// challengeBond`, from their balance here if it covers it, else from their token
    /// allowance. The job's mediator then re-runs the job and rules.
    function challenge(uint256 id, Job calldata job) external;

    /// @notice The mediator found the result wrong. The provider's collateral is slashed: the
    /// mediator's fee comes out of it, and of the rest half goes to the challenger (who also
    /// gets its deposit back: whoever catches a cheat is paid) and half to the payee, who also
    /// gets the whole payment back. A provider that challenges its own wrong result through
    /// another account still loses the fee and half the rest. `correctDataId` is the
    /// mediator's own result, for the job creator.
    function upholdChallenge(uint256 id, Job calldata job, string calldata correctDataId) external;

    /// @notice The mediator found the result right. The mediator is paid its fee from the
    /// challenger's deposit, the provider gets the challenger's bond on top of its price, and
    /// the job settles as if unchallenged (client callback included).
    function rejectChallenge(uint256 id, Job calldata job, string calldata dataId, bytes32 resultHash) external;

    /// @notice The mediator's own re-runs of the module disagreed with each other: the module is
    /// not deterministic, so the provider's result cannot be judged wrong. Nobody is slashed:
    /// the job settles as if unchallenged (client callback included), the challenger pays the
    /// mediator's fee and gets its bond back, and the module is recorded as ruled
    /// non-deterministic. Its publisher gains nothing (publishers are never paid by jobs).
    function ruleNondeterministic(uint256 id, Job calldata job, string calldata dataId, bytes32 resultHash) external;

    /// @notice The payee or the client takes an unmatched job back; the payment is refunded.
    function cancelJob(uint256 id, Job calldata job) external;

    /// @notice Anyone ends a job nobody matched before its match deadline; the payee is refunded.
    function expireJob(uint256 id, Job calldata job) external;

    /// @notice Anyone ends a matched job whose provider posted no result before its run
    /// deadline: the payee gets the payment back and the provider's collateral.
    function timeoutResult(uint256 id, Job calldata job) external;

    /// @notice Anyone ends a challenge the mediator did not rule on in time. Nobody proved the
    /// result wrong, so it stands: the job settles as if unchallenged (client callback
    /// included) and the challenger gets its deposit back. A challenger cannot get the work
    /// for free by choosing a mediator that does not rule.
    function timeoutMediation(uint256 id, Job calldata job, string calldata dataId, bytes32 resultHash) external;

    // ------------------------------------------------------------------ balances

    /// @notice Adds `amount` tokens (pulled from the caller) to `account`'s balance here: a
    /// provider's collateral, or a job creator's prepaid balance, from which its jobs' payments
    /// (and challenge deposits) are then taken without a token approval or transfer each.
    function deposit(address account, uint256 amount) external;

    /// @notice Sends `amount` of the caller's free balance to `to` (not the market itself,
    /// where tokens would be owed to no one).
    function withdraw(uint256 amount, address to) external;

    /// @notice Lets `client` (a contract such as a dapp) create jobs paid by the caller, within
    /// `allowance`: a total it may escrow (type(uint128).max: no total), a most per job, and
    /// the shortest challenge window its jobs may have. Its jobs accept only the market's
    /// default mediators. All zero revokes.
    function authorizeClient(address client, ClientAllowance calldata allowance) external;

    // ------------------------------------------------------------------ roles and offers

    /// @notice Registers the caller as a solver.
    function registerSolver() external;

    /// @notice Registers the caller as a resource provider accepting the `mediators` bitmask
    /// (bit i: mediator index i), kept to the slots taken now, so mediators registered later
    /// are never accepted without a new call; 0 = the market's default set now.
    function registerProvider(uint64 mediators) external;

    /// @notice Registers the caller, which the owner approved (`approveMediator`), as a mediator
    /// (again, if it left) and returns its index.
    function registerMediator() external returns (uint8 index);

    /// @notice Gives up the `roles` bits. Jobs already matched carry on; new matches need the
    /// role. A mediator that leaves still rules on challenges it already has.
    function leaveRoles(uint8 roles) external;

    /// @notice A provider sets the mediators it accepts, as `registerProvider` does.
    function setProviderMediators(uint64 mediators) external;

    /// @notice Offers to run `moduleId_` for `offer.price` under `offer`'s terms (run window,
    /// callback gas); `moduleId_ == 0` offers any module whose requirements fit the caller's
    /// declared resources.
    function setOffer(bytes32 moduleId_, Offer calldata offer) external;

    /// @notice A registered provider announces that it has these modules' images ready (or
    /// no longer has them), so solvers can prefer it for jobs that then need no download.
    /// Emits an event only: it is a hint, and matching does not depend on it.
    function announceModules(bytes32[] calldata moduleIds, bool ready) external;

    /// @notice A registered provider announces where its outputs are served (at most
    /// MAX_ENDPOINTS URLs of 1 to MAX_ENDPOINT_LENGTH bytes; an empty list withdraws them).
    /// Emits an event only: nothing is stored, and what is fetched from them is verified by CID.
    function announceEndpoints(string[] calldata endpoints) external;

    /// @notice A provider declares the resources its any-module offer is matched against.
    function setResources(Resources calldata resources) external;

    /// @notice Owner: the mediators that jobs created without an explicit set accept.
    function setDefaultMediators(uint64 mediators) external;

    /// @notice Owner: approves `account` to register as a mediator, or withdraws the approval
    /// (an active mediator then leaves new matches; it still rules on the challenges it has).
    function approveMediator(address account, bool approved) external;

    /// @notice Owner: suspends (or reinstates) a mediator for new matches. A suspended
    /// mediator still rules on the challenges it already has; it cannot lift the suspension
    /// by registering again.
    function setMediatorSuspended(uint8 index, bool suspended) external;

    // ------------------------------------------------------------------ views

    /// @notice `account`'s free (withdrawable) balance in the market.
    function balanceOf(address account) external view returns (uint256);

    /// @notice `account`'s balance, roles, accepted mediators and mediator slot.
    function accountOf(address account) external view returns (Account memory);

    /// @notice `provider`'s offer for `moduleId_` (0: its any-module offer).
    function offerOf(address provider, bytes32 moduleId_) external view returns (Offer memory);

    /// @notice The resources `provider` declared for its any-module offer.
    function resourcesOf(address provider) external view returns (Resources memory);

    /// @notice The mediator of slot `index`.
    function mediatorAt(uint8 index) external view returns (Mediator memory);

    /// @notice How many mediator slots are taken.
    function mediatorCount() external view returns (uint256);

    /// @notice What `payee` lets `client` spend on jobs it pays for.
    function clientAllowance(address payee, address client) external view returns (ClientAllowance memory);

    /// @notice Whether a mediator ruled module `moduleId_` non-deterministic.
    function ruledNondeterministic(bytes32 moduleId_) external view returns (bool);

    /// @notice The hash stored for live job `id` (0: no live job).
    function jobHash(uint256 id) external view returns (bytes32);

    /// @notice How many jobs were created (ids run from 1 to this).
    function jobCount() external view returns (uint256);

    /// @notice The mediators that jobs created without their own set accept.
    function defaultMediators() external view returns (uint64);

    /// @notice The deposit a challenge costs.
    function challengeDeposit() external view returns (uint256);

    /// @notice The hash the market stores for `job` (== keccak256(abi.encode(job))).
    function hashJob(Job calldata job) external pure returns (bytes32 h);

    /// @notice The price `provider` asks for `moduleId_`, or a revert saying why it has none.
    function priceOf(address provider, bytes32 moduleId_) external view returns (uint256);
}

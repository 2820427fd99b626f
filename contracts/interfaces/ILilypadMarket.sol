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
        uint32 callbackGas
    );
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
    event JobReleased(uint256 indexed id, address indexed provider);
    event ResultSubmitted(uint256 indexed id, address indexed provider, string dataId, bytes32 resultHash, uint40 submittedAt);
    event ResultChallenged(uint256 indexed id, address indexed challenger, uint8 mediator, uint40 challengedAt);
    event JobSettled(uint256 indexed id, address indexed provider, uint128 price, uint128 solverFee, uint128 refund);
    event ChallengeRuled(uint256 indexed id, address indexed mediator, bool upheld, string correctDataId);
    event JobCancelled(uint256 indexed id, address indexed by);
    event JobExpired(uint256 indexed id);
    event ResultTimedOut(uint256 indexed id, address indexed provider, uint128 slashed);
    event MediationTimedOut(uint256 indexed id, uint8 mediator);
    event CallbackFailed(uint256 indexed id, address indexed client);

    event Deposited(address indexed account, address indexed from, uint256 amount);
    event Withdrew(address indexed account, address indexed to, uint256 amount);
    event ClientAuthorized(address indexed payee, address indexed client, bool authorized);
    event RolesChanged(address indexed account, uint8 roles);
    event ProviderMediatorsSet(address indexed provider, uint64 mediators);
    event ResourcesSet(address indexed provider, Resources resources);
    event OfferSet(address indexed provider, bytes32 indexed moduleId, uint128 price, bool active);
    /// @notice A provider says it has (ready) or no longer has these modules' images at hand,
    /// so solvers can prefer it for them. A hint for solvers only: nothing is stored.
    event ModulesAnnounced(address indexed provider, bytes32[] moduleIds, bool ready);
    event MediatorRegistered(address indexed mediator, uint8 index);
    event MediatorActiveSet(uint8 indexed index, bool active);
    event MediatorSuspended(uint8 indexed index, bool suspended);
    event DefaultMediatorsSet(uint64 mediators);
    event ModulePublished(bytes32 indexed moduleId, string name, string version, address indexed publisher, ModuleSpec spec);
    event ModuleNameTransferred(bytes32 indexed nameHash, string name, address indexed from, address indexed to);

    // ------------------------------------------------------------------ errors
    error JobNotFound(uint256 id);
    error StaleJob(uint256 id); // the Job passed does not hash to what is stored
    error WrongState(uint256 id, JobState state);
    error DeadlinePassed(uint256 id, uint256 deadline);
    error DeadlineNotReached(uint256 id, uint256 deadline);
    error NotSolver(address account);
    error NotProvider(address account);
    error NotMediatorOfJob(uint256 id, address account);
    error NotJobCreator(uint256 id, address account);
    error NotJobProvider(uint256 id, address account);
    error NoOffer(address provider, bytes32 moduleId);
    error ResourcesInsufficient(address provider, bytes32 moduleId);
    error PriceAboveCap(uint256 id, uint256 priceWithFee, uint256 payment);
    error MediatorNotAcceptable(uint256 id, uint8 mediator);
    error InsufficientBalance(address account, uint256 available, uint256 needed);
    error ClientNotAuthorized(address payee, address client);
    error UnknownModule(string module);
    error SpecHashMismatch(string module, bytes32 pinned, bytes32 requested);
    error InvalidModuleName(string name);
    error InvalidModuleVersion(string version);
    error ModuleExists(string name, string version);
    error NotNameOwner(string name, address owner);
    error InvalidModuleSpec();
    error InvalidTimeout(string which, uint256 value);
    error CallbackGasTooHigh(uint256 callbackGas, uint256 max);
    error InsufficientGasForCallback(uint256 id, uint256 needed);
    error ResultMismatch(uint256 id);
    error InvalidDataId(uint256 id);
    error TooManyMediators();
    error UnknownMediator(uint8 index);
    error AlreadyMediator(address account);
    error ZeroAddress();
    error InvalidRecipient(address to);
    error ZeroAmount();
    error InvalidConfig();
}

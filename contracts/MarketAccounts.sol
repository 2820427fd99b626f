// SPDX-License-Identifier: Apache-2.0
pragma solidity ^0.8.28;

import {SafeTransferLib} from "solady/utils/SafeTransferLib.sol";
import {ILilypadMarket} from "./interfaces/ILilypadMarket.sol";
import {ModuleDirectory} from "./ModuleDirectory.sol";

/// @title MarketAccounts: who is who in the market, what they offer, and what they hold.
/// @notice Roles (solver, resource provider, mediator), providers' offers, resources and
/// accepted mediators, the mediator slots (taken only by accounts the owner approved), client
/// authorisations with their spending caps, and every account's free balance (deposits in,
/// credits from jobs, withdrawals out). The job steps that use these live in LilypadMarket.
abstract contract MarketAccounts is ModuleDirectory, ILilypadMarket {
    using SafeTransferLib for address;

    /*//////////////////////////////////////////////////////////////
                               CONSTANTS
    //////////////////////////////////////////////////////////////*/

    uint8 public constant ROLE_SOLVER = 1;
    uint8 public constant ROLE_PROVIDER = 2;
    uint8 public constant ROLE_MEDIATOR = 4;
    uint256 public constant MAX_MEDIATORS = 64;
    uint256 public constant MAX_CALLBACK_GAS = 2_000_000;
    uint256 public constant MAX_ENDPOINTS = 4;
    uint256 public constant MAX_ENDPOINT_LENGTH = 256;

    /*//////////////////////////////////////////////////////////////
                              IMMUTABLES
    //////////////////////////////////////////////////////////////*/

    /// @notice The ERC-20 every payment, collateral and deposit is made in.
    address public immutable token;

    /*//////////////////////////////////////////////////////////////
                                STORAGE
    //////////////////////////////////////////////////////////////*/

    /// @dev Read and written by every job creation: one slot.
    struct Counters {
        uint64 defaultMediators;
        uint8 mediatorCount; // slots taken (<= MAX_MEDIATORS)
        uint184 jobCount;
    }

    mapping(address => Account) internal _accounts;
    mapping(address provider => mapping(bytes32 moduleId => Offer)) internal _offers;
    mapping(address provider => Resources) internal _resources;
    mapping(uint256 index => Mediator) internal _mediators;
    mapping(address payee => mapping(address client => ClientAllowance)) internal _clientAllowances;
    Counters internal _counters;

    constructor(address token_, address owner_) {
        if (token_ == address(0) || owner_ == address(0)) revert ZeroAddress();
        token = token_;
        _initializeOwner(owner_);
    }

    /*//////////////////////////////////////////////////////////////
                               BALANCES
    //////////////////////////////////////////////////////////////*/

    /// @inheritdoc ILilypadMarket
    function deposit(address account, uint256 amount) external {
        if (account == address(0)) revert ZeroAddress();
        if (amount == 0) revert ZeroAmount();
        _credit(account, amount);
        emit Deposited(account, msg.sender, amount);
        token.safeTransferFrom(msg.sender, address(this), amount);
    }

    /// @inheritdoc ILilypadMarket
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

    /// @inheritdoc ILilypadMarket
    function authorizeClient(address client, ClientAllowance calldata allowance) external {
        if (client == address(0)) revert ZeroAddress();
        _clientAllowances[msg.sender][client] = allowance;
        emit ClientAuthorized(msg.sender, client, allowance);
    }

    /*//////////////////////////////////////////////////////////////
                                 ROLES
    //////////////////////////////////////////////////////////////*/

    /// @inheritdoc ILilypadMarket
    function registerSolver() external {
        _setRoles(msg.sender, _accounts[msg.sender].roles | ROLE_SOLVER);
    }

    /// @inheritdoc ILilypadMarket
    function registerProvider(uint64 mediators) external {
        _setProviderMediators(mediators);
        _setRoles(msg.sender, _accounts[msg.sender].roles | ROLE_PROVIDER);
    }

    /// @inheritdoc ILilypadMarket
    function registerMediator() external returns (uint8 index) {
        Account storage a = _accounts[msg.sender];
        if (!a.mediatorApproved) revert MediatorNotApproved(msg.sender);
        uint8 slot = a.mediatorSlot;
        if (slot == 0) {
            uint8 n = _counters.mediatorCount;
            if (n == MAX_MEDIATORS) revert TooManyMediators();
            index = n;
            _counters.mediatorCount = n + 1;
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

    /// @inheritdoc ILilypadMarket
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

    /// @inheritdoc ILilypadMarket
    function setProviderMediators(uint64 mediators) external {
        _setProviderMediators(mediators);
    }

    /*//////////////////////////////////////////////////////////////
                                OFFERS
    //////////////////////////////////////////////////////////////*/

    /// @inheritdoc ILilypadMarket
    function setOffer(bytes32 moduleId_, Offer calldata offer) external {
        if (
            offer.active
                && (
                    offer.maxRunTimeout == 0 || offer.maxRunTimeout > MAX_TIMEOUT
                        || offer.minRunTimeout > offer.maxRunTimeout || offer.maxCallbackGas > MAX_CALLBACK_GAS
                )
        ) revert InvalidOffer(moduleId_);
        _offers[msg.sender][moduleId_] = offer;
        emit OfferSet(
            msg.sender,
            moduleId_,
            offer.price,
            offer.active,
            offer.minRunTimeout,
            offer.maxRunTimeout,
            offer.maxCallbackGas
        );
    }

    /// @inheritdoc ILilypadMarket
    function announceModules(bytes32[] calldata moduleIds, bool ready) external {
        // slither-disable-next-line incorrect-equality (a role bit, not a balance; see contracts/SLITHER.md)
        if (_accounts[msg.sender].roles & ROLE_PROVIDER == 0) revert NotProvider(msg.sender);
        emit ModulesAnnounced(msg.sender, moduleIds, ready);
    }

    /// @inheritdoc ILilypadMarket
    function announceEndpoints(string[] calldata endpoints) external {
        // slither-disable-next-line incorrect-equality (a role bit, not a balance; see contracts/SLITHER.md)
        if (_accounts[msg.sender].roles & ROLE_PROVIDER == 0) revert NotProvider(msg.sender);
        uint256 n = endpoints.length;
        if (n > MAX_ENDPOINTS) revert TooManyEndpoints(n, MAX_ENDPOINTS);
        for (uint256 i; i < n; ++i) {
            uint256 len = bytes(endpoints[i]).length;
            if (len == 0 || len > MAX_ENDPOINT_LENGTH) revert InvalidEndpoint(i);
        }
        emit EndpointsAnnounced(msg.sender, endpoints);
    }

    /// @inheritdoc ILilypadMarket
    function setResources(Resources calldata resources) external {
        _resources[msg.sender] = resources;
        emit ResourcesSet(msg.sender, resources);
    }

    /*//////////////////////////////////////////////////////////////
                           OWNER: MEDIATORS
    //////////////////////////////////////////////////////////////*/

    /// @inheritdoc ILilypadMarket
    function setDefaultMediators(uint64 mediators) external onlyOwner {
        _counters.defaultMediators = mediators;
        emit DefaultMediatorsSet(mediators);
    }

    /// @inheritdoc ILilypadMarket
    function approveMediator(address account, bool approved) external onlyOwner {
        if (account == address(0)) revert ZeroAddress();
        Account storage a = _accounts[account];
        a.mediatorApproved = approved;
        emit MediatorApproved(account, approved);
        uint8 slot = a.mediatorSlot;
        if (!approved && slot != 0 && _mediators[slot - 1].active) {
            _mediators[slot - 1].active = false;
            emit MediatorActiveSet(slot - 1, false);
        }
    }

    /// @inheritdoc ILilypadMarket
    function setMediatorSuspended(uint8 index, bool suspended) external onlyOwner {
        if (index >= _counters.mediatorCount) revert UnknownMediator(index);
        _mediators[index].suspended = suspended;
        emit MediatorSuspended(index, suspended);
    }

    /*//////////////////////////////////////////////////////////////
                                 VIEWS
    //////////////////////////////////////////////////////////////*/

    /// @inheritdoc ILilypadMarket
    function balanceOf(address account) external view returns (uint256) {
        return _accounts[account].balance;
    }

    /// @inheritdoc ILilypadMarket
    function accountOf(address account) external view returns (Account memory) {
        return _accounts[account];
    }

    /// @inheritdoc ILilypadMarket
    function offerOf(address provider, bytes32 moduleId_) external view returns (Offer memory) {
        return _offers[provider][moduleId_];
    }

    /// @inheritdoc ILilypadMarket
    function resourcesOf(address provider) external view returns (Resources memory) {
        return _resources[provider];
    }

    /// @inheritdoc ILilypadMarket
    function mediatorAt(uint8 index) external view returns (Mediator memory) {
        return _mediators[index];
    }

    /// @inheritdoc ILilypadMarket
    function mediatorCount() external view returns (uint256) {
        return _counters.mediatorCount;
    }

    /// @inheritdoc ILilypadMarket
    function defaultMediators() external view returns (uint64) {
        return _counters.defaultMediators;
    }

    /// @inheritdoc ILilypadMarket
    function clientAllowance(address payee, address client) external view returns (ClientAllowance memory) {
        return _clientAllowances[payee][client];
    }

    /// @inheritdoc ILilypadMarket
    function priceOf(address provider, bytes32 moduleId_) external view returns (uint256) {
        return _offerFor(provider, moduleId_).price;
    }

    /*//////////////////////////////////////////////////////////////
                               INTERNALS
    //////////////////////////////////////////////////////////////*/

    function _setRoles(address account, uint8 roles) private {
        _accounts[account].roles = roles;
        emit RolesChanged(account, roles);
    }

    /// @dev The caller's accepted mediators: `mediators` kept to the slots taken now (so "all"
    /// never takes in a mediator registered later), or the default set for 0.
    function _setProviderMediators(uint64 mediators) private {
        Counters memory c = _counters;
        uint64 accepted = mediators == 0 ? c.defaultMediators : mediators & _takenSlots(c.mediatorCount);
        if (accepted == 0) revert InvalidMediators(mediators);
        _accounts[msg.sender].mediators = accepted;
        emit ProviderMediatorsSet(msg.sender, accepted);
    }

    /// @dev The bitmask of the first `count` mediator slots.
    function _takenSlots(uint8 count) internal pure returns (uint64) {
        return count == MAX_MEDIATORS ? type(uint64).max : (uint64(1) << count) - 1;
    }

    /// @dev Checks that the caller, a client, may create `job` paid by `payee`: within what the
    /// payee allowed it (total, per job, challenge window) and with the market's default
    /// mediators only (so it cannot bring a mediator of its own to judge the payee's case);
    /// takes the payment off what it may still spend.
    function _spendAllowance(address payee, Job memory job, uint64 defaultMediators_) internal {
        address client = msg.sender;
        ClientAllowance memory a = _clientAllowances[payee][client];
        // slither-disable-next-line incorrect-equality (all zero = never authorised or revoked; see contracts/SLITHER.md)
        if (a.remaining == 0 && a.maxPayment == 0) revert ClientNotAuthorized(payee, client);
        uint256 payment = job.payment;
        if (payment > a.maxPayment) revert ClientAllowanceExceeded(payee, client, payment, a.maxPayment);
        if (payment > a.remaining) revert ClientAllowanceExceeded(payee, client, payment, a.remaining);
        if (job.challengeWindow < a.minChallengeWindow) {
            revert ChallengeWindowTooShort(payee, client, job.challengeWindow, a.minChallengeWindow);
        }
        if (job.mediators & ~defaultMediators_ != 0) revert ClientMediatorsNotDefault(payee, client, job.mediators);
        if (a.remaining != type(uint128).max && payment != 0) {
            unchecked {
                _clientAllowances[payee][client].remaining = a.remaining - uint128(payment);
            }
        }
    }

    /// @dev The provider's offer for `moduleId_`, else its any-module offer if the module's
    /// requirements fit its declared resources; reverts saying why there is none.
    function _offerFor(address provider, bytes32 moduleId_) internal view returns (Offer memory offer) {
        offer = _offers[provider][moduleId_];
        if (offer.active) return offer;
        offer = _offers[provider][bytes32(0)];
        if (!offer.active) revert NoOffer(provider, moduleId_);
        Resources memory have = _resources[provider];
        Resources memory need = _moduleRequirements[moduleId_];
        if (
            need.cpuMilli > have.cpuMilli || need.ramMb > have.ramMb || need.diskMb > have.diskMb
                || need.gpus > have.gpus || (need.gpus != 0 && need.vramMb > have.vramMb)
        ) revert ResourcesInsufficient(provider, moduleId_);
    }

    /// @dev Adds `amount` to `account`'s free balance.
    function _credit(address account, uint256 amount) internal {
        Account storage a = _accounts[account];
        uint256 balance = uint256(a.balance) + amount;
        if (balance > type(uint128).max) revert InsufficientBalance(account, type(uint128).max, balance);
        a.balance = uint128(balance);
    }
}

// SPDX-License-Identifier: Apache-2.0
pragma solidity ^0.8.28;

import {Ownable} from "solady/auth/Ownable.sol";
import {SafeTransferLib} from "solady/utils/SafeTransferLib.sol";
import {ILilypadMarket} from "./interfaces/ILilypadMarket.sol";
import {ModuleDirectory} from "./ModuleDirectory.sol";

/// @title MarketAccounts: who is who in the market, what they offer, and what they hold.
/// @notice Roles (solver, resource provider, mediator), providers' offers, resources and
/// accepted mediators, the mediator slots, client authorisations, and every account's free
/// balance (deposits in, credits from jobs, withdrawals out). The job steps that use these
/// live in LilypadMarket.
abstract contract MarketAccounts is ModuleDirectory, Ownable, ILilypadMarket {
    using SafeTransferLib for address;

    /*//////////////////////////////////////////////////////////////
                               CONSTANTS
    //////////////////////////////////////////////////////////////*/

    uint8 public constant ROLE_SOLVER = 1;
    uint8 public constant ROLE_PROVIDER = 2;
    uint8 public constant ROLE_MEDIATOR = 4;
    uint256 public constant MAX_MEDIATORS = 64;

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
        uint192 jobCount;
    }

    mapping(address => Account) internal _accounts;
    mapping(address provider => mapping(bytes32 moduleId => Offer)) internal _offers;
    mapping(address provider => Resources) internal _resources;
    mapping(uint256 index => Mediator) internal _mediators;
    /// @inheritdoc ILilypadMarket
    uint256 public override mediatorCount;
    /// @inheritdoc ILilypadMarket
    mapping(address payee => mapping(address client => bool)) public override isClientAuthorized;
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
    function authorizeClient(address client, bool authorized) external {
        if (client == address(0)) revert ZeroAddress();
        isClientAuthorized[msg.sender][client] = authorized;
        emit ClientAuthorized(msg.sender, client, authorized);
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
        _accounts[msg.sender].mediators = mediators;
        emit ProviderMediatorsSet(msg.sender, mediators);
        _setRoles(msg.sender, _accounts[msg.sender].roles | ROLE_PROVIDER);
    }

    /// @inheritdoc ILilypadMarket
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
        _accounts[msg.sender].mediators = mediators;
        emit ProviderMediatorsSet(msg.sender, mediators);
    }

    /*//////////////////////////////////////////////////////////////
                                OFFERS
    //////////////////////////////////////////////////////////////*/

    /// @inheritdoc ILilypadMarket
    function setOffer(bytes32 moduleId_, uint128 price, bool active) external {
        _offers[msg.sender][moduleId_] = Offer({price: price, active: active});
        emit OfferSet(msg.sender, moduleId_, price, active);
    }

    /// @inheritdoc ILilypadMarket
    function announceModules(bytes32[] calldata moduleIds, bool ready) external {
        if (_accounts[msg.sender].roles & ROLE_PROVIDER == 0) revert NotProvider(msg.sender);
        emit ModulesAnnounced(msg.sender, moduleIds, ready);
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
    function setMediatorSuspended(uint8 index, bool suspended) external onlyOwner {
        if (index >= mediatorCount) revert UnknownMediator(index);
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
    function defaultMediators() external view returns (uint64) {
        return _counters.defaultMediators;
    }

    /// @inheritdoc ILilypadMarket
    function priceOf(address provider, bytes32 moduleId_) external view returns (uint256) {
        return _priceOf(provider, moduleId_);
    }

    /*//////////////////////////////////////////////////////////////
                               INTERNALS
    //////////////////////////////////////////////////////////////*/

    function _setRoles(address account, uint8 roles) private {
        _accounts[account].roles = roles;
        emit RolesChanged(account, roles);
    }

    /// @dev The provider's offer for `moduleId_`, else its any-module offer if the module's
    /// requirements fit its declared resources; reverts saying why there is none.
    function _priceOf(address provider, bytes32 moduleId_) internal view returns (uint256) {
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

    /// @dev Adds `amount` to `account`'s free balance.
    function _credit(address account, uint256 amount) internal {
        Account storage a = _accounts[account];
        uint256 balance = uint256(a.balance) + amount;
        if (balance > type(uint128).max) revert InsufficientBalance(account, type(uint128).max, balance);
        a.balance = uint128(balance);
    }
}

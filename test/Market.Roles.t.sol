// SPDX-License-Identifier: Apache-2.0
pragma solidity ^0.8.28;

import {MarketFixture, JobFlow} from "./utils/MarketFixture.sol";
import {LilypadMarket} from "../contracts/LilypadMarket.sol";

/// @notice Balances (deposit/withdraw), client authorisation, roles, offers, resources, the
/// owner's settings, ownership and the account views.
contract MarketRolesTest is MarketFixture {
    // ================================================================ deposit

    function test_deposit_creditsAccountAndPullsTokens() public {
        uint256 before = token.balanceOf(alice);
        uint256 held = token.balanceOf(address(market));
        vm.expectEmit(true, true, true, true, address(market));
        emit Deposited(alice, alice, 7 ether);
        vm.prank(alice);
        market.deposit(alice, 7 ether);
        assertEq(market.balanceOf(alice), 7 ether, "credited");
        assertEq(token.balanceOf(alice), before - 7 ether, "pulled");
        assertEq(token.balanceOf(address(market)), held + 7 ether, "held");
    }

    function test_deposit_forAnotherAccount() public {
        vm.expectEmit(true, true, true, true, address(market));
        emit Deposited(provider, alice, 3 ether);
        vm.prank(alice);
        market.deposit(provider, 3 ether);
        assertEq(market.balanceOf(provider), PROVIDER_DEPOSIT + 3 ether, "provider credited");
        assertEq(market.balanceOf(alice), 0, "alice not");
    }

    function test_deposit_revertsOnZeroAccount() public {
        vm.expectRevert(abi.encodeWithSelector(ZeroAddress.selector));
        vm.prank(alice);
        market.deposit(address(0), 1);
    }

    function test_deposit_revertsOnZeroAmount() public {
        vm.expectRevert(abi.encodeWithSelector(ZeroAmount.selector));
        vm.prank(alice);
        market.deposit(alice, 0);
    }

    function test_deposit_revertsWithoutAllowance() public {
        vm.expectRevert(TRANSFER_FROM_FAILED);
        vm.prank(stranger);
        market.deposit(stranger, 1);
    }

    // ================================================================ withdraw

    function test_withdraw_sendsTokensAndDebits() public {
        uint256 before = token.balanceOf(bob);
        vm.expectEmit(true, true, true, true, address(market));
        emit Withdrew(provider, bob, 40 ether);
        vm.prank(provider);
        market.withdraw(40 ether, bob);
        assertEq(market.balanceOf(provider), PROVIDER_DEPOSIT - 40 ether, "debited");
        assertEq(token.balanceOf(bob), before + 40 ether, "sent to `to`");
    }

    function test_withdraw_wholeBalance() public {
        vm.prank(provider);
        market.withdraw(PROVIDER_DEPOSIT, provider);
        assertEq(market.balanceOf(provider), 0, "empty");
    }

    function test_withdraw_revertsOnZeroRecipient() public {
        vm.expectRevert(abi.encodeWithSelector(InvalidRecipient.selector, address(0)));
        vm.prank(provider);
        market.withdraw(1, address(0));
    }

    /// @dev Tokens sent to the market itself would be owed to no one.
    function test_withdraw_revertsWhenSendingToTheMarket() public {
        vm.expectRevert(abi.encodeWithSelector(InvalidRecipient.selector, address(market)));
        vm.prank(provider);
        market.withdraw(1 ether, address(market));
    }

    function test_withdraw_revertsOnZeroAmount() public {
        vm.expectRevert(abi.encodeWithSelector(ZeroAmount.selector));
        vm.prank(provider);
        market.withdraw(0, provider);
    }

    function test_withdraw_revertsOnInsufficientBalance() public {
        vm.expectRevert(abi.encodeWithSelector(InsufficientBalance.selector, provider, PROVIDER_DEPOSIT, PROVIDER_DEPOSIT + 1));
        vm.prank(provider);
        market.withdraw(PROVIDER_DEPOSIT + 1, provider);
    }

    function test_withdraw_lockedCollateralIsNotWithdrawable() public {
        _matchedJob(); // locks 10 ether of provider's 100
        uint256 free = PROVIDER_DEPOSIT - 10 ether;
        vm.expectRevert(abi.encodeWithSelector(InsufficientBalance.selector, provider, free, PROVIDER_DEPOSIT));
        vm.prank(provider);
        market.withdraw(PROVIDER_DEPOSIT, provider);
        vm.prank(provider);
        market.withdraw(free, provider);
    }

    function test_withdraw_revertsForHugeAmount() public {
        vm.expectRevert(abi.encodeWithSelector(InsufficientBalance.selector, provider, PROVIDER_DEPOSIT, type(uint256).max));
        vm.prank(provider);
        market.withdraw(type(uint256).max, provider);
    }

    function test_withdraw_earningsAfterSettlement() public {
        (uint256 id, Job memory job) = _submittedJob();
        _pastChallengeWindow(job);
        _settle(id, job);
        uint256 before = token.balanceOf(solver);
        vm.prank(solver);
        market.withdraw(0.25 ether, solver);
        assertEq(token.balanceOf(solver), before + 0.25 ether, "fee withdrawn");
        assertEq(market.balanceOf(solver), 0, "nothing left");
    }

    // ================================================================ authorizeClient

    function test_authorizeClient_setsAndRevokes() public {
        ClientAllowance memory a = ClientAllowance({remaining: 50 ether, maxPayment: 10 ether, minChallengeWindow: 120});
        vm.expectEmit(true, true, true, true, address(market));
        emit ClientAuthorized(alice, bob, a);
        vm.prank(alice);
        market.authorizeClient(bob, a);
        assertEq(market.clientAllowance(alice, bob).remaining, 50 ether, "remaining");
        assertEq(market.clientAllowance(alice, bob).maxPayment, 10 ether, "per job");
        assertEq(market.clientAllowance(alice, bob).minChallengeWindow, 120, "window floor");
        assertEq(market.clientAllowance(bob, alice).maxPayment, 0, "one way");
        vm.expectEmit(true, true, true, true, address(market));
        emit ClientAuthorized(alice, bob, _revoked());
        vm.prank(alice);
        market.authorizeClient(bob, _revoked());
        assertEq(market.clientAllowance(alice, bob).remaining, 0, "revoked");
    }

    function test_authorizeClient_revertsOnZeroAddress() public {
        vm.expectRevert(abi.encodeWithSelector(ZeroAddress.selector));
        vm.prank(alice);
        market.authorizeClient(address(0), _unlimited());
    }

    // ================================================================ registerSolver

    function test_registerSolver_setsRoleAndEmits() public {
        vm.expectEmit(true, true, true, true, address(market));
        emit RolesChanged(stranger, ROLE_SOLVER);
        vm.prank(stranger);
        market.registerSolver();
        assertEq(market.accountOf(stranger).roles, ROLE_SOLVER, "solver");
    }

    function test_registerSolver_keepsOtherRoles() public {
        vm.prank(provider);
        market.registerSolver();
        assertEq(market.accountOf(provider).roles, ROLE_SOLVER | ROLE_PROVIDER, "both");
        vm.prank(provider);
        market.registerSolver(); // idempotent
        assertEq(market.accountOf(provider).roles, ROLE_SOLVER | ROLE_PROVIDER, "still both");
    }

    // ================================================================ registerProvider

    function test_registerProvider_setsRoleAndMediators() public {
        _addMediator(bob); // 1
        _addMediator(auditor); // 2
        vm.expectEmit(true, true, true, true, address(market));
        emit ProviderMediatorsSet(stranger, 0x5);
        vm.expectEmit(true, true, true, true, address(market));
        emit RolesChanged(stranger, ROLE_PROVIDER);
        vm.prank(stranger);
        market.registerProvider(0x5);
        LilypadMarket.Account memory a = market.accountOf(stranger);
        assertEq(a.roles, ROLE_PROVIDER, "role");
        assertEq(a.mediators, 0x5, "mediators");
        assertEq(a.balance, 0, "no balance");
    }

    function test_registerProvider_againReplacesMediators() public {
        _addMediator(bob); // 1
        vm.prank(provider);
        market.registerProvider(0x2);
        assertEq(market.accountOf(provider).mediators, 0x2, "replaced");
        assertEq(market.accountOf(provider).roles, ROLE_PROVIDER, "role kept");
    }

    /// @dev Issue 12, sequence 3: providers registered with the mask u64::MAX accepted every
    /// mediator, including one an attacker registered later. "All" now means the slots taken
    /// when the provider set it.
    function test_registerProvider_allMediatorsNeverIncludesOnesRegisteredLater() public {
        vm.prank(stranger);
        market.registerProvider(type(uint64).max);
        assertEq(market.accountOf(stranger).mediators, 0x1, "the one mediator there is");
        _addMediator(bob); // index 1, later
        assertEq(market.accountOf(stranger).mediators & 0x2, 0, "not accepted without a new call");
    }

    function test_registerProvider_zeroTakesTheDefaultSet() public {
        vm.prank(stranger);
        market.registerProvider(0);
        assertEq(market.accountOf(stranger).mediators, market.defaultMediators(), "default set");
    }

    function test_registerProvider_revertsWhenNoNamedMediatorExists() public {
        vm.expectRevert(abi.encodeWithSelector(InvalidMediators.selector, uint64(0x6)));
        vm.prank(stranger);
        market.registerProvider(0x6);
    }

    // ================================================================ registerMediator

    function test_registerMediator_assignsConsecutiveIndexes() public {
        assertEq(mediatorIndex, 0, "fixture mediator");
        vm.prank(owner);
        market.approveMediator(auditor, true);
        vm.expectEmit(true, true, true, true, address(market));
        emit MediatorRegistered(auditor, 1);
        vm.expectEmit(true, true, true, true, address(market));
        emit RolesChanged(auditor, ROLE_MEDIATOR);
        vm.prank(auditor);
        uint8 index = market.registerMediator();
        assertEq(index, 1, "second mediator");
        assertEq(market.mediatorCount(), 2, "count");
        LilypadMarket.Mediator memory m = market.mediatorAt(1);
        assertEq(m.account, auditor, "account");
        assertTrue(m.active, "active");
        assertEq(market.accountOf(auditor).mediatorSlot, 2, "slot = index + 1");
    }

    /// @dev Issue 12, sequences 3 and 5: anyone could register as a mediator (then judge its own
    /// case), and 64 registrations filled every slot for good.
    function test_registerMediator_revertsUnlessTheOwnerApproved() public {
        vm.expectRevert(abi.encodeWithSelector(MediatorNotApproved.selector, stranger));
        vm.prank(stranger);
        market.registerMediator();
        assertEq(market.mediatorCount(), 1, "no slot taken");
        vm.expectRevert(UNAUTHORIZED);
        vm.prank(stranger);
        market.approveMediator(stranger, true);
    }

    function test_approveMediator_withdrawnApprovalTakesTheMediatorOutOfNewMatches() public {
        vm.expectEmit(true, true, true, true, address(market));
        emit MediatorApproved(mediator, false);
        vm.expectEmit(true, true, true, true, address(market));
        emit MediatorActiveSet(mediatorIndex, false);
        vm.prank(owner);
        market.approveMediator(mediator, false);
        assertFalse(market.mediatorAt(mediatorIndex).active, "inactive");
        vm.expectRevert(abi.encodeWithSelector(MediatorNotApproved.selector, mediator));
        vm.prank(mediator);
        market.registerMediator();
    }

    function test_registerMediator_revertsWhenAlreadyActive() public {
        vm.expectRevert(abi.encodeWithSelector(AlreadyMediator.selector, mediator));
        vm.prank(mediator);
        market.registerMediator();
    }

    function test_registerMediator_reRegisterAfterLeavingKeepsIndex() public {
        _addMediator(auditor); // index 1
        vm.prank(mediator);
        market.leaveRoles(ROLE_MEDIATOR);
        assertFalse(market.mediatorAt(mediatorIndex).active, "inactive");
        vm.expectEmit(true, true, true, true, address(market));
        emit MediatorActiveSet(mediatorIndex, true);
        vm.prank(mediator);
        uint8 index = market.registerMediator();
        assertEq(index, mediatorIndex, "same index");
        assertEq(market.mediatorCount(), 2, "no new slot");
        assertTrue(market.mediatorAt(mediatorIndex).active, "active again");
        assertEq(market.accountOf(mediator).roles, ROLE_MEDIATOR, "role again");
    }

    function test_registerMediator_revertsWithTooManyMediators() public {
        for (uint256 i = 1; i < 64; ++i) {
            uint8 index = _addMediator(address(uint160(0x10000 + i)));
            assertEq(index, i, "index");
        }
        assertEq(market.mediatorCount(), 64, "full");
        vm.prank(owner);
        market.approveMediator(stranger, true);
        vm.expectRevert(abi.encodeWithSelector(TooManyMediators.selector));
        vm.prank(stranger);
        market.registerMediator();
        // a mediator that left can still come back: it keeps its slot
        vm.prank(address(uint160(0x10000 + 63)));
        market.leaveRoles(ROLE_MEDIATOR);
        vm.prank(address(uint160(0x10000 + 63)));
        assertEq(market.registerMediator(), 63, "kept slot 63");
    }

    /// @dev The owner's suspension must stick: the mediator cannot lift it by re-registering,
    /// nor by leaving and re-registering; only the owner can.
    function test_registerMediator_cannotLiftOwnerSuspension() public {
        vm.prank(owner);
        market.setMediatorSuspended(mediatorIndex, true);
        vm.expectRevert(abi.encodeWithSelector(AlreadyMediator.selector, mediator));
        vm.prank(mediator);
        market.registerMediator();
        vm.prank(mediator);
        market.leaveRoles(ROLE_MEDIATOR);
        vm.prank(mediator);
        assertEq(market.registerMediator(), mediatorIndex, "back in its slot");
        assertTrue(market.mediatorAt(mediatorIndex).active, "active");
        assertTrue(market.mediatorAt(mediatorIndex).suspended, "still suspended");
        (uint256 id, Job memory job) = _run(alice);
        vm.expectRevert(abi.encodeWithSelector(MediatorNotAcceptable.selector, id, mediatorIndex));
        vm.prank(solver);
        market.matchJob(id, job, provider, mediatorIndex);
        // the owner lifts it; matches go through again
        vm.prank(owner);
        market.setMediatorSuspended(mediatorIndex, false);
        assertFalse(market.mediatorAt(mediatorIndex).suspended, "lifted");
        vm.prank(solver);
        market.matchJob(id, job, provider, mediatorIndex);
    }

    // ================================================================ leaveRoles

    function test_leaveRoles_clearsOnlyTheGivenBits() public {
        vm.startPrank(provider);
        market.registerSolver();
        vm.expectEmit(true, true, true, true, address(market));
        emit RolesChanged(provider, ROLE_PROVIDER);
        market.leaveRoles(ROLE_SOLVER);
        vm.stopPrank();
        assertEq(market.accountOf(provider).roles, ROLE_PROVIDER, "provider left");
    }

    function test_leaveRoles_mediatorDeactivatesItsSlot() public {
        vm.expectEmit(true, true, true, true, address(market));
        emit MediatorActiveSet(mediatorIndex, false);
        vm.expectEmit(true, true, true, true, address(market));
        emit RolesChanged(mediator, 0);
        vm.prank(mediator);
        market.leaveRoles(ROLE_MEDIATOR);
        assertFalse(market.mediatorAt(mediatorIndex).active, "inactive");
        assertEq(market.mediatorAt(mediatorIndex).account, mediator, "slot kept");
    }

    function test_leaveRoles_rolesNotHeldIsHarmless() public {
        vm.prank(stranger);
        market.leaveRoles(ROLE_SOLVER | ROLE_PROVIDER | ROLE_MEDIATOR);
        assertEq(market.accountOf(stranger).roles, 0, "none");
        assertEq(market.mediatorCount(), 1, "no mediator slot touched");
    }

    function test_leaveRoles_matchedJobCarriesOn() public {
        (uint256 id, Job memory job) = _matchedJob();
        vm.prank(provider);
        market.leaveRoles(ROLE_PROVIDER);
        job = _submit(id, job);
        _pastChallengeWindow(job);
        _settle(id, job);
    }

    // ================================================================ provider settings

    function test_setProviderMediators_setsAndEmits() public {
        for (uint256 i = 1; i < 8; ++i) _addMediator(address(uint160(0x10000 + i)));
        vm.expectEmit(true, true, true, true, address(market));
        emit ProviderMediatorsSet(provider, 0xF0);
        vm.prank(provider);
        market.setProviderMediators(0xFF0); // slots 8-11 are not taken: kept out
        assertEq(market.accountOf(provider).mediators, 0xF0, "mediators");
        assertEq(market.accountOf(provider).roles, ROLE_PROVIDER, "roles untouched");
    }

    function test_setOffer_setsAndEmits() public {
        Offer memory offer = Offer({price: 4 ether, active: true, minRunTimeout: 30, maxRunTimeout: 900, maxCallbackGas: 50_000});
        vm.expectEmit(true, true, true, true, address(market));
        emit OfferSet(provider, moduleId, 4 ether, true, 30, 900, 50_000);
        vm.prank(provider);
        market.setOffer(moduleId, offer);
        LilypadMarket.Offer memory o = market.offerOf(provider, moduleId);
        assertEq(o.price, 4 ether, "price");
        assertTrue(o.active, "active");
        assertEq(o.minRunTimeout, 30, "min run");
        assertEq(o.maxRunTimeout, 900, "max run");
        assertEq(o.maxCallbackGas, 50_000, "callback gas");
        vm.prank(provider);
        market.setOffer(moduleId, _offer(4 ether, false));
        assertFalse(market.offerOf(provider, moduleId).active, "withdrawn");
    }

    function test_setOffer_revertsOnInvalidTerms() public {
        Offer memory o = _offer(1 ether, true);
        o.maxRunTimeout = 0;
        _expectInvalidOffer(o);
        o = _offer(1 ether, true);
        o.maxRunTimeout = uint32(market.MAX_TIMEOUT()) + 1;
        _expectInvalidOffer(o);
        o = _offer(1 ether, true);
        o.minRunTimeout = 100;
        o.maxRunTimeout = 99;
        _expectInvalidOffer(o);
        o = _offer(1 ether, true);
        o.maxCallbackGas = uint32(market.MAX_CALLBACK_GAS()) + 1;
        _expectInvalidOffer(o);
        o.active = false; // a withdrawn offer's terms are not checked
        vm.prank(provider);
        market.setOffer(moduleId, o);
    }

    function _expectInvalidOffer(Offer memory o) internal {
        vm.expectRevert(abi.encodeWithSelector(InvalidOffer.selector, moduleId));
        vm.prank(provider);
        market.setOffer(moduleId, o);
    }

    function test_setOffer_wildcard() public {
        vm.prank(stranger);
        market.setOffer(bytes32(0), _offer(1 ether, true));
        assertEq(market.offerOf(stranger, bytes32(0)).price, 1 ether, "wildcard");
    }

    function test_announceModules_emitsForRegisteredProvider() public {
        bytes32[] memory ids = new bytes32[](2);
        ids[0] = moduleId;
        ids[1] = keccak256("other:1");
        vm.expectEmit(true, true, true, true, address(market));
        emit ModulesAnnounced(provider, ids, true);
        vm.prank(provider);
        market.announceModules(ids, true);
    }

    function test_announceModules_revertsForNonProvider() public {
        bytes32[] memory ids = new bytes32[](1);
        ids[0] = moduleId;
        vm.expectRevert(abi.encodeWithSelector(NotProvider.selector, stranger));
        vm.prank(stranger);
        market.announceModules(ids, true);
    }

    function test_announceEndpoints_emitsForRegisteredProvider() public {
        string[] memory urls = new string[](2);
        urls[0] = "https://provider.example:8090";
        urls[1] = "http://10.0.0.7:8090";
        vm.expectEmit(true, true, true, true, address(market));
        emit EndpointsAnnounced(provider, urls);
        vm.prank(provider);
        market.announceEndpoints(urls);
    }

    function test_announceEndpoints_emptyListWithdraws() public {
        string[] memory none = new string[](0);
        vm.expectEmit(true, true, true, true, address(market));
        emit EndpointsAnnounced(provider, none);
        vm.prank(provider);
        market.announceEndpoints(none);
    }

    function test_announceEndpoints_revertsForNonProvider() public {
        string[] memory urls = new string[](1);
        urls[0] = "http://attacker.example";
        vm.expectRevert(abi.encodeWithSelector(NotProvider.selector, stranger));
        vm.prank(stranger);
        market.announceEndpoints(urls);
    }

    function test_announceEndpoints_revertsOverMaxEndpoints() public {
        string[] memory urls = new string[](5);
        for (uint256 i; i < 5; ++i) {
            urls[i] = "http://p.example";
        }
        vm.expectRevert(abi.encodeWithSelector(TooManyEndpoints.selector, 5, 4));
        vm.prank(provider);
        market.announceEndpoints(urls);
    }

    function testFuzz_announceEndpoints_acceptsOnlyOneTo256Bytes(uint16 length, uint8 at) public {
        length = uint16(bound(length, 0, 600));
        uint256 index = bound(at, 0, 3);
        string[] memory urls = new string[](4);
        for (uint256 i; i < 4; ++i) {
            urls[i] = "http://p.example";
        }
        urls[index] = string(new bytes(length));
        if (length == 0 || length > 256) {
            vm.expectRevert(abi.encodeWithSelector(InvalidEndpoint.selector, index));
        } else {
            vm.expectEmit(true, true, true, true, address(market));
            emit EndpointsAnnounced(provider, urls);
        }
        vm.prank(provider);
        market.announceEndpoints(urls);
    }

    function test_setResources_setsAndEmits() public {
        Resources memory r = Resources({cpuMilli: 8000, ramMb: 32_768, diskMb: 500_000, vramMb: 24_576, gpus: 2});
        vm.expectEmit(true, true, true, true, address(market));
        emit ResourcesSet(provider, r);
        vm.prank(provider);
        market.setResources(r);
        Resources memory got = market.resourcesOf(provider);
        assertEq(keccak256(abi.encode(got)), keccak256(abi.encode(r)), "resources");
    }

    // ================================================================ owner settings

    function test_setDefaultMediators_onlyOwner() public {
        vm.expectRevert(UNAUTHORIZED);
        vm.prank(stranger);
        market.setDefaultMediators(0x3);
    }

    function test_setDefaultMediators_setsEmitsAndAppliesToNewJobs() public {
        (, Job memory before) = _run(alice);
        vm.expectEmit(true, true, true, true, address(market));
        emit DefaultMediatorsSet(0x3);
        vm.prank(owner);
        market.setDefaultMediators(0x3);
        assertEq(market.defaultMediators(), 0x3, "stored");
        (, Job memory after_) = _run(alice);
        assertEq(before.mediators, 0x1, "old job keeps its set");
        assertEq(after_.mediators, 0x3, "new job takes the new set");
    }

    function test_setMediatorSuspended_onlyOwner() public {
        vm.expectRevert(UNAUTHORIZED);
        vm.prank(mediator);
        market.setMediatorSuspended(mediatorIndex, true);
    }

    function test_setMediatorSuspended_revertsOnUnknownMediator() public {
        vm.expectRevert(abi.encodeWithSelector(UnknownMediator.selector, 1));
        vm.prank(owner);
        market.setMediatorSuspended(1, false);
    }

    function test_setMediatorSuspended_suspendsAndRestores() public {
        vm.expectEmit(true, true, true, true, address(market));
        emit MediatorSuspended(mediatorIndex, true);
        vm.prank(owner);
        market.setMediatorSuspended(mediatorIndex, true);
        assertTrue(market.mediatorAt(mediatorIndex).suspended, "suspended");
        assertTrue(market.mediatorAt(mediatorIndex).active, "still registered");
        vm.expectEmit(true, true, true, true, address(market));
        emit MediatorSuspended(mediatorIndex, false);
        vm.prank(owner);
        market.setMediatorSuspended(mediatorIndex, false);
        assertFalse(market.mediatorAt(mediatorIndex).suspended, "restored");
        _matchedJob(); // matches with it again
    }

    // ================================================================ ownership (Solady Ownable)

    function test_owner_isConstructorArgument() public view {
        assertEq(market.owner(), owner, "owner");
    }

    function test_transferOwnership_onlyOwner() public {
        vm.expectRevert(UNAUTHORIZED);
        vm.prank(stranger);
        market.transferOwnership(stranger);
        vm.prank(owner);
        market.transferOwnership(bob);
        assertEq(market.owner(), bob, "new owner");
        vm.expectRevert(UNAUTHORIZED);
        vm.prank(owner);
        market.setDefaultMediators(0);
    }

    function test_renounceOwnership_freezesOwnerSettings() public {
        vm.prank(owner);
        market.renounceOwnership();
        assertEq(market.owner(), address(0), "no owner");
        vm.expectRevert(UNAUTHORIZED);
        vm.prank(owner);
        market.setMediatorSuspended(0, true);
    }

    function test_ownershipHandover_twoStep() public {
        vm.prank(bob);
        market.requestOwnershipHandover();
        assertGe(market.ownershipHandoverExpiresAt(bob), block.timestamp + 1, "requested");
        vm.prank(owner);
        market.completeOwnershipHandover(bob);
        assertEq(market.owner(), bob, "handed over");
        vm.prank(alice);
        market.requestOwnershipHandover();
        vm.prank(alice);
        market.cancelOwnershipHandover();
        assertEq(market.ownershipHandoverExpiresAt(alice), 0, "cancelled");
    }

    // ================================================================ views

    function test_accountOf_reportsAllFields() public view {
        LilypadMarket.Account memory a = market.accountOf(provider);
        assertEq(a.balance, PROVIDER_DEPOSIT, "balance");
        assertEq(a.mediators, 0x1, "mediators: all there were when it registered");
        assertEq(a.roles, ROLE_PROVIDER, "roles");
        assertEq(a.mediatorSlot, 0, "not a mediator");
        assertFalse(a.mediatorApproved, "not approved as one");
        assertEq(market.balanceOf(provider), PROVIDER_DEPOSIT, "balanceOf");
    }

    function test_mediatorAt_unknownIsEmpty() public view {
        LilypadMarket.Mediator memory m = market.mediatorAt(200);
        assertEq(m.account, address(0), "no account");
        assertFalse(m.active, "inactive");
    }

    function test_constants() public view {
        assertEq(market.ROLE_SOLVER(), ROLE_SOLVER, "solver");
        assertEq(market.ROLE_PROVIDER(), ROLE_PROVIDER, "provider");
        assertEq(market.ROLE_MEDIATOR(), ROLE_MEDIATOR, "mediator");
        assertEq(market.MAX_MEDIATORS(), 64, "mediators");
        assertEq(market.MAX_CALLBACK_GAS(), 2_000_000, "callback gas");
        assertEq(market.MAX_DATA_ID_LENGTH(), 256, "data id");
        assertEq(market.MAX_TIMEOUT(), 30 days, "timeout");
        assertEq(market.MODULE_NONDETERMINISTIC(), 1, "flag");
        assertEq(market.MODULE_NETWORK(), 2, "flag");
    }
}

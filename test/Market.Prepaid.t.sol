// SPDX-License-Identifier: Apache-2.0
pragma solidity ^0.8.28;

import {MarketFixture, JobFlow} from "./utils/MarketFixture.sol";

/// @notice Prepaid balances (a job's payment taken off the payee's market balance when it covers
/// it, else by transferFrom) and the batched job steps (matchMany, submitMany).
contract MarketPrepaidTest is MarketFixture {
    /// @dev `who` deposits `amount` into its own market balance and then withdraws its token
    /// allowance, so any transferFrom of its tokens would fail.
    function _prepay(address who, uint256 amount) internal {
        vm.startPrank(who);
        market.deposit(who, amount);
        token.approve(address(market), 0);
        vm.stopPrank();
    }

    // ================================================================ prepaid payments

    function test_runJob_drawsThePayeesMarketBalance() public {
        _prepay(alice, 3 * PAYMENT);
        uint256 tokensBefore = token.balanceOf(alice);
        uint256 marketTokens = token.balanceOf(address(market));
        (uint256 id,) = _run(alice); // no token allowance left: only the balance can pay
        assertTrue(market.jobHash(id) != 0, "created");
        assertEq(market.balanceOf(alice), 2 * PAYMENT, "payment taken off the balance");
        assertEq(token.balanceOf(alice), tokensBefore, "no tokens moved from alice");
        assertEq(token.balanceOf(address(market)), marketTokens, "the market's tokens did not move");
    }

    function test_createJob_drawsTheMarketBalanceForAnExplicitPayment() public {
        _prepay(alice, PAYMENT);
        JobRequest memory r = _request(alice);
        r.maxPayment = PAYMENT / 2;
        _create(alice, r);
        assertEq(market.balanceOf(alice), PAYMENT / 2, "the explicit payment was drawn");
    }

    function test_runJob_fallsBackToTransferFromWhenTheBalanceIsShort() public {
        vm.prank(alice);
        market.deposit(alice, PAYMENT - 1);
        uint256 tokensBefore = token.balanceOf(alice);
        _run(alice);
        assertEq(market.balanceOf(alice), PAYMENT - 1, "a balance short of the payment is left alone");
        assertEq(token.balanceOf(alice), tokensBefore - PAYMENT, "paid with transferFrom");
    }

    function test_runJob_revertsWhenNeitherTheBalanceNorTheAllowanceCovers() public {
        _prepay(alice, PAYMENT - 1);
        vm.expectRevert(TRANSFER_FROM_FAILED);
        vm.prank(alice);
        market.runJob(MODULE, _inputs("hi"), alice);
        assertEq(market.balanceOf(alice), PAYMENT - 1, "balance untouched");
    }

    function test_runJob_viaClientDrawsThePayeesBalanceNotTheClients() public {
        vm.prank(alice);
        market.authorizeClient(bob, _unlimited());
        vm.prank(bob);
        market.deposit(bob, 5 * PAYMENT); // the client has a balance of its own
        _prepay(alice, PAYMENT);
        vm.prank(bob);
        market.runJob(MODULE, _inputs("hi"), alice);
        assertEq(market.balanceOf(alice), 0, "the payee paid");
        assertEq(market.balanceOf(bob), 5 * PAYMENT, "the client's balance was not drawn");
    }

    function test_runJob_paysByTransferFromWhenOnlyTheClientHasABalance() public {
        vm.prank(alice);
        market.authorizeClient(bob, _unlimited());
        vm.prank(bob);
        market.deposit(bob, 5 * PAYMENT);
        uint256 aliceTokens = token.balanceOf(alice);
        vm.prank(bob);
        market.runJob(MODULE, _inputs("hi"), alice);
        assertEq(token.balanceOf(alice), aliceTokens - PAYMENT, "the payee's tokens paid");
        assertEq(market.balanceOf(bob), 5 * PAYMENT, "the client's balance was not drawn");
    }

    function test_runJob_neverDrawsTheBalanceOfAPayeeThatDidNotAuthorizeTheCaller() public {
        _prepay(alice, 5 * PAYMENT);
        vm.expectRevert(abi.encodeWithSelector(ClientNotAuthorized.selector, alice, stranger));
        vm.prank(stranger);
        market.runJob(MODULE, _inputs("hi"), alice);
        assertEq(market.balanceOf(alice), 5 * PAYMENT, "balance untouched");
    }

    function test_runJob_clientPerJobCapAppliesToBalanceDraws() public {
        _prepay(alice, 5 * PAYMENT);
        vm.prank(alice);
        market.authorizeClient(
            bob, ClientAllowance({remaining: type(uint128).max, maxPayment: uint96(PAYMENT - 1), minChallengeWindow: 0})
        );
        vm.expectRevert(abi.encodeWithSelector(ClientAllowanceExceeded.selector, alice, bob, PAYMENT, PAYMENT - 1));
        vm.prank(bob);
        market.runJob(MODULE, _inputs("hi"), alice);
        assertEq(market.balanceOf(alice), 5 * PAYMENT, "balance untouched");
    }

    function test_runJob_clientTotalCapCountsDownBalanceDraws() public {
        _prepay(alice, 5 * PAYMENT);
        vm.prank(alice);
        market.authorizeClient(bob, ClientAllowance({remaining: PAYMENT, maxPayment: uint96(PAYMENT), minChallengeWindow: 0}));
        vm.prank(bob);
        market.runJob(MODULE, _inputs("hi"), alice);
        assertEq(market.clientAllowance(alice, bob).remaining, 0, "counted down");
        vm.expectRevert(abi.encodeWithSelector(ClientAllowanceExceeded.selector, alice, bob, PAYMENT, 0));
        vm.prank(bob);
        market.runJob(MODULE, _inputs("hi"), alice);
        assertEq(market.balanceOf(alice), 4 * PAYMENT, "drawn once");
    }

    function test_cancelJob_refundsAPrepaidPaymentToTheBalance() public {
        _prepay(alice, PAYMENT);
        (uint256 id, Job memory job) = _run(alice);
        vm.prank(alice);
        market.cancelJob(id, job);
        assertEq(market.balanceOf(alice), PAYMENT, "refunded to the balance");
    }

    function test_settle_refundGoesToTheBalanceAndPaysTheNextJob() public {
        _prepay(alice, PAYMENT);
        (uint256 id, Job memory job) = _run(alice);
        job = _submit(id, _match(id, job, provider));
        _pastChallengeWindow(job);
        _settle(id, job);
        uint256 refund = PAYMENT - job.price - job.solverFee;
        assertEq(market.balanceOf(alice), refund, "the unspent payment is back in the balance");
        vm.startPrank(alice); // tops it up to exactly one payment, leaving no token allowance
        token.approve(address(market), PAYMENT - refund);
        market.deposit(alice, PAYMENT - refund);
        vm.stopPrank();
        _run(alice); // the balance pays
        assertEq(market.balanceOf(alice), 0, "the next job drew it");
    }

    function test_withdraw_takesOutWhatIsLeftOfAPrepaidBalance() public {
        _prepay(alice, 2 * PAYMENT);
        _run(alice);
        uint256 tokensBefore = token.balanceOf(alice);
        vm.prank(alice);
        market.withdraw(PAYMENT, alice);
        assertEq(token.balanceOf(alice), tokensBefore + PAYMENT, "withdrawn");
        assertEq(market.balanceOf(alice), 0, "nothing left");
    }

    /// @dev Whatever the balance, the payment is taken exactly once: off the balance when it
    /// covers the payment, else from the tokens; and the market's tokens always equal the
    /// balances plus the escrowed payment.
    function testFuzz_runJob_takesThePaymentExactlyOnce(uint128 balance) public {
        balance = uint128(bound(balance, 0, 3 * PAYMENT));
        if (balance != 0) {
            vm.prank(alice);
            market.deposit(alice, balance);
        }
        uint256 tokensBefore = token.balanceOf(alice);
        uint256 marketTokens = token.balanceOf(address(market));
        uint256 providers = market.balanceOf(provider) + market.balanceOf(provider2);
        _run(alice);
        if (balance >= PAYMENT) {
            assertEq(market.balanceOf(alice), balance - PAYMENT, "off the balance");
            assertEq(token.balanceOf(alice), tokensBefore, "no tokens");
        } else {
            assertEq(market.balanceOf(alice), balance, "balance left alone");
            assertEq(token.balanceOf(alice), tokensBefore - PAYMENT, "by transferFrom");
        }
        assertEq(
            token.balanceOf(address(market)),
            providers + market.balanceOf(alice) + PAYMENT,
            "market tokens == balances + escrow"
        );
        assertEq(token.balanceOf(address(market)) - marketTokens, balance >= PAYMENT ? 0 : PAYMENT, "tokens in");
    }

    // ================================================================ matchMany

    function _matchItem(uint256 id, Job memory job, address p) internal view returns (Match memory m) {
        m = Match({id: id, job: job, provider: p, mediator: mediatorIndex});
    }

    function test_matchMany_matchesEveryJob() public {
        (uint256 a, Job memory ja) = _run(alice);
        (uint256 b, Job memory jb) = _run(bob);
        Match[] memory items = new Match[](2);
        items[0] = _matchItem(a, ja, provider);
        items[1] = _matchItem(b, jb, provider2);
        vm.prank(solver);
        market.matchMany(items);
        assertEq(market.jobHash(a), market.hashJob(_matched(ja, provider)), "a matched");
        assertEq(market.jobHash(b), market.hashJob(_matched(jb, provider2)), "b matched");
    }

    function test_matchMany_skipsJobsAlreadyFinal() public {
        (uint256 a, Job memory ja) = _run(alice);
        (uint256 b, Job memory jb) = _run(bob);
        vm.prank(alice);
        market.cancelJob(a, ja);
        Match[] memory items = new Match[](2);
        items[0] = _matchItem(a, ja, provider);
        items[1] = _matchItem(b, jb, provider);
        vm.prank(solver);
        market.matchMany(items);
        assertEq(market.jobHash(a), bytes32(0), "a stays cancelled");
        assertEq(market.jobHash(b), market.hashJob(_matched(jb, provider)), "b matched");
    }

    function test_matchMany_revertsWholeWhenAnItemCannotBeMatched() public {
        (uint256 a, Job memory ja) = _run(alice);
        (uint256 b, Job memory jb) = _run(bob);
        Match[] memory items = new Match[](2);
        items[0] = _matchItem(a, ja, provider);
        items[1] = _matchItem(b, jb, stranger); // not a provider
        vm.expectRevert(abi.encodeWithSelector(NotProvider.selector, stranger));
        vm.prank(solver);
        market.matchMany(items);
        assertEq(market.jobHash(a), market.hashJob(ja), "a still open");
    }

    function test_matchMany_revertsForANonSolver() public {
        (uint256 a, Job memory ja) = _run(alice);
        Match[] memory items = new Match[](1);
        items[0] = _matchItem(a, ja, provider);
        vm.expectRevert(abi.encodeWithSelector(NotSolver.selector, stranger));
        vm.prank(stranger);
        market.matchMany(items);
    }

    // ================================================================ submitMany

    function _submission(uint256 id, Job memory job) internal pure returns (Submission memory s) {
        s = Submission({id: id, job: job, dataId: CID, resultHash: RESULT_HASH});
    }

    function test_submitMany_postsEveryResult() public {
        (uint256 a, Job memory ja) = _run(alice);
        (uint256 b, Job memory jb) = _run(bob);
        ja = _match(a, ja, provider);
        jb = _match(b, jb, provider);
        Submission[] memory items = new Submission[](2);
        items[0] = _submission(a, ja);
        items[1] = _submission(b, jb);
        vm.prank(provider);
        market.submitMany(items);
        assertEq(market.jobHash(a), market.hashJob(JobFlow.submitted(ja, CID, RESULT_HASH)), "a submitted");
        assertEq(market.jobHash(b), market.hashJob(JobFlow.submitted(jb, CID, RESULT_HASH)), "b submitted");
    }

    function test_submitMany_skipsJobsAlreadyFinal() public {
        (uint256 a, Job memory ja) = _run(alice);
        (uint256 b, Job memory jb) = _run(bob);
        ja = _match(a, ja, provider);
        vm.warp(block.timestamp + 100);
        jb = _match(b, jb, provider); // b's run window ends 100 s after a's
        vm.warp(uint256(ja.matchedAt) + ja.runTimeout + 1);
        market.timeoutResult(a, ja); // a ends: no result in time
        Submission[] memory items = new Submission[](2);
        items[0] = _submission(a, ja);
        items[1] = _submission(b, jb);
        vm.prank(provider);
        market.submitMany(items);
        assertEq(market.jobHash(a), bytes32(0), "a stays timed out");
        assertEq(market.jobHash(b), market.hashJob(JobFlow.submitted(jb, CID, RESULT_HASH)), "b submitted");
    }

    function test_submitMany_revertsWhenAnItemIsAnotherProvidersJob() public {
        (uint256 a, Job memory ja) = _run(alice);
        (uint256 b, Job memory jb) = _run(bob);
        ja = _match(a, ja, provider);
        jb = _match(b, jb, provider2);
        Submission[] memory items = new Submission[](2);
        items[0] = _submission(a, ja);
        items[1] = _submission(b, jb);
        vm.expectRevert(abi.encodeWithSelector(NotJobProvider.selector, b, provider));
        vm.prank(provider);
        market.submitMany(items);
        assertEq(market.jobHash(a), market.hashJob(ja), "a not posted either");
    }
}

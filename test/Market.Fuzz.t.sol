// SPDX-License-Identifier: Apache-2.0
pragma solidity ^0.8.28;

import {MarketFixture, JobFlow} from "./utils/MarketFixture.sol";
import {GasProbeClient} from "./utils/Clients.sol";

/// @notice Property tests over amounts, fee rates, deadlines, ids and Job contents.
contract MarketFuzzTest is MarketFixture {
    uint256 internal constant BPS = 10_000;

    // ================================================================ helpers

    /// @dev Everyone's tokens plus internal balance: what they own, wherever it is.
    function _wealth(address who) internal view returns (int256) {
        return int256(token.balanceOf(who) + market.balanceOf(who));
    }

    function _wealths() internal view returns (int256[6] memory) {
        return [_wealth(alice), _wealth(provider), _wealth(solver), _wealth(mediator), _wealth(auditor), _wealth(stranger)];
    }

    function _everyone() internal view returns (address[10] memory) {
        return [alice, bob, solver, provider, provider2, mediator, auditor, stranger, owner, address(client)];
    }

    function _sumCredits() internal view returns (uint256 sum) {
        address[10] memory e = _everyone();
        for (uint256 i; i < e.length; ++i) sum += market.balanceOf(e[i]);
    }

    /// @dev With no live jobs, the market holds exactly what it owes.
    function _assertSolventWithNoLiveJobs() internal view {
        assertEq(token.balanceOf(address(market)), _sumCredits(), "market tokens == credits");
    }

    /// @dev `when` as a time near `deadline`: half the runs land on deadline-1, deadline or
    /// deadline+1, the rest anywhere in [stamp, deadline + span].
    function _timeAround(uint256 stamp, uint256 deadline, uint256 when, uint256 span) internal pure returns (uint256) {
        if (when % 2 == 0) return deadline - 1 + (when / 2) % 3;
        return bound(when, stamp, deadline + span);
    }

    // ================================================================ prices, fees, collateral

    /// @dev price + fee > payment reverts with PriceAboveCap; otherwise the match succeeds,
    /// locks max(price x collateralBps, mediatorFee), and settlement pays out exactly the payment.
    function testFuzz_matchJob_priceCapAndConservation(uint256 payment, uint256 price) public {
        payment = bound(payment, 1, 500 ether);
        price = bound(price, 0, 600 ether);
        token.faucet(provider, 1_000_000 ether);
        vm.prank(provider);
        market.deposit(provider, 1_000_000 ether);
        vm.prank(provider);
        market.setOffer(moduleId, _offer(uint128(price), true));

        int256 a = _wealth(alice);
        int256 p = _wealth(provider);
        int256 s = _wealth(solver);
        JobRequest memory r = _request(alice);
        r.maxPayment = uint128(payment);
        (uint256 id, Job memory job) = _create(alice, r);
        uint256 fee = price * 500 / BPS;
        if (price + fee > payment) {
            vm.expectRevert(abi.encodeWithSelector(PriceAboveCap.selector, id, price + fee, payment));
            vm.prank(solver);
            market.matchJob(id, job, provider, mediatorIndex);
            return;
        }
        uint256 free = market.balanceOf(provider);
        job = _match(id, job, provider);
        uint256 collateral = price * 2;
        if (collateral < 1 ether) collateral = 1 ether;
        assertEq(job.collateral, collateral, "collateral");
        assertEq(market.balanceOf(provider), free - collateral, "locked");
        job = _submit(id, job);
        _pastChallengeWindow(job);
        _settle(id, job);
        assertEq(uint256(_wealth(provider) - p), price, "provider earns the price");
        assertEq(uint256(_wealth(solver) - s), fee, "solver earns the fee");
        assertEq(uint256(a - _wealth(alice)), price + fee, "payee pays price + fee, no more");
        _assertSolventWithNoLiveJobs();
    }

    /// @dev For any configuration and any outcome, value is conserved, every party gets what
    /// the rules say, and the market ends holding exactly what it owes.
    function testFuzz_outcomes_conserveValueForAnyConfig(
        uint16 feeBps,
        uint32 collateralBps,
        uint128 mediatorFee,
        uint128 bond,
        uint128 price,
        uint128 payment,
        uint8 outcome
    ) public {
        Config memory c = _config();
        c.solverFeeBps = uint16(bound(feeBps, 0, BPS));
        c.collateralBps = uint32(bound(collateralBps, 0, 100 * BPS));
        c.mediatorFee = uint128(bound(mediatorFee, 0, 100 ether));
        c.challengeBond = uint128(bound(bond, 0, 100 ether));
        _deployMarket(c);
        price = uint128(bound(price, 0, 50 ether));
        uint256 fee = uint256(price) * c.solverFeeBps / BPS;
        payment = uint128(bound(payment, uint256(price) + fee, 200 ether));
        token.faucet(provider, 1_000_000 ether);
        vm.startPrank(provider);
        market.deposit(provider, 1_000_000 ether);
        market.setOffer(moduleId, _offer(price, true));
        vm.stopPrank();

        int256[6] memory before = _wealths();
        JobRequest memory r = _request(alice);
        r.maxPayment = payment;
        (uint256 id, Job memory job) = _create(alice, r);
        outcome = outcome % 7;
        int256 collateral;
        int256 dep = int256(uint256(c.mediatorFee) + c.challengeBond);
        int256[6] memory delta; // alice, provider, solver, mediator, auditor, stranger
        if (outcome == 0) {
            vm.prank(alice);
            market.cancelJob(id, job);
        } else if (outcome == 1) {
            vm.warp(JobFlow.deadline(job) + 1);
            vm.prank(stranger);
            market.expireJob(id, job);
        } else {
            job = _match(id, job, provider);
            collateral = int256(uint256(job.collateral));
            if (outcome == 2) {
                vm.warp(JobFlow.deadline(job) + 1);
                vm.prank(stranger);
                market.timeoutResult(id, job);
                delta[0] = collateral;
                delta[1] = -collateral;
            } else {
                job = _submit(id, job);
                if (outcome == 3) {
                    _pastChallengeWindow(job);
                    _settle(id, job);
                    delta[0] = -int256(uint256(price) + fee);
                    delta[1] = int256(uint256(price));
                    delta[2] = int256(fee);
                } else {
                    job = _challenge(id, job, auditor);
                    if (outcome == 4) {
                        vm.prank(mediator);
                        market.upholdChallenge(id, job, "x");
                        int256 rest = collateral - int256(uint256(c.mediatorFee));
                        delta[0] = rest - rest / 2; // payee: half the rest of the slashed collateral
                        delta[1] = -collateral;
                        delta[3] = int256(uint256(c.mediatorFee));
                        delta[4] = rest / 2; // challenger: deposit back + the other half
                    } else if (outcome == 5) {
                        vm.prank(mediator);
                        market.rejectChallenge(id, job, CID, RESULT_HASH);
                        delta[0] = -int256(uint256(price) + fee);
                        delta[1] = int256(uint256(price) + c.challengeBond);
                        delta[2] = int256(fee);
                        delta[3] = int256(uint256(c.mediatorFee));
                        delta[4] = -dep;
                    } else {
                        // nobody proved the result wrong: it stands, the challenger is refunded
                        vm.warp(JobFlow.deadline(job) + 1);
                        vm.prank(stranger);
                        market.timeoutMediation(id, job, CID, RESULT_HASH);
                        delta[0] = -int256(uint256(price) + fee);
                        delta[1] = int256(uint256(price));
                        delta[2] = int256(fee);
                    }
                }
            }
        }
        assertEq(market.jobHash(id), bytes32(0), "final");
        int256[6] memory afterW = _wealths();
        int256 net;
        for (uint256 i; i < 6; ++i) {
            int256 d = afterW[i] - before[i];
            net += d;
            if (d != delta[i]) {
                emit log_named_uint("party", i);
                emit log_named_uint("outcome", outcome);
                fail("party's payout differs from the rules");
            }
        }
        assertTrue(net == 0, "zero-sum");
        _assertSolventWithNoLiveJobs();
    }

    /// @dev The collateral and fee rates round down; the collateral never falls under the
    /// mediator fee (so an upheld challenge can always pay the mediator).
    function testFuzz_matchJob_collateralFloorsAtMediatorFee(uint32 collateralBps, uint128 price) public {
        Config memory c = _config();
        c.collateralBps = uint32(bound(collateralBps, 0, 100 * BPS));
        _deployMarket(c);
        price = uint128(bound(price, 0, 9 ether));
        token.faucet(provider, 1_000_000 ether);
        vm.startPrank(provider);
        market.deposit(provider, 1_000_000 ether);
        market.setOffer(moduleId, _offer(price, true));
        vm.stopPrank();
        (uint256 id, Job memory job) = _run(alice);
        job = _match(id, job, provider);
        uint256 expected = uint256(price) * c.collateralBps / BPS;
        if (expected < c.mediatorFee) expected = c.mediatorFee;
        assertEq(job.collateral, expected, "collateral");
        assertGe(job.collateral, c.mediatorFee, "covers the mediator");
    }

    // ================================================================ deadlines

    function testFuzz_matchDeadline_matchXorExpire(uint32 timeout, uint256 when) public {
        JobRequest memory r = _request(alice);
        r.matchTimeout = uint32(bound(timeout, 1, market.MAX_TIMEOUT()));
        (uint256 id, Job memory job) = _create(alice, r);
        uint256 deadline = uint256(job.createdAt) + r.matchTimeout;
        vm.warp(_timeAround(job.createdAt, deadline, when, 2 * uint256(r.matchTimeout)));
        if (block.timestamp <= deadline) {
            vm.expectRevert(abi.encodeWithSelector(DeadlineNotReached.selector, id, deadline));
            market.expireJob(id, job);
            _match(id, job, provider);
        } else {
            vm.expectRevert(abi.encodeWithSelector(DeadlinePassed.selector, id, deadline));
            vm.prank(solver);
            market.matchJob(id, job, provider, mediatorIndex);
            market.expireJob(id, job);
            assertEq(market.jobHash(id), bytes32(0), "expired");
        }
    }

    function testFuzz_runDeadline_submitOrReleaseXorTimeout(uint32 timeout, uint256 when, bool release) public {
        JobRequest memory r = _request(alice);
        r.runTimeout = uint32(bound(timeout, RUN_TIMEOUT, market.MAX_TIMEOUT()));
        (uint256 id, Job memory job) = _create(alice, r);
        vm.warp(block.timestamp + 17);
        job = _match(id, job, provider);
        uint256 deadline = uint256(job.matchedAt) + r.runTimeout;
        vm.warp(_timeAround(job.matchedAt, deadline, when, 2 * uint256(r.runTimeout)));
        if (block.timestamp <= deadline) {
            vm.expectRevert(abi.encodeWithSelector(DeadlineNotReached.selector, id, deadline));
            market.timeoutResult(id, job);
            if (release) _release(id, job);
            else _submit(id, job);
        } else {
            vm.expectRevert(abi.encodeWithSelector(DeadlinePassed.selector, id, deadline));
            vm.prank(provider);
            if (release) market.releaseJob(id, job);
            else market.submitResult(id, job, CID, RESULT_HASH);
            market.timeoutResult(id, job);
            assertEq(market.jobHash(id), bytes32(0), "timed out");
        }
    }

    function testFuzz_challengeWindow_challengeXorSettle(uint32 window, uint256 when) public {
        JobRequest memory r = _request(alice);
        r.challengeWindow = uint32(bound(window, 1, market.MAX_TIMEOUT()));
        (uint256 id, Job memory job) = _create(alice, r);
        job = _match(id, job, provider);
        vm.warp(block.timestamp + 5);
        job = _submit(id, job);
        uint256 deadline = uint256(job.submittedAt) + r.challengeWindow;
        vm.warp(_timeAround(job.submittedAt, deadline, when, 2 * uint256(r.challengeWindow)));
        if (block.timestamp <= deadline) {
            vm.expectRevert(abi.encodeWithSelector(DeadlineNotReached.selector, id, deadline));
            market.settle(id, job, CID, RESULT_HASH);
            _challenge(id, job, auditor);
        } else {
            vm.expectRevert(abi.encodeWithSelector(DeadlinePassed.selector, id, deadline));
            vm.prank(auditor);
            market.challenge(id, job);
            _settle(id, job);
        }
    }

    function testFuzz_mediationDeadline_ruleXorTimeout(uint32 timeout, uint256 when, bool uphold) public {
        JobRequest memory r = _request(alice);
        r.mediationTimeout = uint32(bound(timeout, RUN_TIMEOUT, market.MAX_TIMEOUT()));
        (uint256 id, Job memory job) = _create(alice, r);
        job = _submit(id, _match(id, job, provider));
        vm.warp(block.timestamp + 9);
        job = _challenge(id, job, auditor);
        uint256 deadline = uint256(job.challengedAt) + r.mediationTimeout;
        vm.warp(_timeAround(job.challengedAt, deadline, when, 2 * uint256(r.mediationTimeout)));
        if (block.timestamp <= deadline) {
            vm.expectRevert(abi.encodeWithSelector(DeadlineNotReached.selector, id, deadline));
            market.timeoutMediation(id, job, CID, RESULT_HASH);
            vm.prank(mediator);
            if (uphold) market.upholdChallenge(id, job, "x");
            else market.rejectChallenge(id, job, CID, RESULT_HASH);
        } else {
            vm.expectRevert(abi.encodeWithSelector(DeadlinePassed.selector, id, deadline));
            vm.prank(mediator);
            if (uphold) market.upholdChallenge(id, job, "x");
            else market.rejectChallenge(id, job, CID, RESULT_HASH);
            market.timeoutMediation(id, job, CID, RESULT_HASH);
        }
        assertEq(market.jobHash(id), bytes32(0), "final");
    }

    // ================================================================ timeouts and callback gas

    function testFuzz_createJob_timeouts(uint32 m, uint32 run, uint32 cw, uint32 med) public {
        uint256 maxT = market.MAX_TIMEOUT();
        // half the runs stay in range
        if (m % 2 == 0) {
            m = uint32(bound(m, 0, maxT));
            run = uint32(bound(run, 0, maxT));
            cw = uint32(bound(cw, 0, maxT));
            med = uint32(bound(med, 0, maxT));
        }
        JobRequest memory r = _request(alice);
        r.matchTimeout = m;
        r.runTimeout = run;
        r.challengeWindow = cw;
        r.mediationTimeout = med;
        // floors: the run window covers the module's run timeout, mediation the run window
        uint256 runT = run == 0 ? RUN_TIMEOUT : run;
        if (m > maxT) {
            vm.expectRevert(abi.encodeWithSelector(InvalidTimeout.selector, "matchTimeout", m));
        } else if (run > maxT || (run != 0 && run < RUN_TIMEOUT)) {
            vm.expectRevert(abi.encodeWithSelector(InvalidTimeout.selector, "runTimeout", run));
        } else if (cw > maxT) {
            vm.expectRevert(abi.encodeWithSelector(InvalidTimeout.selector, "challengeWindow", cw));
        } else if (med > maxT || (med != 0 && med < runT)) {
            vm.expectRevert(abi.encodeWithSelector(InvalidTimeout.selector, "mediationTimeout", med));
        } else {
            (, Job memory job) = _create(alice, r); // checks every stored field
            assertEq(job.matchTimeout, m == 0 ? 3600 : m, "match");
            assertEq(job.runTimeout, runT, "run");
            assertEq(job.challengeWindow, cw == 0 ? 300 : cw, "challenge");
            assertEq(job.mediationTimeout, med == 0 ? (runT > 3600 ? runT : 3600) : med, "mediation");
            assertGe(job.mediationTimeout, job.runTimeout, "a mediator can re-run the job");
            return;
        }
        vm.prank(alice);
        market.createJob(r);
    }

    function testFuzz_createJob_callbackGas(uint32 cb) public {
        if (cb % 2 == 0) cb = uint32(bound(cb, 0, 2_100_000));
        GasProbeClient c = new GasProbeClient(market);
        vm.prank(alice);
        market.authorizeClient(address(c), _unlimited());
        JobRequest memory r = _request(alice);
        r.callbackGas = cb;
        if (cb > 2_000_000) {
            vm.expectRevert(abi.encodeWithSelector(CallbackGasTooHigh.selector, cb, 2_000_000));
            c.create(r);
            return;
        }
        Job memory job = JobFlow.created(market, address(c), r);
        uint256 id = c.create(r);
        assertEq(market.jobHash(id), market.hashJob(job), "stored");
        assertEq(job.callbackGas, cb == 0 ? 100_000 : cb, "callbackGas");
    }

    /// @dev Whatever gas a settler forwards, either settlement reverts and nothing changes, or
    /// it succeeds and the client's callback started with its whole callbackGas (minus the
    /// few hundred units the callee spends before reading gasleft()).
    function testFuzz_settle_neverShortChangesTheCallback(uint256 gasGiven, uint32 callbackGas) public {
        callbackGas = uint32(bound(callbackGas, 30_000, 2_000_000));
        gasGiven = bound(gasGiven, 40_000, uint256(callbackGas) + 400_000);
        GasProbeClient c = new GasProbeClient(market);
        vm.prank(alice);
        market.authorizeClient(address(c), _unlimited());
        JobRequest memory r = _request(alice);
        r.callbackGas = callbackGas;
        Job memory job = JobFlow.created(market, address(c), r);
        uint256 id = c.create(r);
        job = _submit(id, _match(id, job, provider));
        _pastChallengeWindow(job);
        try market.settle{gas: gasGiven}(id, job, CID, RESULT_HASH) {
            assertEq(market.jobHash(id), bytes32(0), "settled");
            assertGe(c.gasAtEntry(), uint256(callbackGas) - 1_000, "callback got its gas");
            assertLe(c.gasAtEntry(), callbackGas, "and no more");
        } catch (bytes memory err) {
            // out of gas before the check (no data), or the check itself
            bool ok = err.length == 0 || bytes4(err) == InsufficientGasForCallback.selector;
            assertTrue(ok, "reverts only for lack of gas");
            assertEq(market.jobHash(id), market.hashJob(job), "nothing changed");
            assertEq(c.gasAtEntry(), 0, "no callback");
        }
    }

    // ================================================================ balances

    function testFuzz_depositWithdraw(uint256 amount, uint256 out, address to) public {
        vm.assume(to != address(0) && to != address(market));
        amount = bound(amount, 1, FUNDS);
        if (out % 3 != 0) out = bound(out, 0, amount + 1);
        uint256 tokensA = token.balanceOf(alice);
        uint256 tokensTo = token.balanceOf(to);
        uint256 held = token.balanceOf(address(market));
        vm.prank(alice);
        market.deposit(alice, amount);
        assertEq(market.balanceOf(alice), amount, "credited");
        assertEq(token.balanceOf(address(market)), held + amount, "held");
        if (out == 0) {
            vm.expectRevert(abi.encodeWithSelector(ZeroAmount.selector));
        } else if (out > amount) {
            vm.expectRevert(abi.encodeWithSelector(InsufficientBalance.selector, alice, amount, out));
        }
        vm.prank(alice);
        market.withdraw(out, to);
        if (out == 0 || out > amount) return;
        assertEq(market.balanceOf(alice), amount - out, "debited");
        assertEq(token.balanceOf(address(market)), held + amount - out, "market");
        if (to == alice) {
            assertEq(token.balanceOf(alice), tokensA - amount + out, "alice");
        } else {
            assertEq(token.balanceOf(alice), tokensA - amount, "alice");
            assertEq(token.balanceOf(to), tokensTo + out, "to");
        }
    }

    function testFuzz_challenge_depositSource(uint256 internalBalance) public {
        internalBalance = bound(internalBalance, 0, 10 ether);
        if (internalBalance != 0) {
            vm.prank(auditor);
            market.deposit(auditor, internalBalance);
        }
        (uint256 id, Job memory job) = _submittedJob();
        uint256 tokens = token.balanceOf(auditor);
        _challenge(id, job, auditor);
        if (internalBalance >= 3 ether) {
            assertEq(market.balanceOf(auditor), internalBalance - 3 ether, "from balance");
            assertEq(token.balanceOf(auditor), tokens, "no tokens");
        } else {
            assertEq(market.balanceOf(auditor), internalBalance, "balance kept");
            assertEq(token.balanceOf(auditor), tokens - 3 ether, "from allowance");
        }
    }

    // ================================================================ ids and Job contents

    /// @dev Any id that was never created is JobNotFound, for every transition.
    function testFuzz_anyUnknownId_isJobNotFound(uint256 id, uint8 which) public {
        (, Job memory job) = _challengedJob(); // id 1
        _run(bob); // id 2
        vm.assume(id != 1 && id != 2);
        vm.expectRevert(abi.encodeWithSelector(JobNotFound.selector, id));
        _call(which, id, job);
    }

    /// @dev Changing any field of a live job's Job to any other valid value is StaleJob, in
    /// every state and for every transition.
    function testFuzz_mutatedJob_isStale(uint8 stateSeed, uint8 field, uint256 value, uint8 which) public {
        uint256 id;
        Job memory job;
        uint256 s = stateSeed % 4;
        if (s == 0) (id, job) = _openJob();
        else if (s == 1) (id, job) = _matchedJob();
        else if (s == 2) (id, job) = _submittedJob();
        else (id, job) = _challengedJob();
        Job memory bad = _mutate(job, field % JOB_FIELDS, value);
        assertTrue(market.hashJob(bad) != market.jobHash(id), "mutation changes the hash");
        vm.expectRevert(abi.encodeWithSelector(StaleJob.selector, id));
        _call(which, id, bad);
        assertEq(market.jobHash(id), market.hashJob(job), "unchanged");
    }

    uint256 internal constant JOB_FIELDS = 24;

    /// @dev hashJob(job) == keccak256(abi.encode(job)) for arbitrary contents.
    function testFuzz_hashJob_equalsKeccakOfAbiEncode(uint256 seed) public view {
        Job memory job;
        for (uint256 i; i < JOB_FIELDS; ++i) {
            job = _mutate(job, i, uint256(keccak256(abi.encode(seed, i))));
        }
        assertEq(market.hashJob(job), keccak256(abi.encode(job)), "hashJob");
    }

    /// @dev Word `field` of the Job's ABI encoding replaced by another value of the field's type.
    function _mutate(Job memory job, uint256 field, uint256 value) internal pure returns (Job memory) {
        uint8[JOB_FIELDS] memory bits = [
            160, 160, 0, 128, 64, 40, 32, 32, 32, 32, 32, 160, 160, 160, 128, 128, 128, 8, 40, 0, 40, 160, 40, 255
        ]; // in Job's field order; 0 = 256 bits, 255 = the JobState enum
        bytes memory enc = abi.encode(job);
        uint256 offset = 32 * (field + 1);
        uint256 old;
        assembly {
            old := mload(add(enc, offset))
        }
        uint256 b = bits[field];
        uint256 next;
        if (b == 255) {
            next = (old + 1 + value % 4) % 5;
        } else {
            next = b == 0 ? value : value & ((uint256(1) << b) - 1);
            if (next == old) next = old ^ 1;
        }
        assembly {
            mstore(add(enc, offset), next)
        }
        return abi.decode(enc, (Job));
    }

    /// @dev Calls transition `which % 11` with the caller entitled to make it.
    function _call(uint8 which, uint256 id, Job memory job) internal {
        uint256 w = which % 11;
        if (w == 0) {
            vm.prank(solver);
            market.matchJob(id, job, provider, mediatorIndex);
        } else if (w == 1) {
            vm.prank(alice);
            market.cancelJob(id, job);
        } else if (w == 2) {
            market.expireJob(id, job);
        } else if (w == 3) {
            vm.prank(provider);
            market.releaseJob(id, job);
        } else if (w == 4) {
            vm.prank(provider);
            market.submitResult(id, job, CID, RESULT_HASH);
        } else if (w == 5) {
            market.timeoutResult(id, job);
        } else if (w == 6) {
            vm.prank(auditor);
            market.challenge(id, job);
        } else if (w == 7) {
            market.settle(id, job, CID, RESULT_HASH);
        } else if (w == 8) {
            vm.prank(mediator);
            market.upholdChallenge(id, job, "x");
        } else if (w == 9) {
            vm.prank(mediator);
            market.rejectChallenge(id, job, CID, RESULT_HASH);
        } else {
            market.timeoutMediation(id, job, CID, RESULT_HASH);
        }
    }
}

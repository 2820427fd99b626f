// SPDX-License-Identifier: Apache-2.0
pragma solidity ^0.8.28;

import {Test} from "./utils/Test.sol";
import {LilypadToken, LilypadDevToken} from "../contracts/LilypadToken.sol";

contract LilypadTokenTest is Test {
    address internal treasury = address(0x7EA5);
    address internal alice = address(0xA1);
    uint256 internal constant SUPPLY = 1_000_000_000 ether;

    event Transfer(address indexed from, address indexed to, uint256 amount);

    // ================================================================ LilypadToken

    function test_constructor_mintsSupplyToTreasury() public {
        vm.expectEmit(true, true, true, true);
        emit Transfer(address(0), treasury, SUPPLY);
        LilypadToken t = new LilypadToken(treasury, SUPPLY);
        assertEq(t.totalSupply(), SUPPLY, "supply");
        assertEq(t.balanceOf(treasury), SUPPLY, "treasury");
    }

    function test_constructor_revertsOnZeroTreasury() public {
        vm.expectRevert(abi.encodeWithSelector(LilypadToken.ZeroTreasury.selector));
        new LilypadToken(address(0), SUPPLY);
    }

    function test_metadata() public {
        LilypadToken t = new LilypadToken(treasury, SUPPLY);
        assertEq(t.name(), "Lilypad", "name");
        assertEq(t.symbol(), "LP", "symbol");
        assertEq(t.decimals(), 18, "decimals");
    }

    function test_transfer_movesTokens() public {
        LilypadToken t = new LilypadToken(treasury, SUPPLY);
        vm.prank(treasury);
        t.transfer(alice, 5 ether);
        assertEq(t.balanceOf(alice), 5 ether, "alice");
        assertEq(t.totalSupply(), SUPPLY, "supply fixed");
    }

    function testFuzz_constructor_anySupply(uint256 supply) public {
        LilypadToken t = new LilypadToken(treasury, supply);
        assertEq(t.totalSupply(), supply, "supply");
        assertEq(t.balanceOf(treasury), supply, "treasury");
    }

    // ================================================================ LilypadDevToken

    function test_devToken_isLilypadToken() public {
        LilypadDevToken t = new LilypadDevToken(treasury, SUPPLY);
        assertEq(t.name(), "Lilypad", "name");
        assertEq(t.symbol(), "LP", "symbol");
        assertEq(t.balanceOf(treasury), SUPPLY, "treasury");
        assertEq(t.FAUCET_LIMIT(), 1_000_000 ether, "limit");
    }

    function test_devToken_revertsOnZeroTreasury() public {
        vm.expectRevert(abi.encodeWithSelector(LilypadToken.ZeroTreasury.selector));
        new LilypadDevToken(address(0), 0);
    }

    function test_faucet_mintsOnAnvil() public {
        vm.chainId(31337);
        LilypadDevToken t = new LilypadDevToken(treasury, SUPPLY);
        assertTrue(t.isDevnet(), "devnet");
        vm.expectEmit(true, true, true, true, address(t));
        emit LilypadDevToken.FaucetMinted(alice, 10 ether);
        vm.prank(alice);
        t.faucet(alice, 10 ether);
        assertEq(t.balanceOf(alice), 10 ether, "minted");
        assertEq(t.totalSupply(), SUPPLY + 10 ether, "supply grows");
    }

    function test_faucet_mintsOnGanache() public {
        vm.chainId(1337);
        LilypadDevToken t = new LilypadDevToken(treasury, 0);
        t.faucet(alice, 1);
        assertEq(t.balanceOf(alice), 1, "minted");
    }

    function test_faucet_mintsExactlyTheLimit() public {
        LilypadDevToken t = new LilypadDevToken(treasury, 0);
        t.faucet(alice, 1_000_000 ether);
        assertEq(t.balanceOf(alice), 1_000_000 ether, "limit");
    }

    function test_faucet_revertsOnOtherChains() public {
        LilypadDevToken t = new LilypadDevToken(treasury, SUPPLY);
        uint256[4] memory chains = [uint256(42161), 1, 412346, 11155111];
        for (uint256 i; i < chains.length; ++i) {
            vm.chainId(chains[i]);
            assertFalse(t.isDevnet(), "not a devnet");
            vm.expectRevert(abi.encodeWithSelector(LilypadDevToken.FaucetDisabled.selector, chains[i]));
            t.faucet(alice, 1 ether);
        }
        assertEq(t.balanceOf(alice), 0, "nothing minted");
    }

    function test_faucet_revertsAboveLimit() public {
        LilypadDevToken t = new LilypadDevToken(treasury, 0);
        uint256 limit = t.FAUCET_LIMIT();
        vm.expectRevert(abi.encodeWithSelector(LilypadDevToken.FaucetLimit.selector, limit + 1, limit));
        t.faucet(alice, limit + 1);
    }

    function testFuzz_faucet(uint8 pick, uint256 chainId, uint256 amount) public {
        chainId = pick % 3 == 0 ? 31337 : pick % 3 == 1 ? 1337 : bound(chainId, 1, type(uint64).max);
        if (pick % 2 == 0) amount = bound(amount, 0, 2_000_000 ether);
        vm.chainId(chainId);
        LilypadDevToken t = new LilypadDevToken(treasury, 0);
        bool devnet = chainId == 31337 || chainId == 1337;
        if (!devnet) {
            vm.expectRevert(abi.encodeWithSelector(LilypadDevToken.FaucetDisabled.selector, chainId));
        } else if (amount > 1_000_000 ether) {
            vm.expectRevert(abi.encodeWithSelector(LilypadDevToken.FaucetLimit.selector, amount, 1_000_000 ether));
        }
        t.faucet(alice, amount);
        assertEq(t.balanceOf(alice), devnet && amount <= 1_000_000 ether ? amount : 0, "minted");
    }
}

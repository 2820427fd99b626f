// SPDX-License-Identifier: Apache-2.0
pragma solidity ^0.8.28;

import {ERC20} from "solady/tokens/ERC20.sol";

/// @title LilypadToken (LP): the network's ERC-20.
/// @notice A fixed supply minted once, at deployment, to `treasury`. There is no mint
/// function on this contract: production deployments use it as is.
contract LilypadToken is ERC20 {
    error ZeroTreasury();

    constructor(address treasury, uint256 supply) {
        if (treasury == address(0)) revert ZeroTreasury();
        _mint(treasury, supply);
    }

    function name() public pure override returns (string memory) {
        return "Lilypad";
    }

    function symbol() public pure override returns (string memory) {
        return "LP";
    }
}

/// @title LilypadDevToken: LilypadToken plus a faucet that works only on local devnets.
/// @notice `faucet` mints only when the chain id is a local development chain (Anvil/Hardhat
/// 31337, Ganache 1337). The deploy script uses this contract only on those chains; on any
/// other chain the faucet reverts even if this contract was deployed there by mistake.
contract LilypadDevToken is LilypadToken {
    uint256 public constant FAUCET_LIMIT = 1_000_000 ether;

    error FaucetDisabled(uint256 chainId);
    error FaucetLimit(uint256 amount, uint256 limit);

    event FaucetMinted(address indexed to, uint256 amount);

    constructor(address treasury, uint256 supply) LilypadToken(treasury, supply) {}

    /// @notice Mints up to FAUCET_LIMIT to `to`, on a local devnet only.
    function faucet(address to, uint256 amount) external {
        if (!isDevnet()) revert FaucetDisabled(block.chainid);
        if (amount > FAUCET_LIMIT) revert FaucetLimit(amount, FAUCET_LIMIT);
        _mint(to, amount);
        emit FaucetMinted(to, amount);
    }

    function isDevnet() public view returns (bool) {
        return block.chainid == 31337 || block.chainid == 1337;
    }
}

// SPDX-License-Identifier: Apache-2.0
pragma solidity ^0.8.28;

import {Vm} from "../test/utils/Vm.sol";
import {LilypadMarket} from "../contracts/LilypadMarket.sol";
import {LilypadToken, LilypadDevToken} from "../contracts/LilypadToken.sol";
import {ILilypadMarketTypes} from "../contracts/interfaces/ILilypadMarket.sol";

/// @notice Deploys the token (unless TOKEN names an existing one) and the market, and writes
/// deployments/<chainId>.json, which the agents read.
///
///   forge script script/Deploy.s.sol --rpc-url $RPC --private-key $KEY --broadcast
///
/// Environment (all optional):
///   TOKEN                 existing ERC-20 to use; otherwise one is deployed: LilypadDevToken
///                         (with the devnet-only faucet) on chains 31337/1337, LilypadToken elsewhere
///   TOKEN_SUPPLY          supply minted to OWNER when a token is deployed (default 1e9 LP)
///   OWNER                 market owner and token treasury (default: the broadcasting account)
///   SOLVER_FEE_BPS        default 500 (5 % of the price)
///   COLLATERAL_BPS        default 20000 (2x the price)
///   MEDIATOR_FEE          default 1 LP;   CHALLENGE_BOND default 2 LP (in wei units)
///   MATCH_TIMEOUT         default 3600 s; CHALLENGE_WINDOW default 60 s on devnets, 3600 s elsewhere
///   MEDIATION_TIMEOUT     default 3600 s; CALLBACK_GAS default 100000
///   DEPLOYMENT_FILE       where to write the deployment (default deployments/<chainId>.json;
///                         relative to the project root, inside deployments/: forge's fs_permissions)
contract Deploy {
    Vm internal constant vm = Vm(address(uint160(uint256(keccak256("hevm cheat code")))));

    function run() external returns (LilypadMarket market, address token) {
        bool devnet = block.chainid == 31337 || block.chainid == 1337;
        vm.startBroadcast();
        // The broadcasting account: msg.sender inside startBroadcast() is the script's sender.
        address deployer = msg.sender;
        address owner = vm.envOr("OWNER", deployer);
        token = vm.envOr("TOKEN", address(0));
        if (token == address(0)) {
            uint256 supply = vm.envOr("TOKEN_SUPPLY", uint256(1_000_000_000 ether));
            token = devnet ? address(new LilypadDevToken(owner, supply)) : address(new LilypadToken(owner, supply));
        }
        ILilypadMarketTypes.Config memory config = ILilypadMarketTypes.Config({
            solverFeeBps: uint16(vm.envOr("SOLVER_FEE_BPS", uint256(500))),
            collateralBps: uint32(vm.envOr("COLLATERAL_BPS", uint256(20_000))),
            mediatorFee: uint128(vm.envOr("MEDIATOR_FEE", uint256(1 ether))),
            challengeBond: uint128(vm.envOr("CHALLENGE_BOND", uint256(2 ether))),
            matchTimeout: uint32(vm.envOr("MATCH_TIMEOUT", uint256(3600))),
            challengeWindow: uint32(vm.envOr("CHALLENGE_WINDOW", devnet ? uint256(60) : uint256(3600))),
            mediationTimeout: uint32(vm.envOr("MEDIATION_TIMEOUT", uint256(3600))),
            callbackGas: uint32(vm.envOr("CALLBACK_GAS", uint256(100_000)))
        });
        uint256 startBlock = vm.getBlockNumber();
        market = new LilypadMarket(token, config, owner);
        vm.stopBroadcast();

        string memory o = "deployment";
        vm.serializeUint(o, "chainId", block.chainid);
        vm.serializeUint(o, "startBlock", startBlock);
        vm.serializeAddress(o, "owner", owner);
        vm.serializeAddress(o, "token", token);
        vm.serializeUint(o, "solverFeeBps", config.solverFeeBps);
        vm.serializeUint(o, "collateralBps", config.collateralBps);
        vm.serializeString(o, "mediatorFee", vm.toString(uint256(config.mediatorFee)));
        vm.serializeString(o, "challengeBond", vm.toString(uint256(config.challengeBond)));
        vm.serializeUint(o, "matchTimeout", config.matchTimeout);
        vm.serializeUint(o, "challengeWindow", config.challengeWindow);
        vm.serializeUint(o, "mediationTimeout", config.mediationTimeout);
        vm.serializeUint(o, "callbackGas", config.callbackGas);
        string memory json = vm.serializeAddress(o, "market", address(market));
        string memory path = string.concat(
            vm.projectRoot(), "/", vm.envOr("DEPLOYMENT_FILE", string.concat("deployments/", vm.toString(block.chainid), ".json"))
        );
        vm.writeJson(json, path);
    }
}

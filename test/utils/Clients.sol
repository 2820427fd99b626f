// SPDX-License-Identifier: Apache-2.0
pragma solidity ^0.8.28;

import {LilypadMarket} from "../../contracts/LilypadMarket.sol";
import {ILilypadMarketTypes} from "../../contracts/interfaces/ILilypadMarket.sol";
import {ILilypadJobClient} from "../../contracts/interfaces/ILilypadJobManager.sol";

/// @notice A contract job creator: runs and creates jobs paid by whoever authorised it (or by
/// itself), and is called back with `submitResults`. Subclasses decide what the callback does.
abstract contract ClientBase is ILilypadJobClient {
    LilypadMarket public immutable market;

    constructor(LilypadMarket market_) {
        market = market_;
    }

    function run(string calldata module, string[] calldata inputs, address payee) external returns (uint256) {
        return market.runJob(module, inputs, payee);
    }

    function create(ILilypadMarketTypes.JobRequest calldata r) external returns (uint256) {
        return market.createJob(r);
    }

    function cancel(uint256 id, ILilypadMarketTypes.Job calldata job) external {
        market.cancelJob(id, job);
    }

    function approveMarket(address token) external {
        (bool ok,) = token.call(abi.encodeWithSignature("approve(address,uint256)", address(market), type(uint256).max));
        require(ok, "approve");
    }
}

/// @notice Records every callback, and the gas it was given on entry.
contract ProbeClient is ClientBase {
    uint256 public calls;
    uint256 public lastId;
    string public lastDealId;
    string public lastDataId;
    uint256 public gasAtEntry;
    address public lastCaller;

    constructor(LilypadMarket market_) ClientBase(market_) {}

    function submitResults(uint256 id, string memory dealId, string memory dataId) external {
        uint256 g = gasleft();
        gasAtEntry = g;
        calls += 1;
        lastId = id;
        lastDealId = dealId;
        lastDataId = dataId;
        lastCaller = msg.sender;
    }
}

/// @notice Records only the gas it was given (one storage write: cheap enough for small
/// callback budgets).
contract GasProbeClient is ClientBase {
    uint256 public gasAtEntry;

    constructor(LilypadMarket market_) ClientBase(market_) {}

    /// @dev calldata strings: nothing is copied before gasleft() is read, so what it reads is
    /// what the market forwarded less the dispatch (under 1,000 gas at any optimizer setting).
    function submitResults(uint256, string calldata, string calldata) external {
        gasAtEntry = gasleft();
    }
}

contract RevertingClient is ClientBase {
    error NotToday();

    constructor(LilypadMarket market_) ClientBase(market_) {}

    function submitResults(uint256, string memory, string memory) external pure {
        revert NotToday();
    }
}

/// @notice Burns every unit of gas it is given.
contract GasGuzzlerClient is ClientBase {
    constructor(LilypadMarket market_) ClientBase(market_) {}

    function submitResults(uint256, string memory, string memory) external {
        assembly {
            for {} 1 {} { sstore(0x1234, add(sload(0x1234), 1)) }
        }
    }
}

/// @notice Returns 64 KiB of data from its callback (the market must not copy it).
contract ReturnBombClient is ClientBase {
    constructor(LilypadMarket market_) ClientBase(market_) {}

    function submitResults(uint256, string memory, string memory) external pure {
        assembly {
            return(0, 65536)
        }
    }
}

/// @notice Tries to settle its own job a second time from inside the callback.
contract ReentrantClient is ClientBase {
    ILilypadMarketTypes.Job internal _job;
    string internal _dataId;
    bytes32 internal _resultHash;
    bool public attempted;
    bool public reentered;
    bytes public reentryError;

    constructor(LilypadMarket market_) ClientBase(market_) {}

    function arm(ILilypadMarketTypes.Job calldata job, string calldata dataId, bytes32 resultHash) external {
        _job = job;
        _dataId = dataId;
        _resultHash = resultHash;
    }

    function submitResults(uint256 id, string memory, string memory) external {
        attempted = true;
        try market.settle(id, _job, _dataId, _resultHash) {
            reentered = true;
        } catch (bytes memory err) {
            reentryError = err;
        }
    }
}

/// @notice From its callback, settles another job (armed beforehand): the griefing of issue 12,
/// sequence 7, against a settleMany batch that lists that job too.
contract SettlingClient is ClientBase {
    uint256 internal _otherId;
    ILilypadMarketTypes.Job internal _other;
    string internal _dataId;
    bytes32 internal _resultHash;
    bool public settledOther;

    constructor(LilypadMarket market_) ClientBase(market_) {}

    function arm(uint256 otherId, ILilypadMarketTypes.Job calldata other, string calldata dataId, bytes32 resultHash)
        external
    {
        _otherId = otherId;
        _other = other;
        _dataId = dataId;
        _resultHash = resultHash;
    }

    function submitResults(uint256, string memory, string memory) external {
        market.settle(_otherId, _other, _dataId, _resultHash);
        settledOther = true;
    }
}

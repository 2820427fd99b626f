// SPDX-License-Identifier: Apache-2.0
pragma solidity ^0.8.28;

import {Vm} from "./Vm.sol";

/// @notice A small stand-in for forge-std's Test: the cheatcode handle, assertions that say
/// what differed, and the target lists the invariant fuzzer reads.
abstract contract Test {
    Vm internal constant vm = Vm(address(uint160(uint256(keccak256("hevm cheat code")))));

    bool public IS_TEST = true;

    /// @dev What forge reads from `targetSelectors()`: which functions of `addr` the invariant
    /// fuzzer calls.
    struct FuzzSelector {
        address addr;
        bytes4[] selectors;
    }

    address[] private _targetContracts;
    address[] private _excludeSenders;
    address[] private _selectorTargets;
    mapping(uint256 => bytes4[]) private _selectorsOf;

    error AssertionFailed(string message);

    event log_named_uint(string key, uint256 val);
    event log_named_string(string key, string val);

    function targetContracts() public view returns (address[] memory) {
        return _targetContracts;
    }

    function excludeSenders() public view returns (address[] memory) {
        return _excludeSenders;
    }

    function targetSelectors() public view returns (FuzzSelector[] memory out) {
        out = new FuzzSelector[](_selectorTargets.length);
        for (uint256 i; i < out.length; ++i) {
            out[i] = FuzzSelector({addr: _selectorTargets[i], selectors: _selectorsOf[i]});
        }
    }

    function targetContract(address target) internal {
        _targetContracts.push(target);
    }

    function targetSelector(address target, bytes4[] memory selectors) internal {
        uint256 i = _selectorTargets.length;
        _selectorTargets.push(target);
        for (uint256 j; j < selectors.length; ++j) {
            _selectorsOf[i].push(selectors[j]);
        }
    }

    function excludeSender(address sender) internal {
        _excludeSenders.push(sender);
    }

    function fail(string memory message) internal pure {
        revert AssertionFailed(message);
    }

    function assertTrue(bool c, string memory m) internal pure {
        if (!c) fail(m);
    }

    function assertTrue(bool c) internal pure {
        if (!c) fail("expected true");
    }

    function assertFalse(bool c, string memory m) internal pure {
        if (c) fail(m);
    }

    function assertEq(uint256 a, uint256 b, string memory m) internal pure {
        if (a != b) fail(string.concat(m, ": ", _u(a), " != ", _u(b)));
    }

    function assertEq(uint256 a, uint256 b) internal pure {
        assertEq(a, b, "values differ");
    }

    function assertEq(address a, address b, string memory m) internal pure {
        if (a != b) fail(string.concat(m, ": addresses differ"));
    }

    function assertEq(address a, address b) internal pure {
        assertEq(a, b, "values differ");
    }

    function assertEq(bytes32 a, bytes32 b, string memory m) internal pure {
        if (a != b) fail(string.concat(m, ": hashes differ"));
    }

    function assertEq(bytes32 a, bytes32 b) internal pure {
        assertEq(a, b, "values differ");
    }

    function assertEq(bool a, bool b, string memory m) internal pure {
        if (a != b) fail(m);
    }

    function assertEq(string memory a, string memory b, string memory m) internal pure {
        if (keccak256(bytes(a)) != keccak256(bytes(b))) fail(string.concat(m, ": '", a, "' != '", b, "'"));
    }

    function assertEq(string memory a, string memory b) internal pure {
        assertEq(a, b, "strings differ");
    }

    function assertLe(uint256 a, uint256 b, string memory m) internal pure {
        if (a > b) fail(string.concat(m, ": ", _u(a), " > ", _u(b)));
    }

    function assertGt(uint256 a, uint256 b, string memory m) internal pure {
        if (a <= b) fail(string.concat(m, ": ", _u(a), " <= ", _u(b)));
    }

    function assertLt(uint256 a, uint256 b, string memory m) internal pure {
        if (a >= b) fail(string.concat(m, ": ", _u(a), " >= ", _u(b)));
    }

    function assertGe(uint256 a, uint256 b, string memory m) internal pure {
        if (a < b) fail(string.concat(m, ": ", _u(a), " < ", _u(b)));
    }

    function bound(uint256 x, uint256 min, uint256 max) internal pure returns (uint256) {
        require(min <= max, "bound: min > max");
        if (x >= min && x <= max) return x;
        uint256 size = max - min + 1;
        if (size == 0) return x; // full range
        return min + (x % size);
    }

    function _u(uint256 v) internal pure returns (string memory s) {
        if (v == 0) return "0";
        uint256 n;
        for (uint256 t = v; t != 0; t /= 10) ++n;
        bytes memory b = new bytes(n);
        for (; v != 0; v /= 10) b[--n] = bytes1(uint8(48 + v % 10));
        return string(b);
    }
}

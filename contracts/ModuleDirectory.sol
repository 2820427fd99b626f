// SPDX-License-Identifier: Apache-2.0
pragma solidity ^0.8.28;

import {Ownable} from "solady/auth/Ownable.sol";
import {IModuleDirectory} from "./interfaces/ILilypadMarket.sol";

/// @title The module directory: `name:version` -> a module pinned by content hash.
/// @notice The first account to publish a plain name owns it and alone may publish more
/// versions of it (ownership can be handed on). A name with a '/' is a path outside the chain
/// (`github.com/org/repo`) whose owner the chain cannot tell, so nobody can claim it by
/// publishing first: the market owner assigns it. A published version never changes, so job
/// creator, resource provider and mediator all run the same bytes. Module ids are
/// `keccak256(bytes("name:version"))`, which is what jobs carry.
abstract contract ModuleDirectory is IModuleDirectory, Ownable {
    /*//////////////////////////////////////////////////////////////
                               CONSTANTS
    //////////////////////////////////////////////////////////////*/

    uint256 public constant MAX_TIMEOUT = 30 days;
    uint256 internal constant MAX_NAME_LENGTH = 128;
    uint256 internal constant MAX_VERSION_LENGTH = 64;

    /// @notice The module's output is not bit-for-bit reproducible (e.g. an LLM at temperature
    /// > 0); mediators compare results with the comparison the module's spec declares.
    uint8 public constant MODULE_NONDETERMINISTIC = 1;
    /// @notice The module asks for network access; providers decide whether they allow it.
    uint8 public constant MODULE_NETWORK = 2;

    /*//////////////////////////////////////////////////////////////
                                STORAGE
    //////////////////////////////////////////////////////////////*/

    /// @dev The part of a module version that runJob reads: one slot.
    struct ModuleInfo {
        uint128 defaultPayment;
        uint32 runTimeout;
        uint8 flags;
        uint40 publishedAt; // 0 = not published
    }

    mapping(bytes32 moduleId => ModuleInfo) internal _moduleInfo;
    mapping(bytes32 moduleId => bytes32) internal _moduleSpecHash;
    mapping(bytes32 moduleId => bytes32) internal _moduleImageHash;
    mapping(bytes32 moduleId => Resources) internal _moduleRequirements;
    /// @inheritdoc IModuleDirectory
    mapping(bytes32 nameHash => address) public override moduleNameOwner;

    /*//////////////////////////////////////////////////////////////
                               PUBLISHING
    //////////////////////////////////////////////////////////////*/

    /// @inheritdoc IModuleDirectory
    function publishModule(string calldata name, string calldata version, ModuleSpec calldata spec)
        external
        returns (bytes32 id)
    {
        bool path = _checkName(name);
        _checkVersion(version);
        if (spec.specHash == 0 || spec.runTimeout == 0 || spec.runTimeout > MAX_TIMEOUT) revert InvalidModuleSpec();
        bytes32 nameHash = keccak256(bytes(name));
        address owner = moduleNameOwner[nameHash];
        if (owner == address(0)) {
            if (path) revert ModuleNameReserved(name);
            moduleNameOwner[nameHash] = msg.sender;
        } else if (owner != msg.sender) {
            revert NotNameOwner(name, owner);
        }
        id = moduleId(name, version);
        if (_moduleInfo[id].publishedAt != 0) revert ModuleExists(name, version);

        _moduleInfo[id] = ModuleInfo({
            defaultPayment: spec.defaultPayment,
            runTimeout: spec.runTimeout,
            flags: spec.flags,
            publishedAt: uint40(block.timestamp)
        });
        _moduleSpecHash[id] = spec.specHash;
        if (spec.imageHash != 0) _moduleImageHash[id] = spec.imageHash;
        _moduleRequirements[id] = spec.requirements;
        emit ModulePublished(id, name, version, msg.sender, spec);
    }

    /// @inheritdoc IModuleDirectory
    function transferModuleName(string calldata name, address to) external {
        if (to == address(0)) revert ZeroAddress();
        bytes32 nameHash = keccak256(bytes(name));
        address owner = moduleNameOwner[nameHash];
        if (owner != msg.sender) revert NotNameOwner(name, owner);
        moduleNameOwner[nameHash] = to;
        emit ModuleNameTransferred(nameHash, name, msg.sender, to);
    }

    /// @inheritdoc IModuleDirectory
    function assignModuleName(string calldata name, address to) external onlyOwner {
        if (to == address(0)) revert ZeroAddress();
        if (!_checkName(name)) revert InvalidModuleName(name); // plain names are first come
        bytes32 nameHash = keccak256(bytes(name));
        address owner = moduleNameOwner[nameHash];
        if (owner != address(0)) revert NotNameOwner(name, owner); // never taken from its owner
        moduleNameOwner[nameHash] = to;
        emit ModuleNameTransferred(nameHash, name, address(0), to);
    }

    /*//////////////////////////////////////////////////////////////
                                 VIEWS
    //////////////////////////////////////////////////////////////*/

    /// @inheritdoc IModuleDirectory
    function moduleId(string calldata name, string calldata version) public pure returns (bytes32) {
        return keccak256(abi.encodePacked(name, ":", version));
    }

    /// @inheritdoc IModuleDirectory
    function getModule(bytes32 moduleId_) external view returns (ModuleSpec memory spec, uint40 publishedAt) {
        ModuleInfo memory info = _moduleInfo[moduleId_];
        spec = ModuleSpec({
            specHash: _moduleSpecHash[moduleId_],
            imageHash: _moduleImageHash[moduleId_],
            defaultPayment: info.defaultPayment,
            runTimeout: info.runTimeout,
            flags: info.flags,
            requirements: _moduleRequirements[moduleId_]
        });
        publishedAt = info.publishedAt;
    }

    /*//////////////////////////////////////////////////////////////
                               VALIDATION
    //////////////////////////////////////////////////////////////*/

    /// @dev Names: 1-128 of [A-Za-z0-9._/-], not starting with '.', '/' or '-' (a plain
    /// name like `lilysay`, or a repository path like `github.com/org/repo`). Returns whether
    /// it is a path (has a '/').
    function _checkName(string calldata name) private pure returns (bool path) {
        bytes calldata b = bytes(name);
        uint256 n = b.length;
        if (n == 0 || n > MAX_NAME_LENGTH) revert InvalidModuleName(name);
        for (uint256 i; i < n; ++i) {
            bytes1 c = b[i];
            if (c == "/" && i != 0) {
                path = true;
                continue;
            }
            bool ok = _isAlnum(c) || (i != 0 && (c == "." || c == "_" || c == "-"));
            if (!ok) revert InvalidModuleName(name);
        }
    }

    /// @dev Versions: 1-64 of [A-Za-z0-9._+-], starting with a letter or digit.
    function _checkVersion(string calldata version) private pure {
        bytes calldata b = bytes(version);
        uint256 n = b.length;
        if (n == 0 || n > MAX_VERSION_LENGTH) revert InvalidModuleVersion(version);
        for (uint256 i; i < n; ++i) {
            bytes1 c = b[i];
            bool ok = _isAlnum(c) || (i != 0 && (c == "." || c == "_" || c == "-" || c == "+"));
            if (!ok) revert InvalidModuleVersion(version);
        }
    }

    function _isAlnum(bytes1 c) private pure returns (bool) {
        return (c >= "0" && c <= "9") || (c >= "a" && c <= "z") || (c >= "A" && c <= "Z");
    }
}

// SPDX-License-Identifier: Apache-2.0
pragma solidity ^0.8.28;

import {MarketFixture} from "./utils/MarketFixture.sol";

/// @notice The module directory the market inherits: publishing, name ownership, lookups.
contract ModuleDirectoryTest is MarketFixture {
    function _pub(address who, string memory name, string memory version) internal returns (bytes32) {
        vm.prank(who);
        return market.publishModule(name, version, _spec());
    }

    function _expectBadName(string memory name) internal {
        vm.expectRevert(abi.encodeWithSelector(InvalidModuleName.selector, name));
        vm.prank(alice);
        market.publishModule(name, "1", _spec());
    }

    function _expectBadVersion(string memory version) internal {
        vm.expectRevert(abi.encodeWithSelector(InvalidModuleVersion.selector, version));
        vm.prank(alice);
        market.publishModule("ok", version, _spec());
    }

    function _repeat(bytes1 c, uint256 n) internal pure returns (string memory) {
        bytes memory b = new bytes(n);
        for (uint256 i; i < n; ++i) b[i] = c;
        return string(b);
    }

    // ================================================================ publishModule

    function test_publishModule_storesSpecAndEmits() public {
        ModuleSpec memory spec = ModuleSpec({
            specHash: keccak256("sdxl"),
            imageHash: keccak256("sdxl image"),
            defaultPayment: 3 ether,
            runTimeout: 1800,
            flags: 3,
            requirements: Resources({cpuMilli: 4000, ramMb: 16_000, diskMb: 20_000, vramMb: 12_000, gpus: 1})
        });
        bytes32 id = keccak256("sdxl:1.0.0");
        vm.expectEmit(true, true, true, true, address(market));
        emit ModulePublished(id, "sdxl", "1.0.0", alice, spec);
        vm.prank(alice);
        bytes32 got = market.publishModule("sdxl", "1.0.0", spec);
        assertEq(got, id, "id = keccak256(name:version)");
        (ModuleSpec memory stored, uint40 publishedAt) = market.getModule(id);
        assertEq(keccak256(abi.encode(stored)), keccak256(abi.encode(spec)), "spec");
        assertEq(publishedAt, block.timestamp, "publishedAt");
        assertEq(market.moduleNameOwner(keccak256("sdxl")), alice, "name owner");
    }

    function test_publishModule_withoutImageReadsBackZeroImageHash() public {
        ModuleSpec memory spec = _spec();
        spec.imageHash = 0;
        vm.prank(alice);
        bytes32 id = market.publishModule("noimage", "1", spec);
        (ModuleSpec memory stored,) = market.getModule(id);
        assertEq(stored.imageHash, bytes32(0), "no image");
        assertEq(stored.specHash, spec.specHash, "spec hash");
    }

    function test_publishModule_ownerPublishesNewVersions() public {
        _pub(alice, "cowsay", "1");
        _pub(alice, "cowsay", "2");
        (, uint40 t) = market.getModule(keccak256("cowsay:2"));
        assertTrue(t != 0, "published");
    }

    function test_publishModule_revertsForOtherPublisherOfOwnedName() public {
        _pub(alice, "cowsay", "1");
        vm.expectRevert(abi.encodeWithSelector(NotNameOwner.selector, "cowsay", alice));
        vm.prank(bob);
        market.publishModule("cowsay", "2", _spec());
    }

    function test_publishModule_revertsOnDuplicateVersion() public {
        _pub(alice, "cowsay", "1");
        vm.expectRevert(abi.encodeWithSelector(ModuleExists.selector, "cowsay", "1"));
        vm.prank(alice);
        market.publishModule("cowsay", "1", _spec());
    }

    function _assign(string memory name, address to) internal {
        vm.prank(owner);
        market.assignModuleName(name, to);
    }

    function test_publishModule_acceptsValidNames() public {
        _pub(alice, "a", "1");
        _assign("github.com/lilypad-tech/lilypad-module-lilysay", alice);
        _pub(alice, "github.com/lilypad-tech/lilypad-module-lilysay", "v0.1.0");
        _assign("A_b-c.d/E9", alice);
        _pub(alice, "A_b-c.d/E9", "1");
        _pub(alice, "0start-with-digit", "1");
        _pub(alice, _repeat("n", 128), "1");
    }

    /// @dev Issue 12, sequence 5: the first account to publish claimed any name, another
    /// author's repository path included. A path is now published only by the account the
    /// market owner assigned it to; plain names stay first come, first served.
    function test_publishModule_repositoryPathIsNotClaimedByPublishingFirst() public {
        string memory path = "github.com/org/repo";
        vm.expectRevert(abi.encodeWithSelector(ModuleNameReserved.selector, path));
        vm.prank(bob);
        market.publishModule(path, "v1", _spec());
        vm.expectEmit(true, true, true, true, address(market));
        emit ModuleNameTransferred(keccak256(bytes(path)), path, address(0), alice);
        _assign(path, alice);
        vm.expectRevert(abi.encodeWithSelector(NotNameOwner.selector, path, alice));
        vm.prank(bob);
        market.publishModule(path, "v1", _spec());
        _pub(alice, path, "v1");
        assertEq(market.moduleNameOwner(keccak256(bytes(path))), alice, "owned by its assignee");
    }

    function test_assignModuleName_onlyOwnerOnlyUnclaimedPaths() public {
        vm.expectRevert(UNAUTHORIZED);
        vm.prank(alice);
        market.assignModuleName("github.com/org/repo", alice);
        // a plain name is first come: the owner cannot hand it out
        vm.expectRevert(abi.encodeWithSelector(InvalidModuleName.selector, "plain"));
        _assign("plain", alice);
        // an assigned path is never taken from its owner
        _assign("github.com/org/repo", alice);
        vm.expectRevert(abi.encodeWithSelector(NotNameOwner.selector, "github.com/org/repo", alice));
        _assign("github.com/org/repo", bob);
    }

    function test_publishModule_revertsOnEmptyName() public {
        _expectBadName("");
    }

    function test_publishModule_revertsOnTooLongName() public {
        _expectBadName(_repeat("n", 129));
    }

    function test_publishModule_revertsOnNameWithColon() public {
        _expectBadName("lily:say");
        _expectBadName("lilysay:");
    }

    function test_publishModule_revertsOnNameWithBadLeadingCharacter() public {
        _expectBadName(".hidden");
        _expectBadName("/root");
        _expectBadName("-dash");
        _expectBadName("_under");
    }

    function test_publishModule_revertsOnNameWithOtherCharacters() public {
        _expectBadName("with space");
        _expectBadName("at@sign");
        _expectBadName("plus+");
        _expectBadName("tab\t");
        _expectBadName(unicode"é");
        _expectBadName("nul\x00");
    }

    function test_publishModule_acceptsValidVersions() public {
        _pub(alice, "v", "1");
        _pub(alice, "v", "1.0.0-rc.1+build_7");
        _pub(alice, "v", "latest");
        _pub(alice, "v", _repeat("9", 64));
    }

    function test_publishModule_revertsOnEmptyVersion() public {
        _expectBadVersion("");
    }

    function test_publishModule_revertsOnTooLongVersion() public {
        _expectBadVersion(_repeat("9", 65));
    }

    function test_publishModule_revertsOnVersionWithColon() public {
        _expectBadVersion("1:0");
    }

    function test_publishModule_revertsOnVersionWithBadLeadingCharacter() public {
        _expectBadVersion(".1");
        _expectBadVersion("+1");
        _expectBadVersion("-1");
        _expectBadVersion("_1");
    }

    function test_publishModule_revertsOnVersionWithOtherCharacters() public {
        _expectBadVersion("1/2"); // '/' is for names only
        _expectBadVersion("1 0");
        _expectBadVersion("1@2");
    }

    function test_publishModule_revertsOnZeroSpecHash() public {
        ModuleSpec memory spec = _spec();
        spec.specHash = 0;
        vm.expectRevert(abi.encodeWithSelector(InvalidModuleSpec.selector));
        market.publishModule("m", "1", spec);
    }

    function test_publishModule_revertsOnZeroRunTimeout() public {
        ModuleSpec memory spec = _spec();
        spec.runTimeout = 0;
        vm.expectRevert(abi.encodeWithSelector(InvalidModuleSpec.selector));
        market.publishModule("m", "1", spec);
    }

    function test_publishModule_revertsOnRunTimeoutTooLarge() public {
        ModuleSpec memory spec = _spec();
        spec.runTimeout = uint32(market.MAX_TIMEOUT()) + 1;
        vm.expectRevert(abi.encodeWithSelector(InvalidModuleSpec.selector));
        market.publishModule("m", "1", spec);
        spec.runTimeout = uint32(market.MAX_TIMEOUT());
        market.publishModule("m", "1", spec);
    }

    function test_publishModule_failedPublishDoesNotClaimName() public {
        ModuleSpec memory spec = _spec();
        spec.specHash = 0;
        vm.prank(alice);
        vm.expectRevert(abi.encodeWithSelector(InvalidModuleSpec.selector));
        market.publishModule("claim", "1", spec);
        assertEq(market.moduleNameOwner(keccak256("claim")), address(0), "unclaimed");
    }

    // ================================================================ transferModuleName

    function test_transferModuleName_movesPublishingRight() public {
        _pub(alice, "cowsay", "1");
        vm.expectEmit(true, true, true, true, address(market));
        emit ModuleNameTransferred(keccak256("cowsay"), "cowsay", alice, bob);
        vm.prank(alice);
        market.transferModuleName("cowsay", bob);
        assertEq(market.moduleNameOwner(keccak256("cowsay")), bob, "new owner");
        vm.expectRevert(abi.encodeWithSelector(NotNameOwner.selector, "cowsay", bob));
        vm.prank(alice);
        market.publishModule("cowsay", "2", _spec());
        _pub(bob, "cowsay", "2");
        (, uint40 t) = market.getModule(keccak256("cowsay:1"));
        assertTrue(t != 0, "old versions stay");
    }

    function test_transferModuleName_revertsForNonOwner() public {
        _pub(alice, "cowsay", "1");
        vm.expectRevert(abi.encodeWithSelector(NotNameOwner.selector, "cowsay", alice));
        vm.prank(bob);
        market.transferModuleName("cowsay", bob);
    }

    function test_transferModuleName_revertsForUnclaimedName() public {
        vm.expectRevert(abi.encodeWithSelector(NotNameOwner.selector, "nobody", address(0)));
        vm.prank(bob);
        market.transferModuleName("nobody", bob);
    }

    function test_transferModuleName_revertsOnZeroAddress() public {
        _pub(alice, "cowsay", "1");
        vm.expectRevert(abi.encodeWithSelector(ZeroAddress.selector));
        vm.prank(alice);
        market.transferModuleName("cowsay", address(0));
    }

    // ================================================================ views

    function test_getModule_unknownIsEmpty() public view {
        (ModuleSpec memory spec, uint40 publishedAt) = market.getModule(keccak256("nope:1"));
        assertEq(publishedAt, 0, "unpublished");
        assertEq(spec.specHash, bytes32(0), "no spec");
        assertEq(spec.defaultPayment, 0, "no payment");
    }

    function test_getModule_fixtureModule() public view {
        (ModuleSpec memory spec, uint40 publishedAt) = market.getModule(moduleId);
        assertEq(keccak256(abi.encode(spec)), keccak256(abi.encode(_spec())), "spec");
        assertTrue(publishedAt != 0, "published");
    }

    function test_moduleId_isKeccakOfNameColonVersion() public view {
        assertEq(market.moduleId(MODULE_NAME, MODULE_VERSION), keccak256(bytes(MODULE)), "id");
        assertEq(market.moduleId(MODULE_NAME, MODULE_VERSION), moduleId, "published id");
        assertEq(market.moduleId("a", "b"), keccak256("a:b"), "a:b");
    }

    // ================================================================ fuzz

    /// @dev Each byte is accepted in a name exactly when it is alphanumeric, or one of
    /// `._-/` and not the first byte.
    function testFuzz_publishModule_nameCharset(uint8 c, bool first) public {
        bytes1 b = bytes1(c);
        bool alnum = (c >= 0x30 && c <= 0x39) || (c >= 0x41 && c <= 0x5a) || (c >= 0x61 && c <= 0x7a);
        bool sep = b == "." || b == "_" || b == "-" || b == "/";
        string memory name = first ? string(abi.encodePacked(b, "x")) : string(abi.encodePacked("x", b));
        bool ok = alnum || (!first && sep);
        if (ok && b == "/") _assign(name, alice); // a path: assigned by the owner
        if (!ok) vm.expectRevert(abi.encodeWithSelector(InvalidModuleName.selector, name));
        vm.prank(alice);
        market.publishModule(name, "1", _spec());
    }

    /// @dev Versions take `+` but not `/`.
    function testFuzz_publishModule_versionCharset(uint8 c, bool first) public {
        bytes1 b = bytes1(c);
        bool alnum = (c >= 0x30 && c <= 0x39) || (c >= 0x41 && c <= 0x5a) || (c >= 0x61 && c <= 0x7a);
        bool sep = b == "." || b == "_" || b == "-" || b == "+";
        string memory version = first ? string(abi.encodePacked(b, "1")) : string(abi.encodePacked("1", b));
        bool ok = alnum || (!first && sep);
        if (!ok) vm.expectRevert(abi.encodeWithSelector(InvalidModuleVersion.selector, version));
        vm.prank(alice);
        market.publishModule("fuzz", version, _spec());
    }

    function testFuzz_publishModule_lengths(uint256 nameLen, uint256 versionLen) public {
        nameLen = bound(nameLen, 0, 200);
        versionLen = bound(versionLen, 0, 100);
        string memory name = _repeat("n", nameLen);
        string memory version = _repeat("1", versionLen);
        if (nameLen == 0 || nameLen > 128) {
            vm.expectRevert(abi.encodeWithSelector(InvalidModuleName.selector, name));
        } else if (versionLen == 0 || versionLen > 64) {
            vm.expectRevert(abi.encodeWithSelector(InvalidModuleVersion.selector, version));
        }
        market.publishModule(name, version, _spec());
    }
}

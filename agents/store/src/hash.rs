//! CIDs of blocks: sha2-256 multihashes wrapped in CIDv1, and verification of bytes against a CID.

use cid::multihash::Multihash;
use cid::{Cid, Version};
use sha2::{Digest, Sha256};

use crate::error::{Result, StoreError};

/// Multicodec `raw`: a block that is just bytes (UnixFS file chunks).
pub const CODEC_RAW: u64 = 0x55;
/// Multicodec `dag-pb`: a protobuf node (UnixFS files with several chunks, directories).
pub const CODEC_DAG_PB: u64 = 0x70;
/// Multihash code of sha2-256.
pub(crate) const SHA2_256: u64 = 0x12;

fn sha256_multihash(data: &[u8]) -> Multihash<64> {
    let digest = Sha256::digest(data);
    // A 32-byte digest always fits the 64-byte multihash.
    match Multihash::wrap(SHA2_256, &digest) {
        Ok(mh) => mh,
        Err(_) => unreachable!("a sha2-256 digest fits a 64-byte multihash"),
    }
}

/// CIDv1 (raw, sha2-256) of `data`.
pub(crate) fn raw_cid(data: &[u8]) -> Cid {
    Cid::new_v1(CODEC_RAW, sha256_multihash(data))
}

/// CIDv1 (dag-pb, sha2-256) of an encoded dag-pb node.
pub(crate) fn dag_pb_cid(data: &[u8]) -> Cid {
    Cid::new_v1(CODEC_DAG_PB, sha256_multihash(data))
}

/// Checks that `data` hashes to `cid`'s multihash. Only sha2-256 is supported (what Kubo uses by
/// default); any other hash function is an [`StoreError::UnsupportedCid`].
pub(crate) fn verify_block(cid: &Cid, data: &[u8]) -> Result<()> {
    let mh = cid.hash();
    if mh.code() != SHA2_256 || mh.size() != 32 {
        return Err(StoreError::UnsupportedCid {
            cid: *cid,
            reason: format!(
                "multihash code {:#x} (size {}) is not sha2-256; cannot verify",
                mh.code(),
                mh.size()
            ),
        });
    }
    let digest = Sha256::digest(data);
    if digest[..] != *mh.digest() {
        return Err(StoreError::Verification {
            cid: *cid,
            reason: format!(
                "{} bytes hash to sha2-256 {}, not the CID's digest",
                data.len(),
                hex(&digest)
            ),
        });
    }
    Ok(())
}

/// The form a CID is stored under: CIDv0 becomes the equivalent CIDv1 (same codec and hash), so
/// both name the same block.
pub(crate) fn canonical(cid: &Cid) -> Cid {
    match cid.version() {
        Version::V0 => Cid::new_v1(cid.codec(), *cid.hash()),
        Version::V1 => *cid,
    }
}

pub(crate) fn hex(bytes: &[u8]) -> String {
    use std::fmt::Write;
    let mut s = String::with_capacity(bytes.len() * 2);
    for b in bytes {
        let _ = write!(s, "{b:02x}");
    }
    s
}

/// Parses a CID from text, as a [`StoreError::InvalidCid`] on failure.
pub fn parse_cid(input: &str) -> Result<Cid> {
    Cid::try_from(input).map_err(|e| StoreError::InvalidCid {
        input: input.chars().take(200).collect(),
        reason: e.to_string(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn known_answer_hello() {
        assert_eq!(
            raw_cid(b"hello\n").to_string(),
            "bafkreicysg23kiwv34eg2d7qweipxwosdo2py4ldv42nbauguluen5v6am"
        );
        assert_eq!(
            raw_cid(b"").to_string(),
            "bafkreihdwdcefgh4dqkjv67uzcmw7ojee6xedzdetojuzjevtenxquvyku"
        );
    }

    #[test]
    fn verification() {
        let cid = raw_cid(b"hello\n");
        verify_block(&cid, b"hello\n").unwrap();
        let err = verify_block(&cid, b"hellO\n").unwrap_err();
        assert!(matches!(err, StoreError::Verification { cid: c, .. } if c == cid));
        assert!(!err.is_retryable());
        assert!(err.to_string().contains(&cid.to_string()));

        // An identity multihash cannot be verified by this crate.
        let ident = Cid::new_v1(CODEC_RAW, Multihash::wrap(0x00, b"hi").unwrap());
        assert!(matches!(
            verify_block(&ident, b"hi"),
            Err(StoreError::UnsupportedCid { .. })
        ));
    }

    #[test]
    fn v0_and_v1_share_a_canonical_form() {
        let v1 = dag_pb_cid(&[0x0a, 0x02, 0x08, 0x01]);
        let v0 = Cid::new_v0(*v1.hash()).unwrap();
        assert_eq!(
            v0.to_string(),
            "QmUNLLsPACCz1vLxQVkXqqLX5R1X345qqfHbsf67hvA3Nn"
        );
        assert_eq!(canonical(&v0), v1);
        assert_eq!(canonical(&v1), v1);
    }

    #[test]
    fn parse_errors_name_the_input() {
        let err = parse_cid("not-a-cid").unwrap_err();
        assert!(matches!(err, StoreError::InvalidCid { ref input, .. } if input == "not-a-cid"));
        assert!(parse_cid("bafkreicysg23kiwv34eg2d7qweipxwosdo2py4ldv42nbauguluen5v6am").is_ok());
    }
}

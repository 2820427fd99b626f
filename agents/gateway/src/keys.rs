//! API keys: `lp_<id>_<secret>`. The id (12 hex digits) names the key in listings, revocation
//! and logs; the whole key is stored only as its SHA-256. Keys are shown once, at creation.

use sha2::{Digest, Sha256};

/// Random bytes from the OS, as lowercase hex.
pub fn random_hex(bytes: usize) -> String {
    let mut buf = vec![0u8; bytes];
    // the OS random source failing is not recoverable for key generation
    getrandom::fill(&mut buf).expect("the operating system's random source failed");
    hex::encode(buf)
}

/// A freshly generated key.
#[derive(Clone)]
pub struct ApiKey {
    /// `lpk_` + 12 hex digits: public, used to find and revoke the key.
    pub id: String,
    /// The full key to give the user (once).
    pub secret: String,
}

impl std::fmt::Debug for ApiKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ApiKey").field("id", &self.id).finish_non_exhaustive()
    }
}

impl ApiKey {
    pub fn generate() -> ApiKey {
        let id = format!("lpk_{}", random_hex(6));
        let secret = format!("{id}_{}", random_hex(32));
        ApiKey { id, secret }
    }

    /// What the database stores.
    pub fn hash(&self) -> String {
        hash_key(&self.secret)
    }
}

pub fn hash_key(key: &str) -> String {
    hex::encode(Sha256::digest(key.as_bytes()))
}

/// The key id of a presented key (`lpk_<12 hex>` before the second `_`), if it has the shape.
pub fn key_id_of(presented: &str) -> Option<&str> {
    let rest = presented.strip_prefix("lpk_")?;
    let (id_hex, secret) = rest.split_once('_')?;
    let ok = id_hex.len() == 12 && id_hex.bytes().all(|b| b.is_ascii_hexdigit()) && secret.len() == 64;
    ok.then(|| &presented[..4 + 12])
}

/// Whether `presented` hashes to `stored`, comparing in constant time.
pub fn hash_matches(presented: &str, stored: &str) -> bool {
    let a = hash_key(presented);
    let (a, b) = (a.as_bytes(), stored.as_bytes());
    if a.len() != b.len() {
        return false;
    }
    a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_key_is_found_by_its_id_and_checked_by_its_hash() {
        let k = ApiKey::generate();
        assert_eq!(key_id_of(&k.secret), Some(k.id.as_str()));
        assert!(hash_matches(&k.secret, &k.hash()));
        let mut wrong = k.secret.clone();
        wrong.pop();
        wrong.push(if k.secret.ends_with('0') { '1' } else { '0' });
        assert!(!hash_matches(&wrong, &k.hash()));
        assert_ne!(ApiKey::generate().secret, k.secret, "keys are random");
        assert!(!format!("{k:?}").contains(&k.secret[17..]), "Debug never shows the secret");
    }

    #[test]
    fn malformed_keys_have_no_id() {
        for bad in ["", "lpk_", "lpk_123_abc", "sk_0123456789ab_x", "lpk_zzzzzzzzzzzz_00"] {
            assert_eq!(key_id_of(bad), None, "{bad}");
        }
    }
}

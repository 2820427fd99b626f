//! Environment variables: the deprecated names still accepted for a while. The names the code
//! reads are in the flags' `env = "..."` (see `lilypad <command> --help`) plus those read
//! directly (`LILYPAD_LOG_LEVEL`, `DOCKER_HOST`, `LILYPAD_GIT_BASE`); README's table lists them
//! all and `tests/env_vars.rs` checks that it does.

/// `(deprecated name, its replacement)`.
pub const DEPRECATED: &[(&str, &str)] = &[
    ("DATA_DIR", "LILYPAD_DATA_DIR"),
    ("LOG_LEVEL", "LILYPAD_LOG_LEVEL"),
    ("IPFS_GATEWAY", "LILYPAD_OUTPUTS_GATEWAY"),
    ("IPFS_API", "LILYPAD_IPFS_API"),
    ("GATEWAY_ADDR", "LILYPAD_OUTPUTS_LISTEN"),
    ("GATEWAY_LISTEN", "LILYPAD_GATEWAY_LISTEN"),
    ("OFFER_PRICE", "LILYPAD_PRICE"),
    ("COLLATERAL", "LILYPAD_COLLATERAL"),
    ("POLL_MS", "LILYPAD_POLL_MS"),
];

/// Copies each deprecated variable that is set to its replacement (unless that is set too),
/// before the command line is parsed. Returns one warning per deprecated variable found, to
/// be logged once logging is up.
pub fn apply_deprecated() -> Vec<String> {
    let mut warnings = Vec::new();
    for (old, new) in DEPRECATED {
        let Some(value) = std::env::var_os(old) else { continue };
        if std::env::var_os(new).is_some() {
            warnings.push(format!("{old} is deprecated and ignored: {new} is set too (unset {old})"));
        } else {
            // Called first thing in `main`, before any thread is started.
            std::env::set_var(new, value);
            warnings.push(format!("{old} is deprecated: rename it to {new}"));
        }
    }
    warnings
}

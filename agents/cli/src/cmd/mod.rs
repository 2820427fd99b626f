//! One file per `lilypad` command: each an args struct with a `run`.

pub mod auditor;
pub mod balance;
pub mod challenge;
pub mod devnet;
pub mod gateway;
pub mod ipfs;
pub mod job;
pub mod keeper;
pub mod mediator;
pub mod module;
pub mod provider;
pub mod run;
pub mod solver;

/// A number of bytes: a whole number, optionally with a unit (`KiB`, `MiB`, `GiB`, `TiB`:
/// powers of 1024; `KB`, `MB`, `GB`, `TB`: of 1000; `B`), e.g. `10GiB` or `500MB`.
pub fn parse_bytes(s: &str) -> Result<u64, String> {
    let t = s.trim();
    let split = t.find(|c: char| !c.is_ascii_digit()).unwrap_or(t.len());
    let (digits, unit) = t.split_at(split);
    let unit_size: u64 = match unit.trim().to_ascii_lowercase().as_str() {
        "" | "b" => 1,
        "kib" => 1 << 10,
        "mib" => 1 << 20,
        "gib" => 1 << 30,
        "tib" => 1 << 40,
        "kb" => 1_000,
        "mb" => 1_000_000,
        "gb" => 1_000_000_000,
        "tb" => 1_000_000_000_000,
        _ => return Err(format!("{s:?}: unknown unit {unit:?}; expected bytes as a whole number with KiB, MiB, GiB, TiB (or KB, MB, GB, TB), e.g. 10GiB")),
    };
    let n: u64 = digits.parse().map_err(|_| format!("{s:?}: expected bytes as a whole number, optionally with a unit, e.g. 10GiB"))?;
    n.checked_mul(unit_size).ok_or_else(|| format!("{s:?}: too large (at most {} bytes)", u64::MAX))
}

/// A share from 0 to 1.
pub fn parse_rate(s: &str) -> Result<f64, String> {
    match s.trim().parse::<f64>() {
        Ok(r) if (0.0..=1.0).contains(&r) => Ok(r),
        _ => Err(format!("{s:?}: expected a share from 0 to 1, e.g. 0.1")),
    }
}

#[cfg(test)]
mod tests {
    use super::parse_bytes;

    #[test]
    fn sizes_read_with_or_without_a_unit() {
        assert_eq!(parse_bytes("10GiB"), Ok(10 << 30));
        assert_eq!(parse_bytes(" 500 MB "), Ok(500_000_000));
        assert_eq!(parse_bytes("4096"), Ok(4096));
        assert_eq!(parse_bytes("1kib"), Ok(1024));
        assert!(parse_bytes("ten GiB").unwrap_err().contains("whole number"));
        assert!(parse_bytes("10 GiG").unwrap_err().contains("unknown unit"));
        assert!(parse_bytes("99999999999TiB").unwrap_err().contains("too large"));
        assert!(parse_bytes("").is_err());
    }
}

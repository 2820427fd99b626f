//! The result files: Ollama's `/api/generate` and `/api/chat` answers as response.json, written
//! whole or not at all.

use std::fs;
use std::io::Write;
use std::path::Path;
use std::time::{SystemTime, UNIX_EPOCH};

use serde::Serialize;

/// `created_at` when timings are off: the same for every run.
pub const FIXED_CREATED_AT: &str = "1970-01-01T00:00:00Z";

/// The assistant's message of an `/api/chat` answer, fields in Ollama's order.
#[derive(Debug, Serialize)]
pub struct ChatMessage<'a> {
    pub role: &'static str,
    pub content: &'a str,
}

/// RFC 3339 UTC with nanoseconds, as Ollama writes `created_at`.
pub fn rfc3339(t: SystemTime) -> String {
    let d = t.duration_since(UNIX_EPOCH).unwrap_or_default();
    let secs = d.as_secs() as i64;
    let (days, rem) = (secs.div_euclid(86_400), secs.rem_euclid(86_400));
    // Civil date from days since 1970-01-01 (Howard Hinnant's algorithm).
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!(
        "{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}.{:09}Z",
        rem / 3600,
        rem % 3600 / 60,
        rem % 60,
        d.subsec_nanos()
    )
}

/// A value as compact JSON (a struct keeps its fields' order).
pub fn json(value: &impl Serialize) -> String {
    // Serializing these plain structs, strings and numbers cannot fail.
    serde_json::to_string(value).unwrap_or_else(|e| unreachable!("serializing a response field: {e}"))
}

/// An Ollama answer's fields in the order given. Pretty-printed with one field per line, each
/// value (`context`, `message`) compact on its line.
pub fn response_json(fields: &[(&str, String)]) -> String {
    let mut s = String::from("{\n");
    for (i, (k, v)) in fields.iter().enumerate() {
        s.push_str(&format!("  {}: {}", json(k), v));
        s.push_str(if i + 1 < fields.len() { ",\n" } else { "\n" });
    }
    s.push_str("}\n");
    s
}

/// Writes `path` whole or not at all: a temporary file next to it, synced, then renamed.
pub fn write_atomically(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    let name = path.file_name().ok_or_else(|| std::io::Error::other("not a file name"))?;
    let tmp = path.with_file_name(format!(".{}.tmp", name.to_string_lossy()));
    let result = (|| {
        let mut f = fs::File::create(&tmp)?;
        f.write_all(bytes)?;
        f.sync_all()?;
        fs::rename(&tmp, path)
    })();
    if result.is_err() {
        let _ = fs::remove_file(&tmp);
    }
    result
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn rfc3339_formats_utc_dates() {
        assert_eq!(rfc3339(UNIX_EPOCH), "1970-01-01T00:00:00.000000000Z");
        let t = UNIX_EPOCH + Duration::new(1_719_256_806, 374_579_437);
        assert_eq!(rfc3339(t), "2024-06-24T19:20:06.374579437Z");
        let leap = UNIX_EPOCH + Duration::from_secs(951_782_400); // 2000-02-29
        assert_eq!(rfc3339(leap), "2000-02-29T00:00:00.000000000Z");
    }

    #[test]
    fn response_json_is_valid_json_with_fields_in_order() {
        let message = json(&ChatMessage { role: "assistant", content: "hi" });
        let s = response_json(&[("model", json(&"m")), ("message", message), ("context", json(&[1, 2])), ("done", json(&true))]);
        let v: serde_json::Value = serde_json::from_str(&s).unwrap();
        assert_eq!(v["context"], serde_json::json!([1, 2]));
        assert_eq!(v["message"]["content"], "hi");
        assert!(s.find("\"model\"").unwrap() < s.find("\"done\"").unwrap());
        // Ollama's order inside the message too
        assert!(s.contains(r#"{"role":"assistant","content":"hi"}"#), "{s}");
    }

    #[test]
    fn write_atomically_leaves_the_whole_file_and_no_temporary() {
        let dir = std::env::temp_dir().join(format!("ollama-pipeline-test-{}", std::process::id()));
        fs::create_dir_all(&dir).unwrap();
        let path = dir.join("response.json");
        write_atomically(&path, b"{}\n").unwrap();
        assert_eq!(fs::read(&path).unwrap(), b"{}\n");
        assert_eq!(fs::read_dir(&dir).unwrap().count(), 1);
        assert!(write_atomically(&dir.join("missing/response.json"), b"x").is_err());
        fs::remove_dir_all(&dir).unwrap();
    }
}

//! The comparison a mediator makes between two results of the same job (its own re-run and
//! the provider's), as the module declares it.
//!
//! A result is a folder: `stdout`, `stderr`, `exitCode` and `outputs/...`. By default two
//! results are the same only when every file is the same, byte for byte (the same folder CID).
//! A non-deterministic module may declare, in its spec's `compare.ignore`, what may differ:
//!
//! * `"stderr"`, `"outputs/log"`: a file (or a whole folder) left out of the comparison, on
//!   both sides, whether it is there or not;
//! * `"outputs/response.json#/created_at"`: a JSON file compared as JSON (key order and
//!   whitespace do not matter) after the member the JSON pointer (RFC 6901) names is dropped
//!   from both sides (an array element is replaced by `null`, so that the others keep their
//!   places).
//!
//! [`compare_results`] is a pure function of the two folders and the rules. It never follows a
//! symbolic link (a link, a FIFO or a device in a result makes it differ), never reads outside
//! the two folders (names come from the folders themselves; rules cannot hold `..`), reads
//! files in chunks (a huge file costs time, not memory), parses JSON only up to
//! [`MAX_JSON_BYTES`] (larger files are compared byte for byte) and refuses JSON with a key
//! given twice (two readers could see two different values).

use std::collections::{BTreeMap, BTreeSet};
use std::ffi::OsString;
use std::fmt;
use std::fs;
use std::io::Read;
use std::path::{Path, PathBuf};

use serde::de::{self, Deserializer, MapAccess, SeqAccess, Visitor};
use serde_json::{Map, Value};

/// Most `compare.ignore` rules a module may declare.
pub const MAX_IGNORE_RULES: usize = 64;
/// Longest rule, in bytes.
pub const MAX_RULE_LENGTH: usize = 512;
/// Largest JSON file parsed for a pointer rule; larger ones are compared byte for byte.
pub const MAX_JSON_BYTES: u64 = 16 << 20;
/// Most entries one folder of a result may hold.
pub const MAX_DIR_ENTRIES: usize = 100_000;
/// Deepest folder nesting compared (as deep as `lilypad_store::fetch` writes).
pub const MAX_DEPTH: usize = 256;

/// The comparison a module declares, checked and compiled.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Comparison {
    /// Paths (as components) left out entirely.
    skip: BTreeSet<Vec<String>>,
    /// JSON files (as components) and the pointers (as reference tokens) dropped from them.
    drop: BTreeMap<Vec<String>, Vec<Vec<String>>>,
}

/// A `compare.ignore` rule that cannot be used.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("`compare.ignore` rule {rule:?}: {problem}")]
pub struct RuleError {
    pub rule: String,
    pub problem: String,
}

/// How two results compared.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict {
    Same,
    /// The first difference found: the path in the result and what differs.
    Differs {
        path: String,
        reason: String,
    },
}

impl Verdict {
    pub fn is_same(&self) -> bool {
        matches!(self, Verdict::Same)
    }
}

impl fmt::Display for Verdict {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Verdict::Same => f.write_str("the same"),
            Verdict::Differs { path, reason } => write!(f, "{path}: {reason}"),
        }
    }
}

/// The comparison could not be made: reading a folder failed, or the mediator's own result is
/// beyond what is compared (the provider's being so is a [`Verdict::Differs`]).
#[derive(Debug, thiserror::Error)]
pub enum CompareError {
    #[error("reading {path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("{path}: {reason}")]
    TooLarge { path: PathBuf, reason: String },
}

impl Comparison {
    /// Byte for byte: the default.
    pub fn exact() -> Self {
        Self::default()
    }

    /// Whether this is the byte-for-byte comparison (then equal CIDs decide).
    pub fn is_exact(&self) -> bool {
        self.skip.is_empty() && self.drop.is_empty()
    }

    /// Checks and compiles `compare.ignore` rules: `path` or `path#/json/pointer`, the path
    /// relative to the result folder, `/`-separated, without empty, `.` or `..` components.
    pub fn parse<S: AsRef<str>>(rules: &[S]) -> Result<Self, RuleError> {
        if rules.len() > MAX_IGNORE_RULES {
            return Err(RuleError {
                rule: rules
                    .last()
                    .map(|r| r.as_ref().to_string())
                    .unwrap_or_default(),
                problem: format!("at most {MAX_IGNORE_RULES} rules are allowed"),
            });
        }
        let mut out = Comparison::default();
        for rule in rules {
            let rule = rule.as_ref();
            let bad = |problem: &str| RuleError {
                rule: rule.to_string(),
                problem: problem.to_string(),
            };
            if rule.len() > MAX_RULE_LENGTH {
                return Err(bad(&format!("longer than {MAX_RULE_LENGTH} bytes")));
            }
            if rule.contains('\0') {
                return Err(bad("contains a NUL byte"));
            }
            let (path, pointer) = match rule.split_once('#') {
                Some((p, ptr)) => (p, Some(ptr)),
                None => (rule, None),
            };
            let path = parse_path(path).map_err(|p| bad(&p))?;
            match pointer {
                None => {
                    out.skip.insert(path);
                }
                Some(ptr) => {
                    let tokens = parse_pointer(ptr).map_err(|p| bad(&p))?;
                    out.drop.entry(path).or_default().push(tokens);
                }
            }
        }
        Ok(out)
    }
}

fn parse_path(path: &str) -> Result<Vec<String>, String> {
    if path.is_empty() {
        return Err("names no file: write a path in the result folder, e.g. \"stderr\" or \"outputs/result.json\"".into());
    }
    if path.starts_with('/') {
        return Err(
            "must be relative to the result folder (no leading /), e.g. \"outputs/result.json\""
                .into(),
        );
    }
    let mut parts = Vec::new();
    for part in path.split('/') {
        match part {
            "" => return Err("has an empty path component (\"//\" or a trailing \"/\")".into()),
            "." | ".." => {
                return Err(
                    "has a \".\" or \"..\" component: name files inside the result folder only"
                        .into(),
                );
            }
            p => parts.push(p.to_string()),
        }
    }
    Ok(parts)
}

fn parse_pointer(ptr: &str) -> Result<Vec<String>, String> {
    if ptr.is_empty() {
        return Err("has an empty JSON pointer (the whole document): to ignore the whole file, leave out the \"#\"".into());
    }
    let Some(rest) = ptr.strip_prefix('/') else {
        return Err(
            "the JSON pointer after \"#\" must start with \"/\" (RFC 6901), e.g. \"#/created_at\""
                .into(),
        );
    };
    let mut tokens = Vec::new();
    for raw in rest.split('/') {
        let mut token = String::with_capacity(raw.len());
        let mut chars = raw.chars();
        while let Some(c) = chars.next() {
            if c == '~' {
                match chars.next() {
                    Some('0') => token.push('~'),
                    Some('1') => token.push('/'),
                    _ => return Err("the JSON pointer has a \"~\" not followed by 0 or 1 (write ~0 for ~ and ~1 for /)".into()),
                }
            } else {
                token.push(c);
            }
        }
        tokens.push(token);
    }
    Ok(tokens)
}

/// The two sides, for messages: the mediator's re-run is `expected`, the provider's result is
/// `submitted`.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Side {
    Expected,
    Submitted,
}

/// Compares the result folder `expected` (the mediator's own re-run) with `submitted` (the
/// provider's, fetched) under `cmp`. See the module documentation.
pub fn compare_results(
    expected: &Path,
    submitted: &Path,
    cmp: &Comparison,
) -> Result<Verdict, CompareError> {
    let mut walk = Walk {
        expected,
        submitted,
        cmp,
        rel: Vec::new(),
    };
    walk.dir(0)
}

struct Walk<'a> {
    expected: &'a Path,
    submitted: &'a Path,
    cmp: &'a Comparison,
    rel: Vec<OsString>,
}

impl Walk<'_> {
    fn path(&self, root: &Path) -> PathBuf {
        let mut p = root.to_path_buf();
        p.extend(&self.rel);
        p
    }

    fn shown(&self) -> String {
        if self.rel.is_empty() {
            return ".".into();
        }
        self.rel
            .iter()
            .map(|c| c.to_string_lossy())
            .collect::<Vec<_>>()
            .join("/")
    }

    /// The rule key of the current path (`None` when a name is not UTF-8: no rule names it).
    fn key(&self) -> Option<Vec<String>> {
        self.rel
            .iter()
            .map(|c| c.to_str().map(str::to_string))
            .collect()
    }

    fn differs(&self, reason: impl Into<String>) -> Verdict {
        Verdict::Differs {
            path: self.shown(),
            reason: reason.into(),
        }
    }

    fn too_large(&self, side: Side, reason: String) -> Result<Verdict, CompareError> {
        match side {
            Side::Submitted => Ok(self.differs(format!("the submitted result {reason}"))),
            Side::Expected => Err(CompareError::TooLarge {
                path: self.path(self.expected),
                reason,
            }),
        }
    }

    fn list(&self, side: Side) -> Result<Result<BTreeSet<OsString>, String>, CompareError> {
        let dir = self.path(if side == Side::Expected {
            self.expected
        } else {
            self.submitted
        });
        let io = |source| CompareError::Io {
            path: dir.clone(),
            source,
        };
        let mut names = BTreeSet::new();
        for entry in fs::read_dir(&dir).map_err(io)? {
            let entry = entry.map_err(io)?;
            names.insert(entry.file_name());
            if names.len() > MAX_DIR_ENTRIES {
                return Ok(Err(format!(
                    "has more than {MAX_DIR_ENTRIES} entries in one folder"
                )));
            }
        }
        Ok(Ok(names))
    }

    fn dir(&mut self, depth: usize) -> Result<Verdict, CompareError> {
        if depth > MAX_DEPTH {
            // Only folders on both sides are descended into: the expected result is this deep too.
            return self.too_large(
                Side::Expected,
                format!("has folders nested more than {MAX_DEPTH} deep"),
            );
        }
        let mine = match self.list(Side::Expected)? {
            Ok(n) => n,
            Err(reason) => return self.too_large(Side::Expected, reason),
        };
        let theirs = match self.list(Side::Submitted)? {
            Ok(n) => n,
            Err(reason) => return self.too_large(Side::Submitted, reason),
        };
        for name in mine.union(&theirs) {
            self.rel.push(name.clone());
            let v = self.entry(mine.contains(name), theirs.contains(name), depth)?;
            self.rel.pop();
            if !v.is_same() {
                return Ok(v);
            }
        }
        Ok(Verdict::Same)
    }

    fn entry(
        &mut self,
        in_mine: bool,
        in_theirs: bool,
        depth: usize,
    ) -> Result<Verdict, CompareError> {
        let key = self.key();
        if key.as_ref().is_some_and(|k| self.cmp.skip.contains(k)) {
            return Ok(Verdict::Same);
        }
        if !in_theirs {
            return Ok(self.differs("missing from the submitted result"));
        }
        if !in_mine {
            return Ok(self.differs("only in the submitted result"));
        }
        let a = self.path(self.expected);
        let b = self.path(self.submitted);
        let ma = fs::symlink_metadata(&a).map_err(|source| CompareError::Io {
            path: a.clone(),
            source,
        })?;
        let mb = fs::symlink_metadata(&b).map_err(|source| CompareError::Io {
            path: b.clone(),
            source,
        })?;
        let kind = |m: &fs::Metadata| {
            let t = m.file_type();
            if t.is_dir() {
                "folder"
            } else if t.is_file() {
                "file"
            } else if t.is_symlink() {
                "symbolic link"
            } else {
                "special file"
            }
        };
        let (ka, kb) = (kind(&ma), kind(&mb));
        if kb != "folder" && kb != "file" {
            return Ok(self.differs(format!(
                "is a {kb} in the submitted result: results hold only files and folders"
            )));
        }
        if ka != "folder" && ka != "file" {
            return Ok(self.differs(format!(
                "is a {ka} in the expected result: results hold only files and folders"
            )));
        }
        if ka != kb {
            return Ok(self.differs(format!(
                "a {ka} in the expected result, a {kb} in the submitted one"
            )));
        }
        if ka == "folder" {
            return self.dir(depth + 1);
        }
        let pointers = key.as_ref().and_then(|k| self.cmp.drop.get(k));
        match pointers {
            Some(ptrs) if ma.len() <= MAX_JSON_BYTES && mb.len() <= MAX_JSON_BYTES => {
                self.json(&a, &b, ptrs)
            }
            _ => self.bytes(&a, &b, ma.len(), mb.len()),
        }
    }

    fn bytes(&self, a: &Path, b: &Path, la: u64, lb: u64) -> Result<Verdict, CompareError> {
        if la != lb {
            return Ok(self.differs(format!("{la} bytes expected, {lb} submitted")));
        }
        let open = |p: &Path| {
            fs::File::open(p).map_err(|source| CompareError::Io {
                path: p.to_path_buf(),
                source,
            })
        };
        let (mut fa, mut fb) = (open(a)?.take(la), open(b)?.take(lb));
        let mut ba = vec![0u8; 64 << 10];
        let mut bb = vec![0u8; 64 << 10];
        let mut offset = 0u64;
        loop {
            let na = read_full(&mut fa, &mut ba).map_err(|source| CompareError::Io {
                path: a.to_path_buf(),
                source,
            })?;
            let nb = read_full(&mut fb, &mut bb).map_err(|source| CompareError::Io {
                path: b.to_path_buf(),
                source,
            })?;
            if na != nb || ba[..na] != bb[..nb] {
                let at = ba[..na]
                    .iter()
                    .zip(&bb[..nb])
                    .position(|(x, y)| x != y)
                    .unwrap_or(na.min(nb));
                return Ok(
                    self.differs(format!("the bytes differ at offset {}", offset + at as u64))
                );
            }
            if na == 0 {
                return Ok(Verdict::Same);
            }
            offset += na as u64;
        }
    }

    fn json(&self, a: &Path, b: &Path, pointers: &[Vec<String>]) -> Result<Verdict, CompareError> {
        let read = |p: &Path| -> Result<Vec<u8>, CompareError> {
            let mut out = Vec::new();
            let f = fs::File::open(p).map_err(|source| CompareError::Io {
                path: p.to_path_buf(),
                source,
            })?;
            f.take(MAX_JSON_BYTES + 1)
                .read_to_end(&mut out)
                .map_err(|source| CompareError::Io {
                    path: p.to_path_buf(),
                    source,
                })?;
            Ok(out)
        };
        let (ta, tb) = (read(a)?, read(b)?);
        let (Some(mut va), Some(mut vb)) = (parse_strict(&ta), parse_strict(&tb)) else {
            // Not JSON on one side at least (or a key given twice): only the same bytes match.
            if ta == tb {
                return Ok(Verdict::Same);
            }
            return Ok(self.differs("not valid JSON (or a key given twice) and not the same bytes"));
        };
        for ptr in pointers {
            drop_pointer(&mut va, ptr);
            drop_pointer(&mut vb, ptr);
        }
        if va == vb {
            Ok(Verdict::Same)
        } else {
            Ok(self.differs(format!(
                "the JSON differs beyond the ignored fields: {}",
                first_json_difference(&va, &vb, String::new())
            )))
        }
    }
}

fn read_full(r: &mut impl Read, buf: &mut [u8]) -> std::io::Result<usize> {
    let mut n = 0;
    while n < buf.len() {
        match r.read(&mut buf[n..]) {
            Ok(0) => break,
            Ok(k) => n += k,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(n)
}

/// Drops what `tokens` points at: removed from an object, replaced by `null` in an array.
fn drop_pointer(v: &mut Value, tokens: &[String]) {
    let Some((last, parents)) = tokens.split_last() else {
        return;
    };
    let mut cur = v;
    for t in parents {
        cur = match cur {
            Value::Object(m) => match m.get_mut(t) {
                Some(next) => next,
                None => return,
            },
            Value::Array(a) => match array_index(t).and_then(|i| a.get_mut(i)) {
                Some(next) => next,
                None => return,
            },
            _ => return,
        };
    }
    match cur {
        Value::Object(m) => {
            m.remove(last);
        }
        Value::Array(a) => {
            if let Some(slot) = array_index(last).and_then(|i| a.get_mut(i)) {
                *slot = Value::Null;
            }
        }
        _ => {}
    }
}

/// An RFC 6901 array index: `0` or digits without a leading zero.
fn array_index(t: &str) -> Option<usize> {
    if t.is_empty() || !t.bytes().all(|b| b.is_ascii_digit()) || (t.len() > 1 && t.starts_with('0'))
    {
        return None;
    }
    t.parse().ok()
}

fn first_json_difference(a: &Value, b: &Value, at: String) -> String {
    match (a, b) {
        (Value::Object(x), Value::Object(y)) => {
            for k in x.keys().chain(y.keys()) {
                let here = format!("{at}/{}", k.replace('~', "~0").replace('/', "~1"));
                match (x.get(k), y.get(k)) {
                    (Some(p), Some(q)) if p != q => return first_json_difference(p, q, here),
                    (Some(_), None) => {
                        return format!("{here} is missing from the submitted result");
                    }
                    (None, Some(_)) => return format!("{here} is only in the submitted result"),
                    _ => {}
                }
            }
            format!("{at} differs")
        }
        (Value::Array(x), Value::Array(y)) => {
            if x.len() != y.len() {
                return format!(
                    "{} has {} elements expected, {} submitted",
                    if at.is_empty() { "/" } else { &at },
                    x.len(),
                    y.len()
                );
            }
            for (i, (p, q)) in x.iter().zip(y).enumerate() {
                if p != q {
                    return first_json_difference(p, q, format!("{at}/{i}"));
                }
            }
            format!("{at} differs")
        }
        _ => format!("{} differs", if at.is_empty() { "/" } else { &at }),
    }
}

/// Parses JSON, refusing a key given twice in any object.
fn parse_strict(text: &[u8]) -> Option<Value> {
    let mut de = serde_json::Deserializer::from_slice(text);
    let v = Strict::deserialize_value(&mut de).ok()?;
    de.end().ok()?;
    Some(v)
}

struct Strict;

impl Strict {
    fn deserialize_value<'de, D: Deserializer<'de>>(d: D) -> Result<Value, D::Error> {
        d.deserialize_any(StrictVisitor)
    }
}

struct StrictSeed;

impl<'de> de::DeserializeSeed<'de> for StrictSeed {
    type Value = Value;
    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<Value, D::Error> {
        d.deserialize_any(StrictVisitor)
    }
}

struct StrictVisitor;

impl<'de> Visitor<'de> for StrictVisitor {
    type Value = Value;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a JSON value")
    }
    fn visit_bool<E>(self, v: bool) -> Result<Value, E> {
        Ok(Value::Bool(v))
    }
    fn visit_i64<E>(self, v: i64) -> Result<Value, E> {
        Ok(Value::from(v))
    }
    fn visit_u64<E>(self, v: u64) -> Result<Value, E> {
        Ok(Value::from(v))
    }
    fn visit_f64<E>(self, v: f64) -> Result<Value, E> {
        Ok(serde_json::Number::from_f64(v)
            .map(Value::Number)
            .unwrap_or(Value::Null))
    }
    fn visit_str<E>(self, v: &str) -> Result<Value, E> {
        Ok(Value::String(v.to_string()))
    }
    fn visit_string<E>(self, v: String) -> Result<Value, E> {
        Ok(Value::String(v))
    }
    fn visit_unit<E>(self) -> Result<Value, E> {
        Ok(Value::Null)
    }
    fn visit_none<E>(self) -> Result<Value, E> {
        Ok(Value::Null)
    }
    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Value, A::Error> {
        let mut out = Vec::new();
        while let Some(v) = seq.next_element_seed(StrictSeed)? {
            out.push(v);
        }
        Ok(Value::Array(out))
    }
    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Value, A::Error> {
        let mut out = Map::new();
        while let Some(k) = map.next_key::<String>()? {
            if out.contains_key(&k) {
                return Err(de::Error::custom(format!("duplicate key {k:?}")));
            }
            let v = map.next_value_seed(StrictSeed)?;
            out.insert(k, v);
        }
        Ok(Value::Object(out))
    }
}

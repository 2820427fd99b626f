//! Job inputs: `Key=Value` strings (as `lilypad run -i` takes them and `JobCreated` carries
//! them), checked against a module's typed declarations.

use std::collections::BTreeMap;
use std::fmt;

use lilypad_store::{Cid, CODEC_DAG_PB, CODEC_RAW};

use crate::error::{InputError, InputProblem, SpecError};
use crate::names::is_valid_input_name;
use crate::spec::{InputSpec, InputType};

/// Most bytes of one input value, whatever the module declares.
pub const MAX_INPUT_BYTES: usize = 64 << 10;

/// Content bytes a `cid` input may bring when its declaration gives no `maxBytes`: 64 MiB.
pub const DEFAULT_INPUT_DATA_BYTES: u64 = 64 << 20;

/// Most content bytes a `cid` input may declare (`maxBytes`): 16 GiB.
pub const MAX_INPUT_DATA_BYTES: u64 = 16 << 30;

/// Where a `cid` input named `name` appears in the job's sandbox: `/inputs/<name>`.
pub fn input_path(name: &str) -> String {
    format!("/inputs/{name}")
}

/// Raw job inputs, `Key -> Value`, each key once. Keys are valid input names and values hold no
/// NUL byte and at most [`MAX_INPUT_BYTES`]; whether they fit a module is checked when the
/// module renders them ([`crate::Module::render`]).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Inputs(BTreeMap<String, String>);

impl Inputs {
    pub fn new() -> Self {
        Inputs::default()
    }

    /// Adds `key=value`; refuses an invalid key, a key given already, a NUL byte, an oversized
    /// value.
    pub fn insert(&mut self, key: &str, value: &str) -> Result<(), InputError> {
        if !is_valid_input_name(key) {
            return Err(InputProblem::InvalidKey { key: key.into() }.into());
        }
        if value.contains('\0') {
            return Err(InputProblem::NulByte { key: key.into() }.into());
        }
        if value.len() > MAX_INPUT_BYTES {
            return Err(InputProblem::TooLarge {
                key: key.into(),
                bytes: value.len(),
                max: MAX_INPUT_BYTES,
            }
            .into());
        }
        if self.0.contains_key(key) {
            return Err(InputProblem::Duplicate { key: key.into() }.into());
        }
        self.0.insert(key.to_string(), value.to_string());
        Ok(())
    }

    pub fn get(&self, key: &str) -> Option<&str> {
        self.0.get(key).map(String::as_str)
    }

    pub fn len(&self) -> usize {
        self.0.len()
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// `(key, value)` in key order.
    pub fn iter(&self) -> impl Iterator<Item = (&str, &str)> {
        self.0.iter().map(|(k, v)| (k.as_str(), v.as_str()))
    }

    /// `Key=Value` strings in key order: what `JobRequest.inputs` / `runJob` take.
    pub fn to_strings(&self) -> Vec<String> {
        self.0.iter().map(|(k, v)| format!("{k}={v}")).collect()
    }
}

/// Parses `Key=Value` strings (split at the first `=`: values may contain `=`). Refuses an item
/// without `=`, an invalid key, a key given twice, a NUL byte, an oversized value.
pub fn parse_inputs<S: AsRef<str>>(items: &[S]) -> Result<Inputs, InputError> {
    let mut inputs = Inputs::new();
    for item in items {
        let item = item.as_ref();
        let Some((key, value)) = item.split_once('=') else {
            return Err(InputProblem::Malformed { item: item.into(), example: "Key=value".into() }.into());
        };
        if key.is_empty() {
            return Err(InputProblem::Malformed { item: item.into(), example: "Key=value".into() }.into());
        }
        inputs.insert(key, value)?;
    }
    Ok(inputs)
}

/// A typed input value.
#[derive(Debug, Clone, PartialEq)]
pub enum InputValue {
    String(String),
    Integer(i64),
    Number(f64),
    Boolean(bool),
    /// A file or folder by CID (`cid` inputs).
    Cid(Cid),
}

impl fmt::Display for InputValue {
    /// The text a placeholder is replaced with: strings as they are, integers in decimal,
    /// numbers in Rust's shortest round-trip decimal form (`1e3` renders as `1000`, `0.50` as
    /// `0.5`), booleans as `true` / `false`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            InputValue::String(s) => f.write_str(s),
            InputValue::Integer(i) => write!(f, "{i}"),
            InputValue::Number(n) => write!(f, "{n}"),
            InputValue::Boolean(b) => write!(f, "{b}"),
            InputValue::Cid(c) => write!(f, "{c}"),
        }
    }
}

impl InputValue {
    /// As JSON (strings quoted), for listing defaults and choices.
    fn json(&self) -> String {
        match self {
            InputValue::String(s) => serde_json::Value::from(s.as_str()).to_string(),
            InputValue::Cid(c) => serde_json::Value::from(c.to_string()).to_string(),
            other => other.to_string(),
        }
    }
}

/// An input declaration, checked and typed.
#[derive(Debug, Clone, PartialEq)]
pub struct InputDecl {
    pub name: String,
    pub ty: InputType,
    pub description: String,
    /// `None`: required.
    pub default: Option<InputValue>,
    pub choices: Option<Vec<InputValue>>,
    pub max_length: Option<u32>,
    pub min: Option<InputValue>,
    pub max: Option<InputValue>,
    /// `cid` inputs: most content bytes fetched for it (`maxBytes`, or
    /// [`DEFAULT_INPUT_DATA_BYTES`]); `None` for other types.
    pub max_bytes: Option<u64>,
}

fn expected_text(ty: InputType) -> &'static str {
    match ty {
        InputType::String => "a string",
        InputType::Integer => "a whole number from -2^63 to 2^63-1, e.g. 42",
        InputType::Number => "a finite decimal number, e.g. 0.7",
        InputType::Boolean => "true or false",
        InputType::Cid => {
            "the CID of a file or folder (UnixFS, as `ipfs add --cid-version=1` or `lilypad ipfs add` prints it), e.g. bafkreihdwdcefgh4dqkjv67uzcmw7ojee6xedzdetojuzjevtenxquvyku; `lilypad run` also takes @<local path>"
        }
    }
}

impl InputDecl {
    /// Checks a declaration from the spec: constraints that fit the type, a valid default
    /// (or `required`), valid choices.
    pub(crate) fn compile(name: &str, spec: &InputSpec) -> Result<InputDecl, SpecError> {
        if !is_valid_input_name(name) {
            return Err(SpecError::InvalidInputName(name.into()));
        }
        let bad = |problem: String| SpecError::BadInput {
            input: name.into(),
            problem,
        };
        let ty = spec.ty;
        let numeric = matches!(ty, InputType::Integer | InputType::Number);
        if spec.max_length.is_some() && ty != InputType::String {
            return Err(bad(format!(
                "\"maxLength\" applies to string inputs, not {ty} ones: remove it"
            )));
        }
        if ty == InputType::Cid && spec.choices.is_some() {
            return Err(bad(
                "\"enum\" does not apply to cid inputs: remove it".into(),
            ));
        }
        let max_bytes = match (ty, spec.max_bytes) {
            (InputType::Cid, None) => Some(DEFAULT_INPUT_DATA_BYTES),
            (InputType::Cid, Some(n)) if n == 0 || n > MAX_INPUT_DATA_BYTES => {
                return Err(bad(format!(
                    "\"maxBytes\" {n} is out of range: give from 1 to {MAX_INPUT_DATA_BYTES} (16 GiB)"
                )))
            }
            (InputType::Cid, Some(n)) => Some(n),
            (_, Some(_)) => {
                return Err(bad(format!(
                    "\"maxBytes\" applies to cid inputs, not {ty} ones: remove it"
                )))
            }
            (_, None) => None,
        };
        if (spec.min.is_some() || spec.max.is_some()) && !numeric {
            return Err(bad(format!(
                "\"min\" and \"max\" apply to integer and number inputs, not {ty} ones: remove them"
            )));
        }
        let bound = |n: &Option<serde_json::Number>,
                     which: &str|
         -> Result<Option<InputValue>, SpecError> {
            let Some(n) = n else { return Ok(None) };
            let v = match ty {
                InputType::Integer => n.as_i64().map(InputValue::Integer),
                _ => n.as_f64().map(InputValue::Number),
            };
            v.map(Some)
                .ok_or_else(|| bad(format!("\"{which}\" {n} is not {}", expected_text(ty))))
        };
        let min = bound(&spec.min, "min")?;
        let max = bound(&spec.max, "max")?;
        if let (Some(lo), Some(hi)) = (&min, &max) {
            if as_f64(lo) > as_f64(hi) {
                return Err(bad(format!("\"min\" {lo} is above \"max\" {hi}")));
            }
        }
        let mut decl = InputDecl {
            name: name.into(),
            ty,
            description: spec.description.clone(),
            default: None,
            choices: None,
            max_length: spec.max_length,
            min,
            max,
            max_bytes,
        };
        if let Some(choices) = &spec.choices {
            if choices.is_empty() {
                return Err(bad(
                    "\"enum\" is empty: list the allowed values, or remove it".into(),
                ));
            }
            let mut typed: Vec<InputValue> = Vec::with_capacity(choices.len());
            for c in choices {
                let v = from_json(ty, c).ok_or_else(|| {
                    bad(format!("\"enum\" value {c} is not {}", expected_text(ty)))
                })?;
                decl.check_limits(&v).map_err(|p| {
                    bad(format!(
                        "\"enum\" value {c} breaks the input's own limits: {p}"
                    ))
                })?;
                if typed.contains(&v) {
                    return Err(bad(format!("\"enum\" lists {c} twice")));
                }
                typed.push(v);
            }
            decl.choices = Some(typed);
        }
        match (&spec.default, spec.required) {
            (Some(_), true) => return Err(SpecError::DefaultAndRequired { input: name.into() }),
            (None, false) => return Err(SpecError::NoDefault { input: name.into() }),
            (None, true) => {}
            (Some(d), false) => {
                let v = from_json(ty, d)
                    .ok_or_else(|| bad(format!("\"default\" {d} is not {}", expected_text(ty))))?;
                if let InputValue::String(s) = &v {
                    if s.contains('\0') {
                        return Err(bad("\"default\" contains a NUL byte".into()));
                    }
                    if s.len() > MAX_INPUT_BYTES {
                        return Err(bad(format!("\"default\" is over {MAX_INPUT_BYTES} bytes")));
                    }
                }
                decl.check(&v)
                    .map_err(|p| bad(format!("\"default\" {d} is not allowed: {p}")))?;
                decl.default = Some(v);
            }
        }
        Ok(decl)
    }

    /// What a value must be, with this input's own range when it declares one, e.g. "a whole
    /// number from 1 to 10, e.g. 1".
    pub(crate) fn expected(&self) -> String {
        let kind = match self.ty {
            InputType::Integer => "a whole number",
            InputType::Number => "a finite decimal number",
            _ => return expected_text(self.ty).into(),
        };
        let range = match (&self.min, &self.max) {
            (Some(lo), Some(hi)) => format!(" from {lo} to {hi}"),
            (Some(lo), None) => format!(" of at least {lo}"),
            (None, Some(hi)) => format!(" of at most {hi}"),
            (None, None) if self.ty == InputType::Integer => " from -2^63 to 2^63-1".into(),
            (None, None) => String::new(),
        };
        format!("{kind}{range}, e.g. {}", self.sample())
    }

    /// A valid value: its default, else its first choice, else one of its type and range.
    pub fn sample(&self) -> String {
        if let Some(v) = self.default.as_ref().or_else(|| self.choices.as_ref().and_then(|c| c.first())) {
            return v.to_string();
        }
        match (self.ty, &self.min) {
            (_, Some(lo)) => lo.to_string(),
            (InputType::String, _) => "hello".into(),
            (InputType::Integer, _) => "42".into(),
            (InputType::Number, _) => "0.5".into(),
            (InputType::Boolean, _) => "true".into(),
            (InputType::Cid, _) => "bafkreihdwdcefgh4dqkjv67uzcmw7ojee6xedzdetojuzjevtenxquvyku".into(),
        }
    }

    /// Parses and checks a job's value for this input.
    pub(crate) fn parse_value(&self, raw: &str) -> Result<InputValue, InputProblem> {
        let wrong = || InputProblem::WrongType {
            key: self.name.clone(),
            value: raw.into(),
            expected: self.expected(),
        };
        let v = match self.ty {
            InputType::String => InputValue::String(raw.into()),
            InputType::Integer => InputValue::Integer(raw.parse::<i64>().map_err(|_| wrong())?),
            InputType::Number => {
                // Rust also reads "inf", "NaN" and "infinity": refused below.
                let n = raw.parse::<f64>().map_err(|_| wrong())?;
                if !n.is_finite() {
                    return Err(wrong());
                }
                InputValue::Number(n)
            }
            InputType::Boolean => match raw {
                "true" => InputValue::Boolean(true),
                "false" => InputValue::Boolean(false),
                _ => return Err(wrong()),
            },
            InputType::Cid => InputValue::Cid(parse_data_cid(raw).ok_or_else(wrong)?),
        };
        self.check(&v)?;
        Ok(v)
    }

    /// Choices and limits.
    fn check(&self, v: &InputValue) -> Result<(), InputProblem> {
        if let Some(choices) = &self.choices {
            if !choices.contains(v) {
                return Err(InputProblem::NotAChoice {
                    key: self.name.clone(),
                    value: v.to_string(),
                    choices: list(choices),
                });
            }
        }
        self.check_limits(v)
    }

    fn check_limits(&self, v: &InputValue) -> Result<(), InputProblem> {
        if let (Some(max), InputValue::String(s)) = (self.max_length, v) {
            let len = s.chars().count();
            if len > max as usize {
                return Err(InputProblem::TooLong {
                    key: self.name.clone(),
                    len,
                    max,
                });
            }
        }
        let below = self.min.as_ref().is_some_and(|m| lt(v, m));
        let above = self.max.as_ref().is_some_and(|m| lt(m, v));
        if below || above {
            return Err(InputProblem::OutOfRange {
                key: self.name.clone(),
                value: v.to_string(),
                range: self.range_text().unwrap_or_default(),
            });
        }
        Ok(())
    }

    fn range_text(&self) -> Option<String> {
        match (&self.min, &self.max) {
            (Some(lo), Some(hi)) => Some(format!("from {lo} to {hi}")),
            (Some(lo), None) => Some(format!("at least {lo}")),
            (None, Some(hi)) => Some(format!("at most {hi}")),
            (None, None) => None,
        }
    }

    /// One line: `Name (type, default "x", at most 10 characters): description`.
    pub fn usage_line(&self) -> String {
        let mut parts = vec![self.ty.to_string()];
        match &self.default {
            Some(d) => parts.push(format!("default {}", d.json())),
            None => parts.push("required".into()),
        }
        if let Some(c) = &self.choices {
            parts.push(format!("one of {}", list(c)));
        }
        if let Some(m) = self.max_length {
            parts.push(format!("at most {m} characters"));
        }
        if let Some(r) = self.range_text() {
            parts.push(r);
        }
        if let Some(b) = self.max_bytes {
            parts.push(format!("at most {b} bytes, at {}", input_path(&self.name)));
        }
        let mut line = format!("{} ({})", self.name, parts.join(", "));
        if !self.description.is_empty() {
            line.push_str(": ");
            line.push_str(&self.description);
        }
        line
    }
}

fn list(values: &[InputValue]) -> String {
    values
        .iter()
        .map(InputValue::json)
        .collect::<Vec<_>>()
        .join(", ")
}

fn as_f64(v: &InputValue) -> f64 {
    match v {
        InputValue::Integer(i) => *i as f64,
        InputValue::Number(n) => *n,
        _ => 0.0,
    }
}

/// `a < b` for two numbers of the same input (exact for integers).
fn lt(a: &InputValue, b: &InputValue) -> bool {
    match (a, b) {
        (InputValue::Integer(x), InputValue::Integer(y)) => x < y,
        _ => as_f64(a) < as_f64(b),
    }
}

/// A JSON value of the input's type (integers must be whole JSON numbers within i64).
fn from_json(ty: InputType, v: &serde_json::Value) -> Option<InputValue> {
    match (ty, v) {
        (InputType::String, serde_json::Value::String(s)) => Some(InputValue::String(s.clone())),
        (InputType::Integer, serde_json::Value::Number(n)) => n.as_i64().map(InputValue::Integer),
        (InputType::Number, serde_json::Value::Number(n)) => {
            n.as_f64().filter(|f| f.is_finite()).map(InputValue::Number)
        }
        (InputType::Boolean, serde_json::Value::Bool(b)) => Some(InputValue::Boolean(*b)),
        (InputType::Cid, serde_json::Value::String(s)) => parse_data_cid(s).map(InputValue::Cid),
        _ => None,
    }
}

/// A CID a `cid` input may take: one that parses and names UnixFS content (a raw leaf or a
/// dag-pb node), written without spaces.
fn parse_data_cid(raw: &str) -> Option<Cid> {
    if raw.is_empty() || raw.len() > 200 || raw.trim() != raw {
        return None;
    }
    let cid = lilypad_store::parse_cid(raw).ok()?;
    matches!(cid.codec(), CODEC_RAW | CODEC_DAG_PB).then_some(cid)
}

/// Checks `inputs` against `decls` and returns every declared input's value (defaults filled
/// in). Problems are returned without the accepted list (the caller adds it).
pub(crate) fn resolve(
    decls: &[InputDecl],
    inputs: &Inputs,
) -> Result<BTreeMap<String, InputValue>, InputProblem> {
    for (key, _) in inputs.iter() {
        if !decls.iter().any(|d| d.name == key) {
            return Err(InputProblem::Unknown {
                key: key.into(),
                suggestion: suggest(key, decls),
            });
        }
    }
    let mut out = BTreeMap::new();
    for d in decls {
        let v = match (inputs.get(&d.name), &d.default) {
            (Some(raw), _) => d.parse_value(raw)?,
            (None, Some(default)) => default.clone(),
            (None, None) => {
                return Err(InputProblem::Missing {
                    key: d.name.clone(),
                })
            }
        };
        out.insert(d.name.clone(), v);
    }
    Ok(out)
}

/// The declared name closest to a mistyped one (same letters in another case, or at most two
/// edits away).
fn suggest(key: &str, decls: &[InputDecl]) -> Option<String> {
    let lower = key.to_ascii_lowercase();
    decls
        .iter()
        .map(|d| {
            let dist = if d.name.to_ascii_lowercase() == lower {
                0
            } else {
                edit_distance(&lower, &d.name.to_ascii_lowercase())
            };
            (dist, &d.name)
        })
        .filter(|(dist, _)| *dist <= 2)
        .min()
        .map(|(_, n)| n.clone())
}

fn edit_distance(a: &str, b: &str) -> usize {
    let b: Vec<char> = b.chars().collect();
    let mut prev: Vec<usize> = (0..=b.len()).collect();
    for (i, ca) in a.chars().enumerate() {
        let mut cur = vec![i + 1; b.len() + 1];
        for (j, cb) in b.iter().enumerate() {
            cur[j + 1] = (prev[j] + usize::from(ca != *cb))
                .min(prev[j + 1] + 1)
                .min(cur[j] + 1);
        }
        prev = cur;
    }
    prev[b.len()]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parse_inputs_accepts_key_value() {
        let i = parse_inputs(&["Message=a=b", "N=", "Flag=true"]).unwrap();
        assert_eq!(i.get("Message"), Some("a=b"));
        assert_eq!(i.get("N"), Some(""));
        assert_eq!(i.len(), 3);
        assert_eq!(i.to_strings(), ["Flag=true", "Message=a=b", "N="]);
        assert!(parse_inputs::<&str>(&[]).unwrap().is_empty());
    }

    #[test]
    fn parse_inputs_rejections() {
        let problem = |items: &[&str]| parse_inputs(items).unwrap_err().problem;
        assert!(matches!(
            problem(&["Message"]),
            InputProblem::Malformed { .. }
        ));
        assert!(matches!(problem(&["=x"]), InputProblem::Malformed { .. }));
        assert!(matches!(
            problem(&["1x=y"]),
            InputProblem::InvalidKey { .. }
        ));
        assert!(matches!(
            problem(&[" Message=y"]),
            InputProblem::InvalidKey { .. }
        ));
        assert!(matches!(
            problem(&["a-b=y"]),
            InputProblem::InvalidKey { .. }
        ));
        assert!(matches!(
            problem(&["A=1", "A=2"]),
            InputProblem::Duplicate { .. }
        ));
        assert!(matches!(problem(&["A=x\0y"]), InputProblem::NulByte { .. }));
        let big = format!("A={}", "x".repeat(MAX_INPUT_BYTES + 1));
        assert!(matches!(
            problem(&[big.as_str()]),
            InputProblem::TooLarge { .. }
        ));
        let e = parse_inputs(&["Message"]).unwrap_err().to_string();
        assert!(e.contains("Key=Value"), "{e}");
    }

    #[test]
    fn edit_distances() {
        assert_eq!(edit_distance("message", "message"), 0);
        assert_eq!(edit_distance("mesage", "message"), 1);
        assert_eq!(edit_distance("", "abc"), 3);
        assert_eq!(edit_distance("kitten", "sitting"), 3);
    }
}

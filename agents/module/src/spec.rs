//! The spec file `lilypad-module.json`, as it is written (see `docs/modules.md`).
//!
//! These types only give the file its shape: unknown fields, missing required fields, wrong
//! JSON types and duplicate keys are refused while parsing. The rules across fields (names,
//! placeholders, ranges, defaults) are checked by [`crate::Module::load`].

use std::fmt;
use std::marker::PhantomData;

use serde::de::{self, MapAccess, Visitor};
use serde::ser::SerializeMap;
use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// Default of `build.timeoutSeconds`.
pub const DEFAULT_BUILD_TIMEOUT_SECONDS: u32 = 600;
/// Default of `outputs.maxBytes`: 16 MiB, or half of `resources.ramMb` if that is less.
pub const DEFAULT_OUTPUT_BYTES: u64 = 16 << 20;
/// Default of `outputs.maxFiles`.
pub const DEFAULT_OUTPUT_FILES: u32 = 1000;

/// A whole `lilypad-module.json`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct Spec {
    /// `[A-Za-z0-9._/-]`, 1-128, not starting with `.`, `/`, `-`, `_` (as `ModuleDirectory`).
    pub name: String,
    /// `[A-Za-z0-9._+-]`, 1-64, starting with a letter or digit.
    pub version: String,
    /// One line for humans.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub description: String,
    /// What to do on the provider's host before `docker build`.
    #[serde(default, skip_serializing_if = "BuildSpec::is_default")]
    pub build: BuildSpec,
    /// The program and its fixed first arguments (replaces the image's `ENTRYPOINT`); no
    /// placeholders.
    pub entrypoint: Vec<String>,
    /// Further arguments; each element may hold `{{Input}}` placeholders and stays one argument.
    #[serde(default)]
    pub args: Vec<String>,
    /// Environment variables; values may hold placeholders.
    #[serde(default, skip_serializing_if = "OrderedMap::is_empty")]
    pub env: OrderedMap<String>,
    /// Working directory in the container (the image's when absent).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub workdir: Option<String>,
    /// The inputs a job may give, in the order they are listed to users.
    #[serde(default)]
    pub inputs: OrderedMap<InputSpec>,
    /// What one run needs; also what the chain records as the module's requirements.
    pub resources: ResourceSpec,
    /// Most seconds a run may take (the container is killed then); the chain's `runTimeout`.
    pub timeout_seconds: u32,
    /// The module asks for network access (providers decide whether they allow it).
    #[serde(default)]
    pub network: bool,
    /// The same inputs give the same outputs, byte for byte (mediators compare bytes).
    pub deterministic: bool,
    /// Non-deterministic modules only: what mediators may leave out when they compare two
    /// results of a job (absent: byte for byte). See [`crate::compare`].
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub compare: Option<CompareSpec>,
    /// Limits on what a run may leave in `/outputs`.
    #[serde(default)]
    pub outputs: OutputSpec,
    /// What `runJob` escrows for a job of this module, in the token's base units (wei).
    pub default_payment: Payment,
    /// What runs the module: a Docker image built from the folder's `Dockerfile` (the
    /// default), or a WebAssembly module from the folder (`wasm`).
    #[serde(default, skip_serializing_if = "EngineKind::is_docker")]
    pub engine: EngineKind,
    /// `engine` "wasm" only: the `.wasm` file and how deterministic its run is.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub wasm: Option<WasmModuleSpec>,
}

/// `engine`: what runs a module.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum EngineKind {
    /// A container of the image built from the module's `Dockerfile`.
    #[default]
    Docker,
    /// A WASI preview 1 module run by wasmtime (see [`WasmModuleSpec`]).
    Wasm,
}

impl EngineKind {
    fn is_docker(&self) -> bool {
        *self == EngineKind::Docker
    }

    /// `"docker"` or `"wasm"`, as written in the spec.
    pub fn as_str(&self) -> &'static str {
        match self {
            EngineKind::Docker => "docker",
            EngineKind::Wasm => "wasm",
        }
    }
}

impl fmt::Display for EngineKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// `wasm`: a WebAssembly module's file and run settings.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct WasmModuleSpec {
    /// The `.wasm` file, a path relative to the module folder (e.g. `"lilysay.wasm"`); it is
    /// part of the folder, so the module's content hash pins it.
    pub file: String,
    /// `"fixed"` (default): the clocks start at the Unix epoch and advance one millisecond per
    /// reading. `"host"`: the host's clocks (the module is then not deterministic).
    #[serde(default, skip_serializing_if = "WasmClock::is_fixed")]
    pub clock: WasmClock,
    /// `"seeded"` (default): random bytes derived from the module and the job's arguments and
    /// environment. `"host"`: the host's random source (the module is then not deterministic).
    #[serde(default, skip_serializing_if = "WasmRandom::is_seeded")]
    pub random: WasmRandom,
}

/// `wasm.clock`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum WasmClock {
    #[default]
    Fixed,
    Host,
}

impl WasmClock {
    fn is_fixed(&self) -> bool {
        *self == WasmClock::Fixed
    }
}

/// `wasm.random`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum WasmRandom {
    #[default]
    Seeded,
    Host,
}

impl WasmRandom {
    fn is_seeded(&self) -> bool {
        *self == WasmRandom::Seeded
    }
}

/// `build`: commands run on the provider's host, in a copy of the module folder, before the
/// image is built from that copy.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct BuildSpec {
    /// Each an argv list (`["cc", "-static", "-o", "x", "x.c"]`), run without a shell.
    #[serde(default)]
    pub commands: Vec<Vec<String>>,
    /// Most seconds all the commands together may take.
    #[serde(default = "default_build_timeout")]
    pub timeout_seconds: u32,
}

fn default_build_timeout() -> u32 {
    DEFAULT_BUILD_TIMEOUT_SECONDS
}

impl Default for BuildSpec {
    fn default() -> Self {
        BuildSpec {
            commands: Vec::new(),
            timeout_seconds: DEFAULT_BUILD_TIMEOUT_SECONDS,
        }
    }
}

impl BuildSpec {
    fn is_default(&self) -> bool {
        *self == BuildSpec::default()
    }
}

/// The type of an input value.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum InputType {
    /// Any text without NUL bytes.
    String,
    /// A whole number from -2^63 to 2^63-1.
    Integer,
    /// A finite decimal number.
    Number,
    /// `true` or `false`.
    Boolean,
    /// A file or folder by its UnixFS CID (e.g. `bafk...`): the provider fetches and verifies
    /// it before the run and mounts it read-only at `/inputs/<Name>`; placeholders of the input
    /// render as that path.
    Cid,
}

impl fmt::Display for InputType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            InputType::String => "string",
            InputType::Integer => "integer",
            InputType::Number => "number",
            InputType::Boolean => "boolean",
            InputType::Cid => "cid",
        })
    }
}

/// One declared input.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct InputSpec {
    #[serde(rename = "type")]
    pub ty: InputType,
    /// Shown to users.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub description: String,
    /// The value when the job gives none, as a JSON value of the input's type. An input has
    /// either a default or `"required": true`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub default: Option<serde_json::Value>,
    /// A job must give this input.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub required: bool,
    /// The only values allowed (JSON values of the input's type).
    #[serde(default, rename = "enum", skip_serializing_if = "Option::is_none")]
    pub choices: Option<Vec<serde_json::Value>>,
    /// `string` only: most characters (Unicode scalar values).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_length: Option<u32>,
    /// `integer` / `number` only: smallest value allowed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub min: Option<serde_json::Number>,
    /// `integer` / `number` only: largest value allowed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max: Option<serde_json::Number>,
    /// `cid` only: most bytes of content (the sum of the file sizes) the provider fetches for
    /// this input; default [`crate::DEFAULT_INPUT_DATA_BYTES`], at most
    /// [`crate::MAX_INPUT_DATA_BYTES`].
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_bytes: Option<u64>,
}

/// `compare`: how mediators compare two results of a non-deterministic module.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct CompareSpec {
    /// `"path"` (a file or folder of the result left out) or `"path#/json/pointer"` (a member
    /// dropped from a JSON file before comparing it as JSON).
    #[serde(default)]
    pub ignore: Vec<String>,
}

/// `resources`: what one run needs. The same fields as the chain's `Resources`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct ResourceSpec {
    /// Thousandths of a CPU (1000 = one CPU); the container's CPU quota.
    pub cpu_milli: u32,
    /// Memory in MiB (no swap); files in `/outputs` and `/tmp` count against it too.
    pub ram_mb: u32,
    /// Scratch space in MiB: the size of `/tmp` (at least 1 MiB is given).
    #[serde(default)]
    pub disk_mb: u32,
    /// GPUs.
    #[serde(default)]
    pub gpus: u8,
    /// Memory per GPU, MiB.
    #[serde(default)]
    pub vram_mb: u32,
}

/// `outputs`: what a run may write to `/outputs`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct OutputSpec {
    /// Most bytes (the size of the `/outputs` tmpfs); when absent, [`DEFAULT_OUTPUT_BYTES`]
    /// or half of `resources.ramMb`, whichever is less.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_bytes: Option<u64>,
    /// Most files and folders.
    #[serde(default = "default_output_files")]
    pub max_files: u32,
}

fn default_output_files() -> u32 {
    DEFAULT_OUTPUT_FILES
}

impl Default for OutputSpec {
    fn default() -> Self {
        OutputSpec {
            max_bytes: None,
            max_files: DEFAULT_OUTPUT_FILES,
        }
    }
}

/// An amount of the token in base units, written in JSON as a decimal string (JSON numbers
/// lose precision above 2^53 in many tools); a plain JSON integer is accepted too. Kept as
/// written; [`crate::Module::load`] checks that it is a whole number below 2^128.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Payment(pub String);

impl Serialize for Payment {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&self.0)
    }
}

impl<'de> Deserialize<'de> for Payment {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl Visitor<'_> for V {
            type Value = Payment;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(
                    "an amount in base units as a decimal string, e.g. \"1050000000000000000\"",
                )
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<Payment, E> {
                Ok(Payment(v.to_string()))
            }
            fn visit_u64<E: de::Error>(self, v: u64) -> Result<Payment, E> {
                Ok(Payment(v.to_string()))
            }
            fn visit_i64<E: de::Error>(self, v: i64) -> Result<Payment, E> {
                Ok(Payment(v.to_string()))
            }
            fn visit_f64<E: de::Error>(self, v: f64) -> Result<Payment, E> {
                Err(E::custom(format!(
                    "defaultPayment {v} is not a whole number: write it as a decimal string of base units (wei), e.g. \"1050000000000000000\""
                )))
            }
        }
        d.deserialize_any(V)
    }
}

/// A JSON object kept in the order it was written, refusing duplicate keys (which most JSON
/// readers would silently resolve to the last one).
#[derive(Debug, Clone, PartialEq)]
pub struct OrderedMap<V>(pub Vec<(String, V)>);

impl<V> Default for OrderedMap<V> {
    fn default() -> Self {
        OrderedMap(Vec::new())
    }
}

impl<V> OrderedMap<V> {
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    pub fn len(&self) -> usize {
        self.0.len()
    }

    pub fn get(&self, key: &str) -> Option<&V> {
        self.0.iter().find(|(k, _)| k == key).map(|(_, v)| v)
    }

    pub fn iter(&self) -> impl Iterator<Item = (&str, &V)> {
        self.0.iter().map(|(k, v)| (k.as_str(), v))
    }
}

impl<V: Serialize> Serialize for OrderedMap<V> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let mut m = s.serialize_map(Some(self.0.len()))?;
        for (k, v) in &self.0 {
            m.serialize_entry(k, v)?;
        }
        m.end()
    }
}

impl<'de, V: Deserialize<'de>> Deserialize<'de> for OrderedMap<V> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct MapVisitor<V>(PhantomData<V>);
        impl<'de, V: Deserialize<'de>> Visitor<'de> for MapVisitor<V> {
            type Value = OrderedMap<V>;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a JSON object")
            }
            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
                let mut entries: Vec<(String, V)> = Vec::new();
                while let Some(key) = map.next_key::<String>()? {
                    if entries.iter().any(|(k, _)| *k == key) {
                        return Err(de::Error::custom(format!(
                            "duplicate key {key:?}: give each key once"
                        )));
                    }
                    let value = map.next_value()?;
                    entries.push((key, value));
                }
                Ok(OrderedMap(entries))
            }
        }
        d.deserialize_map(MapVisitor(PhantomData))
    }
}

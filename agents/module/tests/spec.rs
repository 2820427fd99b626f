//! Loading, checking, inputs, rendering, hashing and chain specs, without a Docker engine.

use std::fs;
use std::path::{Path, PathBuf};
use std::time::Duration;

use alloy::primitives::B256;
use lilypad_module::{
    cid_from_spec_hash, parse_inputs, spec_hash_of, InputProblem, Inputs, LoadError, Module,
    SpecError, MODULE_NETWORK, MODULE_NONDETERMINISTIC,
};
use serde_json::{json, Value};

fn lilysay_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../modules/lilysay")
}

/// A spec using every feature.
fn base() -> Value {
    json!({
        "name": "test/mod",
        "version": "1.0.0",
        "description": "a test module",
        "build": { "commands": [["true"]], "timeoutSeconds": 10 },
        "entrypoint": ["/bin/prog", "--fixed"],
        "args": ["{{Message}}", "--count={{Count}}", "{{ Ratio }}", "{{Loud}}", "{{Mode}}"],
        "env": { "LANG": "C", "GREETING": "say {{Message}}" },
        "inputs": {
            "Message": { "type": "string", "default": "hi", "maxLength": 20, "description": "what to say" },
            "Count": { "type": "integer", "default": 1, "min": 1, "max": 10 },
            "Ratio": { "type": "number", "default": 0.5, "min": 0, "max": 1 },
            "Loud": { "type": "boolean", "default": false },
            "Mode": { "type": "string", "enum": ["a", "b"], "required": true }
        },
        "resources": { "cpuMilli": 500, "ramMb": 64, "diskMb": 4, "gpus": 0, "vramMb": 0 },
        "timeoutSeconds": 30,
        "network": false,
        "deterministic": true,
        "outputs": { "maxBytes": 1048576, "maxFiles": 10 },
        "defaultPayment": "1050000000000000000"
    })
}

/// Writes a module folder with `spec` (raw text) and a Dockerfile.
fn write_raw(spec: &str) -> tempfile::TempDir {
    let d = tempfile::tempdir().unwrap();
    fs::write(d.path().join("lilypad-module.json"), spec).unwrap();
    fs::write(d.path().join("Dockerfile"), "FROM scratch\n").unwrap();
    d
}

fn write(spec: &Value) -> tempfile::TempDir {
    write_raw(&serde_json::to_string_pretty(spec).unwrap())
}

fn load(spec: &Value) -> Result<Module, LoadError> {
    let d = write(spec);
    Module::load(d.path())
}

fn with(f: impl FnOnce(&mut Value)) -> Value {
    let mut v = base();
    f(&mut v);
    v
}

fn spec_error(spec: &Value) -> SpecError {
    match load(spec) {
        Err(LoadError::Spec { source, .. }) => source,
        other => panic!("expected a spec error for {spec}, got {other:?}"),
    }
}

fn json_error(spec: &str) -> String {
    let d = write_raw(spec);
    match Module::load(d.path()) {
        Err(e @ LoadError::Json { .. }) => e.to_string(),
        other => panic!("expected a JSON error, got {other:?}"),
    }
}

fn inputs(items: &[&str]) -> Inputs {
    parse_inputs(items).unwrap()
}

#[test]
fn loads_lilysay() {
    let m = Module::load(lilysay_dir()).unwrap();
    assert_eq!(m.reference().to_string(), "lilysay:0.1.0");
    assert_eq!(m.id(), alloy::primitives::keccak256(b"lilysay:0.1.0"));
    assert!(m.cid().to_string().starts_with("bafybei"), "{}", m.cid());
    assert_eq!(spec_hash_of(m.cid()), Some(m.spec_hash()));
    assert_eq!(cid_from_spec_hash(m.spec_hash()), *m.cid());
    let run = m.render(&Inputs::new()).unwrap();
    assert_eq!(run.argv(), ["/lilysay", "Hello, Lilypad!"]);
    assert_eq!(run.env, [("LANG".to_string(), "C".to_string())]);
    let tag = m.image_tag();
    assert_eq!(
        tag,
        format!("lilypad/lilysay:0.1.0-{}", alloy::hex::encode(m.spec_hash()))
    );
    let usage = m.usage();
    assert!(usage.starts_with("lilysay:0.1.0 accepts:"), "{usage}");
    assert!(
        usage.contains("Message (string, default \"Hello, Lilypad!\", at most 1024 characters)"),
        "{usage}"
    );
    // The folder holds sources only: build outputs are made in a copy.
    assert!(!lilysay_dir().join("lilysay").exists());
}

#[test]
fn a_full_spec_loads_and_round_trips() {
    let m = load(&base()).unwrap();
    assert_eq!(m.name(), "test/mod");
    assert_eq!(m.inputs().len(), 5);
    assert_eq!(m.default_payment(), 1_050_000_000_000_000_000);
    // The parsed spec serializes back to an equivalent spec.
    let again: lilypad_module::Spec =
        serde_json::from_str(&serde_json::to_string(m.spec()).unwrap()).unwrap();
    assert_eq!(&again, m.spec());
    // Optional fields have defaults.
    let minimal = json!({
        "name": "m", "version": "1", "entrypoint": ["/x"],
        "resources": { "cpuMilli": 100, "ramMb": 32 },
        "timeoutSeconds": 5, "deterministic": false, "defaultPayment": 0
    });
    let m = load(&minimal).unwrap();
    assert!(m.inputs().is_empty());
    assert_eq!(m.usage(), "m:1 takes no inputs");
    assert_eq!(m.render(&Inputs::new()).unwrap().argv(), ["/x"]);
    assert_eq!(m.spec().outputs.max_bytes, None);
    assert_eq!(m.limits().outputs_bytes, 16 << 20);
    // The default outputs size fits small memory limits.
    let mut small = minimal.clone();
    small["resources"]["ramMb"] = json!(8);
    assert_eq!(load(&small).unwrap().limits().outputs_bytes, 4 << 20);
    assert_eq!(m.spec().build.timeout_seconds, 600);
}

#[test]
fn declaration_order_is_kept() {
    let text = r#"{
      "name": "m", "version": "1", "entrypoint": ["/x"], "args": ["{{Zeta}}", "{{Alpha}}"],
      "env": { "Z": "1", "A": "2" },
      "inputs": {
        "Zeta": { "type": "string", "default": "z" },
        "Alpha": { "type": "integer", "required": true }
      },
      "resources": { "cpuMilli": 100, "ramMb": 32 },
      "timeoutSeconds": 5, "deterministic": true, "defaultPayment": "0"
    }"#;
    let d = write_raw(text);
    let m = Module::load(d.path()).unwrap();
    assert_eq!(
        m.usage(),
        "m:1 accepts:\n  Zeta (string, default \"z\")\n  Alpha (integer, required)"
    );
    let run = m.render(&inputs(&["Alpha=-7"])).unwrap();
    assert_eq!(run.args, ["z", "-7"]);
    assert_eq!(
        run.env,
        [
            ("Z".to_string(), "1".to_string()),
            ("A".to_string(), "2".to_string())
        ]
    );
}

#[test]
fn rejects_bad_names_and_versions() {
    for name in ["", ".hidden", "/abs", "-x", "a b", "a:b", &"n".repeat(129)] {
        let e = spec_error(&with(|v| v["name"] = json!(name)));
        assert!(matches!(e, SpecError::InvalidName(_)), "{name}: {e:?}");
    }
    for version in ["", "+1", "1/2", "1 2", &"1".repeat(65)] {
        let e = spec_error(&with(|v| v["version"] = json!(version)));
        assert!(
            matches!(e, SpecError::InvalidVersion(_)),
            "{version}: {e:?}"
        );
    }
    let e = spec_error(&with(|v| v["name"] = json!("-x"))).to_string();
    assert!(e.contains("A-Z a-z 0-9 . _ / -"), "{e}");
}

#[test]
fn rejects_bad_input_declarations() {
    let decl = |name: &str, d: Value| {
        with(|v| {
            v["args"] = json!([]);
            v["env"] = json!({});
            v["inputs"] = json!({ name: d });
        })
    };
    for name in ["1x", "_x", "a-b", "a.b", "a b"] {
        let e = spec_error(&decl(name, json!({"type": "string", "default": ""})));
        assert!(matches!(e, SpecError::InvalidInputName(_)), "{name}: {e:?}");
    }
    let e = spec_error(&decl(
        "X",
        json!({"type": "string", "default": "a", "required": true}),
    ));
    assert!(matches!(e, SpecError::DefaultAndRequired { .. }), "{e:?}");
    let e = spec_error(&decl("X", json!({"type": "string"})));
    assert!(matches!(e, SpecError::NoDefault { .. }), "{e:?}");
    let e = spec_error(&decl("X", json!({"type": "string", "default": null})));
    assert!(matches!(e, SpecError::NoDefault { .. }), "{e:?}");
    let bad_input = [
        json!({"type": "integer", "default": "1"}), // default of the wrong type
        json!({"type": "integer", "default": 1.5}), // not whole
        json!({"type": "boolean", "default": "true"}),
        json!({"type": "number", "default": true}),
        json!({"type": "string", "default": 5}),
        json!({"type": "string", "default": "toolong", "maxLength": 3}),
        json!({"type": "integer", "default": 11, "max": 10}),
        json!({"type": "integer", "default": 1, "maxLength": 3}), // maxLength on a number
        json!({"type": "string", "default": "", "min": 1}),       // min on a string
        json!({"type": "boolean", "default": true, "max": 1}),
        json!({"type": "integer", "default": 1, "min": 0.5}), // fractional bound of an integer
        json!({"type": "integer", "default": 5, "min": 10, "max": 1}),
        json!({"type": "string", "default": "a", "enum": []}),
        json!({"type": "string", "default": "c", "enum": ["a", "b"]}),
        json!({"type": "string", "default": "a", "enum": ["a", "a"]}),
        json!({"type": "string", "default": "a", "enum": ["a", 1]}),
        json!({"type": "string", "default": "a", "enum": ["a", "long"], "maxLength": 3}),
        json!({"type": "string", "default": "a\u{0}b"}),
    ];
    for d in bad_input {
        let e = spec_error(&decl("X", d.clone()));
        assert!(matches!(e, SpecError::BadInput { .. }), "{d}: {e:?}");
    }
    let too_many: serde_json::Map<String, Value> = (0..65)
        .map(|i| (format!("I{i}"), json!({"type": "string", "default": ""})))
        .collect();
    let e = spec_error(&with(|v| {
        v["args"] = json!([]);
        v["env"] = json!({});
        v["inputs"] = Value::Object(too_many);
    }));
    assert!(
        matches!(
            e,
            SpecError::OutOfRange {
                field: "inputs",
                ..
            }
        ),
        "{e:?}"
    );
}

#[test]
fn rejects_misplaced_and_undeclared_placeholders() {
    let e = spec_error(&with(|v| v["args"] = json!(["{{Nope}}"])));
    match &e {
        SpecError::UndeclaredPlaceholder {
            field,
            name,
            declared,
        } => {
            assert_eq!(field, "args[0]");
            assert_eq!(name, "Nope");
            // serde_json sorts the keys of the test's Value; declaration order is kept otherwise.
            assert_eq!(declared, "Count, Loud, Message, Mode, Ratio");
        }
        other => panic!("{other:?}"),
    }
    assert!(e.to_string().contains("declare it under `inputs`"), "{e}");
    let e = spec_error(&with(|v| v["env"]["X"] = json!("{{Nope}}")));
    assert!(
        matches!(e, SpecError::UndeclaredPlaceholder { .. }),
        "{e:?}"
    );
    for bad in ["{{Message", "{{.Message}}", "{{}}", "{{a b}}"] {
        let e = spec_error(&with(|v| v["args"] = json!([bad])));
        assert!(
            matches!(e, SpecError::MalformedPlaceholder { .. }),
            "{bad}: {e:?}"
        );
    }
    let e = spec_error(&with(|v| v["entrypoint"] = json!(["/bin/{{Message}}"])));
    assert!(
        matches!(e, SpecError::PlaceholderNotAllowed { .. }),
        "{e:?}"
    );
    let e = spec_error(&with(|v| v["workdir"] = json!("/{{Message}}")));
    assert!(
        matches!(e, SpecError::PlaceholderNotAllowed { .. }),
        "{e:?}"
    );
    let e = spec_error(&with(|v| {
        v["build"]["commands"] = json!([["echo", "{{Message}}"]])
    }));
    assert!(
        matches!(e, SpecError::PlaceholderNotAllowed { .. }),
        "{e:?}"
    );
    // An env *name* cannot be a placeholder: it is not a valid variable name.
    let e = spec_error(&with(|v| v["env"] = json!({"{{Message}}": "x"})));
    assert!(matches!(e, SpecError::InvalidEnvName(_)), "{e:?}");
}

#[test]
fn rejects_bad_commands_env_and_nul_bytes() {
    let e = spec_error(&with(|v| v["entrypoint"] = json!([])));
    assert!(matches!(e, SpecError::Empty { .. }), "{e:?}");
    let e = spec_error(&with(|v| v["entrypoint"] = json!([""])));
    assert!(matches!(e, SpecError::Empty { .. }), "{e:?}");
    let e = spec_error(&with(|v| v["build"]["commands"] = json!([[]])));
    assert!(matches!(e, SpecError::Empty { .. }), "{e:?}");
    let e = spec_error(&with(|v| v["entrypoint"] = json!(["/a\u{0}b"])));
    assert!(matches!(e, SpecError::NulByte { .. }), "{e:?}");
    let e = spec_error(&with(|v| v["args"] = json!(["a\u{0}"])));
    assert!(matches!(e, SpecError::NulByte { .. }), "{e:?}");
    let e = spec_error(&with(|v| v["env"]["X"] = json!("a\u{0}")));
    assert!(matches!(e, SpecError::NulByte { .. }), "{e:?}");
    for name in ["1X", "A-B", "A=B", ""] {
        let e = spec_error(&with(|v| v["env"] = json!({ name: "x" })));
        assert!(matches!(e, SpecError::InvalidEnvName(_)), "{name}: {e:?}");
    }
    let e = spec_error(&with(|v| v["workdir"] = json!("relative")));
    assert!(matches!(e, SpecError::InvalidWorkdir(_)), "{e:?}");
}

#[test]
fn loader_and_gpu_runtime_variables_are_refused_in_env() {
    // LD_PRELOAD in a container's environment reaches host-side OCI hooks that inherit it
    // (CVE-2025-23266); NVIDIA_* picks GPUs and driver capabilities on the host.
    for name in ["LD_PRELOAD", "LD_LIBRARY_PATH", "LD_AUDIT", "ld_preload", "NVIDIA_VISIBLE_DEVICES", "NVIDIA_DRIVER_CAPABILITIES", "GCONV_PATH", "GLIBC_TUNABLES", "DYLD_INSERT_LIBRARIES"] {
        let e = spec_error(&with(|v| v["env"][name] = json!("/tmp/x.so")));
        assert!(matches!(&e, SpecError::ForbiddenEnv { name: n, .. } if n == name), "{name}: {e:?}");
        let text = e.to_string();
        assert!(text.contains(&format!("`env.{name}` may not be set")) && text.contains("Remove it"), "{text}");
    }
    // ... also when its value comes from an input.
    let e = spec_error(&with(|v| v["env"]["LD_PRELOAD"] = json!("{{Message}}")));
    assert!(matches!(e, SpecError::ForbiddenEnv { .. }), "{e:?}");
    // Neighbours of those names are fine.
    let m = load(&with(|v| v["env"] = json!({"LDFLAGS": "-s", "CUDA_VISIBLE_DEVICES": "0", "LANG": "C"}))).unwrap();
    let run = m.render(&inputs(&["Mode=a"])).unwrap();
    assert_eq!(run.env.len(), 3);
}

#[test]
fn image_tags_carry_the_full_hash_so_names_differing_by_case_cannot_share_one() {
    // `Foo` and `foo` share the Docker repository `lilypad/foo` (repositories are lower case);
    // a tag of 48 bits of the hash could be ground until it matched the other module's.
    let upper = load(&with(|v| v["name"] = json!("test/Foo"))).unwrap();
    let lower = load(&with(|v| v["name"] = json!("test/foo"))).unwrap();
    let (tu, tl) = (upper.image_tag(), lower.image_tag());
    assert_eq!(tu.split_once(':').unwrap().0, tl.split_once(':').unwrap().0, "same repository");
    assert_ne!(tu, tl);
    for (m, t) in [(&upper, &tu), (&lower, &tl)] {
        let hex = alloy::hex::encode(m.spec_hash());
        assert!(t.ends_with(&format!("-{hex}")), "{t} carries all of {hex}");
        assert_eq!(t, &t.to_ascii_lowercase(), "{t} is lower case");
    }
    // The longest version still gives a tag Docker accepts (at most 128 characters).
    let long = load(&with(|v| v["version"] = json!("V".repeat(64)))).unwrap();
    let tag = long.image_tag();
    let (_, t) = tag.split_once(':').unwrap();
    assert!(t.len() <= 128, "{t}");
    assert_eq!(tag, tag.to_ascii_lowercase(), "a canonical, lower-case reference");
    assert!(t.ends_with(&alloy::hex::encode(long.spec_hash())));
}

#[test]
fn rejects_out_of_range_numbers_and_payments() {
    type Edit = fn(&mut Value);
    let cases: [(&str, Edit); 9] = [
        ("resources.cpuMilli", |v| {
            v["resources"]["cpuMilli"] = json!(0)
        }),
        ("resources.ramMb", |v| v["resources"]["ramMb"] = json!(4)),
        ("resources.vramMb", |v| {
            v["resources"]["vramMb"] = json!(1024)
        }),
        ("timeoutSeconds", |v| v["timeoutSeconds"] = json!(0)),
        ("timeoutSeconds", |v| {
            v["timeoutSeconds"] = json!(30 * 24 * 3600 + 1)
        }),
        ("build.timeoutSeconds", |v| {
            v["build"]["timeoutSeconds"] = json!(0)
        }),
        ("outputs.maxBytes", |v| {
            v["outputs"]["maxBytes"] = json!(100)
        }),
        ("outputs.maxBytes", |v| {
            v["outputs"]["maxBytes"] = json!(64u64 << 20)
        }),
        ("outputs.maxFiles", |v| v["outputs"]["maxFiles"] = json!(0)),
    ];
    for (field, f) in cases {
        let e = spec_error(&with(f));
        match e {
            SpecError::OutOfRange { field: got, .. } => assert_eq!(got, field),
            other => panic!("{field}: {other:?}"),
        }
    }
    let e = spec_error(&with(|v| v["outputs"]["maxBytes"] = json!(64u64 << 20))).to_string();
    assert!(e.contains("raise ramMb or lower maxBytes"), "{e}");
    // GPUs with VRAM are fine.
    let m = load(&with(|v| {
        v["resources"]["gpus"] = json!(2);
        v["resources"]["vramMb"] = json!(8192);
    }))
    .unwrap();
    assert_eq!(m.chain_spec().requirements.gpus, 2);
    for p in [
        "",
        "-1",
        "1.5",
        "1e18",
        "0x10",
        " 1",
        "340282366920938463463374607431768211456",
    ] {
        let e = spec_error(&with(|v| v["defaultPayment"] = json!(p)));
        assert!(matches!(e, SpecError::InvalidPayment(_)), "{p}: {e:?}");
    }
    let max = load(&with(|v| {
        v["defaultPayment"] = json!(u128::MAX.to_string())
    }))
    .unwrap();
    assert_eq!(max.default_payment(), u128::MAX);
    assert_eq!(
        load(&with(|v| v["defaultPayment"] = json!(7)))
            .unwrap()
            .default_payment(),
        7
    );
    let e =
        json_error(&serde_json::to_string(&with(|v| v["defaultPayment"] = json!(1.5))).unwrap());
    assert!(e.contains("not a whole number"), "{e}");
}

#[test]
fn rejects_malformed_json() {
    let e = json_error("{ not json");
    assert!(e.contains("line 1"), "{e}");
    let e = json_error(&serde_json::to_string(&with(|v| v["nmae"] = json!("x"))).unwrap());
    assert!(e.contains("unknown field `nmae`"), "{e}");
    let e =
        json_error(&serde_json::to_string(&with(|v| v["resources"]["cpus"] = json!(1))).unwrap());
    assert!(e.contains("unknown field `cpus`"), "{e}");
    let e = json_error(
        &serde_json::to_string(&with(|v| v["inputs"]["Message"]["maxLen"] = json!(1))).unwrap(),
    );
    assert!(e.contains("unknown field `maxLen`"), "{e}");
    let e = json_error(
        &serde_json::to_string(&with(|v| {
            v.as_object_mut().unwrap().remove("entrypoint");
        }))
        .unwrap(),
    );
    assert!(e.contains("missing field `entrypoint`"), "{e}");
    let e = json_error(
        &serde_json::to_string(&with(|v| v["inputs"]["Message"]["type"] = json!("text"))).unwrap(),
    );
    assert!(e.contains("unknown variant `text`"), "{e}");
    let e = json_error(&serde_json::to_string(&with(|v| v["timeoutSeconds"] = json!(-1))).unwrap());
    assert!(e.contains("invalid value"), "{e}");
    // Duplicate keys, which JSON readers usually resolve silently to the last one.
    let text = serde_json::to_string(&base()).unwrap();
    let dup_env = text.replace("\"LANG\":\"C\"", "\"LANG\":\"C\",\"LANG\":\"en_US\"");
    assert_ne!(dup_env, text);
    assert!(json_error(&dup_env).contains("duplicate key \"LANG\""));
    let dup_input = text.replace(
        "\"Loud\":{",
        "\"Message\":{\"type\":\"string\",\"default\":\"x\"},\"Loud\":{",
    );
    assert_ne!(dup_input, text);
    assert!(json_error(&dup_input).contains("duplicate key \"Message\""));
    let dup_field = text.replacen(
        "\"name\":\"test/mod\"",
        "\"name\":\"test/mod\",\"name\":\"x\"",
        1,
    );
    assert_ne!(dup_field, text);
    assert!(json_error(&dup_field).contains("duplicate field `name`"));
}

#[test]
fn rejects_bad_folders() {
    let d = tempfile::tempdir().unwrap();
    assert!(matches!(
        Module::load(d.path()),
        Err(LoadError::NoSpec { .. })
    ));
    let e = Module::load(d.path()).unwrap_err().to_string();
    assert!(e.contains("lilypad module init"), "{e}");
    assert!(matches!(
        Module::load(d.path().join("missing")),
        Err(LoadError::Io { .. })
    ));

    let d = write(&base());
    fs::remove_file(d.path().join("Dockerfile")).unwrap();
    assert!(matches!(
        Module::load(d.path()),
        Err(LoadError::NoDockerfile { .. })
    ));

    // Links anywhere, even to files inside the folder.
    let d = write(&base());
    fs::create_dir_all(d.path().join("a/b")).unwrap();
    std::os::unix::fs::symlink("../../Dockerfile", d.path().join("a/b/link")).unwrap();
    match Module::load(d.path()) {
        Err(LoadError::Symlink { path }) => assert!(path.ends_with("a/b/link")),
        other => panic!("{other:?}"),
    }
    let e = Module::load(d.path()).unwrap_err().to_string();
    assert!(e.contains("may not contain links"), "{e}");
    // A link as the folder itself.
    let real = write(&base());
    let holder = tempfile::tempdir().unwrap();
    std::os::unix::fs::symlink(real.path(), holder.path().join("m")).unwrap();
    assert!(matches!(
        Module::load(holder.path().join("m")),
        Err(LoadError::Symlink { .. })
    ));
    // A socket.
    let d = write(&base());
    let _sock = std::os::unix::net::UnixListener::bind(d.path().join("sock")).unwrap();
    assert!(matches!(
        Module::load(d.path()),
        Err(LoadError::SpecialFile { .. })
    ));
    // A huge spec.
    let d = write_raw(&" ".repeat(2 << 20));
    assert!(matches!(
        Module::load(d.path()),
        Err(LoadError::SpecTooLarge { .. })
    ));
}

#[test]
fn inputs_are_typed_and_checked() {
    let m = load(&base()).unwrap();
    let ok = m
        .parse_inputs(&["Mode=a", "Count=10", "Ratio=1e-1", "Loud=true", "Message="])
        .unwrap();
    let values = m.render(&ok).unwrap().inputs;
    assert_eq!(values["Count"], "10");
    assert_eq!(values["Ratio"], "0.1");
    assert_eq!(values["Loud"], "true");
    assert_eq!(values["Message"], "");

    let problem = |items: &[&str]| {
        let e = m.parse_inputs(items).unwrap_err();
        let text = e.to_string();
        // Every rejection lists what the module accepts.
        assert!(text.contains("test/mod:1.0.0 accepts:"), "{text}");
        assert!(
            text.contains("Count (integer, default 1, from 1 to 10)"),
            "{text}"
        );
        assert!(
            text.contains("Mode (string, required, one of \"a\", \"b\")"),
            "{text}"
        );
        e.problem
    };
    match problem(&["Mode=a", "Mesage=x"]) {
        InputProblem::Unknown { key, suggestion } => {
            assert_eq!(key, "Mesage");
            assert_eq!(suggestion.as_deref(), Some("Message"));
        }
        other => panic!("{other:?}"),
    }
    match problem(&["Mode=a", "message=x"]) {
        InputProblem::Unknown { suggestion, .. } => {
            assert_eq!(suggestion.as_deref(), Some("Message"))
        }
        other => panic!("{other:?}"),
    }
    match problem(&["Mode=a", "Zzzzzz=x"]) {
        InputProblem::Unknown { suggestion, .. } => assert_eq!(suggestion, None),
        other => panic!("{other:?}"),
    }
    assert!(matches!(problem(&[]), InputProblem::Missing { key } if key == "Mode"));
    for (item, what) in [
        ("Count=1.5", "a whole number"),
        ("Count=ten", "a whole number"),
        ("Count=99999999999999999999", "a whole number"),
        ("Ratio=NaN", "a finite decimal number"),
        ("Ratio=inf", "a finite decimal number"),
        ("Ratio=half", "a finite decimal number"),
        ("Loud=yes", "true or false"),
        ("Loud=True", "true or false"),
    ] {
        match problem(&["Mode=a", item]) {
            InputProblem::WrongType { expected, .. } => {
                assert!(expected.contains(what), "{item}: {expected}")
            }
            other => panic!("{item}: {other:?}"),
        }
    }
    assert!(matches!(
        problem(&["Mode=c"]),
        InputProblem::NotAChoice { .. }
    ));
    assert!(matches!(
        problem(&["Mode=a", "Message=123456789012345678901"]),
        InputProblem::TooLong {
            len: 21,
            max: 20,
            ..
        }
    ));
    // maxLength counts characters, not bytes.
    m.parse_inputs(&["Mode=a", &format!("Message={}", "é".repeat(20))])
        .unwrap();
    assert!(matches!(
        problem(&["Mode=a", "Count=0"]),
        InputProblem::OutOfRange { .. }
    ));
    assert!(matches!(
        problem(&["Mode=a", "Count=11"]),
        InputProblem::OutOfRange { .. }
    ));
    assert!(matches!(
        problem(&["Mode=a", "Ratio=-0.1"]),
        InputProblem::OutOfRange { .. }
    ));
    assert!(matches!(
        problem(&["Mode=a", "Message=a\0b"]),
        InputProblem::NulByte { .. }
    ));
    // a missing "=" suggests the input itself, with a value of its own type
    match problem(&["Mode=a", "Count"]) {
        InputProblem::Malformed { example, .. } => assert_eq!(example, "Count=1"),
        other => panic!("{other:?}"),
    }
    match problem(&["Mode=a", "Colour"]) {
        InputProblem::Malformed { example, .. } => {
            assert!(!example.starts_with("Message=hello"), "a declared input, not a fixed one: {example}");
            assert!(m.inputs().iter().any(|d| example.starts_with(&format!("{}=", d.name))), "{example}");
        }
        other => panic!("{other:?}"),
    }
    // a wrong type names the input's own range, not the type's
    match problem(&["Mode=a", "Count=abc"]) {
        InputProblem::WrongType { expected, .. } => assert_eq!(expected, "a whole number from 1 to 10, e.g. 1"),
        other => panic!("{other:?}"),
    }
    assert!(matches!(
        problem(&["Mode=a", "Mode=b"]),
        InputProblem::Duplicate { .. }
    ));
    assert!(matches!(
        problem(&["Mode=a", "-x=1"]),
        InputProblem::InvalidKey { .. }
    ));
    // Without a module, nothing to list.
    assert_eq!(parse_inputs(&["x"]).unwrap_err().accepted, None);
}

#[test]
fn rendering_substitutes_inside_one_element() {
    let m = load(&base()).unwrap();
    let run = m.render(&inputs(&["Mode=b", "Count=3"])).unwrap();
    assert_eq!(run.entrypoint, ["/bin/prog", "--fixed"]);
    assert_eq!(run.args, ["hi", "--count=3", "0.5", "false", "b"]);
    assert_eq!(
        run.env,
        [
            ("GREETING".to_string(), "say hi".to_string()),
            ("LANG".to_string(), "C".to_string())
        ]
    );
    assert_eq!(run.argv().len(), 7);

    // Injection attempts stay one literal argument: no shell, no JSON, no re-expansion.
    let m = Module::load(lilysay_dir()).unwrap();
    for evil in [
        "'; rm -rf / #",
        "\"]}",
        "\"], \"entrypoint\": [\"/bin/sh\"], \"x\": [\"",
        "$(reboot) `id` && echo pwned | sh",
        "{{Message}}",
        "a\nb\tc\r\n--flag",
        "--help",
        "",
    ] {
        let run = m.render(&inputs(&[&format!("Message={evil}")])).unwrap();
        assert_eq!(run.argv(), ["/lilysay", evil], "{evil:?}");
        let spec = run.to_run_spec("img:1", None);
        assert_eq!(
            spec.entrypoint.as_deref(),
            Some(&["/lilysay".to_string()][..])
        );
        assert_eq!(spec.cmd, [evil]);
        assert_eq!(spec.env, [("LANG".to_string(), "C".to_string())]);
    }
    // The same through an env value.
    let m = load(&base()).unwrap();
    let run = m
        .render(&inputs(&["Mode=a", "Message=x\"; export A=1"]))
        .unwrap();
    assert_eq!(
        run.env[0],
        ("GREETING".into(), "say x\"; export A=1".into())
    );
    assert_eq!(run.env.len(), 2);
}

#[test]
fn run_spec_carries_the_limits() {
    let m = load(&with(|v| {
        v["network"] = json!(true);
        v["workdir"] = json!("/work");
        v["resources"]["gpus"] = json!(1);
        v["resources"]["vramMb"] = json!(4096);
    }))
    .unwrap();
    let spec = m
        .to_run_spec(
            &inputs(&["Mode=a"]),
            "lilypad/test:1",
            Some(Path::new("/data/in")),
        )
        .unwrap();
    assert_eq!(spec.image, "lilypad/test:1");
    assert_eq!(spec.cmd[0], "hi");
    assert_eq!(spec.workdir.as_deref(), Some("/work"));
    assert_eq!(spec.inputs_dir.as_deref(), Some(Path::new("/data/in")));
    assert!(spec.network);
    assert_eq!(spec.gpus.as_ref().unwrap().count, Some(1));
    assert_eq!(spec.user, None);
    let l = &spec.limits;
    assert_eq!(l.memory_bytes, 64 << 20);
    assert_eq!(l.nano_cpus, 500_000_000);
    assert_eq!(l.wall_time, Duration::from_secs(30));
    assert_eq!(l.outputs_bytes, 1 << 20);
    assert_eq!(l.outputs_files, 10);
    assert_eq!(l.tmp_bytes, 4 << 20);
    lilypad_executor::sandbox::validate("job", &spec).unwrap();
    // lilysay's spec passes the executor's checks too; no GPU, no network.
    let m = Module::load(lilysay_dir()).unwrap();
    let spec = m.to_run_spec(&Inputs::new(), &m.image_tag(), None).unwrap();
    lilypad_executor::sandbox::validate("job", &spec).unwrap();
    assert!(!spec.network);
    assert_eq!(spec.gpus, None);
    // Without diskMb, /tmp still gets 1 MiB.
    let m = load(&with(|v| {
        v["resources"].as_object_mut().unwrap().remove("diskMb");
    }))
    .unwrap();
    assert_eq!(m.limits().tmp_bytes, 1 << 20);
}

#[test]
fn chain_spec_fields() {
    let m = load(&base()).unwrap();
    let c = m.chain_spec();
    assert_eq!(c.specHash, m.spec_hash());
    assert_ne!(c.specHash, B256::ZERO);
    assert_eq!(c.defaultPayment, 1_050_000_000_000_000_000);
    assert_eq!(c.runTimeout, 30);
    assert_eq!(c.flags, 0);
    assert_eq!(c.requirements.cpuMilli, 500);
    assert_eq!(c.requirements.ramMb, 64);
    assert_eq!(c.requirements.diskMb, 4);
    assert_eq!(c.requirements.gpus, 0);
    assert_eq!(c.requirements.vramMb, 0);
    let flags = |network: bool, deterministic: bool| {
        load(&with(|v| {
            v["network"] = json!(network);
            v["deterministic"] = json!(deterministic);
        }))
        .unwrap()
        .chain_spec()
        .flags
    };
    assert_eq!(flags(true, true), MODULE_NETWORK);
    assert_eq!(flags(false, false), MODULE_NONDETERMINISTIC);
    assert_eq!(flags(true, false), MODULE_NETWORK | MODULE_NONDETERMINISTIC);
    // The flag values are the contract's.
    let sol = include_str!("../../../contracts/ModuleDirectory.sol");
    assert!(sol.contains("uint8 public constant MODULE_NONDETERMINISTIC = 1;"));
    assert!(sol.contains("uint8 public constant MODULE_NETWORK = 2;"));
}

/// Copies a folder (files only, one level of subfolders is enough here).
fn copy_dir(from: &Path, to: &Path) {
    fs::create_dir_all(to).unwrap();
    for e in fs::read_dir(from).unwrap() {
        let e = e.unwrap();
        if e.file_type().unwrap().is_dir() {
            copy_dir(&e.path(), &to.join(e.file_name()));
        } else {
            fs::copy(e.path(), to.join(e.file_name())).unwrap();
        }
    }
}

#[test]
fn content_hash_is_stable_and_sensitive() {
    let d = write(&base());
    fs::create_dir(d.path().join("src")).unwrap();
    fs::write(
        d.path().join("src/main.c"),
        "int main(void) { return 0; }\n",
    )
    .unwrap();
    let a = Module::load(d.path()).unwrap();
    let b = Module::load(d.path()).unwrap();
    assert_eq!(a.cid(), b.cid());
    // Elsewhere, same bytes: same hash (the path is not part of it).
    let other = tempfile::tempdir().unwrap();
    copy_dir(d.path(), other.path());
    assert_eq!(Module::load(other.path()).unwrap().cid(), a.cid());
    // One byte changed in any file changes it.
    fs::write(
        d.path().join("src/main.c"),
        "int main(void) { return 1; }\n",
    )
    .unwrap();
    let c = Module::load(d.path()).unwrap();
    assert_ne!(c.cid(), a.cid());
    assert_ne!(c.spec_hash(), a.spec_hash());
    assert_ne!(c.image_tag(), a.image_tag());
    // So does a new file, even a hidden one.
    fs::write(other.path().join(".hidden"), "").unwrap();
    assert_ne!(Module::load(other.path()).unwrap().cid(), a.cid());

    // load_pinned accepts the pinned hash only.
    Module::load_pinned(d.path(), c.spec_hash()).unwrap();
    match Module::load_pinned(d.path(), a.spec_hash()) {
        Err(LoadError::HashMismatch {
            expected, found, ..
        }) => {
            assert_eq!(expected, a.spec_hash());
            assert_eq!(found, c.spec_hash());
        }
        other => panic!("{other:?}"),
    }
}

/// lilysay:0.1.0's CID, pinned. It was cross-checked with the JavaScript UnixFS importer
/// (`node agents/store/tests/js/cid.mjs modules/lilysay`, Kubo's `ipfs add -r --cid-version=1`
/// settings). If this fails, modules/lilysay changed: a published version never changes, so
/// give it a new version and update tests/lilysay.cid.
#[test]
fn lilysay_cid_is_pinned() {
    let m = Module::load(lilysay_dir()).unwrap();
    let expected = include_str!("lilysay.cid").trim();
    assert_eq!(
        m.cid().to_string(),
        expected,
        "modules/lilysay changed: give it a new version and update tests/lilysay.cid"
    );
}

fn modules_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../modules")
}

#[test]
fn every_module_in_the_repository_loads() {
    let mut loaded = Vec::new();
    for entry in fs::read_dir(modules_dir()).unwrap() {
        let dir = entry.unwrap().path();
        if !dir.join("lilypad-module.json").is_file() {
            continue;
        }
        let m = Module::load(&dir).unwrap_or_else(|e| panic!("{}: {e}", dir.display()));
        // No build output or model left in a module folder: it would be part of the hash.
        for junk in ["target", "engine/target", "model.gguf"] {
            assert!(!dir.join(junk).exists(), "{} holds {junk}", dir.display());
        }
        loaded.push(m.reference().to_string());
    }
    loaded.sort();
    assert!(loaded.contains(&"lilysay:0.1.0".to_string()), "{loaded:?}");
    assert!(loaded.contains(&"ollama-pipeline:smollm2-135m".to_string()), "{loaded:?}");
}

#[test]
fn ollama_pipeline_renders_every_input_into_its_own_argument() {
    let m = Module::load(modules_dir().join("ollama-pipeline")).unwrap();
    assert_eq!(m.reference().to_string(), "ollama-pipeline:smollm2-135m");
    // Timings=true makes results differ: it declares what mediators leave out.
    assert!(!m.spec().deterministic);
    assert!(!m.comparison().is_exact());
    // Prompt or Messages: both default to "" (the engine refuses neither and both with exit 2).
    let prompt = "--bench \"quoted\" {{Seed}}";
    let run = m.render(&m.parse_inputs(&[format!("Prompt={prompt}")]).unwrap()).unwrap();
    assert_eq!(
        run.argv(),
        [
            "/ollama-pipeline", "--prompt", prompt, "--messages", "", "--max-tokens", "256",
            "--temperature", "0.8", "--top-k", "40", "--top-p", "0.9", "--min-p", "0",
            "--repeat-penalty", "1.1", "--repeat-last-n", "64", "--presence-penalty", "0",
            "--frequency-penalty", "0", "--seed", "42", "--timings", "false",
            "--model", "/model.gguf", "--out", "/outputs/response.json"
        ]
    );
    let chat = r#"[{"role":"user","content":"hi"}]"#;
    let run = m.render(&m.parse_inputs(&[format!("Messages={chat}")]).unwrap()).unwrap();
    assert_eq!(&run.argv()[1..5], ["--prompt", "", "--messages", chat]);
    let run = m
        .render(&m.parse_inputs(&["Prompt=hi", "MaxTokens=8", "Temperature=0.70", "TopK=0", "Seed=7", "Timings=true"]).unwrap())
        .unwrap();
    assert_eq!(&run.argv()[5..11], ["--max-tokens", "8", "--temperature", "0.7", "--top-k", "0"]);
    assert_eq!(&run.argv()[23..27], ["--seed", "7", "--timings", "true"]);
    for bad in [
        "MaxTokens=0", "MaxTokens=2049", "Temperature=2.5", "TopK=-1", "TopP=1.5", "MinP=-0.1",
        "RepeatPenalty=0", "RepeatLastN=-2", "PresencePenalty=3", "FrequencyPenalty=-3",
        "Seed=-1", "Seed=4294967295", "Timings=yes",
    ] {
        assert!(m.parse_inputs(&["Prompt=hi", bad]).is_err(), "{bad} accepted");
    }
    assert!(m.parse_inputs(&[format!("Prompt={}", "x".repeat(8001))]).is_err(), "an 8001-character prompt accepted");
    assert!(m.parse_inputs(&[format!("Messages={}", "x".repeat(32001))]).is_err(), "a 32001-character conversation accepted");
}

//! File and folder inputs (`"type": "cid"`): declarations, values, and what they render to.

use std::fs;
use std::path::Path;

use lilypad_module::{parse_inputs, InputProblem, LoadError, Module, DEFAULT_INPUT_DATA_BYTES};
use serde_json::{json, Value};

const EMPTY_FILE: &str = "bafkreihdwdcefgh4dqkjv67uzcmw7ojee6xedzdetojuzjevtenxquvyku";

fn spec(input: Value) -> Value {
    json!({
        "name": "reader",
        "version": "1.0.0",
        "entrypoint": ["/read"],
        "args": ["{{Data}}", "{{Label}}"],
        "env": { "DATA": "{{Data}}" },
        "inputs": { "Data": input, "Label": { "type": "string", "default": "x" } },
        "resources": { "cpuMilli": 500, "ramMb": 64 },
        "timeoutSeconds": 30,
        "deterministic": true,
        "defaultPayment": "1"
    })
}

fn load(spec: &Value) -> Result<Module, LoadError> {
    let d = tempfile::tempdir().unwrap();
    fs::write(d.path().join("lilypad-module.json"), serde_json::to_string(spec).unwrap()).unwrap();
    fs::write(d.path().join("Dockerfile"), "FROM scratch\n").unwrap();
    Module::load(d.path())
}

fn spec_error(input: Value) -> String {
    match load(&spec(input)) {
        Err(LoadError::Spec { source, .. }) => source.to_string(),
        other => panic!("expected a spec error, got {other:?}"),
    }
}

#[test]
fn a_cid_input_renders_as_its_path_and_is_listed_for_fetching() {
    let m = load(&spec(json!({ "type": "cid", "required": true, "maxBytes": 1000 }))).unwrap();
    let folder = tempfile::tempdir().unwrap();
    fs::write(folder.path().join("a.txt"), "a").unwrap();
    let folder_cid = lilypad_store::cid_of_path(folder.path()).unwrap().to_string();
    let r = m.render(&parse_inputs(&[format!("Data={folder_cid}")]).unwrap()).unwrap();
    assert_eq!(r.args, ["/inputs/Data", "x"], "placeholders become the mount path");
    assert_eq!(r.env, [("DATA".to_string(), "/inputs/Data".to_string())]);
    assert_eq!(r.inputs["Data"], folder_cid, "the value kept is the CID");
    assert_eq!(r.data_inputs.len(), 1);
    assert_eq!(r.data_inputs[0].name, "Data");
    assert_eq!(r.data_inputs[0].cid.to_string(), folder_cid);
    assert_eq!(r.data_inputs[0].max_bytes, 1000);
    let usage = m.usage();
    assert!(usage.contains("Data (cid, required, at most 1000 bytes, at /inputs/Data)"), "{usage}");
}

#[test]
fn a_cid_input_without_max_bytes_gets_the_default_cap_and_may_have_a_default() {
    let m = load(&spec(json!({ "type": "cid", "default": EMPTY_FILE }))).unwrap();
    let r = m.render(&parse_inputs::<&str>(&[]).unwrap()).unwrap();
    assert_eq!(r.data_inputs[0].max_bytes, DEFAULT_INPUT_DATA_BYTES);
    assert_eq!(r.data_inputs[0].cid.to_string(), EMPTY_FILE);
    // a plain string module has none to fetch
    let m = load(&spec(json!({ "type": "string", "default": "a" }))).unwrap();
    assert!(m.render(&parse_inputs::<&str>(&[]).unwrap()).unwrap().data_inputs.is_empty());
}

#[test]
fn values_that_are_not_unixfs_cids_are_refused_with_what_to_give() {
    let m = load(&spec(json!({ "type": "cid", "required": true }))).unwrap();
    let dag_cbor = "bafyreigbtj4x7ip5legnfznufuopl4sg4knzc2cof6duas4b3q2fy6swua";
    for bad in ["hello", "@photo.png", "", " bafkreihdwdcefgh4dqkjv67uzcmw7ojee6xedzdetojuzjevtenxquvyku", dag_cbor] {
        let e = m.render(&parse_inputs(&[format!("Data={bad}")]).unwrap()).unwrap_err();
        assert!(matches!(e.problem, InputProblem::WrongType { .. }), "{bad:?}: {e}");
        let text = e.to_string();
        assert!(text.contains("the CID of a file or folder") && text.contains("@<local path>"), "{text}");
    }
    // CIDv0 is UnixFS too
    m.render(&parse_inputs(&["Data=QmbFMke1KXqnYyBBWxB74N4c5SBnJMVAiMNRcGu6x1AwQH"]).unwrap()).unwrap();
}

#[test]
fn cid_declarations_are_checked() {
    let e = spec_error(json!({ "type": "cid", "required": true, "maxBytes": 0 }));
    assert!(e.contains("maxBytes") && e.contains("out of range"), "{e}");
    let e = spec_error(json!({ "type": "cid", "required": true, "maxBytes": 17u64 << 30 }));
    assert!(e.contains("maxBytes"), "{e}");
    let e = spec_error(json!({ "type": "string", "default": "a", "maxBytes": 10 }));
    assert!(e.contains("\"maxBytes\" applies to cid inputs"), "{e}");
    let e = spec_error(json!({ "type": "cid", "enum": [EMPTY_FILE], "required": true }));
    assert!(e.contains("\"enum\" does not apply to cid inputs"), "{e}");
    let e = spec_error(json!({ "type": "cid", "default": "not a cid" }));
    assert!(e.contains("\"default\""), "{e}");
    let e = spec_error(json!({ "type": "cid", "required": true, "maxLength": 3 }));
    assert!(e.contains("maxLength"), "{e}");
}

#[test]
fn the_example_module_declares_a_capped_file_input() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../modules/wordcount-file");
    let m = Module::load(&dir).unwrap();
    let r = m.render(&parse_inputs(&[format!("Text={EMPTY_FILE}")]).unwrap()).unwrap();
    assert_eq!(r.argv(), ["/wordcount-file", "/inputs/Text"]);
    assert_eq!(r.data_inputs[0].max_bytes, 1 << 20);
}

//! The mediator's comparison of two result folders under a module's declared `compare` rules:
//! a pure function over two folders, tested on real folders (including hostile ones).

use std::fs;
use std::path::Path;

use lilypad_module::compare::{MAX_DIR_ENTRIES, MAX_IGNORE_RULES, MAX_JSON_BYTES, MAX_RULE_LENGTH};
use lilypad_module::{compare_results, Comparison, LoadError, Module, SpecError, Verdict};
use serde_json::json;

/// A result folder: `stdout`, `stderr`, `exitCode` and `outputs/...` from `(path, bytes)`.
fn result(files: &[(&str, &[u8])]) -> tempfile::TempDir {
    let d = tempfile::tempdir().unwrap();
    for (path, bytes) in files {
        let p = d.path().join(path);
        fs::create_dir_all(p.parent().unwrap()).unwrap();
        fs::write(p, bytes).unwrap();
    }
    d
}

fn answer(created: &str, nonce: u64) -> Vec<u8> {
    serde_json::to_vec(
        &json!({"answer": 42, "created_at": created, "meta": {"nonce": nonce, "model": "m1"}}),
    )
    .unwrap()
}

fn llm_like(created: &str, nonce: u64, stderr: &str) -> tempfile::TempDir {
    result(&[
        ("stdout", b"42\n"),
        ("stderr", stderr.as_bytes()),
        ("exitCode", b"0"),
        ("outputs/response.json", &answer(created, nonce)),
    ])
}

fn rules(r: &[&str]) -> Comparison {
    Comparison::parse(r).unwrap()
}

fn cmp(a: &Path, b: &Path, c: &Comparison) -> Verdict {
    compare_results(a, b, c).unwrap()
}

fn differs_at(v: &Verdict) -> &str {
    match v {
        Verdict::Differs { path, .. } => path,
        Verdict::Same => panic!("expected a difference"),
    }
}

const IGNORE_VARYING: &[&str] = &[
    "stderr",
    "outputs/response.json#/created_at",
    "outputs/response.json#/meta/nonce",
];

#[test]
fn identical_results_are_the_same_under_the_exact_comparison() {
    let a = llm_like("t1", 1, "log");
    let b = llm_like("t1", 1, "log");
    assert!(Comparison::exact().is_exact());
    assert_eq!(cmp(a.path(), b.path(), &Comparison::exact()), Verdict::Same);
}

#[test]
fn the_exact_comparison_names_the_first_differing_byte() {
    let a = result(&[("stdout", b"hello world"), ("exitCode", b"0")]);
    let b = result(&[("stdout", b"hello World"), ("exitCode", b"0")]);
    match cmp(a.path(), b.path(), &Comparison::exact()) {
        Verdict::Differs { path, reason } => {
            assert_eq!(path, "stdout");
            assert!(reason.contains("offset 6"), "{reason}");
        }
        Verdict::Same => panic!("one byte differs"),
    }
    let c = result(&[("stdout", b"hello world!"), ("exitCode", b"0")]);
    let v = cmp(a.path(), c.path(), &Comparison::exact());
    assert!(
        v.to_string().contains("11 bytes expected, 12 submitted"),
        "{v}"
    );
}

#[test]
fn varying_fields_differ_without_rules_and_match_with_the_declared_ones() {
    let mine = llm_like("2024-01-01T00:00:00Z", 7, "took 1.2 s");
    let theirs = llm_like("2024-01-01T00:00:09Z", 99, "took 3.4 s");
    assert!(!cmp(mine.path(), theirs.path(), &Comparison::exact()).is_same());
    assert_eq!(
        cmp(mine.path(), theirs.path(), &rules(IGNORE_VARYING)),
        Verdict::Same
    );
    // each rule is needed
    assert_eq!(
        differs_at(&cmp(
            mine.path(),
            theirs.path(),
            &rules(&IGNORE_VARYING[1..])
        )),
        "stderr"
    );
    let v = cmp(mine.path(), theirs.path(), &rules(&IGNORE_VARYING[..2]));
    assert_eq!(differs_at(&v), "outputs/response.json");
    assert!(
        v.to_string().contains("/meta/nonce"),
        "names the JSON member: {v}"
    );
}

#[test]
fn a_wrong_answer_differs_even_with_every_varying_field_ignored() {
    let mine = llm_like("a", 1, "x");
    let theirs = result(&[
        ("stdout", b"42\n"),
        ("stderr", b"y"),
        ("exitCode", b"0"),
        (
            "outputs/response.json",
            &serde_json::to_vec(
                &json!({"answer": 41, "created_at": "b", "meta": {"nonce": 2, "model": "m1"}}),
            )
            .unwrap(),
        ),
    ]);
    let v = cmp(mine.path(), theirs.path(), &rules(IGNORE_VARYING));
    assert!(v.to_string().contains("/answer"), "{v}");
    // and so does a wrong stdout or exit code
    let theirs = result(&[
        ("stdout", b"41\n"),
        ("stderr", b"y"),
        ("exitCode", b"0"),
        ("outputs/response.json", &answer("b", 2)),
    ]);
    assert_eq!(
        differs_at(&cmp(mine.path(), theirs.path(), &rules(IGNORE_VARYING))),
        "stdout"
    );
    let theirs = result(&[
        ("stdout", b"42\n"),
        ("stderr", b"y"),
        ("exitCode", b"1"),
        ("outputs/response.json", &answer("b", 2)),
    ]);
    assert_eq!(
        differs_at(&cmp(mine.path(), theirs.path(), &rules(IGNORE_VARYING))),
        "exitCode"
    );
}

#[test]
fn json_is_compared_as_json_key_order_and_whitespace_do_not_matter() {
    let a = result(&[("outputs/r.json", br#"{"a":1,"b":[1,2],"t":5}"#)]);
    let b = result(&[(
        "outputs/r.json",
        b"{ \"b\" : [1, 2],\n  \"t\": 6, \"a\": 1 }\n",
    )]);
    assert_eq!(
        cmp(a.path(), b.path(), &rules(&["outputs/r.json#/t"])),
        Verdict::Same
    );
    // without a pointer rule, the file is compared byte for byte
    assert!(!cmp(a.path(), b.path(), &rules(&["outputs/other.json#/t"])).is_same());
}

#[test]
fn an_ignored_member_may_be_missing_on_either_side() {
    let a = result(&[("r.json", br#"{"a":1,"t":5}"#)]);
    let b = result(&[("r.json", br#"{"a":1}"#)]);
    assert_eq!(
        cmp(a.path(), b.path(), &rules(&["r.json#/t"])),
        Verdict::Same
    );
    assert_eq!(
        cmp(b.path(), a.path(), &rules(&["r.json#/t"])),
        Verdict::Same
    );
    // but a member not ignored may not
    let c = result(&[("r.json", br#"{"a":1,"t":5,"extra":true}"#)]);
    let v = cmp(a.path(), c.path(), &rules(&["r.json#/t"]));
    assert!(
        v.to_string()
            .contains("/extra is only in the submitted result"),
        "{v}"
    );
}

#[test]
fn array_elements_are_nulled_so_the_others_keep_their_places() {
    let a = result(&[("r.json", br#"{"xs":[{"v":1,"t":10},{"v":2,"t":11}]}"#)]);
    let b = result(&[("r.json", br#"{"xs":[{"v":1,"t":90},{"v":2,"t":91}]}"#)]);
    assert_eq!(
        cmp(
            a.path(),
            b.path(),
            &rules(&["r.json#/xs/0/t", "r.json#/xs/1/t"])
        ),
        Verdict::Same
    );
    assert!(!cmp(a.path(), b.path(), &rules(&["r.json#/xs/0/t"])).is_same());
    // dropping a whole element keeps the second one second
    let c = result(&[("r.json", br#"[0, "a", "b"]"#)]);
    let d = result(&[("r.json", br#"[9, "a", "b"]"#)]);
    let e = result(&[("r.json", br#"[9, "b", "a"]"#)]);
    assert_eq!(
        cmp(c.path(), d.path(), &rules(&["r.json#/0"])),
        Verdict::Same
    );
    assert!(!cmp(c.path(), e.path(), &rules(&["r.json#/0"])).is_same());
    // "01" is not an array index (RFC 6901): nothing is dropped
    assert!(!cmp(c.path(), d.path(), &rules(&["r.json#/00"])).is_same());
}

#[test]
fn pointer_escapes_name_keys_with_slashes_and_tildes() {
    let a = result(&[("r.json", br#"{"a/b":1,"c~d":2,"k":0}"#)]);
    let b = result(&[("r.json", br#"{"a/b":7,"c~d":8,"k":0}"#)]);
    assert_eq!(
        cmp(
            a.path(),
            b.path(),
            &rules(&["r.json#/a~1b", "r.json#/c~0d"])
        ),
        Verdict::Same
    );
    assert!(!cmp(a.path(), b.path(), &rules(&["r.json#/a~1b"])).is_same());
}

#[test]
fn an_ignored_file_may_be_missing_and_an_ignored_folder_covers_its_contents() {
    let a = result(&[
        ("stdout", b"x"),
        ("stderr", b"noise"),
        ("outputs/logs/1.txt", b"a"),
        ("outputs/logs/deep/2.txt", b"b"),
    ]);
    let b = result(&[("stdout", b"x"), ("outputs/logs/other.txt", b"c")]);
    assert_eq!(
        cmp(a.path(), b.path(), &rules(&["stderr", "outputs/logs"])),
        Verdict::Same
    );
    let v = cmp(a.path(), b.path(), &rules(&["outputs/logs"]));
    assert_eq!(
        v,
        Verdict::Differs {
            path: "stderr".into(),
            reason: "missing from the submitted result".into()
        }
    );
    let v = cmp(b.path(), a.path(), &rules(&["outputs/logs"]));
    assert_eq!(
        v,
        Verdict::Differs {
            path: "stderr".into(),
            reason: "only in the submitted result".into()
        }
    );
}

#[test]
fn an_extra_or_missing_file_differs() {
    let a = result(&[("stdout", b"x"), ("outputs/a", b"1")]);
    let b = result(&[("stdout", b"x"), ("outputs/a", b"1"), ("outputs/b", b"")]);
    assert_eq!(
        differs_at(&cmp(a.path(), b.path(), &Comparison::exact())),
        "outputs/b"
    );
    assert_eq!(
        differs_at(&cmp(b.path(), a.path(), &Comparison::exact())),
        "outputs/b"
    );
}

#[test]
fn a_file_in_place_of_a_folder_differs() {
    let a = result(&[("outputs/x/y", b"1")]);
    let b = result(&[("outputs/x", b"1")]);
    let v = cmp(a.path(), b.path(), &Comparison::exact());
    assert!(
        v.to_string()
            .contains("a folder in the expected result, a file in the submitted one"),
        "{v}"
    );
}

#[test]
fn rules_that_could_leave_the_result_folder_or_mean_nothing_are_refused() {
    for (rule, hint) in [
        ("../etc/passwd", ".."),
        ("outputs/../../x", ".."),
        ("./stdout", "\".\""),
        ("/etc/passwd", "relative"),
        ("outputs//x", "empty path component"),
        ("outputs/", "empty path component"),
        ("", "names no file"),
        ("#/x", "names no file"),
        ("r.json#", "empty JSON pointer"),
        ("r.json#created_at", "must start with \"/\""),
        ("r.json#/a~2b", "~"),
        ("r.json#/a~", "~"),
        ("std\0out", "NUL"),
    ] {
        let e = Comparison::parse(&[rule]).expect_err(rule);
        assert_eq!(e.rule, rule);
        assert!(e.to_string().contains(hint), "{rule:?}: {e}");
    }
    let long = "a".repeat(MAX_RULE_LENGTH + 1);
    assert!(Comparison::parse(&[long.as_str()]).is_err());
    let many: Vec<String> = (0..=MAX_IGNORE_RULES).map(|i| format!("f{i}")).collect();
    assert!(Comparison::parse(&many)
        .unwrap_err()
        .to_string()
        .contains("at most"));
    assert!(Comparison::parse(&many[..MAX_IGNORE_RULES]).is_ok());
}

#[cfg(unix)]
#[test]
fn symbolic_links_are_never_followed_and_make_results_differ() {
    use std::os::unix::fs::symlink;
    let secret = tempfile::tempdir().unwrap();
    fs::write(secret.path().join("s"), b"42\n").unwrap();
    let mine = result(&[("stdout", b"42\n")]);
    // the provider's stdout is a link to a file with the right bytes: still not a result
    let theirs = tempfile::tempdir().unwrap();
    symlink(secret.path().join("s"), theirs.path().join("stdout")).unwrap();
    let v = cmp(mine.path(), theirs.path(), &Comparison::exact());
    assert_eq!(differs_at(&v), "stdout");
    assert!(
        v.to_string()
            .contains("symbolic link in the submitted result"),
        "{v}"
    );
    // a link to a folder is not descended into (here: to the expected result itself)
    let theirs = result(&[("stdout", b"42\n")]);
    symlink(mine.path(), theirs.path().join("outputs")).unwrap();
    let mine2 = result(&[("stdout", b"42\n"), ("outputs/stdout", b"42\n")]);
    assert!(cmp(mine2.path(), theirs.path(), &Comparison::exact())
        .to_string()
        .contains("symbolic link"));
    // on the expected side too
    assert!(cmp(theirs.path(), mine2.path(), &Comparison::exact())
        .to_string()
        .contains("symbolic link in the expected result"));
    // an ignored link is ignored (never read)
    assert_eq!(
        cmp(
            mine.path(),
            result(&[("stdout", b"42\n")]).path(),
            &rules(&["outputs"])
        ),
        Verdict::Same
    );
    let theirs = result(&[("stdout", b"42\n")]);
    symlink("/dev/zero", theirs.path().join("junk")).unwrap();
    let mine = result(&[("stdout", b"42\n"), ("junk", b"")]);
    assert_eq!(
        cmp(mine.path(), theirs.path(), &rules(&["junk"])),
        Verdict::Same
    );
    assert!(!cmp(mine.path(), theirs.path(), &Comparison::exact()).is_same());
}

#[cfg(unix)]
#[test]
fn a_fifo_differs_without_being_opened() {
    let mine = result(&[("stdout", b"x"), ("p", b"")]);
    let theirs = result(&[("stdout", b"x")]);
    let fifo = theirs.path().join("p");
    let made = std::process::Command::new("mkfifo")
        .arg(&fifo)
        .status()
        .expect("mkfifo (coreutils)");
    assert!(made.success());
    let v = cmp(mine.path(), theirs.path(), &Comparison::exact());
    assert!(
        v.to_string()
            .contains("special file in the submitted result"),
        "{v}"
    );
}

#[test]
fn huge_files_are_compared_in_chunks_and_huge_json_byte_for_byte() {
    // 64 MiB files (sparse: cheap to make) differing only in their last byte
    let size = 64u64 << 20;
    let a = tempfile::tempdir().unwrap();
    let b = tempfile::tempdir().unwrap();
    for (d, last) in [(&a, b'a'), (&b, b'b')] {
        let f = fs::File::create(d.path().join("big")).unwrap();
        f.set_len(size - 1).unwrap();
        drop(f);
        let mut f = fs::OpenOptions::new()
            .append(true)
            .open(d.path().join("big"))
            .unwrap();
        std::io::Write::write_all(&mut f, &[last]).unwrap();
    }
    let v = cmp(a.path(), b.path(), &Comparison::exact());
    assert!(
        v.to_string().contains(&format!("offset {}", size - 1)),
        "{v}"
    );

    // A JSON file over MAX_JSON_BYTES is not parsed: its ignored member still counts.
    let pad = "x".repeat(MAX_JSON_BYTES as usize);
    let a = result(&[("r.json", format!(r#"{{"t":1,"pad":"{pad}"}}"#).as_bytes())]);
    let b = result(&[("r.json", format!(r#"{{"t":2,"pad":"{pad}"}}"#).as_bytes())]);
    assert!(!cmp(a.path(), b.path(), &rules(&["r.json#/t"])).is_same());
    let small_a = result(&[("r.json", br#"{"t":1,"pad":"x"}"#)]);
    let small_b = result(&[("r.json", br#"{"t":2,"pad":"x"}"#)]);
    assert!(cmp(small_a.path(), small_b.path(), &rules(&["r.json#/t"])).is_same());
}

#[test]
fn json_with_a_key_given_twice_or_not_json_matches_only_byte_for_byte() {
    let mine = result(&[("r.json", br#"{"answer":"right","t":1}"#)]);
    // a reader taking the first value sees "wrong"; one taking the last sees "right"
    let theirs = result(&[("r.json", br#"{"answer":"wrong","answer":"right","t":2}"#)]);
    let v = cmp(mine.path(), theirs.path(), &rules(&["r.json#/t"]));
    assert!(v.to_string().contains("key given twice"), "{v}");
    let theirs = result(&[("r.json", br#"{"answer":"right","t":2"#)]);
    assert!(!cmp(mine.path(), theirs.path(), &rules(&["r.json#/t"])).is_same());
    let theirs = result(&[("r.json", br#"{"answer":"right","t":2} trailing"#)]);
    assert!(!cmp(mine.path(), theirs.path(), &rules(&["r.json#/t"])).is_same());
    // both sides the same non-JSON bytes: the same
    let a = result(&[("r.json", b"not json")]);
    let b = result(&[("r.json", b"not json")]);
    assert_eq!(
        cmp(a.path(), b.path(), &rules(&["r.json#/t"])),
        Verdict::Same
    );
    // deeply nested JSON is refused by the parser's depth limit, not a stack overflow
    let deep = format!("{}{}", "[".repeat(100_000), "]".repeat(100_000));
    let a = result(&[("r.json", deep.as_bytes())]);
    let b = result(&[("r.json", deep.replace("[]", "[1]").as_bytes())]);
    assert!(!cmp(a.path(), b.path(), &rules(&["r.json#/0"])).is_same());
}

#[test]
fn a_folder_with_too_many_entries_in_the_submitted_result_differs() {
    let mine = result(&[("stdout", b"x")]);
    let theirs = result(&[("stdout", b"x")]);
    let many = theirs.path().join("outputs");
    fs::create_dir(&many).unwrap();
    for i in 0..=MAX_DIR_ENTRIES {
        fs::File::create(many.join(i.to_string())).unwrap();
    }
    let v = cmp(mine.path(), theirs.path(), &Comparison::exact());
    // "outputs" is only on their side: found before its contents are listed
    assert_eq!(differs_at(&v), "outputs");
    fs::create_dir(mine.path().join("outputs")).unwrap();
    let v = cmp(mine.path(), theirs.path(), &Comparison::exact());
    assert!(
        v.to_string()
            .contains(&format!("more than {MAX_DIR_ENTRIES} entries")),
        "{v}"
    );
}

#[test]
fn a_missing_folder_is_an_error_not_a_verdict() {
    let a = result(&[("stdout", b"x")]);
    let e = compare_results(a.path(), &a.path().join("nope"), &Comparison::exact()).unwrap_err();
    assert!(e.to_string().contains("nope"), "{e}");
}

// ---- the spec's `compare` section

fn module_with(
    deterministic: bool,
    compare: Option<serde_json::Value>,
) -> Result<Module, LoadError> {
    let d = tempfile::tempdir().unwrap();
    lilypad_module::init_module(d.path(), "cmp").unwrap();
    let path = d.path().join("lilypad-module.json");
    let mut spec: serde_json::Value = serde_json::from_slice(&fs::read(&path).unwrap()).unwrap();
    spec["deterministic"] = json!(deterministic);
    if let Some(c) = compare {
        spec["compare"] = c;
    }
    fs::write(&path, serde_json::to_vec_pretty(&spec).unwrap()).unwrap();
    Module::load(d.path())
}

#[test]
fn a_non_deterministic_module_declares_its_comparison() {
    let m = module_with(
        false,
        Some(json!({"ignore": ["stderr", "outputs/response.json#/created_at"]})),
    )
    .unwrap();
    assert!(!m.comparison().is_exact());
    assert_eq!(
        m.comparison(),
        &rules(&["stderr", "outputs/response.json#/created_at"])
    );
    // absent: byte for byte, deterministic or not
    assert!(module_with(false, None).unwrap().comparison().is_exact());
    assert!(module_with(true, None).unwrap().comparison().is_exact());
}

#[test]
fn a_deterministic_module_cannot_declare_a_comparison() {
    match module_with(true, Some(json!({"ignore": ["stderr"]}))) {
        Err(LoadError::Spec {
            source: SpecError::CompareOnDeterministic,
            ..
        }) => {}
        other => panic!("{other:?}"),
    }
}

#[test]
fn a_bad_comparison_rule_is_refused_at_load() {
    match module_with(false, Some(json!({"ignore": ["../../etc/passwd"]}))) {
        Err(LoadError::Spec {
            source: SpecError::CompareRule(e),
            ..
        }) => assert_eq!(e.rule, "../../etc/passwd"),
        other => panic!("{other:?}"),
    }
    // unknown fields in `compare` are refused too
    assert!(matches!(
        module_with(false, Some(json!({"ignore": [], "glob": "*"}))),
        Err(LoadError::Json { .. })
    ));
}

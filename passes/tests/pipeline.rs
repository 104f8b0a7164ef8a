//! Pipeline text and the registry: what parses, and the errors that list what exists.

use bertopt_passes::{parse_pipeline, PassError, Pipeline};

#[test]
fn parses_names_and_arguments() {
    let p = parse_pipeline("heads(ratio=0.5), tile(sparsity=0.5,g=128,n=true),dce").unwrap();
    assert_eq!(p.len(), 3);
    assert_eq!(p[0].name, "heads");
    assert_eq!(p[0].args["ratio"], "0.5");
    assert_eq!(p[1].args.len(), 3);
    assert_eq!(p[1].args["g"], "128");
    assert_eq!(p[2].name, "dce");
    assert!(p[2].args.is_empty());
    // values may hold paths
    let p = parse_pipeline("heads(mask=/tmp/x/head_mask.bin)").unwrap();
    assert_eq!(p[0].args["mask"], "/tmp/x/head_mask.bin");
}

#[test]
fn syntax_errors_point_at_the_column() {
    for (text, col, what) in [
        ("", 1, "expected a pass name"),
        ("dce,", 5, "expected a pass name"),
        ("a(b)", 4, "expected `=`"),
        ("a(b=1", 6, "missing `)`"),
        ("a(b=1,b=2)", 9, "given twice"),
        ("a b", 3, "expected `,`"),
        ("a(=1)", 3, "expected an argument name"),
    ] {
        match parse_pipeline(text) {
            Err(PassError::Syntax { col: c, problem, .. }) => {
                assert_eq!(c, col, "{text}: {problem}");
                assert!(problem.contains(what), "{text}: {problem}");
            }
            other => panic!("{text}: expected a syntax error, got {other:?}"),
        }
    }
}

#[test]
fn unknown_pass_lists_the_registered_ones() {
    let e = Pipeline::parse("dce,prune-everything").err().expect("unknown pass fails").to_string();
    assert!(e.contains("unknown pass `prune-everything`"), "{e}");
    assert!(e.contains("dce") && e.contains("fold"), "{e}");
}

#[test]
fn unknown_argument_lists_the_pass_arguments() {
    let e = Pipeline::parse("dce(ratio=0.5)").err().expect("unknown arg fails").to_string();
    assert!(e.contains("pass `dce` has no argument `ratio`"), "{e}");
    assert!(e.contains("arguments: none"), "{e}");
}

/// Found by `scripts/fuzz` (target pipeline_spec): a layer range up to 2e16 was expanded in memory and aborted
/// the process. Layer numbers are now bounded before any range is expanded.
#[test]
fn a_huge_exit_layer_range_is_refused_not_expanded() {
    let found = "exit(criterion=patience,patience=2,layers=0-00020037642044444444+44444444444444444444\u{0}3)";
    let e = Pipeline::parse(found).err().expect("refused").to_string();
    assert!(e.contains("beyond any model (at most 1024)"), "{e}");
    let e = Pipeline::parse("exit(layers=1-100000000000)").err().expect("refused").to_string();
    assert!(e.contains("layer 100000000000 is beyond any model"), "{e}");
}

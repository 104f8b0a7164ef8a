//! The pass file tests: every `passes/filetests/<pass>/*.ir` is one case, its command, input and expected
//! output in one file, in the manner of Cranelift's `filetests` (`test optimize` + `precise-output`):
//!
//! ```text
//! ; test: heads(mask=keep.json)        the pipeline, as `--pass` takes it; paths are relative to the file
//! ; data: @l0.v.weight                 optional: weights whose values are printed after the IR
//! ; any other comment
//! graph two(...) { ... }                the input; weights carry data with `= seeded(N)` or `= [v, ...]`
//! weights { @l0.v.weight: f32[8, 8] = seeded(7) ... }
//! ; expect:                             the printed IR after the pipeline (and the data lines), each
//! ; graph two(...) {                    line behind `; `
//! ```
//!
//! or `; expect-error: TEXT`, which passes when the pipeline fails with an error containing TEXT. With
//! `BERTOPT_BLESS=1` a mismatching expectation is rewritten in place from the actual output (review the diff).
//! Every registered pass must have a folder with at least one case.

use std::path::{Path, PathBuf};

use bertopt_ir::{parse, print, verify, Graph};
use bertopt_passes::{registry, PassContext, Pipeline};

const EXPECT: &str = "; expect:";
const EXPECT_ERROR: &str = "; expect-error:";

/// The `; key: value` lines at the top of a file.
fn header<'a>(text: &'a str, key: &str) -> Option<&'a str> {
    let prefix = format!("; {key}:");
    text.lines().take_while(|l| l.starts_with(';')).find_map(|l| l.strip_prefix(prefix.as_str())).map(str::trim)
}

fn data_lines(g: &Graph, names: &[&str]) -> Result<String, String> {
    let mut s = String::new();
    for name in names {
        let n = name.trim_start_matches('@');
        let t = g.weights.tensor(n).ok_or_else(|| format!("no weight @{n} with data after the pipeline"))?;
        let v: Vec<String> = t
            .to_dtype(candle_core::DType::F32)
            .and_then(|t| t.flatten_all())
            .and_then(|t| t.to_vec1::<f32>())
            .map_err(|e| e.to_string())?
            .iter()
            .map(|x| if x.fract() == 0.0 { format!("{x}") } else { format!("{x:.4}") })
            .collect();
        s.push_str(&format!("@{n} = [{}]\n", v.join(", ")));
    }
    Ok(s)
}

/// The output the file's pipeline produces: IR text plus data lines, or the error as `Err`.
fn actual(input: &str, file: &Path) -> Result<Result<String, String>, String> {
    let pipeline = header(input, "test").ok_or("no `; test: PIPELINE` line at the top")?;
    let data: Vec<&str> = header(input, "data").map(|d| d.split(',').map(str::trim).collect()).unwrap_or_default();
    let mut g = parse(input).map_err(|e| format!("input: {e}"))?;
    verify(&g).map_err(|e| format!("input does not verify: {e}"))?;
    let run = relative_to(pipeline, file.parent().unwrap())
        .and_then(|p| Pipeline::parse(&p))
        .and_then(|p| p.run(&mut g, &mut PassContext::default()));
    Ok(match run {
        Err(e) => Err(e.to_string()),
        Ok(_) => Ok(format!("{}{}", print(&g), data_lines(&g, &data)?)),
    })
}

/// The pipeline with its file arguments (masks, scores) made relative to `dir`, as a reader of the file expects.
fn relative_to(pipeline: &str, dir: &Path) -> Result<String, bertopt_passes::PassError> {
    let specs = bertopt_passes::parse_pipeline(pipeline)?;
    let text: Vec<String> = specs
        .iter()
        .map(|s| {
            let args: Vec<String> = s
                .args
                .iter()
                .map(|(k, v)| match k.as_str() {
                    "mask" | "scores" => format!("{k}={}", dir.join(v).display()),
                    _ => format!("{k}={v}"),
                })
                .collect();
            if args.is_empty() {
                s.name.clone()
            } else {
                format!("{}({})", s.name, args.join(","))
            }
        })
        .collect();
    Ok(text.join(","))
}

fn commented(text: &str) -> String {
    text.lines().map(|l| if l.is_empty() { ";\n".to_string() } else { format!("; {l}\n") }).collect()
}

fn uncommented(text: &str) -> String {
    text.lines().map(|l| format!("{}\n", l.strip_prefix("; ").unwrap_or(l.strip_prefix(';').unwrap_or(l)))).collect()
}

/// Check one file; `Err` says what differs. Rewrites the expectation when blessing.
fn check(file: &Path, bless: bool) -> Result<(), String> {
    let text = std::fs::read_to_string(file).map_err(|e| e.to_string())?;
    let (input, expect) = match (text.find(EXPECT_ERROR), text.find(EXPECT)) {
        (Some(i), _) => (&text[..i], Err(text[i + EXPECT_ERROR.len()..].trim().to_string())),
        (None, Some(i)) => (&text[..i], Ok(uncommented(text[i + EXPECT.len()..].trim_start_matches('\n')))),
        (None, None) => (text.as_str(), Ok(String::new())),
    };
    let got = actual(input, file)?;
    let ok = match (&expect, &got) {
        (Err(want), Err(e)) => e.contains(want.as_str()),
        (Ok(want), Ok(out)) => want == out,
        _ => false,
    };
    if ok {
        return Ok(());
    }
    if bless {
        let tail = match &got {
            Ok(out) => format!("{EXPECT}\n{}", commented(out)),
            Err(e) => format!("{EXPECT_ERROR} {e}\n"),
        };
        std::fs::write(file, format!("{}{tail}", input.trim_end_matches('\n').to_string() + "\n")).unwrap();
        return Ok(());
    }
    Err(match (&expect, &got) {
        (Ok(want), Ok(out)) => {
            let line = want
                .lines()
                .zip(out.lines())
                .position(|(a, b)| a != b)
                .unwrap_or(want.lines().count().min(out.lines().count()));
            format!(
                "output differs from the expectation at output line {}:\n  expected: {}\n  actual:   {}\n(whole output:\n{out})",
                line + 1,
                want.lines().nth(line).unwrap_or("<end>"),
                out.lines().nth(line).unwrap_or("<end>")
            )
        }
        (Err(want), Err(e)) => format!("expected an error containing `{want}`, got `{e}`"),
        (Err(want), Ok(_)) => format!("expected an error containing `{want}`, but the pipeline succeeded"),
        (Ok(_), Err(e)) => format!("the pipeline failed: {e}"),
    })
}

fn files(dir: &Path) -> Vec<PathBuf> {
    let mut out = vec![];
    for e in std::fs::read_dir(dir).unwrap() {
        let p = e.unwrap().path();
        if p.is_dir() {
            out.extend(files(&p));
        } else if p.extension().is_some_and(|x| x == "ir") {
            out.push(p);
        }
    }
    out.sort();
    out
}

#[test]
fn pass_file_tests() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("filetests");
    let bless = std::env::var_os("BERTOPT_BLESS").is_some_and(|v| v == "1");
    let all = files(&root);
    let failures: Vec<String> = all
        .iter()
        .filter_map(|f| check(f, bless).err().map(|e| format!("{}: {e}", f.strip_prefix(&root).unwrap().display())))
        .collect();
    assert!(failures.is_empty(), "{} of {} file tests failed:\n\n{}", failures.len(), all.len(), failures.join("\n\n"));
    for p in registry::passes() {
        let dir = root.join(p.name);
        assert!(
            dir.is_dir() && !files(&dir).is_empty(),
            "pass `{}` has no file test: add passes/filetests/{}/CASE.ir",
            p.name,
            p.name
        );
    }
}

#[test]
fn a_wrong_expectation_fails_and_says_where() {
    let d = tempfile::tempdir().unwrap();
    let f = d.path().join("case.ir");
    let src =
        std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("filetests/dce/dead_values.ir")).unwrap();
    std::fs::write(&f, src.replace("; expect:\n; graph dead(", "; expect:\n; graph other(")).unwrap();
    let e = check(&f, false).unwrap_err();
    assert!(e.contains("output line 1"), "{e}");
    // Blessing rewrites it to the actual output, which then passes.
    check(&f, true).unwrap();
    check(&f, false).unwrap();
    let blessed = std::fs::read_to_string(&f).unwrap();
    assert!(!blessed.contains("graph other("), "{blessed}");
}

//! The tree keeps the shape the architecture docs describe: no cycles between the files of any crate
//! (`scripts/file-cycles`, which resolves every `crate::`/`super::`/`self::` path to its file), a short
//! `main.rs` that only dispatches, and pass names only in the passes' own files.

use std::path::{Path, PathBuf};
use std::process::Command;

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

#[test]
fn no_crate_has_a_cycle_between_its_files() {
    let py = std::env::var("PYTHON").unwrap_or_else(|_| "python3".into());
    let o = Command::new(py).arg(root().join("scripts/file-cycles")).output().expect("python runs");
    let out = String::from_utf8_lossy(&o.stdout);
    assert!(o.status.success(), "{out}{}", String::from_utf8_lossy(&o.stderr));
    assert_eq!(out.lines().filter(|l| l.ends_with("no cycles")).count(), 6, "every crate checked: {out}");
}

#[test]
fn the_checker_finds_a_cycle_when_there_is_one() {
    let d = tempfile::tempdir().unwrap();
    let src = d.path().join("src");
    std::fs::create_dir_all(&src).unwrap();
    std::fs::write(src.join("lib.rs"), "pub mod a;\npub mod b;\n").unwrap();
    std::fs::write(src.join("a.rs"), "use crate::b::B;\npub struct A;\n").unwrap();
    std::fs::write(src.join("b.rs"), "pub struct B(crate::a::A);\n").unwrap();
    let py = std::env::var("PYTHON").unwrap_or_else(|_| "python3".into());
    let o = Command::new(py).arg(root().join("scripts/file-cycles")).arg(d.path()).output().unwrap();
    assert_eq!(o.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&o.stdout).contains("cycle of 2 files: src/a.rs, src/b.rs"));
}

#[test]
fn main_only_dispatches() {
    let main = std::fs::read_to_string(root().join("src/main.rs")).unwrap();
    assert!(main.lines().count() < 150, "src/main.rs has {} lines", main.lines().count());
    // One file per subcommand under src/cli/, each listed in the dispatch.
    let dispatch = std::fs::read_to_string(root().join("src/cli/mod.rs")).unwrap();
    for e in std::fs::read_dir(root().join("src/cli")).unwrap() {
        let name = e.unwrap().path().file_stem().unwrap().to_string_lossy().to_string();
        if name != "mod" {
            assert!(dispatch.contains(&format!("pub mod {name};")), "src/cli/{name}.rs is not in the dispatch");
        }
    }
}

/// Every `"name"` of a registered pass, as a string literal, outside its own pass file and the registry's tests.
fn pass_name_literals(dir: &Path, names: &[&str], hits: &mut Vec<String>) {
    for e in std::fs::read_dir(dir).unwrap() {
        let p = e.unwrap().path();
        if p.is_dir() {
            pass_name_literals(&p, names, hits);
        } else if p.extension().is_some_and(|x| x == "rs") {
            let text = std::fs::read_to_string(&p).unwrap();
            for n in names {
                if text.contains(&format!("name: \"{n}\"")) && !p.starts_with(root().join("passes/src")) {
                    hits.push(format!("{}: {n}", p.display()));
                }
            }
        }
    }
}

#[test]
fn pass_names_are_declared_only_by_the_passes() {
    let names: Vec<&str> = bertopt_passes::registry::passes().iter().map(|p| p.name).collect();
    let mut hits = vec![];
    for d in ["src", "models/src", "ir/src", "runtime/src"] {
        pass_name_literals(&root().join(d), &names, &mut hits);
    }
    assert!(hits.is_empty(), "pass declarations outside passes/: {hits:?}");
    // And each pass file declares its own: the registry lists `INFO` constants, not literals.
    let registry = std::fs::read_to_string(root().join("passes/src/registry.rs")).unwrap();
    for n in &names {
        assert!(!registry.contains(&format!("\"{n}\"")), "registry.rs spells out `{n}`");
    }
}

/// Passes do no file I/O: the files a pipeline names are read by the driver (`passes/src/inputs.rs`, with the
/// head-mask decoder it calls), and a pass built without them refuses rather than reading the file itself.
#[test]
fn only_the_driver_reads_the_files_a_pipeline_names() {
    let mut readers = vec![];
    for e in std::fs::read_dir(root().join("passes/src")).unwrap() {
        let p = e.unwrap().path();
        let text = if p.is_file() { std::fs::read_to_string(&p).unwrap() } else { continue };
        let name = p.file_name().unwrap().to_str().unwrap().to_string();
        if ["std::fs", "read_capped", "File::open", "HeadMask::read"].iter().any(|r| text.contains(r)) {
            readers.push(name);
        }
    }
    assert_eq!(readers, ["inputs.rs"], "files in passes/src that read files");

    let d = tempfile::tempdir().unwrap();
    let mask = d.path().join("m.json");
    std::fs::write(&mask, "[[true, false], [false, true]]").unwrap();
    let spec = &bertopt_passes::parse_pipeline(&format!("heads(mask={})", mask.display())).unwrap()[0];
    let alone = bertopt_passes::registry::build_with(spec, &bertopt_passes::inputs::NONE).err().expect("must refuse");
    assert!(alone.to_string().contains("not read by the pipeline driver"), "{alone}");
    let inputs = bertopt_passes::inputs::Inputs::load(std::slice::from_ref(spec)).unwrap();
    assert_eq!(inputs.mask(&mask.display().to_string()).unwrap().keep, [[true, false], [false, true]]);
    assert!(bertopt_passes::registry::build_with(spec, &inputs).is_ok());
}

/// Loading does not depend on training: no file of `models/src/load/` names the trainable models (`arch`), the
/// training code (`train`) or the data readers (`data`), so a loader or exporter links none of them.
#[test]
fn the_loader_depends_on_neither_the_models_nor_training() {
    let dir = root().join("models/src/load");
    let mut hits = vec![];
    for e in std::fs::read_dir(&dir).unwrap() {
        let p = e.unwrap().path();
        let text = std::fs::read_to_string(&p).unwrap();
        for m in ["crate::arch", "crate::train", "crate::data"] {
            if text.contains(m) {
                hits.push(format!("{}: {m}", p.file_name().unwrap().to_string_lossy()));
            }
        }
    }
    assert!(std::fs::read_dir(&dir).unwrap().count() >= 4, "models/src/load/ is where the loader lives");
    assert!(hits.is_empty(), "the loader reaches into the trainable side: {hits:?}");
}

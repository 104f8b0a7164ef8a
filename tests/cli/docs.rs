//! The docs say only what the binary accepts: every `optimize ...` command written in README.md and docs/*.md
//! (code blocks, with `\` continuations joined, and inline code) uses a subcommand that exists and only flags that
//! subcommand's `--help` lists.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::process::Command;

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn help(args: &[&str]) -> String {
    let o = Command::new(env!("CARGO_BIN_EXE_optimize")).args(args).arg("--help").output().unwrap();
    assert!(o.status.success(), "optimize {args:?} --help failed");
    String::from_utf8(o.stdout).unwrap()
}

/// Subcommand names from the top-level help's "Commands:" list.
fn subcommands(top: &str) -> Vec<String> {
    top.lines()
        .skip_while(|l| !l.starts_with("Commands:"))
        .skip(1)
        .take_while(|l| l.starts_with("  "))
        .filter_map(|l| l.split_whitespace().next().map(str::to_string))
        .collect()
}

/// The command lines of one Markdown file: `optimize ...` inside code blocks (continuations joined, `#` comments
/// cut) and inside inline code spans.
fn commands(text: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut in_block = false;
    let mut pending = String::new();
    for line in text.lines() {
        if line.trim_start().starts_with("```") {
            in_block = !in_block;
            continue;
        }
        if in_block {
            let line = line.split(" # ").next().unwrap_or("");
            if let Some(rest) = line.strip_suffix('\\') {
                pending.push_str(rest);
                continue;
            }
            pending.push_str(line);
            out.push(std::mem::take(&mut pending));
        } else {
            out.extend(line.split('`').skip(1).step_by(2).map(str::to_string));
        }
    }
    out.into_iter()
        .filter_map(|c| {
            let at = c.find("optimize ")?;
            // `target/release/optimize`, `"$opt"` spelled out, or the bare name at a word start.
            let before = &c[..at];
            (before.is_empty() || before.ends_with('/') || before.ends_with(' ')).then(|| c[at..].to_string())
        })
        .collect()
}

fn flags(cmd: &str) -> Vec<String> {
    cmd.split(|c: char| c.is_whitespace() || c == '[' || c == ']' || c == '|' || c == '=' || c == '(' || c == ')')
        .filter(|w| w.starts_with("--") && w.len() > 2)
        .map(|w| w.trim_end_matches([',', '.', ';', ':']).to_string())
        .collect()
}

fn doc_files() -> Vec<PathBuf> {
    let mut files = vec![root().join("README.md")];
    let mut docs: Vec<PathBuf> = std::fs::read_dir(root().join("docs"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "md"))
        .collect();
    docs.sort();
    files.extend(docs);
    files
}

#[test]
fn every_documented_flag_exists() {
    let top = help(&[]);
    let subs = subcommands(&top);
    assert!(subs.iter().any(|s| s == "bench") && subs.iter().any(|s| s == "eval"), "{subs:?}");
    let mut helps: HashMap<String, String> = HashMap::new();
    let mut checked = 0;
    let mut problems = Vec::new();
    for file in doc_files() {
        let text = std::fs::read_to_string(&file).unwrap();
        let name = file.strip_prefix(root()).unwrap_or(Path::new("?")).display().to_string();
        for cmd in commands(&text) {
            // `optimize a|b --flag` documents a flag of several subcommands at once; anything else names the
            // export mode (`optimize MODEL ...`), whose flags are the top level's.
            let word = cmd.split_whitespace().nth(1).unwrap_or("");
            let named: Vec<String> =
                word.split('|').filter(|w| subs.iter().any(|s| s == w)).map(str::to_string).collect();
            let keys = if named.is_empty() { vec![String::new()] } else { named };
            for f in flags(&cmd) {
                checked += 1;
                for key in &keys {
                    let h = helps.entry(key.clone()).or_insert_with(|| {
                        if key.is_empty() {
                            top.clone()
                        } else {
                            help(&[key.as_str()])
                        }
                    });
                    let listed = [' ', '\n', ','].iter().any(|c| h.contains(&format!("{f}{c}")));
                    if !["--help", "--version"].contains(&f.as_str()) && !listed {
                        problems.push(format!("{name}: `{cmd}`: {f} is not in `optimize {key} --help`"));
                    }
                }
            }
        }
    }
    assert!(checked > 100, "the docs' commands were not found ({checked} flags)");
    assert!(problems.is_empty(), "{}", problems.join("\n"));
}

#[test]
fn the_command_finder_reads_blocks_and_inline_code() {
    let md = "text `optimize eval m.onnx --split val` and `cargo --x`\n```sh\ntarget/release/optimize bench a \\\n  --batch 1 # --nope\n```\n";
    let c = commands(md);
    assert_eq!(c, ["optimize eval m.onnx --split val", "optimize bench a   --batch 1"]);
    assert_eq!(flags(&c[1]), ["--batch"]);
}

//! The module graph of the crate has no cycle (`docs/architecture.md#modules`): the spec parser
//! is a leaf, each loss reads its own keys, the registry lists the losses, and the composite
//! loss sits above the registry.
//!
//! Every `crate::…`, `$crate::…` and `super::…` path in `src/` (comments left out) is an edge from
//! its file to the file that defines the module it names; root re-exports (`crate::DiceLoss`)
//! are followed through `lib.rs`. `mod x;` declarations are containment, not edges.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

/// A module path, e.g. `["region", "dice"]`.
type ModPath = Vec<String>;

fn rust_files(dir: &Path, out: &mut Vec<PathBuf>) {
    for entry in std::fs::read_dir(dir).expect("read src") {
        let p = entry.expect("dir entry").path();
        if p.is_dir() {
            rust_files(&p, out);
        } else if p.extension().is_some_and(|e| e == "rs") {
            out.push(p);
        }
    }
}

/// The module a file defines: `region/dice.rs` → `region::dice`, `region/mod.rs` → `region`.
fn module_of(src: &Path, file: &Path) -> ModPath {
    let rel = file.strip_prefix(src).expect("under src");
    let mut parts: Vec<String> = rel
        .iter()
        .map(|s| s.to_string_lossy().into_owned())
        .collect();
    let last = parts.pop().expect("file name");
    let stem = last.trim_end_matches(".rs");
    if stem != "mod" && stem != "lib" {
        parts.push(stem.to_string());
    }
    parts
}

/// The code of a file without comments (line comments, doc comments, block comments) and
/// without string literals.
fn code_of(text: &str) -> String {
    let b = text.as_bytes();
    let mut out = String::with_capacity(text.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'/' && b.get(i + 1) == Some(&b'/') {
            while i < b.len() && b[i] != b'\n' {
                i += 1;
            }
        } else if b[i] == b'/' && b.get(i + 1) == Some(&b'*') {
            i += 2;
            while i + 1 < b.len() && !(b[i] == b'*' && b[i + 1] == b'/') {
                i += 1;
            }
            i += 2;
        } else if b[i] == b'"' {
            i += 1;
            while i < b.len() && b[i] != b'"' {
                if b[i] == b'\\' {
                    i += 1;
                }
                i += 1;
            }
            i += 1;
            out.push_str("\"\"");
        } else {
            out.push(b[i] as char);
            i += 1;
        }
    }
    out
}

fn ident_at(b: &[u8], mut i: usize) -> (String, usize) {
    let start = i;
    while i < b.len() && (b[i].is_ascii_alphanumeric() || b[i] == b'_') {
        i += 1;
    }
    (String::from_utf8_lossy(&b[start..i]).into_owned(), i)
}

/// Every path that starts at `b[i]` (after `crate::` or `super::`), expanding one level of
/// `{a::b, c}` groups: the list of segment lists.
fn paths_at(b: &[u8], i: usize) -> Vec<Vec<String>> {
    let skip_ws = |mut j: usize| {
        while j < b.len() && b[j].is_ascii_whitespace() {
            j += 1;
        }
        j
    };
    let mut prefix = Vec::new();
    let mut j = skip_ws(i);
    loop {
        if b.get(j) == Some(&b'{') {
            // A group: each item is a path below the prefix.
            let mut out = Vec::new();
            let mut depth = 0;
            let mut item_start = j + 1;
            let mut k = j;
            while k < b.len() {
                match b[k] {
                    b'{' => depth += 1,
                    b'}' => depth -= 1,
                    b',' if depth == 1 => {
                        for p in paths_at(b, item_start) {
                            out.push([prefix.clone(), p].concat());
                        }
                        item_start = k + 1;
                    }
                    _ => {}
                }
                if depth == 0 {
                    for p in paths_at(b, item_start) {
                        out.push([prefix.clone(), p].concat());
                    }
                    break;
                }
                k += 1;
            }
            return out;
        }
        let (seg, end) = ident_at(b, j);
        if seg.is_empty() {
            return if prefix.is_empty() {
                Vec::new()
            } else {
                vec![prefix]
            };
        }
        prefix.push(seg);
        if b.get(end) == Some(&b':') && b.get(end + 1) == Some(&b':') {
            j = skip_ws(end + 2);
        } else {
            return vec![prefix];
        }
    }
}

/// `pub use a::b::{X, Y};` of lib.rs: re-exported name → module path.
fn root_reexports(lib: &str) -> BTreeMap<String, ModPath> {
    let code = code_of(lib);
    let b = code.as_bytes();
    let mut out = BTreeMap::new();
    let mut from = 0;
    while let Some(at) = code[from..].find("pub use ") {
        let i = from + at + "pub use ".len();
        for p in paths_at(b, i) {
            if let Some((name, module)) = p.split_last() {
                out.insert(name.clone(), module.to_vec());
            }
        }
        from = i;
    }
    out
}

#[test]
fn the_module_graph_has_no_cycle() {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut files = Vec::new();
    rust_files(&src, &mut files);
    let modules: BTreeMap<ModPath, PathBuf> = files
        .iter()
        .map(|f| (module_of(&src, f), f.clone()))
        .collect();
    let lib = std::fs::read_to_string(src.join("lib.rs")).expect("lib.rs");
    let reexports = root_reexports(&lib);

    // The deepest module named by a path (a prefix of it), following root re-exports.
    let resolve = |path: &[String]| -> Option<ModPath> {
        let path: Vec<String> = match path.first().and_then(|s| reexports.get(s)) {
            Some(m) if !modules.contains_key(&path[..1]) => {
                [m.clone(), path[1..].to_vec()].concat()
            }
            _ => path.to_vec(),
        };
        (1..=path.len())
            .rev()
            .map(|k| path[..k].to_vec())
            .find(|m| modules.contains_key(m))
    };

    let mut edges: BTreeMap<ModPath, BTreeSet<ModPath>> = BTreeMap::new();
    for (module, file) in &modules {
        if module.is_empty() {
            continue; // lib.rs: the facade, declarations and re-exports only
        }
        let is_dir_module = file.ends_with("mod.rs");
        let code = code_of(&std::fs::read_to_string(file).expect("read"));
        let b = code.as_bytes();
        let mut targets = BTreeSet::new();
        for (marker, base) in [
            ("crate::", Vec::new()),
            ("super::", {
                // `super` of `a/b.rs` (module a::b) is `a`; of `a/mod.rs` (module a) the root.
                let mut m = module.clone();
                if !is_dir_module || !m.is_empty() {
                    m.pop();
                }
                m
            }),
        ] {
            let mut from = 0;
            while let Some(at) = code[from..].find(marker) {
                let i = from + at;
                from = i + marker.len();
                // `crate::` inside `$crate::` counts; inside `my_crate::` it does not.
                if i > 0 && (b[i - 1].is_ascii_alphanumeric() || b[i - 1] == b'_') {
                    continue;
                }
                for p in paths_at(b, from) {
                    let full = [base.clone(), p].concat();
                    if let Some(t) = resolve(&full) {
                        if &t != module && !t.is_empty() {
                            targets.insert(t);
                        }
                    }
                }
            }
        }
        edges.insert(module.clone(), targets);
    }

    // Depth-first search for a cycle; report it as a chain of modules.
    fn visit(
        m: &ModPath,
        edges: &BTreeMap<ModPath, BTreeSet<ModPath>>,
        state: &mut BTreeMap<ModPath, u8>,
        stack: &mut Vec<ModPath>,
    ) -> Option<Vec<ModPath>> {
        match state.get(m) {
            Some(2) => return None,
            Some(1) => {
                let at = stack.iter().position(|s| s == m).expect("on the stack");
                let mut cycle = stack[at..].to_vec();
                cycle.push(m.clone());
                return Some(cycle);
            }
            _ => {}
        }
        state.insert(m.clone(), 1);
        stack.push(m.clone());
        for t in edges.get(m).into_iter().flatten() {
            if let Some(c) = visit(t, edges, state, stack) {
                return Some(c);
            }
        }
        stack.pop();
        state.insert(m.clone(), 2);
        None
    }
    let mut state = BTreeMap::new();
    for m in edges.keys() {
        let mut stack = Vec::new();
        if let Some(cycle) = visit(m, &edges, &mut state, &mut stack) {
            let chain: Vec<String> = cycle.iter().map(|m| m.join("::")).collect();
            panic!("import cycle: {}", chain.join(" -> "));
        }
    }

    // The layering the architecture describes.
    let spec = vec!["spec".to_string()];
    let below_spec: Vec<_> = edges[&spec]
        .iter()
        .filter(|t| !t.starts_with(&spec))
        .collect();
    assert!(
        below_spec.is_empty(),
        "the spec parser must be a leaf, it imports {below_spec:?}"
    );
    assert!(
        edges.len() > 30,
        "expected every source file, found {}",
        edges.len()
    );
}

#[test]
fn paths_are_read_through_groups_and_reexports() {
    let code = code_of("use crate::{a::b::C, d}; // crate::x::y\nlet s = \"crate::z\";");
    let b = code.as_bytes();
    let at = code.find("crate::").unwrap() + "crate::".len();
    let paths = paths_at(b, at);
    assert_eq!(
        paths,
        vec![
            vec!["a".to_string(), "b".into(), "C".into()],
            vec!["d".to_string()]
        ]
    );
    assert!(!code.contains("crate::x") && !code.contains("crate::z"));
    let re = root_reexports("pub use region::dice::{DiceLoss, DiceLossConfig};\npub use x::Y;");
    assert_eq!(re["DiceLossConfig"], vec!["region", "dice"]);
    assert_eq!(re["Y"], vec!["x"]);
}

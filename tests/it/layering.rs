//! The layering of `src/`, checked: a module may use only modules of lower layers.
//!
//! `LAYERS` is the one table of allowed dependencies (docs/architecture.md explains each
//! layer in prose). The check reads every `crate::` path in `src/**/*.rs` outside comments and
//! test modules, so a new import from a layer above fails `cargo test` with the file and the
//! path, before the folders drift into a circle.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

/// Top-level modules of `src/`, lowest layer first. A module may depend on the modules of
/// every layer before its own, never on its own layer or a later one.
const LAYERS: &[(&str, &[&str])] = &[
    // Vocabulary with no dependency inside the crate.
    ("vocabulary", &["error_code", "instance", "web"]),
    // Parsed values: domain types and the configuration.
    ("values", &["domain", "config"]),
    // Cross-cutting: logs, metrics, the drain signal.
    ("observability", &["telemetry", "metrics", "shutdown"]),
    // Circuit breakers: how calls to a failing dependency fail fast.
    ("resilience", &["breaker"]),
    // Redis connections, with fail-fast timeouts behind the breaker.
    ("connections", &["redis"]),
    // Adapters to the outside: database, cookies and session records, TCP admission.
    ("infrastructure", &["storage", "session", "listener"]),
    // Shared concerns, each kept locally (embedded) or in Redis (cluster): the Socket.IO
    // adapter, presence counts, rate limits, the analytics stream.
    ("shared", &["adapter", "presence", "rate_limit", "pipeline"]),
    // Instances working together: heartbeats, locks, singleton jobs.
    ("coordination", &["coordination"]),
    // What makes instances one: the Redis-backed parts assembled, and opt-outs.
    ("cluster", &["cluster"]),
    // Accounts, password hashing, login throttling.
    ("identity", &["auth"]),
    // The state every handler shares, assembled once.
    ("state", &["state"]),
    // Behaviour: Socket.IO handlers and the analytics consent rules.
    ("behaviour", &["realtime", "analytics"]),
    // The operator view: cluster-wide vitals pushed to operators, and their commands.
    ("operations", &["operator"]),
    // The HTTP surface, and the hyper loop that serves it.
    ("http", &["http", "server"]),
    // Assembly and the process: build the app and run it until a signal.
    ("assembly", &["app", "lib", "main"]),
];

/// Imports that break the layering today, by file and target module. Each is a known debt
/// named in issue 18; remove the entry when the code moves (the check fails on an entry that
/// no longer matches anything, so the table cannot go stale).
const KNOWN_EXCEPTIONS: &[(&str, &str, &str)] = &[(
    "state.rs",
    "realtime",
    "AppState holds realtime's handles (Realtime, PresenceNotifier, RoomSequencers) while realtime's handlers take AppState",
)];

fn layer_of(module: &str) -> Option<usize> {
    LAYERS
        .iter()
        .position(|(_, modules)| modules.contains(&module))
}

/// The top-level module a file under `src/` belongs to: `cluster/presence.rs` → `cluster`.
fn module_of(relative: &Path) -> String {
    let first = relative
        .components()
        .next()
        .map(|c| c.as_os_str().to_string_lossy().into_owned())
        .unwrap_or_default();
    first.trim_end_matches(".rs").to_owned()
}

fn rust_files(dir: &Path, out: &mut Vec<PathBuf>) {
    let entries = std::fs::read_dir(dir).unwrap_or_else(|e| panic!("reading {dir:?}: {e}"));
    for entry in entries {
        let path = entry.expect("directory entry").path();
        if path.is_dir() {
            rust_files(&path, out);
        } else if path.extension().is_some_and(|e| e == "rs") {
            out.push(path);
        }
    }
}

/// The source a build outside tests sees: comment lines and `#[cfg(test)] mod` blocks dropped.
fn non_test_code(source: &str) -> String {
    let mut code = String::new();
    let mut lines = source.lines().peekable();
    while let Some(line) = lines.next() {
        let trimmed = line.trim_start();
        if trimmed.starts_with("//") {
            continue;
        }
        let next_is_mod = lines
            .peek()
            .is_some_and(|next| next.trim_start().starts_with("mod "));
        if trimmed.starts_with("#[cfg(test)]") && next_is_mod {
            // A test module runs to the end of the file by convention; stop here.
            break;
        }
        code.push_str(line);
        code.push('\n');
    }
    code
}

/// Every module named right after `crate::`, including each item of `crate::{a, b::c}`.
fn crate_modules(code: &str) -> BTreeSet<String> {
    let mut found = BTreeSet::new();
    let mut rest = code;
    while let Some(at) = rest.find("crate::") {
        rest = &rest[at + "crate::".len()..];
        if let Some(group) = rest.strip_prefix('{') {
            // Split the group's top-level items; each begins with a module name.
            let mut depth = 0;
            let mut item_start = true;
            for (i, ch) in group.char_indices() {
                match ch {
                    '{' => depth += 1,
                    '}' if depth == 0 => break,
                    '}' => depth -= 1,
                    ',' if depth == 0 => item_start = true,
                    c if item_start && (c.is_ascii_alphabetic() || c == '_') => {
                        found.insert(identifier(&group[i..]));
                        item_start = false;
                    }
                    _ => {}
                }
            }
        } else {
            found.insert(identifier(rest));
        }
    }
    found.retain(|m| !m.is_empty() && m != "self");
    found
}

fn identifier(s: &str) -> String {
    s.chars()
        .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
        .collect()
}

#[test]
fn no_module_imports_from_a_layer_above_it() {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut files = Vec::new();
    rust_files(&src, &mut files);
    files.sort();
    let mut violations = Vec::new();
    let mut unplaced = BTreeSet::new();
    let mut used_exceptions = BTreeSet::new();
    for file in &files {
        let relative = file.strip_prefix(&src).expect("under src");
        let relative_str = relative.to_string_lossy().replace('\\', "/");
        let module = module_of(relative);
        let Some(layer) = layer_of(&module) else {
            unplaced.insert(module);
            continue;
        };
        let source = std::fs::read_to_string(file).expect("source file");
        for target in crate_modules(&non_test_code(&source)) {
            if target == module {
                continue;
            }
            let Some(target_layer) = layer_of(&target) else {
                unplaced.insert(target);
                continue;
            };
            if target_layer < layer {
                continue;
            }
            let exception = KNOWN_EXCEPTIONS
                .iter()
                .position(|(f, t, _)| *f == relative_str && *t == target);
            match exception {
                Some(i) => {
                    used_exceptions.insert(i);
                }
                None => violations.push(format!(
                    "src/{relative_str} (layer `{}`) uses crate::{target} (layer `{}`)",
                    LAYERS[layer].0, LAYERS[target_layer].0
                )),
            }
        }
    }
    assert!(
        unplaced.is_empty(),
        "modules in no layer: {unplaced:?}; add each to LAYERS in tests/it/layering.rs \
         and describe it in docs/architecture.md"
    );
    assert!(
        violations.is_empty(),
        "expected every module to use only lower layers (tests/it/layering.rs, \
         docs/architecture.md); got:\n{}",
        violations.join("\n")
    );
    let stale: Vec<_> = KNOWN_EXCEPTIONS
        .iter()
        .enumerate()
        .filter(|(i, _)| !used_exceptions.contains(i))
        .map(|(_, (file, target, _))| format!("src/{file} → {target}"))
        .collect();
    assert!(
        stale.is_empty(),
        "known exceptions that no longer occur (remove them from KNOWN_EXCEPTIONS): {stale:?}"
    );
}

#[test]
fn grouped_and_nested_imports_are_all_seen() {
    let code = "use crate::{config::Config, metrics::{Metrics, JobLabels}, self};\n\
                let x = crate::storage::now_millis();\n";
    let found: Vec<String> = crate_modules(code).into_iter().collect();
    assert_eq!(found, ["config", "metrics", "storage"]);
    let code =
        "use a::b;\n// use crate::http::error;\n#[cfg(test)]\nmod tests {\n use crate::app;\n}\n";
    assert!(crate_modules(&non_test_code(code)).is_empty());
}

//! The layering of `src/`, checked: a module may use only modules of lower layers.
//!
//! `LAYERS` is the one table of allowed dependencies (docs/architecture.md explains each
//! layer in prose). An entry is a top-level module (`realtime`) or a submodule
//! (`shutdown::state`) placed apart from the rest of its module: a file belongs to the most
//! specific entry that names it (`src/shutdown/state.rs` → `shutdown::state`, any other file
//! of `src/shutdown/` → `shutdown`), and so does an import (`crate::shutdown::state::DrainState`
//! → `shutdown::state`, `crate::shutdown::sequence::drain` → `shutdown`). The check reads every `crate::` path in `src/**/*.rs` outside comments and
//! test modules, so a new import from a layer above fails `cargo test` with the file and the
//! path, before the folders drift into a circle.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

/// Top-level modules of `src/` (and submodules placed apart), lowest layer first. A module may
/// depend on the modules of every layer before its own, never on its own layer or a later
/// one; parts of one top-level module may use each other within a layer, and the upper parts
/// the lower ones, never the reverse.
const LAYERS: &[(&str, &[&str])] = &[
    // Vocabulary with no dependency inside the crate.
    ("vocabulary", &["error_code", "instance", "web"]),
    // Parsed values: domain types and the configuration.
    ("values", &["domain", "config"]),
    // Cross-cutting: logs, metrics, the drain signal, the drain's timing and the owner of
    // background tasks (the low parts of `shutdown`; the sequence itself is assembly).
    (
        "observability",
        &[
            "telemetry",
            "metrics",
            "shutdown::state",
            "shutdown::plan",
            "shutdown::tasks",
        ],
    ),
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
    // The drain sequence (`shutdown` but its low parts): it drives every part below.
    ("drain", &["shutdown"]),
    // Assembly and the process: build the app and run it until a signal, then drain it.
    ("assembly", &["app", "lib", "main"]),
];

/// Imports allowed to break the layering, by file, target module and reason. None is left:
/// the last ones went with issue 18's reorganisation. Add one only with its reason and a plan
/// to remove it; the check fails on an entry that no longer matches anything, so the table
/// cannot go stale.
const KNOWN_EXCEPTIONS: &[(&str, &str, &str)] = &[];

fn layer_of(module: &str) -> Option<usize> {
    LAYERS
        .iter()
        .position(|(_, modules)| modules.contains(&module))
}

/// The most specific `LAYERS` entry for a module path of one or two segments
/// (`shutdown::state` when listed, else `shutdown`).
fn entry_of(top: &str, sub: Option<&str>) -> String {
    match sub {
        Some(sub) if layer_of(&format!("{top}::{sub}")).is_some() => format!("{top}::{sub}"),
        _ => top.to_owned(),
    }
}

/// The entry a file under `src/` belongs to: `presence/redis.rs` → `presence`,
/// `shutdown/state.rs` → `shutdown::state`.
fn module_of(relative: &Path) -> String {
    let mut parts = relative
        .components()
        .map(|c| c.as_os_str().to_string_lossy().into_owned());
    let top = parts.next().unwrap_or_default();
    let sub = parts.next();
    entry_of(
        top.trim_end_matches(".rs"),
        sub.as_deref().map(|s| s.trim_end_matches(".rs")),
    )
}

/// The part of a module path before `::`: `shutdown::state` → `shutdown`.
fn top_level(module: &str) -> &str {
    module.split("::").next().unwrap_or(module)
}

/// Whether `module` may use `target`: a lower layer always; a part of its own top-level
/// module in its own or a lower layer (`shutdown` → `shutdown::state`, `shutdown::tasks` →
/// `shutdown::plan`), never a part in a higher one (`shutdown::tasks` → `shutdown`).
fn allowed(module: &str, target: &str) -> bool {
    if target == module {
        return true;
    }
    let (Some(layer), Some(target_layer)) = (layer_of(module), layer_of(target)) else {
        return false;
    };
    target_layer < layer || (top_level(target) == top_level(module) && target_layer == layer)
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

/// Every `LAYERS` entry named right after `crate::`, including each item of
/// `crate::{a, b::c}` and of `crate::a::{b, c}`.
fn crate_modules(code: &str) -> BTreeSet<String> {
    let mut found = BTreeSet::new();
    let mut rest = code;
    while let Some(at) = rest.find("crate::") {
        rest = &rest[at + "crate::".len()..];
        if let Some(group) = rest.strip_prefix('{') {
            for item in group_items(group) {
                found.extend(entries_at(item));
            }
        } else {
            found.extend(entries_at(rest));
        }
    }
    found.retain(|m| !m.is_empty() && m != "self");
    found
}

/// The start of each top-level item of a `{…}` group (`group` begins after the `{`).
fn group_items(group: &str) -> Vec<&str> {
    let mut items = Vec::new();
    let mut depth = 0;
    let mut item_start = true;
    for (i, ch) in group.char_indices() {
        match ch {
            '{' => depth += 1,
            '}' if depth == 0 => break,
            '}' => depth -= 1,
            ',' if depth == 0 => item_start = true,
            c if item_start && (c.is_ascii_alphabetic() || c == '_') => {
                items.push(&group[i..]);
                item_start = false;
            }
            _ => {}
        }
    }
    items
}

/// The entries a path names, read from its first two segments: `shutdown::state::X` →
/// `shutdown::state`, `shutdown::{state::X, sequence}` → `shutdown::state` and `shutdown`.
fn entries_at(path: &str) -> Vec<String> {
    let top = identifier(path);
    let after = &path[top.len()..];
    let Some(after) = after.strip_prefix("::") else {
        return vec![top];
    };
    let subs: Vec<String> = match after.strip_prefix('{') {
        Some(group) => group_items(group).into_iter().map(identifier).collect(),
        None => vec![identifier(after)],
    };
    subs.iter()
        .map(|sub| match sub.as_str() {
            "" | "self" => top.clone(),
            sub => entry_of(&top, Some(sub)),
        })
        .collect()
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
            let Some(target_layer) = layer_of(&target) else {
                unplaced.insert(target);
                continue;
            };
            if allowed(&module, &target) {
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
                    "src/{relative_str} (`{module}`, layer `{}`) uses crate::{target} (layer `{}`)",
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

#[test]
fn a_submodule_entry_places_its_file_and_its_imports_apart() {
    assert_eq!(module_of(Path::new("shutdown/state.rs")), "shutdown::state");
    assert_eq!(module_of(Path::new("shutdown/tasks.rs")), "shutdown::tasks");
    assert_eq!(module_of(Path::new("shutdown/mod.rs")), "shutdown");
    assert_eq!(module_of(Path::new("shutdown/sequence.rs")), "shutdown");
    assert_eq!(module_of(Path::new("presence/redis.rs")), "presence");
    let code = "use crate::shutdown::state::DrainState;\n\
                use crate::shutdown::{plan::Deadline, tasks::Tasks};\n\
                use crate::{shutdown::sequence, config::Config};\n\
                crate::shutdown::sequence::drain(&app).await;\n";
    let found: Vec<String> = crate_modules(code).into_iter().collect();
    assert_eq!(
        found,
        [
            "config",
            "shutdown",
            "shutdown::plan",
            "shutdown::state",
            "shutdown::tasks"
        ]
    );
}

#[test]
fn the_low_parts_of_a_module_may_not_use_its_upper_part() {
    // The sequence uses the parts below it and the layers below the assembly.
    assert!(allowed("shutdown", "shutdown::state"));
    assert!(allowed("shutdown", "realtime"));
    // Low parts of one module may use each other; low layers read the drain flag.
    assert!(allowed("shutdown::tasks", "shutdown::plan"));
    assert!(allowed("realtime", "shutdown::state"));
    // A low part may not import the sequence, nor anything above its layer.
    assert!(!allowed("shutdown::tasks", "shutdown"));
    assert!(!allowed("shutdown::state", "realtime"));
    // Other modules may not use the sequence either; the app above it runs it.
    assert!(!allowed("realtime", "shutdown"));
    assert!(!allowed("server", "shutdown"));
    assert!(allowed("app", "shutdown"));
}

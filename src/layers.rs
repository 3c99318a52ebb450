//! The layering rule, checked: every top-level module has a rank, and a module may only name
//! (`crate::…`) modules of a lower rank. That keeps imports pointing down and leaves no room
//! for an import circle between modules. ARCHITECTURE.md shows the same layers.

use std::collections::BTreeSet;
use std::path::Path;

/// Ranks, lowest first. Modules of one rank do not name each other.
const LAYERS: &[&[&str]] = &[
    // Helpers that need nothing of blast.
    &[
        "secret",
        "vapid",
        "metrics",
        "shutdown",
        "unsubscribe",
        "ids",
    ],
    // Domain types, and the rule for where blast may connect to.
    &["domain", "outbound"],
    // What a message says: templates, Telegram content, notification events, rate limits.
    &["template", "telegram", "notify", "limits"],
    // The channels, each a unit of its own: its settings section, its address, its limits,
    // its sends. Below the store, which asks each who it can reach.
    &["channels"],
    // The database: SQL only.
    &["store"],
    &["settings", "report", "dedup"],
    &["queue", "telemetry"],
    &["halts", "bot", "inbox"],
    // Use cases the API and the CLI both call, and the API's JSON that both speak.
    &["app", "wire"],
    // The web console, which the API serves beside its own routes.
    &["console"],
    // The roles: they meet in the layers below, never in each other.
    &["worker", "admin", "api"],
];

/// Imports that still run against the layers, each with the step that removes it (none left).
const KNOWN_EXCEPTIONS: &[(&str, &str, &str)] = &[];

fn rank(module: &str) -> Option<usize> {
    LAYERS.iter().position(|layer| layer.contains(&module))
}

/// Every `crate::name` a source text names (outside its test module).
fn named_modules(source: &str) -> BTreeSet<String> {
    let code = source.split("#[cfg(test)]").next().unwrap_or(source);
    let mut names = BTreeSet::new();
    for (at, _) in code.match_indices("crate::") {
        let rest = &code[at + "crate::".len()..];
        if let Some(group) = rest.strip_prefix('{') {
            let inner = group.split('}').next().unwrap_or_default();
            for item in inner.split(',') {
                let name: String = item
                    .trim()
                    .chars()
                    .take_while(|c| c.is_alphanumeric() || *c == '_')
                    .collect();
                names.insert(name);
            }
        } else {
            names.insert(
                rest.chars()
                    .take_while(|c| c.is_alphanumeric() || *c == '_')
                    .collect(),
            );
        }
    }
    names.retain(|n| !n.is_empty());
    names
}

fn sources(dir: &Path, out: &mut Vec<std::path::PathBuf>) {
    for entry in std::fs::read_dir(dir).expect("read src") {
        let path = entry.expect("dir entry").path();
        if path.is_dir() {
            sources(&path, out);
        } else if path.extension().is_some_and(|e| e == "rs") {
            out.push(path);
        }
    }
}

#[test]
fn imports_point_down_the_layers() {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut files = Vec::new();
    sources(&src, &mut files);
    let mut wrong = Vec::new();
    let mut exceptions_seen = BTreeSet::new();
    for file in files {
        let relative = file.strip_prefix(&src).expect("under src");
        let module = relative
            .components()
            .next()
            .and_then(|c| c.as_os_str().to_str())
            .unwrap_or_default()
            .trim_end_matches(".rs")
            .to_owned();
        if matches!(module.as_str(), "lib" | "main" | "layers") {
            continue;
        }
        let Some(own) = rank(&module) else {
            wrong.push(format!(
                "{module} (src/{}) has no layer in LAYERS",
                relative.display()
            ));
            continue;
        };
        let source = std::fs::read_to_string(&file).expect("read source");
        for name in named_modules(&source) {
            let Some(theirs) = rank(&name) else {
                continue; // an item of the crate root (now_ms), not a module
            };
            if name == module || theirs < own {
                continue;
            }
            if KNOWN_EXCEPTIONS
                .iter()
                .any(|(from, to, _)| *from == module && *to == name)
            {
                exceptions_seen.insert((module.clone(), name));
                continue;
            }
            wrong.push(format!(
                "src/{} ({module}, layer {own}) names crate::{name} (layer {theirs})",
                relative.display()
            ));
        }
    }
    assert!(
        wrong.is_empty(),
        "imports against the layers:\n{}",
        wrong.join("\n")
    );
    // An exception that no longer happens must leave the list.
    for (from, to, why) in KNOWN_EXCEPTIONS {
        assert!(
            exceptions_seen.contains(&(from.to_string(), to.to_string())),
            "{from} -> {to} no longer happens; drop it from KNOWN_EXCEPTIONS ({why})"
        );
    }
}

#[test]
fn every_layer_module_exists() {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    for module in LAYERS.iter().flat_map(|layer| layer.iter()) {
        assert!(
            src.join(format!("{module}.rs")).exists() || src.join(module).is_dir(),
            "LAYERS names {module}, which src/ does not have"
        );
    }
}

#[test]
fn the_check_reads_paths_and_groups_and_skips_tests() {
    let source = "use crate::store::Client;\nuse crate::{domain::Phone, settings};\nfn f() { crate::now_ms(); }\n#[cfg(test)]\nmod tests { use crate::api; }";
    let names: Vec<String> = named_modules(source).into_iter().collect();
    assert_eq!(names, ["domain", "now_ms", "settings", "store"]);
    assert!(rank("store") < rank("settings"));
    assert_eq!(rank("worker"), rank("api"));
}

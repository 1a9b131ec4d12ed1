//! The layering rules of the library (`../shared/architecture.md`), read off the sources:
//! each top-level room (module) of `src/` has a layer, and a room may use rooms of its own
//! layer or below, never above; nothing below the CLI prints; every file opens with `//!`;
//! no file grows past 500 lines and no function past 80 (unless its doc comment gives the
//! reason, as a line starting `/// Long:`). What breaks a rule today is listed below as known debt (#25
//! pays it): the test fails on anything new, and also when a listed debt is gone, so that
//! the list only shrinks.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

/// Layers, lowest first: leaves (the error type, identifiers, ...); crypto; pure codecs
/// (`format` seals objects, so crypto sits below it); storage and the delta codec; the
/// engine; what runs on the engine (snapshot, restore, check, prune, WAL, ...); the database
/// sources. `cli/` and `main.rs` sit above all and are not checked here.
const LAYERS: &[&[&str]] = &[
    &["error", "id", "util", "interrupt", "progress"],
    &["crypto"],
    &["format"],
    &["delta", "storage"],
    &["repo"],
    &[
        "chunking",
        "preflight",
        "restore",
        "check",
        "prune",
        "repair",
        "retention",
        "metrics",
        "stats",
        "status",
        "snapshot",
        "wal",
    ],
    &["sources", "hooks", "notify"],
];

/// Upward uses that exist today: (room, the room above it that it uses).
const KNOWN_UPWARD: &[(&str, &str)] = &[];

/// Rooms that use each other today, through any path of uses (each group sorted): a circle
/// means neither room can be understood or tested without the other.
const KNOWN_CIRCLES: &[&[&str]] = &[];

/// Library files that print today.
const KNOWN_PRINTING: &[&str] = &[
    // The crash-test hook reports each mutation point (DBBACKUP_TEST_KILL_AT_MUTATION=0); it
    // is compiled only with the `test-hooks` feature, which only the test suite turns on.
    "storage/faults.rs",
];

/// Files over 500 lines today, with their length then: each may shrink, none may grow.
const KNOWN_LONG: &[(&str, usize)] = &[];

fn sources(dir: &Path, out: &mut Vec<PathBuf>) {
    for e in std::fs::read_dir(dir).unwrap().flatten() {
        let p = e.path();
        if p.is_dir() {
            sources(&p, out);
        } else if p.extension().is_some_and(|x| x == "rs") {
            out.push(p);
        }
    }
}

/// The library's files, relative to `src/` (not `cli/`, not `main.rs`), with their text.
fn library() -> Vec<(String, String)> {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut files = Vec::new();
    sources(&src, &mut files);
    let mut out: Vec<(String, String)> = files
        .into_iter()
        .map(|p| {
            let rel = p.strip_prefix(&src).unwrap().to_string_lossy().into_owned();
            (rel, std::fs::read_to_string(&p).unwrap())
        })
        .filter(|(rel, _)| !rel.starts_with("cli/") && rel != "main.rs")
        .collect();
    out.sort();
    out
}

fn room(rel: &str) -> &str {
    rel.split('/').next().unwrap().trim_end_matches(".rs")
}

/// The text before the file's unit tests.
fn production(text: &str) -> &str {
    text.split("#[cfg(test)]").next().unwrap()
}

fn layer(room: &str) -> usize {
    LAYERS
        .iter()
        .position(|l| l.contains(&room))
        .unwrap_or_else(|| panic!("room `{room}` has no layer in tests/layers.rs: give it one"))
}

/// The rooms `text` uses through `crate::ROOM` paths.
fn uses(text: &str) -> BTreeSet<String> {
    let mut out = BTreeSet::new();
    for (i, _) in text.match_indices("crate::") {
        let rest = &text[i + "crate::".len()..];
        let name: String = rest
            .chars()
            .take_while(|c| c.is_ascii_lowercase() || *c == '_')
            .collect();
        if !name.is_empty() {
            out.insert(name);
        }
    }
    out
}

/// Compare what is found with the known debt: new items and items gone.
fn ratchet<T: Ord + std::fmt::Debug + Clone>(what: &str, found: BTreeSet<T>, known: BTreeSet<T>) {
    let new: Vec<_> = found.difference(&known).cloned().collect();
    let gone: Vec<_> = known.difference(&found).cloned().collect();
    assert!(new.is_empty(), "new {what}: {new:?}");
    assert!(
        gone.is_empty(),
        "{what} gone (well done): remove {gone:?} from the list in tests/layers.rs"
    );
}

#[test]
fn no_room_uses_a_room_above_it() {
    let mut upward = BTreeSet::new();
    let mut seen: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    for (rel, text) in library() {
        let r = room(&rel).to_string();
        if ["lib", "main"].contains(&r.as_str()) {
            continue;
        }
        for used in uses(production(&text)) {
            if used != r && layer(&used) > layer(&r) {
                upward.insert((r.clone(), used.clone()));
                seen.entry(format!("{r} -> {used}")).or_default().insert(rel.clone());
            }
        }
    }
    let known = KNOWN_UPWARD
        .iter()
        .map(|(a, b)| (a.to_string(), b.to_string()))
        .collect();
    ratchet(&format!("upward uses ({seen:?})"), upward, known);
}

/// Which rooms each room uses (its production code).
fn room_graph() -> BTreeMap<String, BTreeSet<String>> {
    let mut graph: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    for (rel, text) in library() {
        let r = room(&rel).to_string();
        if ["lib", "main"].contains(&r.as_str()) {
            continue;
        }
        let used: Vec<String> = uses(production(&text)).into_iter().filter(|u| *u != r).collect();
        graph.entry(r).or_default().extend(used);
    }
    graph
}

/// The rooms `from` reaches through uses, itself excluded unless a circle leads back.
fn reachable(graph: &BTreeMap<String, BTreeSet<String>>, from: &str) -> BTreeSet<String> {
    let mut seen = BTreeSet::new();
    let mut todo: Vec<&str> = graph.get(from).into_iter().flatten().map(String::as_str).collect();
    while let Some(r) = todo.pop() {
        if seen.insert(r.to_string()) {
            todo.extend(graph.get(r).into_iter().flatten().map(String::as_str));
        }
    }
    seen
}

#[test]
fn no_rooms_use_each_other() {
    let graph = room_graph();
    let reach: BTreeMap<&str, BTreeSet<String>> = graph.keys().map(|r| (r.as_str(), reachable(&graph, r))).collect();
    let mut circles = BTreeSet::new();
    for (r, reached) in &reach {
        if reached.contains(*r) {
            let circle: Vec<String> = reached
                .iter()
                .filter(|o| reach.get(o.as_str()).is_some_and(|back| back.contains(*r)))
                .cloned()
                .collect();
            circles.insert(circle);
        }
    }
    let known = KNOWN_CIRCLES
        .iter()
        .map(|c| c.iter().map(|r| r.to_string()).collect())
        .collect();
    ratchet("rooms that use each other", circles, known);
}

#[test]
fn nothing_below_the_cli_prints() {
    let printing: BTreeSet<String> = library()
        .into_iter()
        .filter(|(_, text)| {
            let t = production(text);
            ["println!", "eprintln!", "print!(", "eprint!(", "dbg!("]
                .iter()
                .any(|m| t.contains(m))
        })
        .map(|(rel, _)| rel)
        .collect();
    ratchet(
        "printing library files",
        printing,
        KNOWN_PRINTING.iter().map(|s| s.to_string()).collect(),
    );
}

#[test]
fn every_file_says_what_it_is_for_and_none_grows_long() {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut files = Vec::new();
    sources(&src, &mut files);
    let mut long = BTreeSet::new();
    for p in files {
        let rel = p.strip_prefix(&src).unwrap().to_string_lossy().into_owned();
        let text = std::fs::read_to_string(&p).unwrap();
        assert!(
            text.starts_with("//!"),
            "{rel} does not open with a `//!` line saying what it is for"
        );
        let lines = text.lines().count();
        if lines > 500 {
            let allowed = KNOWN_LONG.iter().find(|(f, _)| *f == rel).map(|(_, n)| *n);
            assert!(
                allowed.is_some_and(|n| lines <= n),
                "{rel} has {lines} lines (known: {allowed:?}): split it"
            );
            long.insert(rel);
        }
    }
    ratchet(
        "files over 500 lines",
        long,
        KNOWN_LONG.iter().map(|(f, _)| f.to_string()).collect(),
    );
}

/// Functions longer than this many lines (signature to closing brace) need a `/// Long:` line
/// in their doc comment saying why they are not split.
const LONG_FN: usize = 80;

/// Each function in `text` (production code only) longer than [`LONG_FN`] lines whose doc
/// comment gives no reason: its name, line and length. Functions are found by indentation,
/// as `rustfmt` lays them out: a `fn` line, the first line ending in `{`, and the first line
/// after it that is the closing brace at the `fn` line's indentation.
fn long_functions(text: &str) -> Vec<(String, usize, usize)> {
    let lines: Vec<&str> = production(text).lines().collect();
    let mut out = Vec::new();
    for (i, line) in lines.iter().enumerate() {
        let t = line.trim_start();
        let indent = line.len() - t.len();
        let words: Vec<&str> = t.split_whitespace().collect();
        let Some(at) = words.iter().position(|w| *w == "fn") else {
            continue;
        };
        if !words[..at]
            .iter()
            .all(|w| w.starts_with("pub") || ["async", "const", "unsafe", "extern"].contains(w))
        {
            continue;
        }
        let Some(open) = (i..lines.len()).find(|&j| {
            let l = lines[j].trim_end();
            l.ends_with('{') || l.ends_with(';') || l.ends_with('}')
        }) else {
            continue;
        };
        if !lines[open].trim_end().ends_with('{') {
            continue;
        }
        let close = (open + 1..lines.len())
            .find(|&k| lines[k].trim_end() == format!("{}}}", " ".repeat(indent)))
            .unwrap_or(lines.len());
        let len = close - i + 1;
        let reasoned = lines[..i]
            .iter()
            .rev()
            .take_while(|l| l.trim_start().starts_with("///") || l.trim_start().starts_with("#["))
            .any(|l| l.trim_start().starts_with("/// Long:"));
        if len > LONG_FN && !reasoned {
            let name = words
                .get(at + 1)
                .map_or("?", |w| w.split(['(', '<']).next().unwrap_or(w));
            out.push((name.to_string(), i + 1, len));
        }
    }
    out
}

#[test]
fn no_function_grows_long_without_a_reason() {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut files = Vec::new();
    sources(&src, &mut files);
    let mut found = Vec::new();
    for p in files {
        let rel = p.strip_prefix(&src).unwrap().to_string_lossy().into_owned();
        for (name, line, len) in long_functions(&std::fs::read_to_string(&p).unwrap()) {
            found.push(format!("{rel}:{line} fn {name}: {len} lines"));
        }
    }
    assert!(
        found.is_empty(),
        "functions over {LONG_FN} lines: split them, or say why not in a `/// Long:` doc line:\n{}",
        found.join("\n")
    );
}

#[test]
fn long_functions_are_found() {
    let body = "    let x = 1;\n".repeat(LONG_FN);
    let long = format!("/// Does a lot.\npub(crate) fn big(a: u8) -> u8 {{\n{body}    x\n}}\n");
    assert_eq!(long_functions(&long), vec![("big".to_string(), 2, LONG_FN + 3)]);
    let reasoned = format!("/// Does a lot.\n/// Long: one table.\nfn big() {{\n{body}}}\n");
    assert!(long_functions(&reasoned).is_empty());
    let short = "impl A {\n    fn f(&self) {}\n    fn g(&self) -> u8 {\n        1\n    }\n}\n";
    assert!(long_functions(short).is_empty());
}

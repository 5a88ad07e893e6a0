//! `shmarray ls`: every entry of the segment directory, read through
//! `shmarray::inspect` (`pread` only: no mapping, no following links, no blocking on
//! FIFOs). The KIND column comes from the control block; USED is the occupancy of
//! maps and vecs (`len/capacity`); DIR is the directory of the namespace the entry
//! is in (every one passed the directory rule: see `shmarray::Namespace`).

use std::ffi::{OsStr, OsString};
use std::io::Write;
use std::os::unix::ffi::OsStrExt;

use shmarray::{Error, Namespace, SegmentInfo};

use serde_json::{json, Value};

use crate::inspect::{creator_text, pages_text, problem_text, segment_json, used_text, Viewer};
use crate::text::{self, escape_os, escape_path, human_bytes, Table};
use crate::{CliError, Status};

/// Prefix of the crate's temporary names (files being built or removed).
const TEMPORARY_PREFIX: &[u8] = b".shmarray-";

/// Arguments of `shmarray ls`.
#[derive(clap::Args)]
pub(crate) struct Args {
    /// Also list the crate's temporary files (`.shmarray-*`: being built or removed).
    #[arg(long)]
    all: bool,
    /// Print a JSON array, one object per entry (sizes in bytes, times RFC 3339 UTC).
    #[arg(long)]
    json: bool,
}

/// What one directory entry is.
enum Entry {
    /// A segment or a plain `.npy` file.
    Segment(Box<SegmentInfo>),
    /// One of the crate's temporary files.
    Temporary,
    /// Anything else, with why it is not a segment.
    Foreign(String),
}

/// Looks at one entry; `None` if it vanished meanwhile.
fn classify(ns: &Namespace, raw: &OsStr) -> Option<Entry> {
    if raw.as_bytes().starts_with(TEMPORARY_PREFIX) {
        return Some(Entry::Temporary);
    }
    let Some(name) = raw.to_str() else {
        return Some(Entry::Foreign(
            "not a shmarray segment: its name is not UTF-8".into(),
        ));
    };
    match shmarray::inspect(ns, name) {
        Ok(info) => Some(Entry::Segment(Box::new(info))),
        Err(Error::NotFound { .. }) => None,
        Err(e) => Some(Entry::Foreign(problem_text(&e))),
    }
}

/// The NOTES cell of a segment: persistence, plain `.npy`, another owner, garbage.
fn notes(info: &SegmentInfo, viewer: &Viewer) -> String {
    let mut notes = Vec::new();
    if info.control.is_none() {
        notes.push("plain .npy".to_string());
    }
    if info.is_persistent() {
        notes.push("persistent".into());
    }
    if viewer.is_foreign_owner(info.owner) {
        notes.push(format!("owner uid {}", info.owner));
    } else if info.is_garbage() {
        notes.push("garbage (gc removes it)".into());
    }
    if notes.is_empty() {
        "-".into()
    } else {
        notes.join(", ")
    }
}

fn segment_row(name: String, dir: String, info: &SegmentInfo, viewer: &Viewer) -> Vec<String> {
    let l = &info.layout;
    vec![
        name,
        info.kind().to_string(),
        text::descr_short(&l.header.descr),
        text::shape(&l.header.shape),
        human_bytes(l.data_len as u64),
        used_text(info),
        pages_text(&info.backing),
        info.usage.to_string(),
        creator_text(info),
        dir,
        notes(info, viewer),
    ]
}

/// What a temporary name is for.
fn temporary_note(raw: &OsStr) -> &'static str {
    let rest = &raw.as_bytes()[TEMPORARY_PREFIX.len()..];
    if rest.starts_with(b"build-") {
        "being built, or left by a creator that died (gc removes it once unused)"
    } else if rest.starts_with(b"rm-") {
        "being removed"
    } else {
        "a temporary file of shmarray"
    }
}

fn other_row(name: String, kind: &str, dir: String, note: String) -> Vec<String> {
    let mut row = vec![name, kind.to_string()];
    row.extend(std::iter::repeat_n("-".to_string(), 7));
    row.push(dir);
    row.push(note);
    row
}

/// The entries to show: each directory of the namespace in lookup order, each
/// sorted by name bytes, with the one-directory namespace it is in.
fn entries(ns: &Namespace, all: bool) -> Result<Vec<(Namespace, OsString, Entry)>, CliError> {
    let mut v = Vec::new();
    for part in ns.parts() {
        for raw in part.entries()? {
            match classify(&part, &raw) {
                Some(Entry::Temporary) if !all => {}
                Some(e) => v.push((part.clone(), raw, e)),
                None => {}
            }
        }
    }
    Ok(v)
}

/// One entry as JSON. Names are exact when they are UTF-8 (JSON escapes control
/// characters); other names are given escaped, with `name_is_utf8: false`.
fn entry_json(ns: &Namespace, raw: &OsStr, entry: &Entry, viewer: &Viewer) -> Value {
    let (name, utf8) = match raw.to_str() {
        Some(n) => (n.to_string(), true),
        None => (escape_os(raw), false),
    };
    let mut v = match entry {
        Entry::Segment(info) => segment_json(info, viewer, false),
        Entry::Temporary => json!({
            "name": name,
            "path": text::path_json(&ns.path().join(raw)),
            "kind": "temporary",
            "problem": temporary_note(raw),
        }),
        Entry::Foreign(why) => json!({
            "name": name,
            "path": text::path_json(&ns.path().join(raw)),
            "kind": "foreign",
            "problem": why,
        }),
    };
    if let Value::Object(m) = &mut v {
        m.insert("name_is_utf8".into(), utf8.into());
        m.insert("dir".into(), text::path_json(ns.path()));
    }
    v
}

pub(crate) fn run(ns: &Namespace, args: &Args, out: &mut dyn Write) -> Result<Status, CliError> {
    let viewer = Viewer::current();
    if args.json {
        let list: Vec<Value> = entries(ns, args.all)?
            .iter()
            .map(|(part, raw, e)| entry_json(part, raw, e, &viewer))
            .collect();
        text::write_json(out, &Value::Array(list))?;
        return Ok(Status::Ok);
    }
    let mut table = Table::new(&[
        "NAME", "KIND", "DTYPE", "SHAPE", "BYTES", "USED", "PAGES", "USE", "CREATOR", "DIR",
        "NOTES",
    ]);
    let entries = entries(ns, args.all)?;
    // Names this user holds in more than one directory: opening or removing them
    // by name fails (DuplicateName) until one is removed.
    let mut own: Vec<&OsStr> = entries
        .iter()
        .filter(|(_, _, e)| matches!(e, Entry::Segment(i) if !viewer.is_foreign_owner(i.owner)))
        .map(|(_, raw, _)| raw.as_os_str())
        .collect();
    own.sort();
    let twice = |raw: &OsStr| own.iter().filter(|n| **n == raw).count() > 1;
    for (part, raw, entry) in &entries {
        let name = escape_os(raw);
        let dir = escape_path(part.path());
        table.push(match entry {
            Entry::Segment(info) => {
                let mut row = segment_row(name, dir, info, &viewer);
                if twice(raw) {
                    let notes = row.last_mut().expect("a NOTES cell");
                    *notes = match notes.as_str() {
                        "-" => "yours in two directories: remove one".into(),
                        n => format!("{n}, yours in two directories: remove one"),
                    };
                }
                row
            }
            Entry::Temporary => other_row(name, "temporary", dir, temporary_note(raw).into()),
            Entry::Foreign(why) => other_row(name, "foreign", dir, why.clone()),
        });
    }
    table.write(out)?;
    Ok(Status::Ok)
}

//! `shmarray inspect NAME` and `shmarray path NAME`, and how a segment (or the
//! reason a file is not one) is described to people, shared with `ls`.

use std::io::Write;

use serde_json::{json, Value};
use shmarray::{
    admin::{Contents, Liveness, RwLockInfo, SegmentInfo, Usage},
    huge::{Backing, PageKind},
    Error, Namespace,
};

use crate::text::{self, escape, escape_path, human_bytes};
use crate::{CliError, Status};

/// Arguments of `shmarray inspect`.
#[derive(clap::Args)]
pub(crate) struct Args {
    /// Segment name (as given to create/open; a leading '/' is ignored; any bytes,
    /// as `ls` lists them unescaped).
    name: std::ffi::OsString,
    /// Print one JSON object (sizes in bytes, times RFC 3339 UTC).
    #[arg(long)]
    json: bool,
}

/// Arguments of `shmarray path`.
#[derive(clap::Args)]
pub(crate) struct PathArgs {
    /// Segment name; the segment need not exist yet.
    name: std::ffi::OsString,
}

/// Who is looking: this process's effective uid, to tell which files are another
/// user's.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Viewer {
    euid: u32,
}

impl Viewer {
    pub(crate) fn current() -> Viewer {
        Viewer {
            euid: nix::unistd::geteuid().as_raw(),
        }
    }

    /// Whether a file owned by `uid` is another user's.
    pub(crate) fn is_foreign_owner(&self, uid: u32) -> bool {
        uid != self.euid
    }
}

/// numpy's default `max_header_size` for `np.load`.
const NUMPY_MAX_HEADER: usize = 10_000;

/// The PAGES cell: `4K`, `2M hugetlb`, `2M thp`.
pub(crate) fn pages_text(b: &Backing) -> String {
    let size = match b.page_size {
        s if s >= 1 << 30 && s % (1 << 30) == 0 => format!("{}G", s >> 30),
        s if s >= 1 << 20 && s % (1 << 20) == 0 => format!("{}M", s >> 20),
        s => format!("{}K", s >> 10),
    };
    match b.kind {
        PageKind::HugeTlb => format!("{size} hugetlb"),
        PageKind::Transparent => format!("{size} thp"),
        _ => size,
    }
}

/// The USED cell: `len/capacity` of a map or vec, `-` for other kinds.
pub(crate) fn used_text(info: &SegmentInfo) -> String {
    match &info.contents {
        Some(c) => {
            let (len, cap) = c.occupancy();
            format!("{len}/{cap}")
        }
        None => "-".into(),
    }
}

/// The `inspect` lines of a map or vec.
fn contents_lines(c: &Contents) -> Vec<(&'static str, String)> {
    match c {
        Contents::Map(m) => vec![
            ("len", m.len.to_string()),
            (
                "capacity",
                format!("{} (at most {} entries)", m.capacity, m.max_len),
            ),
            ("key size", format!("{} bytes", m.key_size)),
            ("value size", format!("{} bytes", m.value_size)),
            (
                "shards",
                format!("{} of {} slots", m.shards, m.slots_per_shard),
            ),
            (
                "entries",
                format!(
                    "{} of {} bytes at file offset {}",
                    m.entry_count, m.entry_stride, m.entries_offset
                ),
            ),
            ("entry dtype", escape(&m.numpy_dtype)),
            ("hash seed", format!("{:#018x}", m.seed)),
            ("repairs", m.repairs.to_string()),
        ],
        Contents::Vec(v) => vec![
            ("len", v.len.to_string()),
            ("capacity", v.capacity.to_string()),
            (
                "len offset",
                format!("{} (little-endian u64)", v.len_offset),
            ),
            ("repairs", v.repairs.to_string()),
        ],
        _ => Vec::new(),
    }
}

/// A map's or vec's contents as JSON.
fn contents_json(c: &Contents) -> Value {
    match c {
        Contents::Map(m) => json!({
            "len": m.len,
            "capacity": m.capacity,
            "max_len": m.max_len,
            "key_size": m.key_size,
            "value_size": m.value_size,
            "shards": m.shards,
            "slots_per_shard": m.slots_per_shard,
            "entry_stride": m.entry_stride,
            "key_offset": m.key_offset,
            "value_offset": m.value_offset,
            "entries_offset": m.entries_offset,
            "entry_count": m.entry_count,
            "entry_dtype": m.numpy_dtype,
            "seed": m.seed,
            "repairs": m.repairs,
        }),
        Contents::Vec(v) => json!({
            "len": v.len,
            "capacity": v.capacity,
            "len_offset": v.len_offset,
            "repairs": v.repairs,
        }),
        _ => Value::Null,
    }
}

/// `kind` of a backing as a JSON identifier.
fn page_kind_id(k: PageKind) -> &'static str {
    match k {
        PageKind::HugeTlb => "hugetlb",
        PageKind::Transparent => "transparent",
        _ => "base",
    }
}

/// The CREATOR cell: `pid 123 alive`, `pid 123 (other pid namespace) dead`, or `-`
/// without a control block. Unknown namespaces are not "other".
pub(crate) fn creator_text(info: &SegmentInfo) -> String {
    let Some(c) = &info.control else {
        return "-".into();
    };
    let ns = if info.creator_pid_here == Some(false) {
        " (other pid namespace)"
    } else {
        ""
    };
    let alive = info.creator.unwrap_or(Liveness::Unknown);
    format!("pid {}{ns} {alive}", c.creator_pid)
}

/// Why a file is not a usable segment, in a few words, escaped. `ls` shows this in
/// its NOTES column; `inspect` after the name.
pub(crate) fn problem_text(e: &Error) -> String {
    let text = match e {
        Error::NotShmarray { reason, .. } => format!("not a shmarray segment: {reason}"),
        Error::NotReady { .. } => "not ready (not completely built)".into(),
        Error::Corrupt { problem, .. } => format!("corrupt: {problem}"),
        Error::PermissionDenied { .. } => "permission denied".into(),
        Error::InvalidName { problem, .. } => format!("not a segment name: {problem}"),
        other => other.to_string(),
    };
    text::sanitize(&text)
}

/// An error as `shmarray: ...` prints it: errors about a named file say which file
/// and what is wrong with it; others use the library's words. Escaped.
pub(crate) fn error_text(e: &Error) -> String {
    match e {
        Error::NotShmarray { name, .. }
        | Error::NotReady { name }
        | Error::Corrupt { name, .. }
        | Error::PermissionDenied { name } => format!("{}: {}", escape(name), problem_text(e)),
        other => text::sanitize(&other.to_string()),
    }
}

fn yes_no(b: bool) -> &'static str {
    if b {
        "yes"
    } else {
        "no"
    }
}

/// The key/value lines of `inspect`, escaped.
fn lines(info: &SegmentInfo, viewer: &Viewer) -> Vec<(&'static str, String)> {
    let l = &info.layout;
    let owner = if viewer.is_foreign_owner(info.owner) {
        format!("uid {} (another user)", info.owner)
    } else {
        format!("uid {} (you)", info.owner)
    };
    let mut v = vec![
        (
            "name",
            info.path
                .file_name()
                .map_or_else(|| escape(&info.name), text::escape_os),
        ),
        ("path", escape_path(&info.path)),
        ("owner", owner),
        ("mode", format!("{:04o}", info.mode)),
        (
            "file size",
            format!("{} ({})", info.file_size, human_bytes(info.file_size)),
        ),
        ("npy version", format!("{}.0", l.npy_version)),
        ("descr", escape(&l.header.descr.to_string())),
        (
            "dtype",
            match (l.dtype, &l.header.descr) {
                (Some(d), _) => d.name().into(),
                (None, d) if d.is_record() => format!(
                    "record of {} bytes{}",
                    l.itemsize,
                    if d.is_supported() {
                        ""
                    } else {
                        " (with field types not supported by shmarray)"
                    }
                ),
                (None, _) => "not supported by shmarray".into(),
            },
        ),
    ];
    for (offset, f) in l.header.descr.named_fields() {
        v.push(("field", field_text(offset, f)));
    }
    v.extend([
        ("fortran_order", l.header.fortran_order.to_string()),
        ("shape", text::shape(&l.header.shape)),
        ("elements", l.len.to_string()),
        ("data offset", l.data_offset.to_string()),
        ("data bytes", l.data_len.to_string()),
        ("pages", info.backing.to_string()),
        ("usage", info.usage.to_string()),
    ]);
    if l.data_offset > NUMPY_MAX_HEADER {
        // Longer than numpy reads by default: huge-page segments of earlier versions
        // (header padded to a huge page), or a foreign file.
        v.push((
            "numpy",
            format!(
                "np.load(path, mmap_mode=\"r+\", max_header_size={}) (header longer than numpy's default limit)",
                l.data_offset
            ),
        ));
    }
    match &info.control {
        None => v.push(("control block", "none (a plain .npy file)".into())),
        Some(c) => {
            let ns = if info.creator_pid_here == Some(false) {
                ", other pid namespace"
            } else {
                ""
            };
            v.extend([
                ("control offset", l.control_offset.to_string()),
                ("layout version", c.layout_version.to_string()),
                ("kind", c.kind.to_string()),
                ("kind version", c.kind_version.to_string()),
                (
                    "creator",
                    format!(
                        "pid {} (start time {}{ns}), {}",
                        c.creator_pid,
                        c.creator_start_time,
                        info.creator.unwrap_or(Liveness::Unknown)
                    ),
                ),
                ("created", text::human_time(c.created_unix_ms)),
                ("persistent", yes_no(info.is_persistent()).into()),
                ("checksum", format!("{:#018x} (ok)", c.checksum)),
            ]);
            if c.kind == shmarray::format::ObjectKind::Queue {
                v.push(("item type", queue_item_text(&c.params)));
            }
        }
    }
    if let Some(c) = &info.contents {
        v.extend(contents_lines(c));
    }
    if let Some(rw) = &info.rwlock {
        v.push(("lock", rwlock_text(rw)));
    }
    v.push(("garbage", gc_verdict(info, viewer).into()));
    v
}

/// A queue's item type from its parameters (FORMAT.md §5): p3 is the dtype code,
/// p4 a record's fingerprint (its fields are in no header).
fn queue_item_text(params: &[u64; 8]) -> String {
    match u32::try_from(params[3])
        .ok()
        .and_then(shmarray::format::Dtype::from_code)
    {
        Some(d) => format!("{} ({} bytes)", d.name(), params[0]),
        None if params[3] == u64::from(shmarray::format::Dtype::RECORD_CODE) => format!(
            "a record of {} bytes (fields fingerprint {:#018x})",
            params[0], params[4]
        ),
        None => format!("unknown (code {})", params[3]),
    }
}

/// One field of a record: `name: <f4 (3,) at byte 8`, escaped (a nested record's
/// type is its descriptor literal).
fn field_text(offset: usize, f: &shmarray::format::DescrField) -> String {
    let shape = if f.shape.is_empty() {
        String::new()
    } else {
        format!(" {}", text::shape(&f.shape))
    };
    escape(&format!("{}: {}{shape} at byte {offset}", f.name, f.descr))
}

/// The record's named fields for JSON (`None` for a type string).
fn fields_json(d: &shmarray::format::Descr) -> Option<Value> {
    d.is_record().then(|| {
        d.named_fields()
            .iter()
            .map(|(offset, f)| {
                json!({
                    "name": f.name,
                    "descr": f.descr.to_string(),
                    "shape": f.shape,
                    "offset": offset,
                    "fields": fields_json(&f.descr),
                })
            })
            .collect()
    })
}

/// The read-write lock in one line: the writer word and every registered reader.
fn rwlock_text(rw: &RwLockInfo) -> String {
    let writer = match rw.writer {
        "free" => "no writer",
        "writer" => "a writer holds it or waits for the readers",
        "poisoned" => "poisoned: a dead writer's data was left unrepaired",
        _ => "unknown writer word",
    };
    if rw.readers.is_empty() {
        return format!("{writer}; no readers registered");
    }
    let readers: Vec<String> = rw
        .readers
        .iter()
        .map(|r| {
            format!(
                "entry {} pid {} ({}) holding {}",
                r.slot, r.pid, r.liveness, r.holds
            )
        })
        .collect();
    format!("{writer}; readers: {}", readers.join(", "))
}

/// The read-write lock as JSON.
fn rwlock_json(rw: &RwLockInfo) -> Value {
    json!({
        "writer": rw.writer,
        "readers": rw.readers.iter().map(|r| json!({
            "slot": r.slot,
            "pid": r.pid,
            "holds": r.holds,
            "liveness": r.liveness.as_str(),
        })).collect::<Vec<_>>(),
    })
}

/// Whether `gc` would take the segment, and if not, why not.
fn gc_verdict(info: &SegmentInfo, viewer: &Viewer) -> &'static str {
    if viewer.is_foreign_owner(info.owner) {
        "no: another user's file"
    } else if info.control.is_none() {
        "no: a plain .npy file"
    } else if info.is_persistent() {
        "no: persistent"
    } else if info.is_garbage() {
        "yes: `shmarray gc` removes it"
    } else if info.usage == shmarray::admin::Usage::Unknown {
        "no: whether it is in use cannot be decided here"
    } else {
        "no: in use"
    }
}

/// `usage` as a JSON identifier.
fn usage_id(u: Usage) -> &'static str {
    match u {
        Usage::InUse => "in_use",
        Usage::Idle => "idle",
        _ => "unknown",
    }
}

/// A segment as JSON: what `ls --json` lists and, with `detail`, what
/// `inspect --json` prints. Sizes in bytes, times RFC 3339 UTC, enums as strings.
pub(crate) fn segment_json(info: &SegmentInfo, viewer: &Viewer, detail: bool) -> Value {
    let l = &info.layout;
    let creator = info.control.as_ref().map(|c| {
        json!({
            "pid": c.creator_pid,
            "pid_namespace": (c.creator_pid_ns != 0).then_some(c.creator_pid_ns),
            "other_pid_namespace": info.creator_pid_here == Some(false),
            "liveness": info.creator.unwrap_or(Liveness::Unknown).as_str(),
        })
    });
    let mut v = json!({
        "name": info.name,
        "path": text::path_json(&info.path),
        "kind": info.kind().name(),
        "plain_npy": info.control.is_none(),
        "descr": l.header.descr.to_string(),
        "dtype": l.dtype.map(|d| d.name()),
        "itemsize": l.itemsize,
        "fields": fields_json(&l.header.descr),
        "shape": l.header.shape,
        "fortran_order": l.header.fortran_order,
        "data_bytes": l.data_len,
        "file_size": info.file_size,
        "pages": {
            "kind": page_kind_id(info.backing.kind),
            "page_size": info.backing.page_size,
        },
        "usage": usage_id(info.usage),
        "creator": creator,
        "created": info.control.map(|c| text::rfc3339(c.created_unix_ms)),
        "persistent": info.is_persistent(),
        "owner_uid": info.owner,
        "other_owner": viewer.is_foreign_owner(info.owner),
        "garbage": info.is_garbage() && !viewer.is_foreign_owner(info.owner),
        "contents": info.contents.as_ref().map(contents_json),
        "rwlock": info.rwlock.as_ref().map(rwlock_json),
    });
    if detail {
        let extra = json!({
            "mode": format!("{:04o}", info.mode),
            "npy_version": l.npy_version,
            "elements": l.len,
            "data_offset": l.data_offset,
            "control": info.control.map(|c| json!({
                "offset": l.control_offset,
                "layout_version": c.layout_version,
                "kind_version": c.kind_version,
                "creator_start_time": c.creator_start_time,
                "params": c.params,
                "checksum": format!("{:#018x}", c.checksum),
            })),
            "gc_verdict": gc_verdict(info, viewer),
        });
        if let (Value::Object(base), Value::Object(more)) = (&mut v, extra) {
            base.extend(more);
        }
    }
    v
}

pub(crate) fn run(ns: &Namespace, args: &Args, out: &mut dyn Write) -> Result<Status, CliError> {
    let info = shmarray::admin::inspect(ns, &args.name)?;
    let viewer = Viewer::current();
    if args.json {
        text::write_json(out, &segment_json(&info, &viewer, true))?;
        return Ok(Status::Ok);
    }
    for (key, value) in lines(&info, &viewer) {
        writeln!(out, "{key:<15}{value}")?;
    }
    Ok(Status::Ok)
}

pub(crate) fn run_path(
    ns: &Namespace,
    args: &PathArgs,
    out: &mut dyn Write,
) -> Result<Status, CliError> {
    writeln!(out, "{}", escape_path(&ns.path_of(&args.name)?))?;
    Ok(Status::Ok)
}

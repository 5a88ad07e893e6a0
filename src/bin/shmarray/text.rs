//! Text for the terminal: escaping of anything that came from a file or directory,
//! tables, JSON, sizes, shapes and times.
//!
//! Nothing read from a file system reaches the terminal raw: names (arbitrary bytes),
//! NPY descriptors, paths and error messages all pass through [`escape_bytes`] or
//! [`sanitize`] first, so a file named `\x1b]0;...` cannot retitle the terminal,
//! clear it or forge lines of output.

use std::ffi::OsStr;
use std::fmt::Write as _;
use std::io::{self, Write};
use std::os::unix::ffi::OsStrExt;
use std::path::Path;

/// Characters that are printable but rearrange or hide text: bidirectional
/// overrides and isolates, zero-width characters (the "Trojan Source" set).
fn is_invisible_format(c: char) -> bool {
    matches!(
        c,
        '\u{200b}'..='\u{200f}' | '\u{202a}'..='\u{202e}' | '\u{2060}'..='\u{2069}' | '\u{feff}'
    )
}

/// Appends `c`, escaped if a terminal would act on it or hide it. With `unambiguous`,
/// a backslash is doubled so that the escaped text maps back to one byte string.
fn push_char(out: &mut String, c: char, unambiguous: bool) {
    if c.is_control() {
        let mut buf = [0u8; 4];
        for b in c.encode_utf8(&mut buf).bytes() {
            let _ = write!(out, "\\x{b:02x}");
        }
    } else if is_invisible_format(c) {
        let _ = write!(out, "\\u{{{:04x}}}", u32::from(c));
    } else if c == '\\' && unambiguous {
        out.push_str("\\\\");
    } else {
        out.push(c);
    }
}

/// Escapes arbitrary bytes (a file name, a path) for printing: printable UTF-8 stays
/// as it is, control characters (C0, DEL, C1) and bytes that are not UTF-8 become
/// `\xNN`, invisible formatting characters `\u{NNNN}`, and `\` becomes `\\`.
pub(crate) fn escape_bytes(bytes: &[u8]) -> String {
    let mut out = String::with_capacity(bytes.len());
    for chunk in bytes.utf8_chunks() {
        for c in chunk.valid().chars() {
            push_char(&mut out, c, true);
        }
        for b in chunk.invalid() {
            let _ = write!(out, "\\x{b:02x}");
        }
    }
    out
}

/// [`escape_bytes`] of a string.
pub(crate) fn escape(s: &str) -> String {
    escape_bytes(s.as_bytes())
}

/// A descriptor in a table cell: a type string as it is (`<f8`); a record as its
/// named fields, `{x:<f4,y:<f4,mass:<f8}` (arrays `pos:<f4(3,)`), cut at 48
/// characters. Escaped.
pub(crate) fn descr_short(d: &shmarray::Descr) -> String {
    if !d.is_record() {
        return escape(&d.to_string());
    }
    let fields: Vec<String> = d
        .named_fields()
        .iter()
        .map(|(_, f)| {
            let mut s = format!("{}:{}", f.name, descr_short(&f.descr));
            if !f.shape.is_empty() {
                s.push_str(&shape(&f.shape));
            }
            s
        })
        .collect();
    let mut s = format!("{{{}}}", fields.join(","));
    if s.chars().count() > 48 {
        s = s.chars().take(47).collect::<String>() + "…";
    }
    escape(&s)
}

/// [`escape_bytes`] of an OS string (a directory entry's name).
pub(crate) fn escape_os(s: &OsStr) -> String {
    escape_bytes(s.as_bytes())
}

/// [`escape_bytes`] of a path.
pub(crate) fn escape_path(p: &Path) -> String {
    escape_bytes(p.as_os_str().as_bytes())
}

/// Makes free text (an error message that may quote a path) safe to print: control
/// and invisible formatting characters are escaped, everything else is kept as it is
/// (backslashes too, so Rust's own `{:?}` escapes stay readable).
pub(crate) fn sanitize(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        push_char(&mut out, c, false);
    }
    out
}

/// Escapes the control characters a JSON serializer leaves raw (DEL, C1, invisible
/// formatting characters) as `\uNNNN`. Only valid on serializer output, where a raw
/// control character other than the layout's `\n` can only be inside a string.
pub(crate) fn json_terminal_safe(json: &str) -> String {
    let mut out = String::with_capacity(json.len());
    for c in json.chars() {
        if (c.is_control() && c != '\n') || is_invisible_format(c) {
            let _ = write!(out, "\\u{:04x}", u32::from(c));
        } else {
            out.push(c);
        }
    }
    out
}

/// Writes `value` as indented JSON (terminal-safe, see [`json_terminal_safe`]) and
/// a newline.
pub(crate) fn write_json(out: &mut dyn Write, value: &serde_json::Value) -> io::Result<()> {
    let text = serde_json::to_string_pretty(value).map_err(io::Error::other)?;
    writeln!(out, "{}", json_terminal_safe(&text))
}

/// A path as a JSON string: exact when it is UTF-8, else escaped as
/// [`escape_path`] does (JSON strings cannot hold other bytes).
pub(crate) fn path_json(p: &Path) -> serde_json::Value {
    p.to_str()
        .map_or_else(|| escape_path(p), str::to_string)
        .into()
}

/// `1536` → `1.5 KiB`; below 1 KiB in bytes.
pub(crate) fn human_bytes(n: u64) -> String {
    const UNITS: [&str; 5] = ["B", "KiB", "MiB", "GiB", "TiB"];
    let mut v = n as f64;
    let mut u = 0;
    while v >= 1024.0 && u + 1 < UNITS.len() {
        v /= 1024.0;
        u += 1;
    }
    if u == 0 {
        format!("{n} B")
    } else {
        format!("{v:.1} {}", UNITS[u])
    }
}

/// A shape as numpy prints it without spaces: `(3,4)`, `(5,)`, `()`.
pub(crate) fn shape(dims: &[usize]) -> String {
    match dims {
        [d] => format!("({d},)"),
        _ => {
            let parts: Vec<String> = dims.iter().map(usize::to_string).collect();
            format!("({})", parts.join(","))
        }
    }
}

/// Civil date and time (UTC) of a moment given in ms since the Unix epoch:
/// (year, month, day, hour, minute, second, millisecond).
fn civil(unix_ms: u64) -> (i64, u32, u32, u32, u32, u32, u32) {
    let ms = (unix_ms % 1000) as u32;
    let secs = unix_ms / 1000;
    let days = (secs / 86_400) as i64;
    let rem = (secs % 86_400) as u32;
    // Days since 1970-01-01 to a proleptic Gregorian date, counting in 400-year
    // eras of 146 097 days that start on 0000-03-01.
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let month = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    let year = yoe + era * 400 + i64::from(month <= 2);
    (year, month, day, rem / 3600, rem / 60 % 60, rem % 60, ms)
}

/// RFC 3339 UTC with milliseconds: `2026-11-25T10:11:12.345Z`.
pub(crate) fn rfc3339(unix_ms: u64) -> String {
    let (y, mo, d, h, mi, s, ms) = civil(unix_ms);
    format!("{y:04}-{mo:02}-{d:02}T{h:02}:{mi:02}:{s:02}.{ms:03}Z")
}

/// For people: `2026-11-25 10:11:12 UTC`.
pub(crate) fn human_time(unix_ms: u64) -> String {
    let (y, mo, d, h, mi, s, _) = civil(unix_ms);
    format!("{y:04}-{mo:02}-{d:02} {h:02}:{mi:02}:{s:02} UTC")
}

/// A table printed with columns padded to their widest cell (in characters).
/// Cells must already be escaped.
#[derive(Debug)]
pub(crate) struct Table {
    rows: Vec<Vec<String>>,
}

impl Table {
    /// A table with these column headings.
    pub(crate) fn new(headings: &[&str]) -> Table {
        Table {
            rows: vec![headings.iter().map(|h| h.to_string()).collect()],
        }
    }

    /// Appends a row.
    pub(crate) fn push(&mut self, row: Vec<String>) {
        self.rows.push(row);
    }

    /// Writes the table, trailing spaces trimmed.
    pub(crate) fn write(&self, out: &mut dyn Write) -> io::Result<()> {
        let mut widths = vec![0usize; self.rows.first().map_or(0, Vec::len)];
        for r in &self.rows {
            for (w, c) in widths.iter_mut().zip(r) {
                *w = (*w).max(c.chars().count());
            }
        }
        for r in &self.rows {
            let line: Vec<String> = r
                .iter()
                .zip(&widths)
                .map(|(c, &w)| format!("{c:<w$}"))
                .collect();
            writeln!(out, "{}", line.join("  ").trim_end())?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn escaping() {
        assert_eq!(escape("frames-1"), "frames-1");
        assert_eq!(escape("a\x1b[2Jb"), "a\\x1b[2Jb");
        assert_eq!(escape("tab\there\n"), "tab\\x09here\\x0a");
        assert_eq!(escape("back\\slash"), "back\\\\slash");
        assert_eq!(escape("csi\u{9b}31m"), "csi\\xc2\\x9b31m");
        assert_eq!(escape("del\x7f"), "del\\x7f");
        assert_eq!(escape("rtl\u{202e}x"), "rtl\\u{202e}x");
        assert_eq!(escape("größe"), "größe");
        assert_eq!(escape_bytes(b"bad\xff\xfe!"), "bad\\xff\\xfe!");
        assert_eq!(
            sanitize("path \"a\\u{1b}\" \x07"),
            "path \"a\\u{1b}\" \\x07"
        );
    }

    #[test]
    fn json_escaping_keeps_layout() {
        assert_eq!(
            json_terminal_safe("{\n  \"a\": \"x\u{7f}\u{9b}\"\n}"),
            "{\n  \"a\": \"x\\u007f\\u009b\"\n}"
        );
    }

    #[test]
    fn sizes_and_shapes() {
        assert_eq!(human_bytes(800), "800 B");
        assert_eq!(human_bytes(1536), "1.5 KiB");
        assert_eq!(human_bytes(128 << 20), "128.0 MiB");
        assert_eq!(shape(&[]), "()");
        assert_eq!(shape(&[5]), "(5,)");
        assert_eq!(shape(&[10, 20]), "(10,20)");
    }

    #[test]
    fn times() {
        assert_eq!(rfc3339(0), "1970-01-01T00:00:00.000Z");
        assert_eq!(rfc3339(951_782_400_000), "2000-02-29T00:00:00.000Z");
        assert_eq!(rfc3339(1_764_065_472_345), "2025-11-25T10:11:12.345Z");
        assert_eq!(human_time(0), "1970-01-01 00:00:00 UTC");
        assert_eq!(human_time(951_782_400_000), "2000-02-29 00:00:00 UTC");
        assert_eq!(human_time(1_764_065_472_345), "2025-11-25 10:11:12 UTC");
        assert_eq!(human_time(4_107_542_399_000), "2100-02-28 23:59:59 UTC");
        assert_eq!(human_time(4_107_542_400_000), "2100-03-01 00:00:00 UTC");
    }
}

//! `shmarray create NAME --dtype T --shape D,...`: a zero-filled persistent array.

use std::io::Write;

use clap::builder::PossibleValue;
use shmarray::ndarray::Order;
use shmarray::{Backing, Descr, DescrField, Dtype, HugePages, Namespace, Options, SharedArray};

use crate::text::escape_path;
use crate::{CliError, Status};

/// Arguments of `shmarray create`.
#[derive(clap::Args)]
pub(crate) struct Args {
    /// Name of the new segment (must not exist yet).
    name: String,
    /// Element type (numpy names such as float64, descriptors such as <f8 and codes
    /// such as c16 work too), or a record: name:type fields, packed, such as
    /// x:f4,y:f4,mass:f8 or pos:f4[3],id:u8; or numpy's descr list, such as
    /// "[('a', '|u1'), ('', '|V7'), ('b', '<f8')]".
    #[arg(long, value_parser = DtypeParser, default_value = "f64")]
    dtype: DtypeArg,
    /// Comma-separated shape, e.g. 1000,1000; "" for a 0-d array (one element).
    #[arg(long, value_parser = parse_shape, allow_hyphen_values = true)]
    shape: Shape,
    /// Column-major (Fortran) order.
    #[arg(long)]
    fortran: bool,
    /// Huge pages: off, prefer (fall back to base pages, saying why) or require.
    #[arg(long, value_enum, default_value_t = HugeArg::Off)]
    huge_pages: HugeArg,
}

/// A `--huge-pages` value.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub(crate) enum HugeArg {
    /// Base pages.
    Off,
    /// Huge pages where available, else base pages (a note on stderr says why).
    Prefer,
    /// Huge pages or an error that says what is missing.
    Require,
}

impl From<HugeArg> for HugePages {
    fn from(h: HugeArg) -> HugePages {
        match h {
            HugeArg::Off => HugePages::Off,
            HugeArg::Prefer => HugePages::Prefer,
            HugeArg::Require => HugePages::Require,
        }
    }
}

/// A `--dtype` value: an element type, by its Rust name (listed by `--help`), its
/// numpy name or its NPY descriptor; or a record (see [`parse_record`]).
#[derive(Clone, Debug, PartialEq, Eq)]
struct DtypeArg(Descr);

/// The element types `--help` lists, in that order.
const DTYPES: [Dtype; 14] = [
    Dtype::F64,
    Dtype::F32,
    Dtype::F16,
    Dtype::I8,
    Dtype::I16,
    Dtype::I32,
    Dtype::I64,
    Dtype::U8,
    Dtype::U16,
    Dtype::U32,
    Dtype::U64,
    Dtype::Bool,
    Dtype::C64,
    Dtype::C128,
];

/// Parses `--dtype`: a type name, or a record.
fn parse_dtype(s: &str) -> Result<DtypeArg, String> {
    let t = s.trim();
    if let Some(d) = Dtype::from_name(t) {
        return Ok(DtypeArg(d.descr()));
    }
    let record = if t.starts_with('[') {
        Descr::from_literal(t).map_err(|e| format!("bad descriptor literal: {e}"))?
    } else if t.contains(':') {
        parse_record(t)?
    } else {
        let names: Vec<&str> = DTYPES.iter().map(|d| d.name()).collect();
        return Err(format!(
            "unknown element type {t:?}\n  [possible values: {}, or a record such as \
             x:f4,y:f4,mass:f8]",
            names.join(", ")
        ));
    };
    if !record.is_supported() {
        return Err(format!(
            "record {} has a field type shmarray does not map (possible: {})",
            record.literal(),
            DTYPES.map(|d| d.name()).join(", ")
        ));
    }
    Ok(DtypeArg(record))
}

/// Parses a record written as `name:type` fields separated by commas, packed in
/// order (no padding): `x:f4,y:f4,mass:f8`; a field may be an array,
/// `pos:f4[3]` or `m:f8[2,2]`. Types are any `--dtype` name.
fn parse_record(s: &str) -> Result<Descr, String> {
    let mut fields = Vec::new();
    let mut depth = 0usize;
    let mut start = 0;
    let mut parts = Vec::new();
    for (i, c) in s.char_indices() {
        match c {
            '[' => depth += 1,
            ']' => depth = depth.saturating_sub(1),
            ',' if depth == 0 => {
                parts.push(&s[start..i]);
                start = i + 1;
            }
            _ => {}
        }
    }
    parts.push(&s[start..]);
    for part in parts {
        let part = part.trim();
        let (name, ty) = part
            .split_once(':')
            .ok_or_else(|| format!("record field {part:?} is not name:type"))?;
        let (name, ty) = (name.trim(), ty.trim());
        let (ty, shape) = match ty.split_once('[') {
            None => (ty, Vec::new()),
            Some((t, dims)) => {
                let dims = dims
                    .strip_suffix(']')
                    .ok_or_else(|| format!("record field {part:?}: unclosed ["))?;
                let shape = dims
                    .split(',')
                    .map(|d| d.trim().parse::<usize>())
                    .collect::<Result<Vec<_>, _>>()
                    .map_err(|_| format!("record field {part:?}: bad array size"))?;
                (t.trim(), shape)
            }
        };
        if name.is_empty() || !name.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_') {
            return Err(format!(
                "record field name {name:?}: use letters, digits and _"
            ));
        }
        if fields.iter().any(|f: &DescrField| f.name == name) {
            return Err(format!("two record fields named {name:?}"));
        }
        let dtype = Dtype::from_name(ty)
            .ok_or_else(|| format!("record field {name:?}: unknown element type {ty:?}"))?;
        fields.push(DescrField {
            name: name.to_string(),
            descr: dtype.descr(),
            shape,
        });
    }
    Ok(Descr::Record(fields))
}

/// The `--dtype` parser, listing the element types in `--help` and completions.
#[derive(Clone)]
struct DtypeParser;

impl clap::builder::TypedValueParser for DtypeParser {
    type Value = DtypeArg;

    fn parse_ref(
        &self,
        cmd: &clap::Command,
        arg: Option<&clap::Arg>,
        value: &std::ffi::OsStr,
    ) -> Result<DtypeArg, clap::Error> {
        let s = value.to_str().unwrap_or("");
        parse_dtype(s).map_err(|why| {
            let arg = arg.map_or("--dtype".to_string(), |a| a.to_string());
            clap::Error::raw(
                clap::error::ErrorKind::InvalidValue,
                format!("invalid value '{s}' for '{arg}': {why}\n"),
            )
            .with_cmd(cmd)
        })
    }

    fn possible_values(&self) -> Option<Box<dyn Iterator<Item = PossibleValue> + '_>> {
        Some(Box::new(DTYPES.iter().map(|d| {
            let ty = d.type_str().unwrap_or_default();
            PossibleValue::new(d.name()).help(format!(
                "numpy {}, {ty}",
                d.numpy_name().unwrap_or_default()
            ))
        })))
    }
}

/// A parsed `--shape`.
#[derive(Clone, Debug, PartialEq, Eq)]
struct Shape(Vec<usize>);

/// Most dimensions a segment may have: numpy's limit, which the library enforces
/// too (`Error::TooManyDimensions`); checked here so that the mistake is a usage
/// error before anything is touched.
const MAX_DIMS: usize = 64;

/// Parses `1000,1000`, `(3, 4)`, `5,` or `5` (one dimension), `""` or `()` (0-d).
fn parse_shape(s: &str) -> Result<Shape, String> {
    let t = s.trim();
    let inner = t
        .strip_prefix('(')
        .and_then(|r| r.strip_suffix(')'))
        .unwrap_or(t)
        .trim();
    if inner.is_empty() {
        return Ok(Shape(Vec::new()));
    }
    // One trailing comma is allowed, as in Python's `(5,)`.
    let inner = inner.strip_suffix(',').unwrap_or(inner);
    inner
        .split(',')
        .map(|d| {
            d.trim().parse::<usize>().map_err(|_| {
                format!(
                    "invalid dimension {:?}: expected comma-separated sizes such as 1000,1000, \
                     or \"\" for a 0-d array",
                    d.trim()
                )
            })
        })
        .collect::<Result<Vec<_>, _>>()
        .and_then(|dims| {
            if dims.len() > MAX_DIMS {
                Err(format!(
                    "{} dimensions: a segment has at most {MAX_DIMS} (numpy's limit)",
                    dims.len()
                ))
            } else {
                Ok(Shape(dims))
            }
        })
}

pub(crate) fn run(ns: &Namespace, args: &Args, out: &mut dyn Write) -> Result<Status, CliError> {
    let order = if args.fortran {
        Order::ColumnMajor
    } else {
        Order::RowMajor
    };
    let opts = Options::new()
        .namespace(ns.clone())
        .persistent(true)
        .order(order)
        .huge_pages(args.huge_pages.into());
    let name = args.name.as_str();
    // Every element type is created the same way: a header with its descriptor
    // (what a typed `SharedArray<T>` of that type writes too), zero-filled data.
    let a = SharedArray::create_bytes_with(&opts, name, &args.dtype.0, &args.shape.0)?;
    let (path, backing): (_, Backing) = (a.path(), a.backing().clone());
    if let Some(why) = &backing.fallback {
        eprintln!(
            "shmarray: note: {} is on base pages: {}",
            crate::text::escape(name),
            crate::text::sanitize(why)
        );
    }
    writeln!(out, "{}", escape_path(&path.unwrap_or_default()))?;
    Ok(Status::Ok)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_dtype_has_a_value_and_parses_back() {
        use clap::builder::TypedValueParser;
        let listed: Vec<String> = DtypeParser
            .possible_values()
            .unwrap()
            .map(|v| v.get_name().to_string())
            .collect();
        assert_eq!(listed.len(), DTYPES.len());
        for (d, name) in DTYPES.into_iter().zip(&listed) {
            assert_eq!(name.parse::<Dtype>().ok(), Some(d));
            let ty = d.type_str().unwrap();
            for alias in [name.as_str(), d.numpy_name().unwrap(), ty, &ty[1..]] {
                // numpy's codes `i8`/`u8` (8 bytes) are the Rust names of the
                // one-byte types.
                if DTYPES.iter().any(|o| o.name() == alias && *o != d) {
                    continue;
                }
                assert_eq!(parse_dtype(alias), Ok(DtypeArg(d.descr())), "{alias}");
            }
        }
    }

    #[test]
    fn records() {
        let d = parse_dtype("x:f4, y:float32,mass:<f8 ,pos:i2[3],m:c16[2,2],ok:bool").unwrap();
        assert_eq!(
            d.0.literal(),
            "[('x', '<f4'), ('y', '<f4'), ('mass', '<f8'), ('pos', '<i2', (3,)), \
             ('m', '<c16', (2, 2)), ('ok', '|b1')]"
        );
        let lit = "[('a', '|u1'), ('', '|V7'), ('b', '<f8')]";
        assert_eq!(parse_dtype(lit).unwrap().0.literal(), lit);
        for bad in [
            "x:f4,x:f8",
            "x:f4,y",
            ":f4",
            "x y:f4",
            "x:complex256",
            "x:f4[3",
            "x:f4[a]",
            "[('s', '<U3')]",
            "[('a', '<f4'",
            "quaternion",
        ] {
            assert!(parse_dtype(bad).is_err(), "{bad}");
        }
        assert!(parse_dtype("nope")
            .unwrap_err()
            .contains("possible values: f64, f32, f16"));
    }

    #[test]
    fn shapes() {
        let ok = |s: &str| parse_shape(s).unwrap().0;
        assert_eq!(ok(""), Vec::<usize>::new());
        assert_eq!(ok("()"), Vec::<usize>::new());
        assert_eq!(ok(" "), Vec::<usize>::new());
        assert_eq!(ok("5"), vec![5]);
        assert_eq!(ok("5,"), vec![5]);
        assert_eq!(ok("(5,)"), vec![5]);
        assert_eq!(ok("10,20"), vec![10, 20]);
        assert_eq!(ok("(3, 4)"), vec![3, 4]);
        assert_eq!(ok("0,7"), vec![0, 7]);
        assert_eq!(ok(&["1"; 64].join(",")), vec![1; 64]);
        for bad in [
            "x",
            "1,,2",
            ",",
            "-1",
            "1.5",
            "3,4,,",
            "99999999999999999999999",
            &["1"; 65].join(","),
        ] {
            assert!(parse_shape(bad).is_err(), "{bad}");
        }
    }
}

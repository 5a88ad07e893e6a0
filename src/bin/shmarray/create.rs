//! `shmarray create NAME --dtype T --shape D,...`: a zero-filled persistent array.

use std::io::Write;

use clap::builder::PossibleValue;
use shmarray::ndarray::{IxDyn, Order};
use shmarray::{Backing, Dtype, HugePages, Namespace, Options, SharedArray};

use crate::text::escape_path;
use crate::{CliError, Status};

/// Arguments of `shmarray create`.
#[derive(clap::Args)]
pub(crate) struct Args {
    /// Name of the new segment (must not exist yet).
    name: String,
    /// Element type (numpy names such as float64 and descriptors such as <f8 work too).
    #[arg(long, value_enum, default_value_t = DtypeArg(Dtype::F64))]
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

/// A `--dtype` value: one of the element types, by its Rust name (shown in `--help`),
/// its numpy name or its NPY descriptor.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct DtypeArg(Dtype);

/// The element types `create` makes, in the order `--help` lists them.
const DTYPES: [DtypeArg; 10] = [
    DtypeArg(Dtype::F64),
    DtypeArg(Dtype::F32),
    DtypeArg(Dtype::I8),
    DtypeArg(Dtype::I16),
    DtypeArg(Dtype::I32),
    DtypeArg(Dtype::I64),
    DtypeArg(Dtype::U8),
    DtypeArg(Dtype::U16),
    DtypeArg(Dtype::U32),
    DtypeArg(Dtype::U64),
];

impl DtypeArg {
    /// numpy's name of the type, derived from the Rust name (`f64` → `float64`,
    /// `u8` → `uint8`); `Dtype::from_name` accepts both.
    fn numpy_name(self) -> String {
        let (kind, bits) = self.0.name().split_at(1);
        let kind = match kind {
            "f" => "float",
            "i" => "int",
            _ => "uint",
        };
        format!("{kind}{bits}")
    }
}

impl clap::ValueEnum for DtypeArg {
    fn value_variants<'a>() -> &'a [Self] {
        &DTYPES
    }

    fn to_possible_value(&self) -> Option<PossibleValue> {
        let (d, numpy) = (self.0, self.numpy_name());
        Some(
            PossibleValue::new(d.name())
                .help(format!("numpy {numpy}, {}", d.descr()))
                .aliases([numpy, d.descr().to_string()]),
        )
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
    let dtype = args.dtype.0;
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
    let shape = IxDyn(&args.shape.0);
    let name = args.name.as_str();
    macro_rules! make {
        ($($d:ident => $t:ty),*) => {
            match dtype {
                $(Dtype::$d => {
                    let a = SharedArray::<$t, IxDyn>::create_with(&opts, name, shape)?;
                    (a.path(), a.backing().clone())
                })*
                other => {
                    return Err(CliError::Usage(format!(
                        "dtype {} is not supported by this version of shmarray",
                        other.name()
                    )))
                }
            }
        };
    }
    let (path, backing): (_, Backing) = make!(I8 => i8, I16 => i16, I32 => i32, I64 => i64,
        U8 => u8, U16 => u16, U32 => u32, U64 => u64, F32 => f32, F64 => f64);
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
        use clap::ValueEnum;
        for d in DTYPES {
            let v = d.to_possible_value().unwrap();
            assert_eq!(v.get_name().parse::<Dtype>().ok(), Some(d.0));
            for alias in [d.numpy_name().as_str(), d.0.descr()] {
                assert_eq!(alias.parse::<Dtype>().ok(), Some(d.0), "{alias}");
                assert_eq!(DtypeArg::from_str(alias, false), Ok(d), "{alias}");
            }
        }
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

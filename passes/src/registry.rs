//! The registry: the list of every pass a pipeline may name (each pass declares its `INFO` in its own file) and
//! how to build one from a `PassSpec`, checking its argument names.

pub use crate::args::Args;
use crate::inputs::Inputs;
pub use crate::pass::PassInfo;
use crate::pass::{Pass, PassError};
use crate::pipeline::PassSpec;

/// Every registered pass, in the order `--help` lists them and budget search chains them: shrinking cuts, then
/// the zeroing cuts (`vw`, `bw` refuse a tiled projection), then the tiling ones. Each pass declares its own
/// `INFO` in its file.
pub fn passes() -> &'static [PassInfo] {
    &[
        crate::dce::INFO,
        crate::fold::INFO,
        crate::heads::INFO,
        crate::ffn::INFO,
        crate::head_size::INFO,
        crate::hidden::INFO,
        crate::layers::INFO,
        crate::vw::INFO,
        crate::bw::INFO,
        crate::tile::INFO,
        crate::tile::KGRAN_INFO,
        crate::type0::INFO,
        crate::qkv::INFO,
        crate::quant::INFO,
        crate::exit::INFO,
        crate::ebert::INFO,
        crate::truncate::INFO,
    ]
}

/// The registered pass called `name`.
pub fn info(name: &str) -> Result<&'static PassInfo, PassError> {
    passes().iter().find(|p| p.name == name).ok_or_else(|| PassError::UnknownPass { name: name.into(), known: names() })
}

/// The names of the passes with this recovery kind, in registry order.
pub fn with_recovery(kind: crate::pass::Recovery) -> Vec<&'static str> {
    passes().iter().filter(|p| p.recovery == kind).map(|p| p.name).collect()
}

/// The names of the unit cuts (`Recovery::Units` of any unit), in registry order.
pub fn unit_cuts() -> Vec<&'static str> {
    passes().iter().filter(|p| p.recovery.unit().is_some()).map(|p| p.name).collect()
}

/// The name of the cut that removes `unit`.
pub fn cut_of(unit: crate::pass::Unit) -> &'static str {
    passes().iter().find(|p| p.recovery.unit() == Some(unit)).map_or("?", |p| p.name)
}

/// The passes budget search can vary (those with a `Search`), in registry order: the order they run in.
pub fn searchable() -> impl Iterator<Item = (&'static PassInfo, crate::pass::Search)> {
    passes().iter().filter_map(|p| Some((p, p.search?)))
}

pub fn names() -> String {
    passes().iter().map(|p| p.name).collect::<Vec<_>>().join(", ")
}

/// Reject an unknown pass name or argument, with the list of what exists.
pub fn check(spec: &PassSpec) -> Result<&'static PassInfo, PassError> {
    let info = info(&spec.name)?;
    for key in spec.args.keys() {
        if !info.args.iter().any(|(a, _)| a == key) {
            let known = if info.args.is_empty() {
                "none".to_string()
            } else {
                info.args.iter().map(|(a, _)| *a).collect::<Vec<_>>().join(", ")
            };
            return Err(PassError::UnknownArg { pass: spec.name.clone(), arg: key.clone(), known });
        }
    }
    Ok(info)
}

/// Build a pass from its spec and the files its pipeline names (read by `Inputs::load`).
pub fn build_with(spec: &PassSpec, inputs: &Inputs) -> Result<Box<dyn Pass>, PassError> {
    let info = check(spec)?;
    (info.build)(&Args { pass: spec.name.clone(), map: spec.args.clone(), inputs })
}

/// Build every pass of a pipeline: names and arguments are checked first (before any file is read), then each
/// file the pipeline names is read once and shared by the passes that name it.
pub fn build_all(specs: &[PassSpec]) -> Result<Vec<Box<dyn Pass>>, PassError> {
    for spec in specs {
        check(spec)?;
    }
    let inputs = Inputs::load(specs)?;
    specs.iter().map(|s| build_with(s, &inputs)).collect()
}

/// Build one pass from its spec, reading the files it names.
pub fn build(spec: &PassSpec) -> Result<Box<dyn Pass>, PassError> {
    Ok(build_all(std::slice::from_ref(spec))?.remove(0))
}

//! How much a cut removes, parsed once and rounded by one rule. A cut's arguments name a fraction of each group's
//! units (`ratio=` for whole units, `sparsity=` for pieces of matrices) or a count per group (`count=`); the units
//! removed from a group of `n` are `floor(fraction * n)`, or the count, never more than the cut allows (`cap`:
//! every unit, or all but one where a group must keep something).

use crate::args::Args;
use crate::error::PassError;

/// The amount of a cut: a fraction of each group, or a number of units per group.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Amount {
    Fraction(f64),
    Count(usize),
}

impl Amount {
    /// Units removed from a group of `units`, at most `cap`.
    pub fn of(self, units: usize, cap: usize) -> usize {
        match self {
            Amount::Fraction(f) => removed(units, f, cap),
            Amount::Count(c) => c.min(cap),
        }
    }

    /// `ratio=FRACTION` in [0, 1] or `count=N` (at most one; neither: a ratio of 0.5, the default of every static
    /// cut). `unit` says what is removed, for the error (e.g. "neurons removed per layer").
    pub fn ratio_or_count(a: &Args, unit: &str) -> Result<Amount, PassError> {
        match (a.map.contains_key("ratio"), a.map.contains_key("count")) {
            (true, true) => {
                Err(a.bad("ratio|count", format!("give at most one of ratio=FRACTION or count=N ({unit})")))
            }
            (false, true) => Ok(Amount::Count(a.get("count", 0)?)),
            _ => {
                let r: f64 = a.get("ratio", 0.5)?;
                if !(0.0..=1.0).contains(&r) {
                    return Err(a.bad("ratio", format!("{r} is not in [0, 1]")));
                }
                Ok(Amount::Fraction(r))
            }
        }
    }
}

/// Units removed from `units` once the number kept (`units - remove`, when not 0) is rounded up to a multiple of
/// `multiple` (`multiple=M` of `ffn` and `hidden`: SIMD-friendly widths).
pub fn round_kept(units: usize, remove: usize, multiple: usize) -> usize {
    let kept = units - remove;
    if kept == 0 || kept.is_multiple_of(multiple) {
        return remove;
    }
    units - (kept.div_ceil(multiple) * multiple).min(units)
}

/// The one rounding rule: `floor(fraction * units)`, at most `cap`.
pub fn removed(units: usize, fraction: f64, cap: usize) -> usize {
    ((units as f64 * fraction) as usize).min(cap)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args(kv: &[(&str, &str)]) -> Args<'static> {
        Args::bare("p", kv.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect())
    }

    #[test]
    fn fractions_round_down_and_stop_at_the_cap() {
        assert_eq!(removed(12, 0.25, 12), 3);
        assert_eq!(removed(7, 0.5, 7), 3, "3.5 rounds down");
        assert_eq!(removed(4, 0.99, 3), 3, "a group that must keep one");
        assert_eq!(Amount::Count(9).of(4, 4), 4);
    }

    #[test]
    fn the_kept_count_rounds_up_to_the_multiple() {
        assert_eq!(round_kept(32, 13, 4), 12, "19 kept rounds up to 20");
        assert_eq!(round_kept(32, 12, 4), 12, "20 kept is a multiple already");
        assert_eq!(round_kept(32, 32, 4), 32, "nothing kept stays nothing");
        assert_eq!(round_kept(30, 1, 8), 0, "29 kept rounds up past 30: nothing goes");
    }

    #[test]
    fn ratio_or_count_defaults_to_half_and_refuses_both() {
        assert_eq!(Amount::ratio_or_count(&args(&[]), "u").unwrap(), Amount::Fraction(0.5));
        assert_eq!(Amount::ratio_or_count(&args(&[("count", "3")]), "u").unwrap(), Amount::Count(3));
        let e = Amount::ratio_or_count(&args(&[("ratio", "0.5"), ("count", "3")]), "heads").unwrap_err().to_string();
        assert!(e.contains("argument `ratio|count`") && e.contains("(heads)"), "{e}");
        let e = Amount::ratio_or_count(&args(&[("ratio", "1.5")]), "u").unwrap_err().to_string();
        assert!(e.contains("1.5 is not in [0, 1]"), "{e}");
    }
}

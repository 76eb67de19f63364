//! Typed access to one term's arguments, with errors that point into the spec string.

use super::{SpecArg, SpecError, SpecTerm, SpecValue};

/// A number > 0.
pub(crate) const POS: fn(f64) -> bool = |v| v.is_finite() && v > 0.0;
/// A number >= 0.
pub(crate) const NONNEG: fn(f64) -> bool = |v| v.is_finite() && v >= 0.0;
/// A number in [0, 1).
pub(crate) const UNIT_OPEN: fn(f64) -> bool = |v| (0.0..1.0).contains(&v);
/// A number in [0, 1].
pub(crate) const UNIT: fn(f64) -> bool = |v| (0.0..=1.0).contains(&v);

/// A closed set of words one spec key takes (`activation = sigmoid | softmax | none`), read with
/// [`Args::choice`]. Implemented beside each enum that a spec key selects.
pub(crate) trait SpecWord: Sized + Copy + 'static {
    /// Every word and the value it selects, in the order an error message lists them.
    const WORDS: &'static [(&'static str, Self)];
}

/// Typed access to a term's arguments, with errors that point into the spec.
pub(crate) struct Args<'a> {
    spec: &'a str,
    /// The term being read.
    pub term: &'a SpecTerm,
}

impl<'a> Args<'a> {
    /// The arguments of `term`, a term of the spec string `spec`.
    pub fn new(spec: &'a str, term: &'a SpecTerm) -> Self {
        Args { spec, term }
    }

    /// An error at byte offset `pos` of the spec.
    pub fn err(&self, pos: usize, message: impl Into<String>) -> SpecError {
        SpecError {
            spec: self.spec.to_string(),
            pos,
            message: message.into(),
        }
    }

    /// Errors on any key not in `allowed`.
    pub fn check_keys(&self, allowed: &[&str]) -> Result<(), SpecError> {
        for a in &self.term.args {
            if !allowed.contains(&a.key.as_str()) {
                return Err(self.err(
                    a.pos,
                    format!(
                        "unknown argument '{}' for {}; allowed: {}",
                        a.key,
                        self.term.name,
                        allowed.join(", ")
                    ),
                ));
            }
        }
        Ok(())
    }

    /// The argument `key`, if given.
    pub fn get(&self, key: &str) -> Option<&'a SpecArg> {
        self.term.args.iter().find(|a| a.key == key)
    }

    fn bad(&self, a: &SpecArg, expected: &str) -> SpecError {
        self.err(
            a.value_pos,
            format!("invalid {} = {}: expected {expected}", a.key, a.value),
        )
    }

    /// A number (checked with `ok`, described by `expected`).
    pub fn num(
        &self,
        key: &str,
        ok: impl Fn(f64) -> bool,
        expected: &str,
    ) -> Result<Option<f64>, SpecError> {
        match self.get(key) {
            None => Ok(None),
            Some(a) => match a.value {
                // Every numeric parameter stays within ±1e12: larger ones overflow f32 arithmetic
                // into NaN losses (the spec fuzzer found tversky(alpha=1e128), jaccard(smooth_nr=1e54)).
                SpecValue::Number(v) if v.abs() > 1e12 => {
                    Err(self.bad(a, &format!("{expected} (and at most 1e12 in magnitude)")))
                }
                SpecValue::Number(v) if ok(v) => Ok(Some(v)),
                _ => Err(self.bad(a, expected)),
            },
        }
    }

    /// An integer.
    pub fn int(&self, key: &str) -> Result<Option<i64>, SpecError> {
        match self.get(key) {
            None => Ok(None),
            Some(a) => match a.value {
                SpecValue::Number(v) if v.fract() == 0.0 && v.abs() < 9.0e15 => Ok(Some(v as i64)),
                _ => Err(self.bad(a, "an integer")),
            },
        }
    }

    /// `true` / `false`.
    pub fn boolean(&self, key: &str) -> Result<Option<bool>, SpecError> {
        match self.get(key) {
            None => Ok(None),
            Some(a) => match a.value {
                SpecValue::Bool(b) => Ok(Some(b)),
                _ => Err(self.bad(a, "true or false")),
            },
        }
    }

    /// `[a, b, …]` of finite numbers ≥ 0.
    pub fn weights(&self, key: &str) -> Result<Option<Vec<f64>>, SpecError> {
        match self.get(key) {
            None => Ok(None),
            Some(a) => match &a.value {
                SpecValue::List(l) if l.iter().all(|v| *v >= 0.0) => Ok(Some(l.clone())),
                _ => Err(self.bad(a, "a list of numbers >= 0, e.g. [0.2,1,1]")),
            },
        }
    }

    /// One of the words of `T` (see [`SpecWord`]).
    pub fn choice<T: SpecWord>(&self, key: &str) -> Result<Option<T>, SpecError> {
        match self.get(key) {
            None => Ok(None),
            Some(a) => {
                let found = match &a.value {
                    SpecValue::Word(w) => T::WORDS.iter().find(|(word, _)| word == w),
                    _ => None,
                };
                match found {
                    Some((_, v)) => Ok(Some(*v)),
                    None => {
                        let words: Vec<&str> = T::WORDS.iter().map(|(w, _)| *w).collect();
                        Err(self.bad(a, &words.join(" | ")))
                    }
                }
            }
        }
    }
}

//! The loss-spec grammar (`docs/spec-grammar.md`): the parser, and typed access to a term's
//! arguments for the losses that read them.
//!
//! This module knows no loss: each loss reads its own keys (`Args` in its `from_spec`), the
//! registry lists the losses, and [`LossSpec::build`] (in `compound::composite`) puts them
//! together.
//!
//! ```text
//! spec  := term (('+' | '-') term)*
//! term  := [number '*'] name ['(' [arg (',' arg)*] ')']
//! arg   := key '=' value
//! value := number | true | false | word | '[' number (',' number)* ']'
//! ```
//!
//! Examples: `dice`, `bce(pos_weight=3)`, `0.5*focal(gamma=3) + 0.5*bce`,
//! `ce(weight=[0.2,1,1],ignore_index=255)`.
//!
//! Every term also takes `reduction = mean | sum | batch_mean | none` (`none` only in a single-term
//! spec), and the losses with an activation take `activation = sigmoid | softmax | none`.

use std::fmt;

mod args;
pub(crate) use args::{Args, SpecWord, NONNEG, POS, UNIT, UNIT_OPEN};

/// A spec string that could not be parsed or names something unknown.
///
/// `Display` is one line: the column, what was found and what was expected; [`SpecError::pretty`]
/// adds the spec with a caret under the offending character.
#[derive(Debug, Clone, PartialEq)]
pub struct SpecError {
    /// The spec string.
    pub spec: String,
    /// Byte offset of the offending character.
    pub pos: usize,
    /// What is wrong and what is allowed.
    pub message: String,
}

impl SpecError {
    /// The message, the spec and a caret under the offending character.
    pub fn pretty(&self) -> String {
        let col = self.spec[..self.pos.min(self.spec.len())].chars().count();
        format!(
            "error in loss spec: {}\n  {}\n  {}^",
            self.message,
            self.spec,
            " ".repeat(col)
        )
    }
}

impl fmt::Display for SpecError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let col = self.spec[..self.pos.min(self.spec.len())].chars().count() + 1;
        write!(
            f,
            "loss spec {:?}, column {col}: {}",
            self.spec, self.message
        )
    }
}

impl std::error::Error for SpecError {}

/// A value in a spec argument.
#[derive(Debug, Clone, PartialEq)]
pub enum SpecValue {
    /// A number.
    Number(f64),
    /// `true` or `false`.
    Bool(bool),
    /// A bare word (e.g. `softmax`).
    Word(String),
    /// `[a, b, …]`.
    List(Vec<f64>),
}

impl fmt::Display for SpecValue {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            SpecValue::Number(v) => write!(f, "{v}"),
            SpecValue::Bool(b) => write!(f, "{b}"),
            SpecValue::Word(w) => write!(f, "{w}"),
            SpecValue::List(l) => {
                let items: Vec<_> = l.iter().map(|v| v.to_string()).collect();
                write!(f, "[{}]", items.join(","))
            }
        }
    }
}

/// One `key=value` argument.
#[derive(Debug, Clone, PartialEq)]
pub struct SpecArg {
    /// The key.
    pub key: String,
    /// The value.
    pub value: SpecValue,
    /// Byte offset of the key in the spec.
    pub pos: usize,
    /// Byte offset of the value in the spec.
    pub value_pos: usize,
}

/// One weighted term of a spec.
#[derive(Debug, Clone, PartialEq)]
pub struct SpecTerm {
    /// The weight (sign included).
    pub weight: f64,
    /// The loss name.
    pub name: String,
    /// Byte offset of the name.
    pub pos: usize,
    /// The arguments, in order.
    pub args: Vec<SpecArg>,
}

/// A parsed loss spec: a weighted sum of named losses with their arguments.
///
/// ```
/// use segloss::LossSpec;
///
/// let spec = LossSpec::parse("0.5*focal(gamma=3) + 0.5*bce(pos_weight=2)").unwrap();
/// assert_eq!(spec.terms.len(), 2);
/// assert_eq!(spec.terms[0].name, "focal");
/// let loss = spec.build().unwrap();
///
/// let err = LossSpec::parse("dcie").unwrap().build().unwrap_err();
/// assert!(err.to_string().contains("unknown loss 'dcie'"));
/// ```
#[derive(Debug, Clone, PartialEq)]
pub struct LossSpec {
    /// The spec string.
    pub source: String,
    /// The terms, in order.
    pub terms: Vec<SpecTerm>,
}

struct Parser<'a> {
    s: &'a str,
    b: &'a [u8],
    i: usize,
}

impl<'a> Parser<'a> {
    fn err(&self, pos: usize, message: impl Into<String>) -> SpecError {
        SpecError {
            spec: self.s.to_string(),
            pos,
            message: message.into(),
        }
    }

    fn ws(&mut self) {
        while self.i < self.b.len() && (self.b[self.i] as char).is_ascii_whitespace() {
            self.i += 1;
        }
    }

    fn peek(&self) -> Option<u8> {
        self.b.get(self.i).copied()
    }

    fn found(&self) -> String {
        match self.s[self.i..].chars().next() {
            // Escaped, so that the message stays on one line (a newline or a tab in the spec).
            Some(c) => format!("'{}'", c.escape_debug()),
            None => "the end of the spec".to_string(),
        }
    }

    fn number(&mut self) -> Option<f64> {
        let start = self.i;
        let mut j = self.i;
        if j < self.b.len() && (self.b[j] == b'+' || self.b[j] == b'-') {
            j += 1;
        }
        let digits_start = j;
        while j < self.b.len() && (self.b[j].is_ascii_digit() || self.b[j] == b'.') {
            j += 1;
        }
        if j == digits_start {
            return None;
        }
        if j < self.b.len() && (self.b[j] == b'e' || self.b[j] == b'E') {
            let mut k = j + 1;
            if k < self.b.len() && (self.b[k] == b'+' || self.b[k] == b'-') {
                k += 1;
            }
            let exp_start = k;
            while k < self.b.len() && self.b[k].is_ascii_digit() {
                k += 1;
            }
            if k > exp_start {
                j = k;
            }
        }
        let v = self.s[start..j].parse::<f64>().ok()?;
        self.i = j;
        Some(v)
    }

    fn ident(&mut self) -> Option<String> {
        let start = self.i;
        while self.i < self.b.len()
            && (self.b[self.i].is_ascii_alphanumeric() || self.b[self.i] == b'_')
        {
            self.i += 1;
        }
        if self.i == start || self.b[start].is_ascii_digit() {
            self.i = start;
            return None;
        }
        Some(self.s[start..self.i].to_string())
    }

    fn value(&mut self) -> Result<SpecValue, SpecError> {
        self.ws();
        if self.peek() == Some(b'[') {
            self.i += 1;
            let mut items = Vec::new();
            loop {
                self.ws();
                if items.is_empty() && self.peek() == Some(b']') {
                    return Err(self.err(self.i, "empty list; expected '[number, …]'"));
                }
                let at = self.i;
                match self.number() {
                    Some(v) if v.is_finite() => items.push(v),
                    _ => {
                        return Err(self.err(
                            at,
                            format!("expected a number in the list, found {}", self.found()),
                        ))
                    }
                }
                self.ws();
                match self.peek() {
                    Some(b',') => self.i += 1,
                    Some(b']') => {
                        self.i += 1;
                        return Ok(SpecValue::List(items));
                    }
                    _ => {
                        return Err(self.err(
                            self.i,
                            format!("expected ',' or ']' in the list, found {}", self.found()),
                        ))
                    }
                }
            }
        }
        let at = self.i;
        if let Some(v) = self.number() {
            if !v.is_finite() {
                return Err(self.err(at, "number out of range"));
            }
            return Ok(SpecValue::Number(v));
        }
        match self.ident() {
            Some(w) if w == "true" => Ok(SpecValue::Bool(true)),
            Some(w) if w == "false" => Ok(SpecValue::Bool(false)),
            Some(w) => Ok(SpecValue::Word(w)),
            None => Err(self.err(
                at,
                format!(
                    "expected a value (number, true, false, word or [list]), found {}",
                    self.found()
                ),
            )),
        }
    }

    fn term(&mut self, sign: f64) -> Result<SpecTerm, SpecError> {
        self.ws();
        let mut weight = sign;
        let at = self.i;
        if let Some(v) = self.number() {
            self.ws();
            if self.peek() != Some(b'*') {
                return Err(self.err(
                    self.i,
                    format!("expected '*' after the weight {v}, found {}", self.found()),
                ));
            }
            if !v.is_finite() {
                return Err(self.err(at, "weight out of range"));
            }
            self.i += 1;
            weight *= v;
            self.ws();
        }
        let pos = self.i;
        let Some(name) = self.ident() else {
            return Err(self.err(
                self.i,
                format!("expected a loss name, found {}", self.found()),
            ));
        };
        self.ws();
        let mut args = Vec::new();
        if self.peek() == Some(b'(') {
            self.i += 1;
            self.ws();
            if self.peek() == Some(b')') {
                self.i += 1;
            } else {
                loop {
                    self.ws();
                    let kpos = self.i;
                    let Some(key) = self.ident() else {
                        return Err(self.err(
                            self.i,
                            format!("expected an argument name, found {}", self.found()),
                        ));
                    };
                    self.ws();
                    if self.peek() != Some(b'=') {
                        return Err(self.err(
                            self.i,
                            format!("expected '=' after '{key}', found {}", self.found()),
                        ));
                    }
                    self.i += 1;
                    self.ws();
                    let vpos = self.i;
                    let value = self.value()?;
                    if args.iter().any(|a: &SpecArg| a.key == key) {
                        return Err(self.err(kpos, format!("argument '{key}' given twice")));
                    }
                    args.push(SpecArg {
                        key,
                        value,
                        pos: kpos,
                        value_pos: vpos,
                    });
                    self.ws();
                    match self.peek() {
                        Some(b',') => self.i += 1,
                        Some(b')') => {
                            self.i += 1;
                            break;
                        }
                        _ => {
                            return Err(self.err(
                                self.i,
                                format!("expected ',' or ')', found {}", self.found()),
                            ))
                        }
                    }
                }
            }
        }
        Ok(SpecTerm {
            weight,
            name,
            pos,
            args,
        })
    }
}

impl LossSpec {
    /// Parses a spec string (syntax only; [`build`](Self::build) checks names and values).
    pub fn parse(spec: &str) -> Result<LossSpec, SpecError> {
        let mut p = Parser {
            s: spec,
            b: spec.as_bytes(),
            i: 0,
        };
        p.ws();
        if p.i == p.b.len() {
            return Err(p.err(
                0,
                "empty loss spec; expected e.g. 'dice' or '0.5*dice + 0.5*bce'",
            ));
        }
        let mut terms = vec![p.term(1.0)?];
        loop {
            p.ws();
            match p.peek() {
                None => break,
                Some(b'+') => {
                    p.i += 1;
                    terms.push(p.term(1.0)?);
                }
                Some(b'-') => {
                    p.i += 1;
                    terms.push(p.term(-1.0)?);
                }
                _ => {
                    return Err(p.err(
                        p.i,
                        format!(
                            "expected '+', '-' or the end of the spec, found {}",
                            p.found()
                        ),
                    ))
                }
            }
        }
        Ok(LossSpec {
            source: spec.to_string(),
            terms,
        })
    }
}

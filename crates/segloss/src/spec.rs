//! The loss-spec grammar (`docs/spec-grammar.md`) and the composite loss it builds.
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

use burn::tensor::Tensor;

use crate::error::LossError;
use crate::input::{Activation, Flat, LossReduction, LossValue, Target};
use crate::loss::SegLoss;
use crate::registry;

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

    /// Builds the loss: every name, key and value is checked against the catalogue.
    pub fn build(&self) -> Result<CompositeLoss, LossError> {
        let mut terms = Vec::with_capacity(self.terms.len());
        for t in &self.terms {
            let mut args = Args {
                spec: &self.source,
                term: t,
            };
            let (loss, reduction) = registry::build(&mut args)?;
            terms.push(CompositeTerm {
                weight: t.weight,
                loss,
                reduction,
            });
        }
        if terms.len() > 1
            && terms
                .iter()
                .any(|t| t.reduction == Some(LossReduction::None))
        {
            return Err(LossError::param(
                "reduction",
                "none",
                "reduction=none is only allowed in a single-term spec",
            ));
        }
        Ok(CompositeLoss {
            spec: self.source.clone(),
            terms,
        })
    }
}

/// Typed access to a term's arguments, with errors that point into the spec.
pub(crate) struct Args<'a> {
    spec: &'a str,
    pub term: &'a SpecTerm,
}

impl<'a> Args<'a> {
    pub fn err(&self, pos: usize, message: impl Into<String>) -> LossError {
        LossError::Spec(SpecError {
            spec: self.spec.to_string(),
            pos,
            message: message.into(),
        })
    }

    /// Errors on any key not in `allowed`.
    pub fn check_keys(&self, allowed: &[&str]) -> Result<(), LossError> {
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

    fn get(&self, key: &str) -> Option<&'a SpecArg> {
        self.term.args.iter().find(|a| a.key == key)
    }

    fn bad(&self, a: &SpecArg, expected: &str) -> LossError {
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
    ) -> Result<Option<f64>, LossError> {
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
    pub fn int(&self, key: &str) -> Result<Option<i64>, LossError> {
        match self.get(key) {
            None => Ok(None),
            Some(a) => match a.value {
                SpecValue::Number(v) if v.fract() == 0.0 && v.abs() < 9.0e15 => Ok(Some(v as i64)),
                _ => Err(self.bad(a, "an integer")),
            },
        }
    }

    /// `true` / `false`.
    pub fn boolean(&self, key: &str) -> Result<Option<bool>, LossError> {
        match self.get(key) {
            None => Ok(None),
            Some(a) => match a.value {
                SpecValue::Bool(b) => Ok(Some(b)),
                _ => Err(self.bad(a, "true or false")),
            },
        }
    }

    /// `[a, b, …]` of finite numbers ≥ 0.
    pub fn weights(&self, key: &str) -> Result<Option<Vec<f64>>, LossError> {
        match self.get(key) {
            None => Ok(None),
            Some(a) => match &a.value {
                SpecValue::List(l) if l.iter().all(|v| *v >= 0.0) => Ok(Some(l.clone())),
                _ => Err(self.bad(a, "a list of numbers >= 0, e.g. [0.2,1,1]")),
            },
        }
    }

    /// One of a set of words.
    pub fn word(&self, key: &str, allowed: &[&str]) -> Result<Option<String>, LossError> {
        match self.get(key) {
            None => Ok(None),
            Some(a) => match &a.value {
                SpecValue::Word(w) if allowed.contains(&w.as_str()) => Ok(Some(w.clone())),
                _ => Err(self.bad(a, &allowed.join(" | "))),
            },
        }
    }

    /// `activation = sigmoid | softmax | none`.
    pub fn activation(&self) -> Result<Option<Activation>, LossError> {
        Ok(self
            .word("activation", &["sigmoid", "softmax", "none"])?
            .map(|w| match w.as_str() {
                "sigmoid" => Activation::Sigmoid,
                "softmax" => Activation::Softmax,
                _ => Activation::None,
            }))
    }

    /// `reduction = mean | sum | batch_mean | none`.
    pub fn reduction(&self) -> Result<Option<LossReduction>, LossError> {
        Ok(self
            .word("reduction", &["mean", "sum", "batch_mean", "none"])?
            .map(|w| match w.as_str() {
                "mean" => LossReduction::Mean,
                "sum" => LossReduction::Sum,
                "batch_mean" => LossReduction::BatchMean,
                _ => LossReduction::None,
            }))
    }
}

/// One weighted term of a [`CompositeLoss`].
#[derive(Debug)]
pub struct CompositeTerm {
    /// The term's weight (sign included).
    pub weight: f64,
    /// The loss.
    pub loss: Box<dyn SegLoss>,
    /// The term's own reduction (`None`: the one the composite is called with).
    pub reduction: Option<LossReduction>,
}

/// A weighted sum of losses, built from a [`LossSpec`].
///
/// ```
/// use burn::tensor::{Device, Tensor};
/// use segloss::{LossSpec, LossReduction};
///
/// let device = Device::flex();
/// let logits = Tensor::<4>::from_floats([[[[0.0, 2.0], [-2.0, 0.0]]]], &device);
/// let mask = Tensor::<4>::from_floats([[[[0.0, 1.0], [0.0, 1.0]]]], &device);
/// let loss = LossSpec::parse("0.5*bce + 0.5*bce(pos_weight=1)").unwrap().build().unwrap();
/// let v = loss.forward(logits, mask, None).into_scalar::<f32>();
/// assert!((v - 0.41003).abs() < 1e-4);
/// ```
#[derive(Debug)]
pub struct CompositeLoss {
    /// The spec it was built from.
    pub spec: String,
    /// The terms.
    pub terms: Vec<CompositeTerm>,
}

impl CompositeLoss {
    /// Whether any term needs a weight map.
    pub fn needs_weights(&self) -> bool {
        self.terms.iter().any(|t| t.loss.needs_weights())
    }

    /// Computes the loss (each term with its own reduction, `mean` by default).
    ///
    /// # Panics
    ///
    /// On invalid input, with the message of the [`LossError`]; see [`try_forward`](Self::try_forward).
    pub fn forward<const D: usize>(
        &self,
        predictions: Tensor<D>,
        targets: impl Into<Target>,
        weights: Option<Tensor<D>>,
    ) -> Tensor<1> {
        crate::error::or_panic(self.try_forward(predictions, targets, weights, LossReduction::Mean))
            .values
    }

    /// Computes the loss, returning a typed error on invalid input.
    pub fn try_forward<const D: usize>(
        &self,
        predictions: Tensor<D>,
        targets: impl Into<Target>,
        weights: Option<Tensor<D>>,
        reduction: LossReduction,
    ) -> Result<LossValue, LossError> {
        self.loss_value(
            Flat::from_tensor(predictions),
            targets.into(),
            weights.map(Flat::from_tensor),
            reduction,
        )
    }
}

impl CompositeLoss {
    /// `a·dice + b·ce` on softmax logits with label targets, as one fused pass on the CPU (one
    /// value check, one softmax forward and one backward for both terms); `None` where that does
    /// not apply (other terms or options, ignored labels, another backend, `reduction = none`),
    /// and the terms are then computed one by one. Same value and gradient either way (tested).
    fn fused_dice_ce(
        &self,
        pred: &Flat,
        target: &Target,
        reduction: LossReduction,
    ) -> Result<Option<LossValue>, LossError> {
        let [a, b] = match &self.terms[..] {
            [a, b] => [a, b],
            _ => return Ok(None),
        };
        let red = a.reduction.unwrap_or(reduction);
        if red == LossReduction::None
            || b.reduction.unwrap_or(reduction) != red
            || !target.is_labels()
            || pred.shape.len() < 3
            || pred.shape[1] < 2
            || !crate::fused::applies_quiet(&pred.values)
        {
            return Ok(None);
        }
        fn dice_of(t: &CompositeTerm) -> Option<&crate::DiceLoss> {
            t.loss.as_any()?.downcast_ref()
        }
        fn ce_of(t: &CompositeTerm) -> Option<&crate::CeLoss> {
            t.loss.as_any()?.downcast_ref()
        }
        let ((dice, wd), (ce, wc)) = match (dice_of(a), ce_of(b), dice_of(b), ce_of(a)) {
            (Some(d), Some(c), _, _) => ((d, a.weight), (c, b.weight)),
            (_, _, Some(d), Some(c)) => ((d, b.weight), (c, a.weight)),
            _ => return Ok(None),
        };
        if ce.weight.is_some()
            || ce.label_smoothing != 0.0
            || ce.ignore_index.is_some()
            || dice.ignore_index.is_some()
            || dice.soft_label
            || !(dice.power == 1.0 || dice.power == 2.0)
            || !matches!(dice.activation, None | Some(crate::Activation::Softmax))
        {
            return Ok(None);
        }
        let p = crate::input::prepare(pred.clone(), target.clone(), &dice.rules("dice"))?;
        let w = match &dice.weight {
            Some(w) => crate::region::kept_class_weight_values(&p, w, dice.include_background)?,
            None => None,
        };
        Ok(crate::region::host_dice_ce(
            &p,
            dice,
            wd,
            wc,
            red,
            w.as_deref(),
        ))
    }
}

impl SegLoss for CompositeLoss {
    fn name(&self) -> &'static str {
        "composite"
    }

    fn needs_weights(&self) -> bool {
        CompositeLoss::needs_weights(self)
    }

    fn compute(
        &self,
        pred: Flat,
        target: Target,
        weights: Option<Flat>,
        reduction: LossReduction,
    ) -> Result<LossValue, LossError> {
        if weights.is_some() && !self.needs_weights() {
            return Err(LossError::param(
                "weights",
                "a weight map",
                format!(
                    "'{}' takes no weight map (only weighted_ce does)",
                    self.spec
                ),
            ));
        }
        if let Some(v) = self.fused_dice_ce(&pred, &target, reduction)? {
            return Ok(v);
        }
        let mut total: Option<LossValue> = None;
        for t in &self.terms {
            let red = t.reduction.unwrap_or(reduction);
            if self.terms.len() > 1 && red == LossReduction::None {
                return Err(LossError::param(
                    "reduction",
                    "none",
                    "reduction=none is only allowed in a single-term spec",
                ));
            }
            let w = if t.loss.needs_weights() {
                weights.clone()
            } else {
                None
            };
            let v = t.loss.compute(pred.clone(), target.clone(), w, red)?;
            let v = if t.weight == 1.0 {
                v
            } else {
                LossValue {
                    values: v.values.mul_scalar(t.weight),
                    shape: v.shape,
                }
            };
            total = Some(match total {
                None => v,
                Some(acc) => LossValue {
                    values: acc.values + v.values,
                    shape: acc.shape,
                },
            });
        }
        Ok(total.expect("a spec has at least one term"))
    }
}

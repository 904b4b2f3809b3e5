//! Aggregate functions (`count(*)`, `count`, `sum`, `min`, `max`, `avg`,
//! `first`, `last`) as mergeable accumulators.
//!
//! Every accumulator is a commutative monoid: folding records in any order,
//! or folding parts separately and merging them, gives the same accumulator
//! (equal values, equal bytes). That is what lets `aggregate` and `window`
//! fold records as they arrive, per epoch, instead of stashing and sorting
//! them: order never reaches the result.
//!
//! - `count(*)` counts records; `count(x)` counts non-null `x`.
//! - `sum` of ints accumulates in i128; a result outside i64 is an error
//!   (the key's update goes to `errors`). `sum` of floats is exact
//!   ([`ExactSum`]) and rounded once. `sum`, `avg`, `min`, `max`, `first`
//!   and `last` ignore nulls and are null when no non-null value was seen.
//! - `avg` is a float: the exact sum, rounded once, divided by the count.
//! - `min`/`max` use the spec's total order (NaN above every number).
//! - `first`/`last` take the value with the smallest/largest event time;
//!   among equal event times, the smallest/largest value by the total order.

use std::cmp::Ordering;
use std::fmt;

use serde::{Deserialize, Serialize};

use crate::exact::ExactSum;
use crate::expr::{self, EvalError, Expr, Resolve};
use crate::value::{canonical_float, cmp_total, Type, Value};

/// An aggregate function.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Func {
    /// `count(*)`.
    CountStar,
    /// `count(x)`.
    Count,
    /// `sum(x)`.
    Sum,
    /// `min(x)`.
    Min,
    /// `max(x)`.
    Max,
    /// `avg(x)`.
    Avg,
    /// `first(x)`.
    First,
    /// `last(x)`.
    Last,
}

impl Func {
    fn parse(name: &str) -> Option<Func> {
        Some(match name.to_ascii_lowercase().as_str() {
            "count" => Func::Count,
            "sum" => Func::Sum,
            "min" => Func::Min,
            "max" => Func::Max,
            "avg" => Func::Avg,
            "first" => Func::First,
            "last" => Func::Last,
            _ => return None,
        })
    }
}

/// The aggregate functions, as users write them (for messages and docs).
pub const FUNCTIONS: &str = "count(*), count(x), sum(x), min(x), max(x), avg(x), first(x), last(x)";

/// One compiled aggregate: its function, its argument and its result type.
#[derive(Clone, Debug)]
pub struct Agg {
    /// The function.
    pub func: Func,
    /// The argument (`None` for `count(*)`).
    pub arg: Option<Expr>,
    /// The type of the result.
    pub ty: Type,
    /// As written, for messages.
    pub text: String,
}

/// Splits `name(arg)` into its parts; `None` unless the whole text is one call.
fn split_call(src: &str) -> Option<(&str, &str)> {
    let s = src.trim();
    let open = s.find('(')?;
    let name = s[..open].trim();
    if name.is_empty() || !name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_') {
        return None;
    }
    // Find the parenthesis that closes the first one, skipping quoted text.
    let mut depth = 0usize;
    let mut quote: Option<char> = None;
    for (i, c) in s.char_indices().skip_while(|(i, _)| *i < open) {
        match quote {
            Some(q) if c == q => quote = None,
            Some(_) => {}
            None => match c {
                '\'' | '"' => quote = Some(c),
                '(' => depth += 1,
                ')' => {
                    depth -= 1;
                    if depth == 0 {
                        return if i + 1 == s.len() {
                            Some((name, s[open + 1..i].trim()))
                        } else {
                            None
                        };
                    }
                }
                _ => {}
            },
        }
    }
    None
}

/// Compiles an aggregate such as `sum(bytes / 1024)` against `scope`.
///
/// # Errors
/// A complete message (without the JSON path): not an aggregate call, an
/// unknown function, an argument that does not compile, or a type the
/// function does not take (`sum` and `avg` need a number).
pub fn compile(src: &str, scope: &dyn Resolve) -> Result<Agg, String> {
    let not_one = || {
        format!("\"{src}\" is not an aggregate; write one of {FUNCTIONS} (x may be an expression)")
    };
    let (name, arg) = split_call(src).ok_or_else(not_one)?;
    let Some(func) = Func::parse(name) else {
        return Err(format!(
            "unknown aggregate function \"{name}\"; use one of {FUNCTIONS}"
        ));
    };
    if arg == "*" {
        return if func == Func::Count {
            Ok(Agg {
                func: Func::CountStar,
                arg: None,
                ty: Type::Int,
                text: src.trim().to_string(),
            })
        } else {
            Err(format!("{name}(*) is not an aggregate; only count takes *"))
        };
    }
    let lower = arg.to_ascii_lowercase();
    if lower.starts_with("distinct ") || lower.starts_with("all ") {
        return Err(format!(
            "{name}({arg}): DISTINCT and ALL are not supported in aggregates"
        ));
    }
    if arg.is_empty() {
        return Err(format!("{name}() needs an argument, e.g. {name}(price)"));
    }
    let e = expr::compile(arg, scope).map_err(|e| format!("in {name}(...): {}", e.message))?;
    let arg_ty = e.ty();
    let ty = match func {
        Func::Count | Func::CountStar => Type::Int,
        Func::Sum | Func::Avg => match arg_ty {
            Some(Type::Int) => {
                if func == Func::Sum {
                    Type::Int
                } else {
                    Type::Float
                }
            }
            Some(Type::Float) | None => Type::Float,
            Some(t) => {
                return Err(format!(
                    "{name}({arg}): {name} needs a number (int or float), but {arg} is {t}; cast it, e.g. {name}(CAST({arg} AS float))"
                ))
            }
        },
        Func::Min | Func::Max | Func::First | Func::Last => match arg_ty {
            Some(t) => t,
            None => {
                return Err(format!(
                    "{name}({arg}): the argument has no type (it is NULL); aggregate a field or cast it"
                ))
            }
        },
    };
    Ok(Agg {
        func,
        arg: Some(e),
        ty,
        text: src.trim().to_string(),
    })
}

impl Agg {
    /// An empty accumulator for this aggregate.
    pub fn empty(&self) -> Acc {
        match (self.func, self.ty) {
            (Func::CountStar | Func::Count, _) => Acc::Count(0),
            (Func::Sum, Type::Int) => Acc::SumInt(0, 0),
            (Func::Sum, _) => Acc::SumFloat(Box::default(), 0),
            (Func::Avg, _) => match self.arg.as_ref().and_then(Expr::ty) {
                Some(Type::Int) => Acc::SumInt(0, 0),
                _ => Acc::SumFloat(Box::default(), 0),
            },
            (Func::Min, _) => Acc::Min(Value::Null),
            (Func::Max, _) => Acc::Max(Value::Null),
            (Func::First, _) => Acc::First(None),
            (Func::Last, _) => Acc::Last(None),
        }
    }

    /// The argument's value for one record (`Null` for `count(*)`).
    ///
    /// # Errors
    /// When the argument expression fails (division by zero, ...).
    pub fn arg(&self, row: &[Value]) -> Result<Value, EvalError> {
        match &self.arg {
            None => Ok(Value::Bool(true)),
            Some(e) => e.eval(row),
        }
    }

    /// The result of an accumulator.
    ///
    /// # Errors
    /// An integer `sum` outside i64.
    pub fn result(&self, acc: &Acc) -> Result<Value, AggError> {
        let avg = self.func == Func::Avg;
        Ok(match acc {
            Acc::Count(n) => Value::Int(*n),
            Acc::SumInt(_, 0) | Acc::SumFloat(_, 0) => Value::Null,
            Acc::SumInt(s, n) if avg => {
                // i128 → f64 rounds to nearest; then one division.
                #[allow(clippy::cast_precision_loss)]
                let v = *s as f64 / *n as f64;
                Value::Float(v)
            }
            Acc::SumInt(s, _) => match i64::try_from(*s) {
                Ok(v) => Value::Int(v),
                Err(_) => {
                    return Err(AggError(format!(
                        "integer overflow: {} = {s} does not fit in int (64-bit); sum a float instead, e.g. sum(CAST(x AS float))",
                        self.text
                    )))
                }
            },
            Acc::SumFloat(s, n) if avg => {
                #[allow(clippy::cast_precision_loss)]
                let v = s.value() / *n as f64;
                Value::Float(v)
            }
            Acc::SumFloat(s, _) => Value::Float(s.value()),
            Acc::Min(v) | Acc::Max(v) => v.clone(),
            Acc::First(v) | Acc::Last(v) => v.as_ref().map_or(Value::Null, |(_, v)| v.clone()),
        })
    }
}

/// An aggregate's result could not be computed.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AggError(pub String);

impl fmt::Display for AggError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// A mergeable accumulator of one aggregate.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum Acc {
    /// `count`: records (or non-null values) seen.
    Count(i64),
    /// Integer `sum`/`avg`: the exact sum and the count of non-null values.
    SumInt(i128, u64),
    /// Float `sum`/`avg`: the exact sum and the count of non-null values.
    SumFloat(Box<ExactSum>, u64),
    /// `min`: the least non-null value so far (`Null` when none).
    Min(Value),
    /// `max`: the greatest non-null value so far (`Null` when none).
    Max(Value),
    /// `first`: (event time, value) of the earliest non-null value.
    First(Option<(i64, Value)>),
    /// `last`: (event time, value) of the latest non-null value.
    Last(Option<(i64, Value)>),
}

fn canonical(v: &Value) -> Value {
    match v {
        Value::Float(f) => Value::Float(canonical_float(*f)),
        v => v.clone(),
    }
}

fn earlier(a: &(i64, Value), b: &(i64, Value)) -> bool {
    a.0.cmp(&b.0).then_with(|| cmp_total(&a.1, &b.1)) == Ordering::Less
}

impl Acc {
    /// Folds one value (the aggregate's argument for a record) with the
    /// record's event time.
    pub fn add(&mut self, v: &Value, time: i64) {
        match self {
            Acc::Count(n) => {
                if !v.is_null() {
                    *n += 1;
                }
            }
            Acc::SumInt(s, n) => {
                if let Value::Int(i) = v {
                    *s += i128::from(*i);
                    *n += 1;
                }
            }
            Acc::SumFloat(s, n) => match v {
                Value::Float(f) => {
                    s.add(*f);
                    *n += 1;
                }
                Value::Int(i) => {
                    // Exact: an i64 is split into two exactly representable halves.
                    #[allow(clippy::cast_precision_loss)]
                    {
                        s.add((*i >> 32 << 32) as f64);
                        s.add((*i & 0xFFFF_FFFF) as f64);
                    }
                    *n += 1;
                }
                _ => {}
            },
            Acc::Min(m) => {
                if !v.is_null() && (m.is_null() || cmp_total(v, m) == Ordering::Less) {
                    *m = canonical(v);
                }
            }
            Acc::Max(m) => {
                if !v.is_null() && (m.is_null() || cmp_total(v, m) == Ordering::Greater) {
                    *m = canonical(v);
                }
            }
            Acc::First(cur) => {
                if !v.is_null() {
                    let cand = (time, canonical(v));
                    if cur.as_ref().is_none_or(|c| earlier(&cand, c)) {
                        *cur = Some(cand);
                    }
                }
            }
            Acc::Last(cur) => {
                if !v.is_null() {
                    let cand = (time, canonical(v));
                    if cur.as_ref().is_none_or(|c| earlier(c, &cand)) {
                        *cur = Some(cand);
                    }
                }
            }
        }
    }

    /// Merges another accumulator of the same aggregate into this one.
    pub fn merge(&mut self, other: &Acc) {
        match (self, other) {
            (Acc::Count(a), Acc::Count(b)) => *a += b,
            (Acc::SumInt(a, n), Acc::SumInt(b, m)) => {
                *a += b;
                *n += m;
            }
            (Acc::SumFloat(a, n), Acc::SumFloat(b, m)) => {
                a.merge(b);
                *n += m;
            }
            (me @ (Acc::Min(_) | Acc::Max(_)), Acc::Min(v) | Acc::Max(v)) => me.add(v, 0),
            (Acc::First(a), Acc::First(Some(b))) if a.as_ref().is_none_or(|c| earlier(b, c)) => {
                *a = Some(b.clone());
            }
            (Acc::Last(a), Acc::Last(Some(b))) if a.as_ref().is_none_or(|c| earlier(c, b)) => {
                *a = Some(b.clone());
            }
            _ => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::value::Schema;

    fn schema() -> Schema {
        Schema::new([
            ("i", Type::Int),
            ("f", Type::Float),
            ("s", Type::String),
            ("b", Type::Bool),
        ])
    }

    #[test]
    fn parses_and_types() {
        let s = schema();
        assert_eq!(compile("count(*)", &s).map(|a| a.ty), Ok(Type::Int));
        assert_eq!(compile(" COUNT( s ) ", &s).map(|a| a.ty), Ok(Type::Int));
        assert_eq!(compile("sum(i)", &s).map(|a| a.ty), Ok(Type::Int));
        assert_eq!(compile("sum(i * 2.0)", &s).map(|a| a.ty), Ok(Type::Float));
        assert_eq!(compile("avg(i)", &s).map(|a| a.ty), Ok(Type::Float));
        assert_eq!(compile("max(s)", &s).map(|a| a.ty), Ok(Type::String));
        assert_eq!(compile("last(b)", &s).map(|a| a.ty), Ok(Type::Bool));
        assert_eq!(compile("min(lower(s))", &s).map(|a| a.ty), Ok(Type::String));
    }

    #[test]
    fn refuses_with_a_reason() {
        let s = schema();
        let err = |src: &str| compile(src, &s).err().unwrap_or_default();
        assert!(
            err("sum(s)").contains("sum needs a number"),
            "{}",
            err("sum(s)")
        );
        assert!(err("avg(b)").contains("avg needs a number"));
        assert!(err("median(i)").contains("unknown aggregate function \"median\""));
        assert!(err("sum(*)").contains("only count takes *"));
        assert!(err("i + 1").contains("is not an aggregate"));
        assert!(err("sum(i) + 1").contains("is not an aggregate"));
        assert!(err("count(DISTINCT i)").contains("DISTINCT"));
        assert!(err("sum(nope)").contains("unknown field \"nope\""));
        assert!(err("sum()").contains("needs an argument"));
    }

    fn fold(agg: &str, vals: &[(i64, Value)]) -> Value {
        let a = compile(agg, &schema()).expect("compiles");
        let mut acc = a.empty();
        for (t, v) in vals {
            // The value stands in every field; the aggregate reads its own.
            let row = vec![v.clone(), v.clone(), v.clone(), v.clone()];
            acc.add(&a.arg(&row).expect("evaluates"), *t);
        }
        a.result(&acc).expect("result")
    }

    #[test]
    fn semantics() {
        use Value::{Float, Int, Null};
        let ints = [(1, Int(5)), (2, Null), (3, Int(-2))];
        assert_eq!(fold("count(*)", &ints), Int(3));
        assert_eq!(fold("count(i)", &ints), Int(2));
        assert_eq!(fold("sum(i)", &ints), Int(3));
        assert_eq!(fold("avg(i)", &ints), Float(1.5));
        assert_eq!(fold("min(i)", &ints), Int(-2));
        assert_eq!(fold("max(i)", &ints), Int(5));
        assert_eq!(fold("first(i)", &ints), Int(5));
        assert_eq!(fold("last(i)", &ints), Int(-2));
        assert_eq!(fold("sum(i)", &[(1, Null)]), Null);
        assert_eq!(fold("max(i)", &[]), Null);
        // first/last: ties in event time go by the total order.
        let ties = [(7, Int(3)), (7, Int(1)), (7, Int(2))];
        assert_eq!(fold("first(i)", &ties), Int(1));
        assert_eq!(fold("last(i)", &ties), Int(3));
        // float sums are exact and rounded once.
        let fl = [(0, Float(1e100)), (0, Float(1.0)), (0, Float(-1e100))];
        assert_eq!(fold("sum(f)", &fl), Float(1.0));
        // -0.0 groups and compares as 0.0.
        assert_eq!(fold("max(f)", &[(0, Float(-0.0))]), Float(0.0));
    }

    #[test]
    fn int_sum_overflow_is_an_error_only_at_the_end() {
        let a = compile("sum(i)", &schema()).expect("compiles");
        let mut acc = a.empty();
        acc.add(&Value::Int(i64::MAX), 0);
        acc.add(&Value::Int(i64::MAX), 0);
        assert!(a.result(&acc).is_err());
        acc.add(&Value::Int(i64::MIN), 0);
        acc.add(&Value::Int(i64::MIN), 0);
        assert_eq!(a.result(&acc), Ok(Value::Int(-2)));
    }

    #[test]
    fn merge_equals_fold() {
        let s = schema();
        let vals: Vec<(i64, Value)> = (0..40)
            .map(|i| (i % 7, Value::Int((i * 37) % 11 - 5)))
            .collect();
        for agg in [
            "count(*)", "count(i)", "sum(i)", "avg(i)", "min(i)", "max(i)", "first(i)", "last(i)",
        ] {
            let a = compile(agg, &s).expect("compiles");
            let mut whole = a.empty();
            for (t, v) in &vals {
                whole.add(v, *t);
            }
            for cut in [0, 1, 17, 40] {
                let (x, y) = vals.split_at(cut);
                let mut ax = a.empty();
                let mut ay = a.empty();
                for (t, v) in y.iter().rev() {
                    ay.add(v, *t);
                }
                for (t, v) in x {
                    ax.add(v, *t);
                }
                ay.merge(&ax);
                assert_eq!(ay, whole, "{agg} cut {cut}");
            }
        }
    }
}

//! The compiled, type-checked expression tree and its evaluation.
//!
//! The compiler guarantees the operand types of every node, so evaluation
//! dispatches on the values' variants only; a value of an unexpected variant
//! (a row that does not match the schema the expression was compiled against)
//! is an [`EvalError`], never a panic. Field references, literals, arithmetic,
//! comparisons, logic, `IS`, `IN`, `BETWEEN` and `LIKE` with a literal pattern
//! do not allocate (a string value is an `Arc`, cloned by reference count).

use crate::value::Text;
use std::cmp::Ordering;

use super::cast::{self, CastOp};
use super::func::{self, Func1};
use super::like::Pattern;
use super::EvalError;
use crate::value::{cmp_total, Value};

/// An arithmetic operator.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum ArithOp {
    Add,
    Sub,
    Mul,
    Div,
    Rem,
}

impl ArithOp {
    pub(crate) fn symbol(self) -> &'static str {
        match self {
            ArithOp::Add => "+",
            ArithOp::Sub => "-",
            ArithOp::Mul => "*",
            ArithOp::Div => "/",
            ArithOp::Rem => "%",
        }
    }
}

/// A comparison operator.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum CmpOp {
    Eq,
    Ne,
    Lt,
    Le,
    Gt,
    Ge,
}

impl CmpOp {
    fn test(self, o: Ordering) -> bool {
        match self {
            CmpOp::Eq => o == Ordering::Equal,
            CmpOp::Ne => o != Ordering::Equal,
            CmpOp::Lt => o == Ordering::Less,
            CmpOp::Le => o != Ordering::Greater,
            CmpOp::Gt => o == Ordering::Greater,
            CmpOp::Ge => o != Ordering::Less,
        }
    }
}

/// A node of a compiled expression.
#[derive(Clone, Debug)]
pub(crate) enum Node {
    /// A literal (or a constant folded at compile time).
    Const(Value),
    /// A slot of the input row.
    Field(usize),
    /// Unary minus on an int or a float.
    Neg(Box<Node>),
    /// `+ - * / %` on numbers and timestamps.
    Arith(ArithOp, Box<Node>, Box<Node>),
    /// `+ - * / %` where both sides are statically `int`: evaluated on
    /// `i64`s without building intermediate values.
    IntArith(ArithOp, Box<Node>, Box<Node>),
    /// A comparison where both sides are statically `int` or `timestamp`.
    IntCmp(CmpOp, Box<Node>, Box<Node>),
    /// [`Node::IntArith`] with a constant right operand (`price * 908`).
    IntArithK(ArithOp, Box<Node>, i64),
    /// [`Node::IntCmp`] with a constant right operand (`x % 123 = 0`).
    IntCmpK(CmpOp, Box<Node>, i64),
    /// A comparison; NULL if either side is NULL.
    Cmp(CmpOp, Box<Node>, Box<Node>),
    /// `IS [NOT] DISTINCT FROM`: a null-safe comparison.
    Distinct {
        negated: bool,
        left: Box<Node>,
        right: Box<Node>,
    },
    /// Three-valued `AND`, evaluated left to right with short-circuit.
    And(Box<Node>, Box<Node>),
    /// Three-valued `OR`, evaluated left to right with short-circuit.
    Or(Box<Node>, Box<Node>),
    /// Three-valued `NOT`.
    Not(Box<Node>),
    /// `IS [NOT] NULL` (also `IS [NOT] UNKNOWN`).
    IsNull { expr: Box<Node>, negated: bool },
    /// `IS [NOT] TRUE`, `IS [NOT] FALSE`.
    IsBool {
        expr: Box<Node>,
        want: bool,
        negated: bool,
    },
    /// `x [NOT] IN (items...)`.
    In {
        expr: Box<Node>,
        items: Vec<Node>,
        negated: bool,
    },
    /// `x [NOT] IN (...)` over many non-null literals of one type: sorted,
    /// searched by bisection. `has_null`: the list also held a NULL.
    InSorted {
        expr: Box<Node>,
        items: Vec<Value>,
        has_null: bool,
        negated: bool,
    },
    /// `x [NOT] BETWEEN low AND high`.
    Between {
        expr: Box<Node>,
        low: Box<Node>,
        high: Box<Node>,
        negated: bool,
    },
    /// `LIKE` / `ILIKE` against a pattern compiled once.
    Like {
        expr: Box<Node>,
        pattern: Pattern,
        negated: bool,
    },
    /// `LIKE` / `ILIKE` against a pattern computed per record.
    LikeDyn {
        expr: Box<Node>,
        pattern: Box<Node>,
        escape: Option<char>,
        ci: bool,
        negated: bool,
    },
    /// `CASE`: with an operand, each `when` is compared with it; without, each
    /// `when` is a condition.
    Case {
        operand: Option<Box<Node>>,
        whens: Vec<(Node, Node)>,
        otherwise: Box<Node>,
    },
    /// `coalesce(...)`: the first non-NULL argument, evaluated lazily.
    Coalesce(Vec<Node>),
    /// A cast (also the implicit conversions of `||` and of int to float).
    Cast(CastOp, Box<Node>),
    /// `||` on two strings.
    Concat(Box<Node>, Box<Node>),
    /// A one-argument function.
    Call1(Func1, Box<Node>),
    /// `round(x, digits)`.
    RoundDigits(Box<Node>, Box<Node>),
    /// `substr(s, start [, len])`.
    Substr(Box<Node>, Box<Node>, Option<Box<Node>>),
}

/// The name of a value's type, for messages.
pub(crate) fn value_type(v: &Value) -> &'static str {
    match v {
        Value::Null => "NULL",
        Value::Bool(_) => "bool",
        Value::Int(_) => "int",
        Value::Float(_) => "float",
        Value::Str(_) => "string",
        Value::Ts(_) => "timestamp",
        Value::Json(_) => "json",
    }
}

/// The error for a value whose variant the compiled expression did not
/// expect: the row does not match the schema.
pub(crate) fn mismatch(what: &str, v: &Value) -> EvalError {
    EvalError::new(format!(
        "{what} got a value of type {} (the record does not match the schema)",
        value_type(v)
    ))
}

/// Compares two non-null values of comparable types: the total order, with
/// timestamps and ints compared numerically.
pub(crate) fn cmp_values(a: &Value, b: &Value) -> Ordering {
    match (a, b) {
        (Value::Ts(x), Value::Int(y)) | (Value::Int(x), Value::Ts(y)) => x.cmp(y),
        _ => cmp_total(a, b),
    }
}

fn truth(v: &Value, what: &str) -> Result<Option<bool>, EvalError> {
    match v {
        Value::Null => Ok(None),
        Value::Bool(b) => Ok(Some(*b)),
        other => Err(mismatch(what, other)),
    }
}

fn tri(b: Option<bool>) -> Value {
    b.map_or(Value::Null, Value::Bool)
}

fn not3(b: Option<bool>) -> Option<bool> {
    b.map(|x| !x)
}

/// `a AND b` in three-valued logic.
fn and3(a: Option<bool>, b: Option<bool>) -> Option<bool> {
    match (a, b) {
        (Some(false), _) | (_, Some(false)) => Some(false),
        (Some(true), Some(true)) => Some(true),
        _ => None,
    }
}

/// A comparison of two values, NULL if either is.
fn cmp3(op: CmpOp, a: &Value, b: &Value) -> Option<bool> {
    if a.is_null() || b.is_null() {
        None
    } else {
        Some(op.test(cmp_values(a, b)))
    }
}

/// The i64 of an int or timestamp value (None for NULL).
fn int_of(v: &Value) -> Result<Option<i64>, EvalError> {
    match v {
        Value::Int(x) | Value::Ts(x) => Ok(Some(*x)),
        Value::Null => Ok(None),
        other => Err(mismatch("an int operation", other)),
    }
}

fn overflow() -> EvalError {
    EvalError::new("integer overflow")
}

fn div_zero() -> EvalError {
    EvalError::new("division by zero")
}

fn int_arith(op: ArithOp, x: i64, y: i64) -> Result<i64, EvalError> {
    match op {
        ArithOp::Add => x.checked_add(y).ok_or_else(overflow),
        ArithOp::Sub => x.checked_sub(y).ok_or_else(overflow),
        ArithOp::Mul => x.checked_mul(y).ok_or_else(overflow),
        ArithOp::Div if y == 0 => Err(div_zero()),
        ArithOp::Div => x.checked_div(y).ok_or_else(overflow),
        ArithOp::Rem if y == 0 => Err(div_zero()),
        // i64::MIN % -1 overflows in Rust; mathematically (and in PostgreSQL) it is 0.
        ArithOp::Rem if y == -1 => Ok(0),
        ArithOp::Rem => Ok(x % y),
    }
}

fn float_arith(op: ArithOp, x: f64, y: f64) -> Result<Value, EvalError> {
    Ok(Value::Float(match op {
        ArithOp::Add => x + y,
        ArithOp::Sub => x - y,
        ArithOp::Mul => x * y,
        ArithOp::Div | ArithOp::Rem if y == 0.0 => return Err(div_zero()),
        ArithOp::Div => x / y,
        ArithOp::Rem => x % y,
    }))
}

fn ts_range() -> EvalError {
    EvalError::new("timestamp out of range")
}

#[allow(clippy::cast_precision_loss)] // int to float rounds by definition
fn arith(op: ArithOp, a: &Value, b: &Value) -> Result<Value, EvalError> {
    use Value::{Float, Int, Null, Ts};
    match (a, b) {
        (Null, _) | (_, Null) => Ok(Null),
        (Int(x), Int(y)) => int_arith(op, *x, *y).map(Int),
        (Float(x), Float(y)) => float_arith(op, *x, *y),
        (Int(x), Float(y)) => float_arith(op, *x as f64, *y),
        (Float(x), Int(y)) => float_arith(op, *x, *y as f64),
        (Ts(x), Int(y)) if op == ArithOp::Add => x.checked_add(*y).map(Ts).ok_or_else(ts_range),
        (Ts(x), Int(y)) if op == ArithOp::Sub => x.checked_sub(*y).map(Ts).ok_or_else(ts_range),
        (Int(x), Ts(y)) if op == ArithOp::Add => x.checked_add(*y).map(Ts).ok_or_else(ts_range),
        (Ts(x), Ts(y)) if op == ArithOp::Sub => x.checked_sub(*y).map(Int).ok_or_else(overflow),
        (Int(_) | Float(_) | Ts(_), other) => Err(mismatch(op.symbol(), other)),
        (other, _) => Err(mismatch(op.symbol(), other)),
    }
}

impl Node {
    /// Evaluates a node whose static type is `int` or `timestamp` to its
    /// `i64` (None for NULL), without building intermediate values.
    fn eval_i64(&self, row: &[Value]) -> Result<Option<i64>, EvalError> {
        match self {
            Node::Field(i) => match row.get(*i) {
                Some(Value::Int(x) | Value::Ts(x)) => Ok(Some(*x)),
                Some(Value::Null) => Ok(None),
                _ => self.eval(row).and_then(|v| int_of(&v)),
            },
            Node::Const(Value::Int(x) | Value::Ts(x)) => Ok(Some(*x)),
            Node::IntArith(op, a, b) => match (a.eval_i64(row)?, b.eval_i64(row)?) {
                (Some(x), Some(y)) => int_arith(*op, x, y).map(Some),
                _ => Ok(None),
            },
            Node::IntArithK(op, a, k) => match a.eval_i64(row)? {
                Some(x) => int_arith(*op, x, *k).map(Some),
                None => Ok(None),
            },
            other => other.eval(row).and_then(|v| int_of(&v)),
        }
    }

    /// Evaluates this node against a row.
    pub(crate) fn eval(&self, row: &[Value]) -> Result<Value, EvalError> {
        match self {
            Node::Const(v) => Ok(v.clone()),
            Node::Field(i) => row.get(*i).cloned().ok_or_else(|| {
                EvalError::new(format!(
                    "the record has {} fields, field {} was expected (the record does not match the schema)",
                    row.len(),
                    i + 1
                ))
            }),
            Node::Neg(e) => match e.eval(row)? {
                Value::Null => Ok(Value::Null),
                Value::Int(x) => x.checked_neg().map(Value::Int).ok_or_else(overflow),
                Value::Float(x) => Ok(Value::Float(-x)),
                other => Err(mismatch("-", &other)),
            },
            Node::Arith(op, a, b) => arith(*op, &a.eval(row)?, &b.eval(row)?),
            Node::IntArith(..) | Node::IntArithK(..) => {
                Ok(self.eval_i64(row)?.map_or(Value::Null, Value::Int))
            }
            Node::IntCmpK(op, a, k) => Ok(a
                .eval_i64(row)?
                .map_or(Value::Null, |x| Value::Bool(op.test(x.cmp(k))))),
            Node::IntCmp(op, a, b) => match (a.eval_i64(row)?, b.eval_i64(row)?) {
                (Some(x), Some(y)) => Ok(Value::Bool(op.test(x.cmp(&y)))),
                _ => Ok(Value::Null),
            },
            Node::Cmp(op, a, b) => Ok(tri(cmp3(*op, &a.eval(row)?, &b.eval(row)?))),
            Node::Distinct {
                negated,
                left,
                right,
            } => {
                let (a, b) = (left.eval(row)?, right.eval(row)?);
                let same = match (a.is_null(), b.is_null()) {
                    (true, true) => true,
                    (false, false) => cmp_values(&a, &b) == Ordering::Equal,
                    _ => false,
                };
                Ok(Value::Bool(same == *negated))
            }
            Node::And(a, b) => {
                let l = truth(&a.eval(row)?, "AND")?;
                if l == Some(false) {
                    return Ok(Value::Bool(false));
                }
                let r = truth(&b.eval(row)?, "AND")?;
                Ok(tri(and3(l, r)))
            }
            Node::Or(a, b) => {
                let l = truth(&a.eval(row)?, "OR")?;
                if l == Some(true) {
                    return Ok(Value::Bool(true));
                }
                let r = truth(&b.eval(row)?, "OR")?;
                Ok(tri(not3(and3(not3(l), not3(r)))))
            }
            Node::Not(e) => Ok(tri(not3(truth(&e.eval(row)?, "NOT")?))),
            Node::IsNull { expr, negated } => Ok(Value::Bool(expr.eval(row)?.is_null() != *negated)),
            Node::IsBool {
                expr,
                want,
                negated,
            } => {
                let v = truth(&expr.eval(row)?, "IS")?;
                Ok(Value::Bool((v == Some(*want)) != *negated))
            }
            Node::In {
                expr,
                items,
                negated,
            } => {
                let x = expr.eval(row)?;
                if x.is_null() {
                    return Ok(Value::Null);
                }
                let mut saw_null = false;
                for item in items {
                    let v = item.eval(row)?;
                    if v.is_null() {
                        saw_null = true;
                    } else if cmp_values(&x, &v) == Ordering::Equal {
                        return Ok(Value::Bool(!negated));
                    }
                }
                Ok(if saw_null {
                    Value::Null
                } else {
                    Value::Bool(*negated)
                })
            }
            Node::InSorted {
                expr,
                items,
                has_null,
                negated,
            } => {
                let x = expr.eval(row)?;
                if x.is_null() {
                    return Ok(Value::Null);
                }
                if items.binary_search_by(|p| cmp_values(p, &x)).is_ok() {
                    Ok(Value::Bool(!negated))
                } else if *has_null {
                    Ok(Value::Null)
                } else {
                    Ok(Value::Bool(*negated))
                }
            }
            Node::Between {
                expr,
                low,
                high,
                negated,
            } => {
                let x = expr.eval(row)?;
                let ge = cmp3(CmpOp::Ge, &x, &low.eval(row)?);
                let r = if ge == Some(false) {
                    Some(false)
                } else {
                    and3(ge, cmp3(CmpOp::Le, &x, &high.eval(row)?))
                };
                Ok(tri(if *negated { not3(r) } else { r }))
            }
            Node::Like {
                expr,
                pattern,
                negated,
            } => match expr.eval(row)? {
                Value::Null => Ok(Value::Null),
                Value::Str(s) => Ok(Value::Bool(pattern.matches(&s) != *negated)),
                other => Err(mismatch("LIKE", &other)),
            },
            Node::LikeDyn {
                expr,
                pattern,
                escape,
                ci,
                negated,
            } => match (expr.eval(row)?, pattern.eval(row)?) {
                (Value::Null, _) | (_, Value::Null) => Ok(Value::Null),
                (Value::Str(s), Value::Str(p)) => {
                    let pat = Pattern::new(&p, *escape, *ci).map_err(EvalError::new)?;
                    Ok(Value::Bool(pat.matches(&s) != *negated))
                }
                (Value::Str(_), other) | (other, _) => Err(mismatch("LIKE", &other)),
            },
            Node::Case {
                operand,
                whens,
                otherwise,
            } => {
                match operand {
                    Some(op) => {
                        let v = op.eval(row)?;
                        for (w, r) in whens {
                            let wv = w.eval(row)?;
                            if cmp3(CmpOp::Eq, &v, &wv) == Some(true) {
                                return r.eval(row);
                            }
                        }
                    }
                    None => {
                        for (w, r) in whens {
                            if truth(&w.eval(row)?, "CASE WHEN")? == Some(true) {
                                return r.eval(row);
                            }
                        }
                    }
                }
                otherwise.eval(row)
            }
            Node::Coalesce(args) => {
                for a in args {
                    let v = a.eval(row)?;
                    if !v.is_null() {
                        return Ok(v);
                    }
                }
                Ok(Value::Null)
            }
            Node::Cast(op, e) => cast::apply(*op, e.eval(row)?),
            Node::Concat(a, b) => match (a.eval(row)?, b.eval(row)?) {
                (Value::Null, _) | (_, Value::Null) => Ok(Value::Null),
                (Value::Str(x), Value::Str(y)) => {
                    let mut s = String::with_capacity(x.len() + y.len());
                    s.push_str(&x);
                    s.push_str(&y);
                    Ok(Value::Str(Text::from(s)))
                }
                (Value::Str(_), other) | (other, _) => Err(mismatch("||", &other)),
            },
            Node::Call1(f, e) => func::call1(*f, e.eval(row)?),
            Node::RoundDigits(x, n) => func::round_digits(x.eval(row)?, n.eval(row)?),
            Node::Substr(s, start, len) => {
                let (s, start) = (s.eval(row)?, start.eval(row)?);
                let len = match len {
                    Some(l) => Some(l.eval(row)?),
                    None => None,
                };
                func::substr(s, start, len)
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn three_valued_logic_tables() {
        let vals = [Some(true), Some(false), None];
        for a in vals {
            for b in vals {
                let and = and3(a, b);
                let or = not3(and3(not3(a), not3(b)));
                let want_and = match (a, b) {
                    (Some(x), Some(y)) => Some(x && y),
                    (Some(false), None) | (None, Some(false)) => Some(false),
                    _ => None,
                };
                let want_or = match (a, b) {
                    (Some(x), Some(y)) => Some(x || y),
                    (Some(true), None) | (None, Some(true)) => Some(true),
                    _ => None,
                };
                assert_eq!(and, want_and, "{a:?} AND {b:?}");
                assert_eq!(or, want_or, "{a:?} OR {b:?}");
            }
        }
    }

    #[test]
    fn int_arithmetic_edges() {
        assert_eq!(int_arith(ArithOp::Div, -7, 2), Ok(-3));
        assert_eq!(int_arith(ArithOp::Rem, -7, 2), Ok(-1));
        assert_eq!(int_arith(ArithOp::Rem, 7, -2), Ok(1));
        assert_eq!(int_arith(ArithOp::Rem, i64::MIN, -1), Ok(0));
        assert!(int_arith(ArithOp::Div, i64::MIN, -1).is_err());
        assert!(int_arith(ArithOp::Mul, i64::MAX, 2).is_err());
        assert!(int_arith(ArithOp::Div, 1, 0).is_err());
        assert!(int_arith(ArithOp::Rem, 1, 0).is_err());
    }
}

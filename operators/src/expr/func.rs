//! Scalar functions: which exist, their signatures (checked at compile time)
//! and their evaluation. There is deliberately no function that reads the
//! clock, a random source or the environment.

use crate::value::Text;

use super::compile::{tn, unify, Typed};
use super::eval::{mismatch, Node};
use super::EvalError;
use crate::value::{Type, Value};

/// Every function name, for "did you mean" hints.
pub(crate) const FUNCTIONS: [&str; 13] = [
    "abs",
    "ceil",
    "ceiling",
    "char_length",
    "character_length",
    "coalesce",
    "floor",
    "length",
    "lower",
    "round",
    "substr",
    "substring",
    "upper",
];

/// A one-argument function.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Func1 {
    Lower,
    Upper,
    Length,
    Abs,
    Round,
    Floor,
    Ceil,
}

/// Why a function that exists in PostgreSQL is not allowed: it is not a pure
/// function of the record.
pub(crate) fn impure(name: &str) -> Option<&'static str> {
    Some(match name {
        "now"
        | "current_timestamp"
        | "current_date"
        | "current_time"
        | "localtime"
        | "localtimestamp"
        | "clock_timestamp"
        | "statement_timestamp"
        | "transaction_timestamp"
        | "timeofday"
        | "sysdate"
        | "getdate"
        | "unix_timestamp"
        | "utc_timestamp" => "reads the clock; use the record's event-time field instead",
        "random" | "random_normal" | "setseed" | "rand" | "gen_random_uuid" | "uuid"
        | "uuid_generate_v1" | "uuid_generate_v4" | "newid" => {
            "reads a random source; use a generator source for random test data"
        }
        "current_user" | "session_user" | "user" | "current_role" | "current_setting"
        | "current_database" | "current_catalog" | "current_schema" | "current_schemas"
        | "version" | "pg_backend_pid" | "inet_client_addr" | "inet_server_addr"
        | "txid_current" | "nextval" | "currval" | "lastval" | "getenv" => "reads the environment",
        _ => return None,
    })
}

/// Whether `name` is an aggregate function (allowed in aggregate fields only).
pub(crate) fn is_aggregate(name: &str) -> bool {
    matches!(
        name,
        "count" | "sum" | "min" | "max" | "avg" | "first" | "last" | "array_agg" | "string_agg"
    )
}

fn numeric_or_null(t: Option<Type>) -> bool {
    matches!(t, None | Some(Type::Int | Type::Float))
}

fn is(t: Option<Type>, want: Type) -> bool {
    t.is_none() || t == Some(want)
}

/// Compiles a call of a known function (`name` in lowercase).
///
/// # Errors
/// A message naming the function, what it takes and what it got.
pub(crate) fn compile_call(name: &str, mut args: Vec<Typed>) -> Result<Typed, String> {
    let types: Vec<Option<Type>> = args.iter().map(|a| a.ty).collect();
    let sig = match name {
        "lower" | "upper" | "length" | "char_length" | "character_length" => "(string)",
        "substr" | "substring" => "(string, int [, int])",
        "abs" | "floor" | "ceil" | "ceiling" => "(int) or (float)",
        "round" => "(int) or (float), or (int, int) or (float, int)",
        _ => "(any, ...) with arguments of one type",
    };
    let bad = || {
        let got: Vec<&str> = types.iter().map(|t| tn(*t)).collect();
        format!("function {name}{sig} cannot take ({})", got.join(", "))
    };
    let one = |args: &mut Vec<Typed>| -> Result<Box<Node>, String> {
        match args.pop() {
            Some(a) if args.is_empty() => Ok(Box::new(a.node)),
            _ => Err(bad()),
        }
    };
    let (f, ty) = match name {
        "coalesce" => {
            if args.is_empty() {
                return Err("function coalesce needs at least one argument".into());
            }
            let ty = unify(&types).map_err(|(a, b)| {
                format!("coalesce arguments must have one type, got {a} and {b}")
            })?;
            let nodes = args.into_iter().map(|a| a.coerce(ty).node).collect();
            return Ok(Typed::new(Node::Coalesce(nodes), ty));
        }
        "substr" | "substring" => {
            let ok = (types.len() == 2 || types.len() == 3)
                && is(types[0], Type::String)
                && types[1..].iter().all(|t| is(*t, Type::Int));
            if !ok {
                return Err(bad());
            }
            let len = if args.len() == 3 {
                args.pop().map(|a| Box::new(a.node))
            } else {
                None
            };
            let start = args.pop().ok_or_else(bad)?;
            let s = args.pop().ok_or_else(bad)?;
            let node = Node::Substr(Box::new(s.node), Box::new(start.node), len);
            return Ok(Typed::new(node, Some(Type::String)));
        }
        "round" if types.len() == 2 => {
            if !numeric_or_null(types[0]) || !is(types[1], Type::Int) {
                return Err(bad());
            }
            let n = args.pop().ok_or_else(bad)?;
            let x = args.pop().ok_or_else(bad)?;
            let node = Node::RoundDigits(Box::new(x.node), Box::new(n.node));
            return Ok(Typed::new(node, types[0]));
        }
        "lower" | "upper" | "length" | "char_length" | "character_length" => {
            if types.len() != 1 || !is(types[0], Type::String) {
                return Err(bad());
            }
            match name {
                "lower" => (Func1::Lower, Some(Type::String)),
                "upper" => (Func1::Upper, Some(Type::String)),
                _ => (Func1::Length, Some(Type::Int)),
            }
        }
        "abs" | "round" | "floor" | "ceil" | "ceiling" => {
            if types.len() != 1 || !numeric_or_null(types[0]) {
                return Err(bad());
            }
            let f = match name {
                "abs" => Func1::Abs,
                "round" => Func1::Round,
                "floor" => Func1::Floor,
                _ => Func1::Ceil,
            };
            (f, types[0])
        }
        _ => return Err(format!("unknown function \"{name}\"")),
    };
    let arg = one(&mut args)?;
    Ok(Typed::new(Node::Call1(f, arg), ty))
}

/// Evaluates a one-argument function.
pub(crate) fn call1(f: Func1, v: Value) -> Result<Value, EvalError> {
    Ok(match (f, v) {
        (_, Value::Null) => Value::Null,
        (Func1::Lower, Value::Str(s)) => Value::Str(Text::from(s.to_lowercase())),
        (Func1::Upper, Value::Str(s)) => Value::Str(Text::from(s.to_uppercase())),
        (Func1::Length, Value::Str(s)) => {
            Value::Int(i64::try_from(s.chars().count()).unwrap_or(i64::MAX))
        }
        (Func1::Abs, Value::Int(i)) => match i.checked_abs() {
            Some(a) => Value::Int(a),
            None => return Err(EvalError::new("integer overflow")),
        },
        (Func1::Abs, Value::Float(x)) => Value::Float(x.abs()),
        (Func1::Round | Func1::Floor | Func1::Ceil, Value::Int(i)) => Value::Int(i),
        (Func1::Round, Value::Float(x)) => Value::Float(x.round()),
        (Func1::Floor, Value::Float(x)) => Value::Float(x.floor()),
        (Func1::Ceil, Value::Float(x)) => Value::Float(x.ceil()),
        (f, other) => return Err(mismatch(&format!("{f:?}").to_lowercase(), &other)),
    })
}

/// `round(x, n)`.
pub(crate) fn round_digits(x: Value, n: Value) -> Result<Value, EvalError> {
    match (x, n) {
        (Value::Null, _) | (_, Value::Null) => Ok(Value::Null),
        (Value::Int(i), Value::Int(n)) => round_int(i, n).map(Value::Int),
        (Value::Float(x), Value::Int(n)) => Ok(Value::Float(round_decimal(x, n))),
        (Value::Int(_) | Value::Float(_), other) | (other, _) => Err(mismatch("round", &other)),
    }
}

/// Rounds an int to `n` decimal digits: unchanged for `n >= 0`, else to a
/// multiple of `10^-n`, half away from zero.
fn round_int(i: i64, n: i64) -> Result<i64, EvalError> {
    if n >= 0 {
        return Ok(i);
    }
    let k = n.unsigned_abs();
    if k > 19 {
        return Ok(0); // |i| < 0.5e20
    }
    let p = 10i128.pow(u32::try_from(k).unwrap_or(19));
    let q = i128::from(i);
    let r = (q.abs() + p / 2) / p * p;
    i64::try_from(if q < 0 { -r } else { r }).map_err(|_| EvalError::new("integer overflow"))
}

/// Rounds a float to `n` decimal digits (negative `n` rounds left of the
/// point), half away from zero, working on the shortest decimal text of `x`
/// (the digits lockstep prints): `round(2.675, 2)` is `2.68`, although the
/// double nearest 2.675 is slightly below it. The result is the double
/// nearest the rounded decimal.
pub(crate) fn round_decimal(x: f64, n: i64) -> f64 {
    if !x.is_finite() || x == 0.0 {
        return x;
    }
    let mut buf = ryu::Buffer::new();
    let s = buf.format_finite(x.abs());
    let (mant, exp) = match s.find('e') {
        Some(i) => (&s[..i], s[i + 1..].parse::<i64>().unwrap_or(0)),
        None => (s, 0),
    };
    let (ip, fp) = match mant.find('.') {
        Some(i) => (&mant[..i], &mant[i + 1..]),
        None => (mant, ""),
    };
    // x = 0.d1 d2 d3 ... × 10^e
    let mut digits: Vec<u8> = ip.bytes().chain(fp.bytes()).collect();
    let mut e = i64::try_from(ip.len()).unwrap_or(0) + exp;
    let lead = digits.iter().take_while(|&&d| d == b'0').count();
    digits.drain(..lead);
    e -= i64::try_from(lead).unwrap_or(0);
    let keep = e.saturating_add(n);
    if keep >= i64::try_from(digits.len()).unwrap_or(i64::MAX) {
        return x;
    }
    let Ok(keep) = usize::try_from(keep) else {
        return 0.0f64.copysign(x);
    };
    let up = digits.get(keep).is_some_and(|&d| d >= b'5');
    digits.truncate(keep);
    if up {
        let mut i = keep;
        loop {
            if i == 0 {
                digits.insert(0, b'1');
                e += 1;
                break;
            }
            i -= 1;
            if digits[i] == b'9' {
                digits[i] = b'0';
            } else {
                digits[i] += 1;
                break;
            }
        }
    }
    if digits.is_empty() {
        return 0.0f64.copysign(x);
    }
    let text: String = digits.iter().map(|&d| char::from(d)).collect();
    format!("0.{text}e{e}")
        .parse::<f64>()
        .unwrap_or(x)
        .copysign(x)
}

/// `substr(s, start [, len])` with PostgreSQL's semantics: characters at
/// 1-based positions `start .. start + len` that exist (so a `start` below 1
/// shortens the result); a negative `len` is an error.
pub(crate) fn substr(s: Value, start: Value, len: Option<Value>) -> Result<Value, EvalError> {
    let (s, start) = match (s, start) {
        (Value::Null, _) | (_, Value::Null) => return Ok(Value::Null),
        (Value::Str(s), Value::Int(st)) => (s, st),
        (Value::Str(_), other) | (other, _) => return Err(mismatch("substr", &other)),
    };
    let len = match len {
        None => None,
        Some(Value::Null) => return Ok(Value::Null),
        Some(Value::Int(l)) if l < 0 => {
            return Err(EvalError::new("negative substring length not allowed"))
        }
        Some(Value::Int(l)) => Some(l),
        Some(other) => return Err(mismatch("substr", &other)),
    };
    let from = i128::from(start.max(1));
    let skip = usize::try_from(from - 1).unwrap_or(usize::MAX);
    let take = len.map(|l| {
        let end = i128::from(start) + i128::from(l);
        usize::try_from((end - from).max(0)).unwrap_or(usize::MAX)
    });
    let begin = s.char_indices().nth(skip).map_or(s.len(), |(i, _)| i);
    let end = match take {
        None => s.len(),
        Some(k) => s[begin..]
            .char_indices()
            .nth(k)
            .map_or(s.len(), |(i, _)| begin + i),
    };
    if begin == 0 && end == s.len() {
        return Ok(Value::Str(s));
    }
    Ok(Value::Str(Text::from(&s[begin..end])))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sub(s: &str, start: i64, len: Option<i64>) -> Result<Value, EvalError> {
        substr(Value::str(s), Value::Int(start), len.map(Value::Int))
    }

    #[test]
    fn substr_follows_postgres() {
        assert_eq!(sub("Hello", 2, Some(3)).unwrap(), Value::str("ell"));
        assert_eq!(sub("Hello", 0, Some(2)).unwrap(), Value::str("H"));
        assert_eq!(sub("Hello", -5, Some(2)).unwrap(), Value::str(""));
        assert_eq!(sub("Hello", 3, None).unwrap(), Value::str("llo"));
        assert_eq!(sub("Hello", 9, None).unwrap(), Value::str(""));
        assert_eq!(sub("héllo", 2, Some(1)).unwrap(), Value::str("é"));
        assert_eq!(
            sub("Hello", i64::MIN, Some(i64::MAX)).unwrap(),
            Value::str("")
        );
        assert_eq!(
            sub("Hello", i64::MAX, Some(i64::MAX)).unwrap(),
            Value::str("")
        );
        assert_eq!(
            sub("Hello", 1, Some(i64::MAX)).unwrap(),
            Value::str("Hello")
        );
        assert!(sub("Hello", 1, Some(-1)).is_err());
    }

    #[test]
    fn rounding() {
        assert_eq!(round_decimal(2.675, 2), 2.68);
        assert_eq!(round_decimal(-2.675, 2), -2.68);
        assert_eq!(round_decimal(2.5, 0), 3.0);
        assert_eq!(round_decimal(0.049, 1), 0.0);
        assert_eq!(round_decimal(0.05, 1), 0.1);
        assert_eq!(round_decimal(9.995, 2), 10.0);
        assert_eq!(round_decimal(1234.5, -2), 1200.0);
        assert_eq!(round_decimal(1250.0, -2), 1300.0);
        assert_eq!(round_decimal(1.5e-7, 7), 2e-7);
        assert_eq!(round_decimal(1e300, 2), 1e300);
        assert_eq!(round_decimal(5e307, -308), 1e308);
        assert_eq!(round_decimal(0.1, i64::MAX), 0.1);
        assert_eq!(round_decimal(0.1, i64::MIN), 0.0);
        assert!(round_decimal(-0.1, 0).is_sign_negative());
        assert!(round_decimal(f64::NAN, 1).is_nan());
        assert_eq!(round_int(1234, -2), Ok(1200));
        assert_eq!(round_int(-1250, -2), Ok(-1300));
        assert_eq!(round_int(7, 3), Ok(7));
        assert_eq!(round_int(i64::MAX, -30), Ok(0));
        assert_eq!(round_int(i64::MAX, i64::MIN), Ok(0));
        assert!(round_int(i64::MAX, -1).is_err());
        assert!(round_int(i64::MAX, -19).is_err());
        assert_eq!(round_int(4_000_000_000_000_000_000, -19), Ok(0));
    }
}

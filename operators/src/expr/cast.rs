//! `CAST(x AS t)` / `x::t`: the type names accepted, which conversions exist
//! (checked at compile time) and how each converts a value (which may fail at
//! run time, sending the record to the node's `errors` output).

use crate::value::Text;

use sqlparser::ast::{DataType as D, ExactNumberInfo as N, ObjectNamePart};

use super::eval::mismatch;
use super::EvalError;
use crate::encode::{float_text, value_text};
use crate::json::{canonical, canonicalize, write_es_number};
use crate::timefmt::{format_rfc3339, parse_rfc3339};
use crate::value::{Type, Value};

/// One conversion between lockstep types.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum CastOp {
    Identity,
    IntToFloat,
    FloatToInt,
    BoolToInt,
    IntToBool,
    StrToInt,
    StrToFloat,
    StrToBool,
    StrToTs,
    StrToJson,
    IntToTs,
    TsToInt,
    TsToStr,
    /// int, float or bool to its text.
    ToStr,
    JsonToStr,
    IntToJson,
    FloatToJson,
    BoolToJson,
}

const TYPES_HELP: &str = "lockstep types are bool, int, float, string, timestamp and json \
     (PostgreSQL names such as integer, bigint, double precision, text, varchar and jsonb \
     are accepted, without a length or precision)";

/// A type name as a lockstep type, by its lowercase name.
fn type_by_name(name: &str) -> Option<Type> {
    Some(match name {
        "bool" | "boolean" => Type::Bool,
        "int" | "integer" | "bigint" | "int8" | "int4" | "int2" | "smallint" => Type::Int,
        "float" | "double" | "float8" | "float4" | "real" | "numeric" | "decimal" => Type::Float,
        "string" | "text" | "varchar" => Type::String,
        "timestamp" | "timestamptz" => Type::Timestamp,
        "json" | "jsonb" => Type::Json,
        _ => return None,
    })
}

/// The lockstep type a SQL type name stands for.
///
/// # Errors
/// A message naming the type when lockstep has no such type.
pub(crate) fn type_from_ast(dt: &D) -> Result<Type, String> {
    let t = match dt {
        D::Bool | D::Boolean => Some(Type::Bool),
        D::Int(None)
        | D::Integer(None)
        | D::BigInt(None)
        | D::Int2(None)
        | D::Int4(None)
        | D::Int8(None)
        | D::SmallInt(None) => Some(Type::Int),
        D::Float(N::None)
        | D::Double(N::None)
        | D::DoublePrecision
        | D::Float4
        | D::Float8
        | D::Real
        | D::Numeric(N::None)
        | D::Decimal(N::None)
        | D::Dec(N::None) => Some(Type::Float),
        D::String(None)
        | D::Text
        | D::Varchar(None)
        | D::CharVarying(None)
        | D::CharacterVarying(None) => Some(Type::String),
        D::Timestamp(None, _) => Some(Type::Timestamp),
        D::JSON | D::JSONB => Some(Type::Json),
        D::Custom(name, mods) if mods.is_empty() => match name.0.as_slice() {
            [ObjectNamePart::Identifier(id)] => type_by_name(&id.value.to_lowercase()),
            _ => None,
        },
        _ => None,
    };
    t.ok_or_else(|| format!("unsupported type {dt}: {TYPES_HELP}"))
}

/// The conversion from `from` to `to`, if `CAST` allows it.
pub(crate) fn lookup(from: Type, to: Type) -> Option<CastOp> {
    use Type::{Bool, Float, Int, Json, String, Timestamp};
    Some(match (from, to) {
        (a, b) if a == b => CastOp::Identity,
        (Int, Float) => CastOp::IntToFloat,
        (Float, Int) => CastOp::FloatToInt,
        (Bool, Int) => CastOp::BoolToInt,
        (Int, Bool) => CastOp::IntToBool,
        (String, Int) => CastOp::StrToInt,
        (String, Float) => CastOp::StrToFloat,
        (String, Bool) => CastOp::StrToBool,
        (String, Timestamp) => CastOp::StrToTs,
        (String, Json) => CastOp::StrToJson,
        (Int, Timestamp) => CastOp::IntToTs,
        (Timestamp, Int) => CastOp::TsToInt,
        (Timestamp, String) => CastOp::TsToStr,
        (Int | Float | Bool, String) => CastOp::ToStr,
        (Json, String) => CastOp::JsonToStr,
        (Int, Json) => CastOp::IntToJson,
        (Float, Json) => CastOp::FloatToJson,
        (Bool, Json) => CastOp::BoolToJson,
        _ => return None,
    })
}

/// A hint for a cast that does not exist.
pub(crate) fn no_cast_hint(from: Type, to: Type) -> &'static str {
    match (from, to) {
        (Type::Timestamp, Type::Float) | (Type::Float, Type::Timestamp) => {
            " (cast through int: timestamps are int milliseconds)"
        }
        (Type::Timestamp, Type::Json) => " (cast to int or string first)",
        (Type::Json, _) => " (json converts to string only)",
        (Type::Bool, Type::Float) | (Type::Float, Type::Bool) => " (cast through int)",
        _ => "",
    }
}

/// `'text'` for messages: quotes doubled, cut after 60 characters.
pub(crate) fn quote(s: &str) -> String {
    let mut out = String::from("'");
    for (i, c) in s.chars().enumerate() {
        if i == 60 {
            out.push_str("...");
            break;
        }
        if c == '\'' {
            out.push('\'');
        }
        out.push(c);
    }
    out.push('\'');
    out
}

fn cannot(s: &str, to: &str) -> EvalError {
    EvalError::new(format!("cannot cast {} to {to}", quote(s)))
}

/// A float as text: as the jsonl encoder writes it (`1.0`, `1e300`), except
/// NaN and the infinities, which have no JSON form: `NaN`, `Infinity`,
/// `-Infinity` (the spellings `CAST(... AS float)` reads back).
pub(crate) fn float_string(f: f64) -> String {
    if f.is_nan() {
        "NaN".into()
    } else if f.is_infinite() {
        if f > 0.0 { "Infinity" } else { "-Infinity" }.into()
    } else {
        float_text(f)
    }
}

#[allow(clippy::cast_possible_truncation)] // range-checked just before
fn float_to_int(f: f64) -> Result<Value, EvalError> {
    let r = f.round(); // half away from zero
    if r.is_nan() || !(-9_223_372_036_854_775_808.0..9_223_372_036_854_775_808.0).contains(&r) {
        return Err(EvalError::new(format!(
            "cannot cast {} to int (out of range)",
            float_string(f)
        )));
    }
    Ok(Value::Int(r as i64))
}

fn str_to_float(s: &str) -> Result<Value, EvalError> {
    let t = s.trim_ascii();
    match t.parse::<f64>() {
        Ok(f) if f.is_infinite() && !t.to_ascii_lowercase().contains("inf") => Err(EvalError::new(
            format!("cannot cast {} to float (out of range)", quote(s)),
        )),
        Ok(f) => Ok(Value::Float(f)),
        Err(_) => Err(cannot(s, "float")),
    }
}

fn str_to_bool(s: &str) -> Result<Value, EvalError> {
    const WORDS: [(&str, bool); 12] = [
        ("true", true),
        ("false", false),
        ("t", true),
        ("f", false),
        ("yes", true),
        ("no", false),
        ("y", true),
        ("n", false),
        ("on", true),
        ("off", false),
        ("1", true),
        ("0", false),
    ];
    let t = s.trim_ascii();
    WORDS
        .iter()
        .find(|(w, _)| w.eq_ignore_ascii_case(t))
        .map(|(_, b)| Value::Bool(*b))
        .ok_or_else(|| cannot(s, "bool"))
}

fn str_to_ts(s: &str) -> Result<Value, EvalError> {
    let t = s.trim_ascii();
    if let Ok(ms) = t.parse::<i64>() {
        return Ok(Value::Ts(ms));
    }
    parse_rfc3339(t).map(Value::Ts).ok_or_else(|| {
        EvalError::new(format!(
            "cannot cast {} to timestamp (expected integer milliseconds or RFC 3339 such as 2023-11-14T22:13:20Z)",
            quote(s)
        ))
    })
}

/// Applies a conversion; NULL stays NULL.
pub(crate) fn apply(op: CastOp, v: Value) -> Result<Value, EvalError> {
    use Value::{Bool, Float, Int, Json, Null, Str, Ts};
    Ok(match (op, v) {
        (_, Null) => Null,
        (CastOp::Identity, v) => v,
        #[allow(clippy::cast_precision_loss)]
        (CastOp::IntToFloat, Int(i)) => Float(i as f64),
        (CastOp::FloatToInt, Float(f)) => return float_to_int(f),
        (CastOp::BoolToInt, Bool(b)) => Int(i64::from(b)),
        (CastOp::IntToBool, Int(i)) => Bool(i != 0),
        (CastOp::StrToInt, Str(s)) => {
            return s
                .trim_ascii()
                .parse::<i64>()
                .map(Int)
                .map_err(|_| cannot(&s, "int"))
        }
        (CastOp::StrToFloat, Str(s)) => return str_to_float(&s),
        (CastOp::StrToBool, Str(s)) => return str_to_bool(&s),
        (CastOp::StrToTs, Str(s)) => return str_to_ts(&s),
        (CastOp::StrToJson, Str(s)) => match canonicalize(&s) {
            Ok(c) => Json(Text::from(c)),
            Err(e) => {
                return Err(EvalError::new(format!(
                    "cannot cast {} to json: {e}",
                    quote(&s)
                )))
            }
        },
        (CastOp::IntToTs, Int(i)) => Ts(i),
        (CastOp::TsToInt, Ts(i)) => Int(i),
        (CastOp::TsToStr, Ts(i)) => match format_rfc3339(i) {
            Some(s) => Str(Text::from(s)),
            None => {
                return Err(EvalError::new(format!(
                    "cannot cast timestamp {i} to string (year outside 0000..9999)"
                )))
            }
        },
        (CastOp::ToStr, Float(f)) => Str(Text::from(float_string(f))),
        (CastOp::ToStr, v @ (Int(_) | Bool(_))) => {
            Str(Text::from(value_text(&v).unwrap_or_default()))
        }
        (CastOp::JsonToStr, Json(s)) => Str(s),
        (CastOp::IntToJson, Int(i)) => Json(Text::from(canonical(&serde_json::Value::from(i)))),
        (CastOp::FloatToJson, Float(f)) if f.is_finite() => {
            let mut s = String::new();
            write_es_number(f, &mut s);
            Json(Text::from(s))
        }
        (CastOp::FloatToJson, Float(f)) => {
            return Err(EvalError::new(format!(
                "cannot cast {} to json (JSON has no NaN or infinity)",
                float_string(f)
            )))
        }
        (CastOp::BoolToJson, Bool(b)) => Json(Text::from(if b { "true" } else { "false" })),
        (_, other) => return Err(mismatch("CAST", &other)),
    })
}

/// The conversion `||` applies to a non-string operand of type `t`.
pub(crate) fn to_string_op(t: Type) -> CastOp {
    match t {
        Type::String => CastOp::Identity,
        Type::Timestamp => CastOp::TsToStr,
        Type::Json => CastOp::JsonToStr,
        Type::Int | Type::Float | Type::Bool => CastOp::ToStr,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_pair_is_decided() {
        for a in Type::ALL {
            for b in Type::ALL {
                let op = lookup(a, b);
                assert_eq!(op == Some(CastOp::Identity), a == b);
            }
            // Everything converts to string.
            assert!(lookup(a, Type::String).is_some());
        }
    }

    #[test]
    fn float_to_int_edges() {
        assert_eq!(float_to_int(2.5).unwrap(), Value::Int(3));
        assert_eq!(float_to_int(-2.5).unwrap(), Value::Int(-3));
        assert_eq!(
            float_to_int(-9.223_372_036_854_776e18).unwrap(),
            Value::Int(i64::MIN)
        );
        assert!(float_to_int(9.223_372_036_854_776e18).is_err());
        assert!(float_to_int(f64::NAN).is_err());
        assert!(float_to_int(f64::NEG_INFINITY).is_err());
    }

    #[test]
    fn int_to_json_is_canonical() {
        let v = apply(CastOp::IntToJson, Value::Int(9_007_199_254_740_993)).unwrap();
        assert_eq!(v, Value::Json(Text::from("9007199254740992")));
        assert_eq!(quote(&"x".repeat(100)).len(), 65);
        assert_eq!(quote("it's"), "'it''s'");
    }
}

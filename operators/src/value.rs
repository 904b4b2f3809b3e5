//! Types, values, schemas and records: the bottom layer every other module uses.
//!
//! A record is a row of [`Value`]s in its edge's schema order; field access is
//! by index. The [`total order`](cmp_total) and the [`key encoding`](encode_key)
//! implement the spec's "Total order" rule, which decides sort order, grouping
//! and join keys.

use std::cmp::Ordering;
use std::fmt;
use std::sync::Arc;

use serde::{Deserialize, Serialize};

/// The type of a field.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub enum Type {
    /// `bool`
    Bool,
    /// `int`: a signed 64-bit integer.
    Int,
    /// `float`: an IEEE 754 double.
    Float,
    /// `string`: UTF-8 text.
    String,
    /// `timestamp`: milliseconds since the Unix epoch, as an i64.
    Timestamp,
    /// `json`: any JSON value, kept as its canonical text (RFC 8785).
    Json,
}

impl Type {
    /// Every type, in the order docs list them.
    pub const ALL: [Type; 6] = [
        Type::Bool,
        Type::Int,
        Type::Float,
        Type::String,
        Type::Timestamp,
        Type::Json,
    ];

    /// The name users write in schemas.
    pub fn name(self) -> &'static str {
        match self {
            Type::Bool => "bool",
            Type::Int => "int",
            Type::Float => "float",
            Type::String => "string",
            Type::Timestamp => "timestamp",
            Type::Json => "json",
        }
    }

    /// Parses a schema type name.
    pub fn parse(name: &str) -> Option<Type> {
        Type::ALL.into_iter().find(|t| t.name() == name)
    }

    /// Whether values of this type are numbers (`int` or `float`).
    pub fn is_numeric(self) -> bool {
        matches!(self, Type::Int | Type::Float)
    }
}

impl fmt::Display for Type {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// The JSON Schema of a type name in a graph's `schema` maps: one of the
/// names [`Type::parse`] accepts, listed from [`Type::ALL`] so the two
/// cannot drift.
impl schemars::JsonSchema for Type {
    fn schema_name() -> std::borrow::Cow<'static, str> {
        "FieldType".into()
    }

    fn json_schema(_: &mut schemars::SchemaGenerator) -> schemars::Schema {
        let names: Vec<&str> = Type::ALL.iter().map(|t| t.name()).collect();
        schemars::json_schema!({
            "description": "A field type: int is i64, float is f64, timestamp is i64 milliseconds since the Unix epoch, json is any JSON value.",
            "type": "string",
            "enum": names,
        })
    }
}

/// The text of a `string` or `json` value. An owned, immutable buffer: a
/// source can adopt a `String`'s buffer without copying it, and nodes move
/// values rather than share them (a fan-out to several consumers copies).
pub type Text = Box<str>;

/// One field's value. Any field may be null.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub enum Value {
    /// SQL NULL.
    Null,
    /// A `bool`.
    Bool(bool),
    /// An `int`.
    Int(i64),
    /// A `float`.
    Float(f64),
    /// A `string`.
    Str(Text),
    /// A `timestamp` in milliseconds since the Unix epoch.
    Ts(i64),
    /// A `json` value as its canonical text.
    Json(Text),
}

impl Value {
    /// Whether this is NULL.
    pub fn is_null(&self) -> bool {
        matches!(self, Value::Null)
    }

    /// A string value.
    pub fn str(s: &str) -> Value {
        Value::Str(Text::from(s))
    }
}

/// Values compare by the spec's total order (see [`cmp_total`]); equality is
/// that order's equality, so `-0.0 == 0.0` and NaN equals NaN.
impl PartialEq for Value {
    fn eq(&self, other: &Self) -> bool {
        cmp_total(self, other) == Ordering::Equal
    }
}
impl Eq for Value {}
impl PartialOrd for Value {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}
impl Ord for Value {
    fn cmp(&self, other: &Self) -> Ordering {
        cmp_total(self, other)
    }
}

/// A float made canonical for ordering and grouping: `-0.0` becomes `0.0` and
/// every NaN becomes one NaN.
pub fn canonical_float(f: f64) -> f64 {
    if f.is_nan() {
        f64::NAN
    } else if f == 0.0 {
        0.0
    } else {
        f
    }
}

fn cmp_float(a: f64, b: f64) -> Ordering {
    canonical_float(a).total_cmp(&canonical_float(b))
}

/// Compares an integer with a float exactly (no rounding of the integer).
pub fn cmp_int_float(i: i64, f: f64) -> Ordering {
    if f.is_nan() {
        return Ordering::Less; // NaN sorts above every number
    }
    if f >= 9_223_372_036_854_775_808.0 {
        return Ordering::Less;
    }
    if f < -9_223_372_036_854_775_808.0 {
        return Ordering::Greater;
    }
    let t = f.trunc();
    // `t` is within i64 range here, so the cast is exact.
    #[allow(clippy::cast_possible_truncation)]
    let ti = t as i64;
    match i.cmp(&ti) {
        Ordering::Equal => {
            let frac = f - t;
            if frac > 0.0 {
                Ordering::Less
            } else if frac < 0.0 {
                Ordering::Greater
            } else {
                Ordering::Equal
            }
        }
        o => o,
    }
}

fn rank(v: &Value) -> u8 {
    match v {
        Value::Null => 0,
        Value::Bool(_) => 1,
        Value::Int(_) | Value::Float(_) => 2,
        Value::Ts(_) => 3,
        Value::Str(_) => 4,
        Value::Json(_) => 5,
    }
}

/// The spec's total order: null first; `false < true`; ints, timestamps and
/// floats numerically (floats by IEEE 754 totalOrder with `-0.0` read as `0.0`
/// and every NaN as one NaN, above every number); strings by UTF-8 bytes; json
/// by its canonical text. Values of different types (which a typed schema never
/// puts in one field) order by type.
pub fn cmp_total(a: &Value, b: &Value) -> Ordering {
    match (a, b) {
        (Value::Null, Value::Null) => Ordering::Equal,
        (Value::Bool(x), Value::Bool(y)) => x.cmp(y),
        (Value::Int(x), Value::Int(y)) | (Value::Ts(x), Value::Ts(y)) => x.cmp(y),
        (Value::Float(x), Value::Float(y)) => cmp_float(*x, *y),
        (Value::Int(x), Value::Float(y)) => cmp_int_float(*x, *y),
        (Value::Float(x), Value::Int(y)) => cmp_int_float(*y, *x).reverse(),
        (Value::Str(x), Value::Str(y)) | (Value::Json(x), Value::Json(y)) => {
            x.as_bytes().cmp(y.as_bytes())
        }
        _ => rank(a).cmp(&rank(b)),
    }
}

/// Appends the order-preserving ("memcomparable") encoding of `v` to `out`:
/// comparing two encodings as bytes gives [`cmp_total`]'s order for values of
/// one type, so a composite key is the concatenation of its fields' encodings.
///
/// Layout: `0x00` for null; otherwise `0x01` then: bool as one byte; int and
/// timestamp as 8 big-endian bytes with the sign bit flipped; float as its
/// canonical bits, sign-adjusted so that bytes order as totalOrder; string and
/// json as their bytes with `0x00` written `0x00 0xFF`, ended by `0x00 0x00`.
pub fn encode_key(v: &Value, out: &mut Vec<u8>) {
    match v {
        Value::Null => out.push(0),
        Value::Bool(b) => out.extend_from_slice(&[1, u8::from(*b)]),
        Value::Int(i) | Value::Ts(i) => {
            out.push(1);
            out.extend_from_slice(&((*i as u64) ^ (1 << 63)).to_be_bytes());
        }
        Value::Float(f) => {
            out.push(1);
            let bits = canonical_float(*f).to_bits();
            let bits = if bits >> 63 == 1 {
                !bits
            } else {
                bits ^ (1 << 63)
            };
            out.extend_from_slice(&bits.to_be_bytes());
        }
        Value::Str(s) | Value::Json(s) => {
            out.push(1);
            for &b in s.as_bytes() {
                out.push(b);
                if b == 0 {
                    out.push(0xFF);
                }
            }
            out.extend_from_slice(&[0, 0]);
        }
    }
}

/// One named, typed field of a schema.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Field {
    /// The field's name.
    pub name: String,
    /// The field's type.
    pub ty: Type,
}

/// An ordered list of fields; cheap to clone.
#[derive(Clone, Debug, PartialEq, Eq, Default)]
pub struct Schema(Arc<Vec<Field>>);

impl Schema {
    /// A schema from `(name, type)` pairs, in order.
    pub fn new<I, S>(fields: I) -> Schema
    where
        I: IntoIterator<Item = (S, Type)>,
        S: Into<String>,
    {
        Schema(Arc::new(
            fields
                .into_iter()
                .map(|(n, ty)| Field { name: n.into(), ty })
                .collect(),
        ))
    }

    /// The fields, in order.
    pub fn fields(&self) -> &[Field] {
        &self.0
    }

    /// How many fields.
    pub fn len(&self) -> usize {
        self.0.len()
    }

    /// Whether there are no fields.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// The index of a field by name.
    pub fn index_of(&self, name: &str) -> Option<usize> {
        self.0.iter().position(|f| f.name == name)
    }

    /// The field names, in order.
    pub fn names(&self) -> impl Iterator<Item = &str> {
        self.0.iter().map(|f| f.name.as_str())
    }

    /// `{a: int, b: string}`, for messages.
    pub fn describe(&self) -> String {
        let parts: Vec<String> = self
            .0
            .iter()
            .map(|f| format!("{}: {}", f.name, f.ty))
            .collect();
        format!("{{{}}}", parts.join(", "))
    }
}

/// A row of values in schema order.
pub type Row = Vec<Value>;

/// A record as it travels between operators: its event time and its row. Its
/// epoch is the timely timestamp it travels under.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Rec {
    /// Event time in milliseconds (or the record number for `epoch_records`
    /// jobs, which have no event-time operators).
    pub time: i64,
    /// The values, in the edge's schema order.
    pub row: Row,
}

/// The schema of every `errors` output: which node or source rejected the
/// record, why, the raw input (a line of the input, or the rejected record as a
/// JSON line), and for sources the partition and 1-based line.
pub fn errors_schema() -> Schema {
    Schema::new([
        ("node", Type::String),
        ("reason", Type::String),
        ("raw", Type::String),
        ("partition", Type::Int),
        ("line", Type::Int),
    ])
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(v: &Value) -> Vec<u8> {
        let mut out = Vec::new();
        encode_key(v, &mut out);
        out
    }

    #[test]
    fn floats_order_by_total_order_with_zero_and_nan_canonical() {
        let vals = [
            f64::NEG_INFINITY,
            -1.5,
            -0.0,
            0.0,
            1e-300,
            2.0,
            f64::INFINITY,
            f64::NAN,
        ];
        for w in vals.windows(2) {
            let (a, b) = (Value::Float(w[0]), Value::Float(w[1]));
            assert!(cmp_total(&a, &b) != Ordering::Greater, "{a:?} {b:?}");
            assert_eq!(cmp_total(&a, &b), key(&a).cmp(&key(&b)), "{a:?} {b:?}");
        }
        assert_eq!(Value::Float(-0.0), Value::Float(0.0));
        assert_eq!(Value::Float(f64::NAN), Value::Float(-f64::NAN));
        assert_eq!(key(&Value::Float(-0.0)), key(&Value::Float(0.0)));
    }

    #[test]
    fn key_encoding_orders_like_total_order() {
        let ints = [i64::MIN, -1, 0, 1, i64::MAX];
        for a in ints {
            for b in ints {
                let (x, y) = (Value::Int(a), Value::Int(b));
                assert_eq!(cmp_total(&x, &y), key(&x).cmp(&key(&y)));
            }
        }
        let strs = ["", "\0", "\0a", "a", "a\0", "ab", "b", "é"];
        for a in strs {
            for b in strs {
                let (x, y) = (Value::str(a), Value::str(b));
                assert_eq!(cmp_total(&x, &y), key(&x).cmp(&key(&y)), "{a:?} {b:?}");
            }
        }
        // Composite keys: ("a", 2) < ("ab", 1) because "a" < "ab".
        let mut k1 = key(&Value::str("a"));
        k1.extend(key(&Value::Int(2)));
        let mut k2 = key(&Value::str("ab"));
        k2.extend(key(&Value::Int(1)));
        assert!(k1 < k2);
        assert!(key(&Value::Null) < key(&Value::Int(i64::MIN)));
        assert!(key(&Value::Bool(false)) < key(&Value::Bool(true)));
    }

    #[test]
    fn int_float_comparison_is_exact() {
        assert_eq!(
            cmp_int_float(i64::MAX, 9.223_372_036_854_776e18),
            Ordering::Less
        );
        assert_eq!(cmp_int_float(3, 3.0), Ordering::Equal);
        assert_eq!(cmp_int_float(3, 3.5), Ordering::Less);
        assert_eq!(cmp_int_float(-3, -3.5), Ordering::Greater);
        assert_eq!(cmp_int_float(1, f64::NAN), Ordering::Less);
        assert_eq!(
            cmp_int_float(i64::MIN, f64::NEG_INFINITY),
            Ordering::Greater
        );
    }
}

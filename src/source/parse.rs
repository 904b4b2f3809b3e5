//! Parsing input records into typed rows: JSON lines and CSV, driven by the
//! source's schema (the spec's "Parsing" rules).

use lockstep_operators::value::Text;
use std::fmt;

use serde::de::{self, DeserializeSeed, Deserializer, MapAccess, Visitor};

use lockstep_operators::json;
use lockstep_operators::timefmt::parse_rfc3339;
use lockstep_operators::value::{Row, Schema, Type, Value};

/// Parses one JSON line into a row of `schema`. A missing field is null;
/// fields not in the schema are ignored; duplicate keys are an error.
///
/// # Errors
/// The reason the line is not a record of this schema.
pub fn parse_jsonl(line: &str, schema: &Schema) -> Result<Row, String> {
    let mut de = serde_json::Deserializer::from_str(line);
    let row = RowSeed { schema }
        .deserialize(&mut de)
        .map_err(|e| tidy(&e))?;
    de.end().map_err(|e| tidy(&e))?;
    Ok(row)
}

fn tidy(e: &serde_json::Error) -> String {
    let msg = lockstep_operators::config::json_error_text(e);
    match e.classify() {
        serde_json::error::Category::Syntax | serde_json::error::Category::Eof => {
            format!("invalid JSON at column {}: {msg}", e.column())
        }
        _ => msg,
    }
}

struct RowSeed<'a> {
    schema: &'a Schema,
}

impl<'de> DeserializeSeed<'de> for RowSeed<'_> {
    type Value = Row;
    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<Row, D::Error> {
        d.deserialize_any(RowVisitor {
            schema: self.schema,
        })
    }
}

struct RowVisitor<'a> {
    schema: &'a Schema,
}

impl<'de> Visitor<'de> for RowVisitor<'_> {
    type Value = Row;
    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a JSON object")
    }
    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Row, A::Error> {
        let n = self.schema.len();
        // Filled by construction, not by cloning a Null n times.
        let mut row: Row = (0..n).map(|_| Value::Null).collect();
        let mut seen = Seen::new(n);
        let mut other_keys: Vec<String> = Vec::new();
        // Objects usually list their keys in schema order: try the field after
        // the last one matched before scanning.
        let mut next = 0;
        while let Some(key) = map.next_key_seed(KeySeed {
            schema: self.schema,
            guess: next,
        })? {
            match key {
                Key::Field(i) => {
                    if seen.insert(i) {
                        return Err(de::Error::custom(format_args!(
                            "duplicate key \"{}\"",
                            self.schema.fields()[i].name
                        )));
                    }
                    next = i + 1;
                    let f = &self.schema.fields()[i];
                    row[i] = map.next_value_seed(ValueSeed {
                        ty: f.ty,
                        name: &f.name,
                    })?;
                }
                Key::Other(name) => {
                    if other_keys.contains(&name) {
                        return Err(de::Error::custom(format_args!("duplicate key \"{name}\"")));
                    }
                    other_keys.push(name);
                    map.next_value::<de::IgnoredAny>()?;
                }
            }
        }
        Ok(row)
    }
}

/// Which schema fields a record has set: a bit mask, or a vector for wide
/// schemas.
enum Seen {
    Bits(u64),
    Wide(Vec<bool>),
}

impl Seen {
    fn new(n: usize) -> Seen {
        if n <= 64 {
            Seen::Bits(0)
        } else {
            Seen::Wide(vec![false; n])
        }
    }

    /// Marks field `i`; returns whether it was already marked.
    fn insert(&mut self, i: usize) -> bool {
        match self {
            Seen::Bits(b) => {
                let bit = 1u64 << i;
                let was = *b & bit != 0;
                *b |= bit;
                was
            }
            Seen::Wide(v) => std::mem::replace(&mut v[i], true),
        }
    }
}

enum Key {
    Field(usize),
    Other(String),
}

struct KeySeed<'a> {
    schema: &'a Schema,
    /// The field this key most likely is.
    guess: usize,
}

impl<'de> DeserializeSeed<'de> for KeySeed<'_> {
    type Value = Key;
    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<Key, D::Error> {
        d.deserialize_str(self)
    }
}

impl<'de> Visitor<'de> for KeySeed<'_> {
    type Value = Key;
    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a field name")
    }
    fn visit_str<E: de::Error>(self, v: &str) -> Result<Key, E> {
        if self
            .schema
            .fields()
            .get(self.guess)
            .is_some_and(|f| f.name == v)
        {
            return Ok(Key::Field(self.guess));
        }
        Ok(match self.schema.index_of(v) {
            Some(i) => Key::Field(i),
            None => Key::Other(v.to_string()),
        })
    }
}

struct ValueSeed<'a> {
    ty: Type,
    name: &'a str,
}

impl ValueSeed<'_> {
    fn wrong<E: de::Error>(&self, got: &dyn fmt::Display) -> E {
        E::custom(format_args!(
            "field \"{}\" is {}, but got {got}",
            self.name, self.ty
        ))
    }
}

impl<'de> DeserializeSeed<'de> for ValueSeed<'_> {
    type Value = Value;
    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<Value, D::Error> {
        if self.ty == Type::Json {
            let json::StrictJson(v) = serde::Deserialize::deserialize(d)?;
            return Ok(if v.is_null() {
                Value::Null
            } else {
                Value::Json(Text::from(json::canonical(&v)))
            });
        }
        d.deserialize_any(self)
    }
}

impl<'de> Visitor<'de> for ValueSeed<'_> {
    type Value = Value;
    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "a {} for field \"{}\"", self.ty, self.name)
    }
    fn visit_unit<E: de::Error>(self) -> Result<Value, E> {
        Ok(Value::Null)
    }
    fn visit_none<E: de::Error>(self) -> Result<Value, E> {
        Ok(Value::Null)
    }
    fn visit_bool<E: de::Error>(self, v: bool) -> Result<Value, E> {
        match self.ty {
            Type::Bool => Ok(Value::Bool(v)),
            _ => Err(self.wrong(&v)),
        }
    }
    fn visit_i64<E: de::Error>(self, v: i64) -> Result<Value, E> {
        match self.ty {
            Type::Int => Ok(Value::Int(v)),
            Type::Timestamp => Ok(Value::Ts(v)),
            #[allow(clippy::cast_precision_loss)]
            Type::Float => Ok(Value::Float(v as f64)),
            _ => Err(self.wrong(&v)),
        }
    }
    fn visit_u64<E: de::Error>(self, v: u64) -> Result<Value, E> {
        match (self.ty, i64::try_from(v)) {
            (Type::Int | Type::Timestamp, Ok(i)) => self.visit_i64(i),
            (Type::Int | Type::Timestamp, Err(_)) => Err(E::custom(format_args!(
                "field \"{}\": {v} is out of range for an int (64-bit)",
                self.name
            ))),
            #[allow(clippy::cast_precision_loss)]
            (Type::Float, _) => Ok(Value::Float(v as f64)),
            _ => Err(self.wrong(&v)),
        }
    }
    fn visit_f64<E: de::Error>(self, v: f64) -> Result<Value, E> {
        match self.ty {
            Type::Float => Ok(Value::Float(v)),
            // serde_json reads the integer literal `-0` as the float -0.0 (and
            // cannot tell it from `-0.0`): both are 0.
            Type::Int if v == 0.0 && v.is_sign_negative() => Ok(Value::Int(0)),
            Type::Timestamp if v == 0.0 && v.is_sign_negative() => Ok(Value::Ts(0)),
            Type::Int | Type::Timestamp if v.fract() == 0.0 && v.abs() >= 9.2e18 => {
                Err(E::custom(format_args!(
                    "field \"{}\": {v} is out of range for an int (64-bit)",
                    self.name
                )))
            }
            Type::Int | Type::Timestamp => Err(E::custom(format_args!(
                "field \"{}\" is {}, but got the fractional number {v}",
                self.name, self.ty
            ))),
            _ => Err(self.wrong(&v)),
        }
    }
    fn visit_str<E: de::Error>(self, v: &str) -> Result<Value, E> {
        match self.ty {
            Type::String => Ok(Value::Str(Text::from(v))),
            Type::Timestamp => parse_rfc3339(v).map(Value::Ts).ok_or_else(|| {
                E::custom(format_args!(
                    "field \"{}\": \"{v}\" is not an RFC 3339 timestamp or integer milliseconds",
                    self.name
                ))
            }),
            _ => Err(self.wrong(&format_args!("the string \"{v}\""))),
        }
    }
    fn visit_seq<A: de::SeqAccess<'de>>(self, _seq: A) -> Result<Value, A::Error> {
        Err(self.wrong(&"an array"))
    }
    fn visit_map<A: MapAccess<'de>>(self, _map: A) -> Result<Value, A::Error> {
        Err(self.wrong(&"an object"))
    }
}

/// Parses one CSV field's text as a value of `ty`. `quoted` fields are never
/// null; an empty unquoted field is.
///
/// # Errors
/// Why the text is not a value of `ty`.
pub fn parse_csv_value(text: &str, quoted: bool, ty: Type, name: &str) -> Result<Value, String> {
    if text.is_empty() && !quoted {
        return Ok(Value::Null);
    }
    let bad = || format!("field \"{name}\" is {ty}, but got \"{text}\"");
    match ty {
        Type::String => Ok(Value::Str(Text::from(text))),
        Type::Int => text.parse::<i64>().map(Value::Int).map_err(|_| bad()),
        Type::Float => match text.parse::<f64>() {
            // As in JSON input, a finite number too large for a double is an
            // error; "inf", "infinity" and "NaN" are read as such.
            Ok(f)
                if f.is_infinite()
                    && !text
                        .trim_start_matches(['+', '-'])
                        .to_ascii_lowercase()
                        .starts_with("inf") =>
            {
                Err(format!(
                    "field \"{name}\": {text} is out of range for a float"
                ))
            }
            Ok(f) => Ok(Value::Float(f)),
            Err(_) => Err(bad()),
        },
        Type::Bool => match text {
            "true" => Ok(Value::Bool(true)),
            "false" => Ok(Value::Bool(false)),
            _ => Err(bad()),
        },
        Type::Timestamp => text
            .parse::<i64>()
            .ok()
            .or_else(|| parse_rfc3339(text))
            .map(Value::Ts)
            .ok_or_else(bad),
        // JSON `null` is SQL NULL, as in JSON lines input.
        Type::Json => json::canonicalize(text)
            .map(|c| {
                if c == "null" {
                    Value::Null
                } else {
                    Value::Json(Text::from(c))
                }
            })
            .map_err(|e| format!("field \"{name}\" is json, but \"{text}\" does not parse: {e}")),
    }
}

/// Splits one CSV record (RFC 4180, without its line end) into fields, each
/// with whether it was quoted.
///
/// # Errors
/// On a stray quote or an unterminated quoted field.
pub fn split_csv(record: &str) -> Result<Vec<(String, bool)>, String> {
    let mut fields = Vec::new();
    let mut chars = record.chars().peekable();
    loop {
        let mut field = String::new();
        let mut quoted = false;
        if chars.peek() == Some(&'"') {
            quoted = true;
            chars.next();
            loop {
                match chars.next() {
                    Some('"') if chars.peek() == Some(&'"') => {
                        chars.next();
                        field.push('"');
                    }
                    Some('"') => break,
                    Some(c) => field.push(c),
                    None => return Err("unterminated quoted field".to_string()),
                }
            }
            match chars.peek() {
                None | Some(',') => {}
                Some(c) => return Err(format!("unexpected {c:?} after a quoted field")),
            }
        } else {
            while let Some(&c) = chars.peek() {
                if c == ',' {
                    break;
                }
                if c == '"' {
                    return Err("a quote inside an unquoted field (quote the whole field and double the quote)".to_string());
                }
                field.push(c);
                chars.next();
            }
        }
        fields.push((field, quoted));
        match chars.next() {
            Some(',') => {}
            _ => return Ok(fields),
        }
    }
}

/// Whether a partial CSV record ends inside a quoted field (so the next line
/// continues it).
///
/// Only a quote at the start of a field opens a quoted field (RFC 4180); a
/// stray quote inside an unquoted field does not, so it cannot swallow the
/// lines after it (the record is rejected when it is split).
pub fn csv_open_quote(text: &str) -> bool {
    let mut quoted = false;
    let mut at_field_start = true;
    let mut bytes = text.bytes().peekable();
    while let Some(b) = bytes.next() {
        if quoted {
            if b == b'"' {
                if bytes.peek() == Some(&b'"') {
                    bytes.next();
                } else {
                    quoted = false;
                }
            }
        } else if b == b',' {
            at_field_start = true;
            continue;
        } else if b == b'"' && at_field_start {
            quoted = true;
        }
        at_field_start = false;
    }
    quoted
}

/// Maps a CSV header onto a schema: for each column, the schema field it fills.
#[derive(Debug, Clone)]
pub struct CsvHeader {
    columns: Vec<Option<usize>>,
}

impl CsvHeader {
    /// Reads a header row.
    ///
    /// # Errors
    /// When the header does not parse or names a column twice.
    pub fn parse(line: &str, schema: &Schema) -> Result<CsvHeader, String> {
        let names = split_csv(line)?;
        let mut columns = Vec::with_capacity(names.len());
        for (i, (n, _)) in names.iter().enumerate() {
            if names[..i].iter().any(|(m, _)| m == n) {
                return Err(format!("the header names column \"{n}\" twice"));
            }
            columns.push(schema.index_of(n));
        }
        Ok(CsvHeader { columns })
    }

    /// Parses one record.
    ///
    /// # Errors
    /// Why the record does not fit the header and schema.
    pub fn parse_record(&self, record: &str, schema: &Schema) -> Result<Row, String> {
        let fields = split_csv(record)?;
        if fields.len() != self.columns.len() {
            return Err(format!(
                "the record has {} fields but the header has {}",
                fields.len(),
                self.columns.len()
            ));
        }
        let mut row: Row = (0..schema.len()).map(|_| Value::Null).collect();
        for ((text, quoted), col) in fields.iter().zip(&self.columns) {
            if let Some(i) = col {
                let f = &schema.fields()[*i];
                row[*i] = parse_csv_value(text, *quoted, f.ty, &f.name)?;
            }
        }
        Ok(row)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn schema() -> Schema {
        Schema::new([
            ("i", Type::Int),
            ("f", Type::Float),
            ("s", Type::String),
            ("t", Type::Timestamp),
            ("j", Type::Json),
            ("b", Type::Bool),
        ])
    }

    #[test]
    fn jsonl_rules() {
        let s = schema();
        let row = parse_jsonl(r#"{"i":1,"f":2,"s":"x","t":"1970-01-01T00:00:01Z","j":{"b":1,"a":[1.50]},"extra":[1]}"#, &s).unwrap();
        assert_eq!(row[0], Value::Int(1));
        assert_eq!(row[1], Value::Float(2.0));
        assert_eq!(row[3], Value::Ts(1000));
        assert_eq!(row[4], Value::Json(Text::from(r#"{"a":[1.5],"b":1}"#)));
        assert_eq!(row[5], Value::Null);
        let err = |l: &str| parse_jsonl(l, &s).unwrap_err();
        assert!(
            err(r#"{"i":1.5}"#).contains("fractional"),
            "{}",
            err(r#"{"i":1.5}"#)
        );
        assert!(err(r#"{"i":1,"i":2}"#).contains("duplicate key \"i\""));
        assert!(err(r#"{"x":1,"x":2}"#).contains("duplicate key \"x\""));
        assert!(err(r#"{"s":1}"#).contains("field \"s\" is string"));
        assert!(err(r#"[1]"#).contains("JSON object"), "{}", err("[1]"));
        assert!(
            err(r#"{"i":1} x"#).contains("trailing"),
            "{}",
            err(r#"{"i":1} x"#)
        );
        assert!(err(r#"{"i":99999999999999999999}"#).contains("out of range"));
        assert!(err(r#"{"t":"yesterday"}"#).contains("RFC 3339"));
        assert!(err(r#"{"j":{"a":1,"a":2}}"#).contains("duplicate key \"a\" in a json value"));
        let row = parse_jsonl(r#"{"f":-987.1298918377533,"i":-0}"#, &s).unwrap();
        assert_eq!(row[1], Value::Float(-987.129_891_837_753_3));
        assert_eq!(row[0], Value::Int(0));
        assert!(err("").contains("EOF"), "{}", err(""));
    }

    #[test]
    fn duplicate_keys_are_caught_in_wide_schemas_too() {
        let wide = Schema::new((0..70).map(|i| (format!("f{i}"), Type::Int)));
        assert!(parse_jsonl(r#"{"f69":1,"f3":2}"#, &wide).is_ok());
        let err = parse_jsonl(r#"{"f69":1,"f3":2,"f69":3}"#, &wide).unwrap_err();
        assert!(err.contains("duplicate key \"f69\""), "{err}");
        // Keys out of schema order are found too.
        let row = parse_jsonl(r#"{"f5":5,"f1":1}"#, &wide).unwrap();
        assert_eq!(
            (row[1].clone(), row[5].clone()),
            (Value::Int(1), Value::Int(5))
        );
    }

    #[test]
    fn csv_rules() {
        let s = schema();
        let h = CsvHeader::parse("s,i,unused,f", &s).unwrap();
        let row = h.parse_record("\"a,\"\"b\"\"\",7,zzz,", &s).unwrap();
        assert_eq!(row[0], Value::Int(7));
        assert_eq!(row[1], Value::Null);
        assert_eq!(row[2], Value::str("a,\"b\""));
        let row = h.parse_record("\"\",,,1e3", &s).unwrap();
        assert_eq!(row[2], Value::str(""));
        assert_eq!(row[0], Value::Null);
        assert_eq!(row[1], Value::Float(1000.0));
        assert!(h.parse_record("a,b", &s).unwrap_err().contains("2 fields"));
        assert!(h
            .parse_record("a,x,y,1", &s)
            .unwrap_err()
            .contains("field \"i\" is int"));
        assert!(h.parse_record("a\"b,1,x,1", &s).is_err());
        assert!(CsvHeader::parse("i,i", &s).is_err());
        assert!(parse_csv_value("1e400", false, Type::Float, "f")
            .unwrap_err()
            .contains("out of range"));
        assert!(
            matches!(parse_csv_value("-inf", false, Type::Float, "f"), Ok(Value::Float(f)) if f == f64::NEG_INFINITY)
        );
        assert_eq!(
            parse_csv_value("null", false, Type::Json, "j"),
            Ok(Value::Null)
        );
        assert_eq!(
            parse_csv_value("[null]", false, Type::Json, "j"),
            Ok(Value::Json(Text::from("[null]")))
        );
        assert!(csv_open_quote("\"abc"));
        assert!(csv_open_quote("1,\"a\"\"b"));
        assert!(!csv_open_quote("1,\"a\"\"b\""));
        // A stray quote inside an unquoted field opens nothing.
        assert!(!csv_open_quote("1,a\"b"));
        assert!(csv_open_quote("1,a\"b,\"c"));
    }
}

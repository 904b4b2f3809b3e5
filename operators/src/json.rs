//! Canonical JSON text (RFC 8785, the JSON Canonicalization Scheme), which is
//! how `json` values are kept, compared, hashed and written.

use serde_json::Value as Json;

/// The canonical text of a JSON value: no whitespace, object members sorted by
/// the UTF-16 code units of their names, numbers as ECMAScript writes a double,
/// strings with the minimal escapes.
pub fn canonical(v: &Json) -> String {
    let mut out = String::new();
    write_canonical(v, &mut out);
    out
}

/// Parses JSON text and returns its canonical text, or the reason it is not
/// one JSON value (duplicate object keys included: RFC 8785 works on I-JSON,
/// which forbids them).
///
/// # Errors
/// When `text` is not one JSON value.
pub fn canonicalize(text: &str) -> Result<String, String> {
    let v: StrictJson = serde_json::from_str(text).map_err(|e| e.to_string())?;
    Ok(canonical(&v.0))
}

/// A JSON value deserialized with duplicate object keys refused at any depth.
#[derive(Debug, Clone, PartialEq)]
pub struct StrictJson(pub Json);

impl<'de> serde::Deserialize<'de> for StrictJson {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        d.deserialize_any(StrictVisitor).map(StrictJson)
    }
}

struct StrictVisitor;

impl<'de> serde::de::Visitor<'de> for StrictVisitor {
    type Value = Json;
    fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("a JSON value")
    }
    fn visit_bool<E>(self, v: bool) -> Result<Json, E> {
        Ok(Json::Bool(v))
    }
    fn visit_i64<E>(self, v: i64) -> Result<Json, E> {
        Ok(Json::from(v))
    }
    fn visit_u64<E>(self, v: u64) -> Result<Json, E> {
        Ok(Json::from(v))
    }
    fn visit_f64<E>(self, v: f64) -> Result<Json, E> {
        Ok(serde_json::Number::from_f64(v).map_or(Json::Null, Json::Number))
    }
    fn visit_str<E>(self, v: &str) -> Result<Json, E> {
        Ok(Json::String(v.to_string()))
    }
    fn visit_string<E>(self, v: String) -> Result<Json, E> {
        Ok(Json::String(v))
    }
    fn visit_unit<E>(self) -> Result<Json, E> {
        Ok(Json::Null)
    }
    fn visit_none<E>(self) -> Result<Json, E> {
        Ok(Json::Null)
    }
    fn visit_some<D: serde::Deserializer<'de>>(self, d: D) -> Result<Json, D::Error> {
        d.deserialize_any(StrictVisitor)
    }
    fn visit_seq<A: serde::de::SeqAccess<'de>>(self, mut seq: A) -> Result<Json, A::Error> {
        let mut items = Vec::new();
        while let Some(StrictJson(v)) = seq.next_element()? {
            items.push(v);
        }
        Ok(Json::Array(items))
    }
    fn visit_map<A: serde::de::MapAccess<'de>>(self, mut map: A) -> Result<Json, A::Error> {
        let mut out = serde_json::Map::new();
        while let Some(key) = map.next_key::<String>()? {
            if out.contains_key(&key) {
                return Err(serde::de::Error::custom(format_args!(
                    "duplicate key \"{key}\" in a json value"
                )));
            }
            let StrictJson(v) = map.next_value()?;
            out.insert(key, v);
        }
        Ok(Json::Object(out))
    }
}

fn write_canonical(v: &Json, out: &mut String) {
    match v {
        Json::Null => out.push_str("null"),
        Json::Bool(b) => out.push_str(if *b { "true" } else { "false" }),
        Json::Number(n) => {
            // RFC 8785 numbers are IEEE doubles; larger integers round.
            let f = n.as_f64().unwrap_or(0.0);
            write_es_number(f, out);
        }
        Json::String(s) => write_json_string(s, out),
        Json::Array(items) => {
            out.push('[');
            for (i, item) in items.iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                write_canonical(item, out);
            }
            out.push(']');
        }
        Json::Object(map) => {
            let mut members: Vec<(&String, &Json)> = map.iter().collect();
            members.sort_by(|a, b| a.0.encode_utf16().cmp(b.0.encode_utf16()));
            out.push('{');
            for (i, (k, item)) in members.into_iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                write_json_string(k, out);
                out.push(':');
                write_canonical(item, out);
            }
            out.push('}');
        }
    }
}

/// Writes a JSON string literal, escaping `"`, `\` and control characters
/// (U+0000..U+001F) only: `\b \f \n \r \t` by name, the rest as `\u00xx`.
pub fn write_json_string(s: &str, out: &mut String) {
    out.push('"');
    let bytes = s.as_bytes();
    let mut start = 0;
    for (i, &b) in bytes.iter().enumerate() {
        let esc: Option<&str> = match b {
            b'"' => Some("\\\""),
            b'\\' => Some("\\\\"),
            b'\n' => Some("\\n"),
            b'\r' => Some("\\r"),
            b'\t' => Some("\\t"),
            0x08 => Some("\\b"),
            0x0c => Some("\\f"),
            0..=0x1f => None,
            _ => continue,
        };
        out.push_str(&s[start..i]);
        match esc {
            Some(e) => out.push_str(e),
            None => {
                const HEX: &[u8; 16] = b"0123456789abcdef";
                out.push_str("\\u00");
                out.push(char::from(HEX[usize::from(b >> 4)]));
                out.push(char::from(HEX[usize::from(b & 15)]));
            }
        }
        start = i + 1;
    }
    out.push_str(&s[start..]);
    out.push('"');
}

/// Writes a finite double as ECMAScript's `Number.prototype.toString` does
/// (RFC 8785 section 3.2.2.3): `1`, `0.5`, `1e+21`, `1.5e-7`.
pub fn write_es_number(f: f64, out: &mut String) {
    if f == 0.0 || !f.is_finite() {
        out.push('0');
        return;
    }
    if f < 0.0 {
        out.push('-');
    }
    // Shortest round-trip digits from ryu, then ECMAScript's layout.
    let mut buf = ryu::Buffer::new();
    let s = buf.format_finite(f.abs());
    let (mantissa, exp) = match s.find('e') {
        Some(i) => (&s[..i], s[i + 1..].parse::<i32>().unwrap_or(0)),
        None => (s, 0),
    };
    let (int_part, frac_part) = match mantissa.find('.') {
        Some(i) => (&mantissa[..i], &mantissa[i + 1..]),
        None => (mantissa, ""),
    };
    let mut digits: String = format!("{int_part}{frac_part}");
    // value = 0.digits × 10^n
    let mut n = i32::try_from(int_part.len()).unwrap_or(0) + exp;
    let lead = digits.len() - digits.trim_start_matches('0').len();
    digits.drain(..lead);
    n -= i32::try_from(lead).unwrap_or(0);
    let trimmed = digits.trim_end_matches('0').len();
    digits.truncate(trimmed);
    let k = i32::try_from(digits.len()).unwrap_or(1);
    if k <= n && n <= 21 {
        out.push_str(&digits);
        for _ in 0..(n - k) {
            out.push('0');
        }
    } else if 0 < n && n <= 21 {
        let (a, b) = digits.split_at(usize::try_from(n).unwrap_or(0));
        out.push_str(a);
        out.push('.');
        out.push_str(b);
    } else if -6 < n && n <= 0 {
        out.push_str("0.");
        for _ in 0..(-n) {
            out.push('0');
        }
        out.push_str(&digits);
    } else {
        let e = n - 1;
        out.push_str(&digits[..1]);
        if digits.len() > 1 {
            out.push('.');
            out.push_str(&digits[1..]);
        }
        out.push('e');
        out.push(if e >= 0 { '+' } else { '-' });
        out.push_str(&e.abs().to_string());
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn es(f: f64) -> String {
        let mut s = String::new();
        write_es_number(f, &mut s);
        s
    }

    #[test]
    fn numbers_follow_ecmascript() {
        let cases = [
            (0.0, "0"),
            (-0.0, "0"),
            (1.0, "1"),
            (-1.5, "-1.5"),
            (100.0, "100"),
            (123_456_789.0, "123456789"),
            (1e21, "1e+21"),
            (1e20, "100000000000000000000"),
            (0.000_001, "0.000001"),
            (1e-7, "1e-7"),
            (1.5e-7, "1.5e-7"),
            (0.1, "0.1"),
            (1.0 / 3.0, "0.3333333333333333"),
            (4.5e300, "4.5e+300"),
            (9_007_199_254_740_993.0, "9007199254740992"),
            (5e-324, "5e-324"),
        ];
        for (f, want) in cases {
            assert_eq!(es(f), want, "{f}");
        }
    }

    #[test]
    fn objects_sort_by_utf16_and_strings_escape_minimally() {
        // RFC 8785's own sorting example: "\u20ac" (€) sorts before "\ud83d\ude00" in UTF-16.
        let v: Json =
            serde_json::from_str(r#"{"b":[1,2.50,"x\ny"],"a":{"z":null,"€":1,"😀":2,"\r":true}}"#)
                .unwrap();
        assert_eq!(
            canonical(&v),
            r#"{"a":{"\r":true,"z":null,"€":1,"😀":2},"b":[1,2.5,"x\ny"]}"#
        );
        assert_eq!(canonicalize("\"\\u0001é\"").unwrap(), "\"\\u0001é\"");
        assert!(canonicalize("{").is_err());
        assert!(canonicalize(r#"{"a":1,"a":2}"#)
            .unwrap_err()
            .contains("duplicate key"));
        assert!(canonicalize(r#"[{"x":{"y":1,"y":1}}]"#)
            .unwrap_err()
            .contains("duplicate key"));
        // Floats are read to the nearest double (serde_json's float_roundtrip).
        assert_eq!(
            canonicalize("-987.1298918377533").unwrap(),
            "-987.1298918377533"
        );
    }
}

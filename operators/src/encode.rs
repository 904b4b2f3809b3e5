//! Output encodings, written by our own code so that a dependency bump cannot
//! change output bytes: JSON lines and CSV exactly as the spec's "Encoding"
//! rule says. Golden tests pin the bytes.

use crate::json::write_json_string;
use crate::value::{Schema, Type, Value};

/// The version of the output encoding, recorded in a checkpoint's manifest:
/// a lockstep whose encoding differs (a change to this file's rules) must
/// not append to output that an older encoding wrote.
pub const OUTPUT_FORMAT: u32 = 1;

/// An output format of a file or stdout sink.
#[derive(
    Clone, Copy, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize, schemars::JsonSchema,
)]
#[serde(rename_all = "lowercase")]
pub enum Format {
    /// One compact JSON object per line, fields in schema order.
    Jsonl,
    /// RFC 4180 CSV with a header row and CRLF line ends.
    Csv,
}

/// Writes a float as the `ryu` crate does (`1.0`, `1e300`); NaN and the
/// infinities have no JSON form and are written as `null`.
pub fn write_float(f: f64, out: &mut String) {
    if f.is_finite() {
        out.push_str(ryu::Buffer::new().format_finite(f));
    } else {
        out.push_str("null");
    }
}

/// A float as text, as [`write_float`] writes it.
pub fn float_text(f: f64) -> String {
    let mut s = String::new();
    write_float(f, &mut s);
    s
}

/// Encodes rows of one schema as JSON lines or CSV.
#[derive(Clone, Debug)]
pub struct Encoder {
    format: Format,
    /// For jsonl: `{"name":` then `,"name":` ... precomputed per field.
    prefixes: Vec<String>,
    header: String,
}

impl Encoder {
    /// An encoder for `schema` in `format`.
    pub fn new(schema: &Schema, format: Format) -> Encoder {
        let mut prefixes = Vec::with_capacity(schema.len());
        for (i, f) in schema.fields().iter().enumerate() {
            let mut p = String::from(if i == 0 { "{" } else { "," });
            write_json_string(&f.name, &mut p);
            p.push(':');
            prefixes.push(p);
        }
        let mut header = String::new();
        for (i, f) in schema.fields().iter().enumerate() {
            if i > 0 {
                header.push(',');
            }
            write_csv_text(&f.name, &mut header);
        }
        header.push_str("\r\n");
        Encoder {
            format,
            prefixes,
            header,
        }
    }

    /// The bytes a new file starts with: the CSV header row, or nothing.
    pub fn header(&self) -> &str {
        match self.format {
            Format::Jsonl => "",
            Format::Csv => &self.header,
        }
    }

    /// One row as a line without its line ending (for `errors` records and
    /// messages).
    pub fn line(&self, row: &[Value]) -> String {
        let mut out = String::new();
        self.encode(row, &mut out);
        while out.ends_with(['\n', '\r']) {
            out.pop();
        }
        out
    }

    /// Appends one encoded row, with its line end, to `out`.
    pub fn encode(&self, row: &[Value], out: &mut String) {
        match self.format {
            Format::Jsonl => {
                if row.is_empty() {
                    out.push('{');
                }
                for (p, v) in self.prefixes.iter().zip(row) {
                    out.push_str(p);
                    write_json_value(v, out);
                }
                out.push_str("}\n");
            }
            Format::Csv => {
                for (i, v) in row.iter().enumerate() {
                    if i > 0 {
                        out.push(',');
                    }
                    write_csv_value(v, out);
                }
                out.push_str("\r\n");
            }
        }
    }
}

/// Writes a value as a JSON value: `json` fields as their canonical text,
/// timestamps as integer milliseconds.
pub fn write_json_value(v: &Value, out: &mut String) {
    match v {
        Value::Null => out.push_str("null"),
        Value::Bool(b) => out.push_str(if *b { "true" } else { "false" }),
        Value::Int(i) | Value::Ts(i) => out.push_str(itoa(*i).as_str()),
        Value::Float(f) => write_float(*f, out),
        Value::Str(s) => write_json_string(s, out),
        Value::Json(s) => out.push_str(s),
    }
}

fn itoa(i: i64) -> String {
    i.to_string()
}

fn write_csv_value(v: &Value, out: &mut String) {
    match v {
        Value::Null => {}
        Value::Bool(b) => out.push_str(if *b { "true" } else { "false" }),
        Value::Int(i) | Value::Ts(i) => out.push_str(&i.to_string()),
        Value::Float(f) => {
            if f.is_finite() {
                out.push_str(ryu::Buffer::new().format_finite(*f));
            }
        }
        Value::Str(s) | Value::Json(s) => {
            if s.is_empty() {
                out.push_str("\"\"");
            } else {
                write_csv_text(s, out);
            }
        }
    }
}

/// Writes text as one CSV field, quoted when it holds `,`, `"`, CR or LF.
fn write_csv_text(s: &str, out: &mut String) {
    if s.bytes().any(|b| matches!(b, b',' | b'"' | b'\r' | b'\n')) {
        out.push('"');
        out.push_str(&s.replace('"', "\"\""));
        out.push('"');
    } else {
        out.push_str(s);
    }
}

/// The text a value has when a string is needed: a string is itself, numbers
/// and booleans as in JSON output, a timestamp as integer milliseconds, a json
/// value as its canonical text.
pub fn value_text(v: &Value) -> Option<String> {
    match v {
        Value::Null => None,
        Value::Str(s) | Value::Json(s) => Some(s.to_string()),
        Value::Float(f) => Some(float_text(*f)),
        other => {
            let mut s = String::new();
            write_json_value(other, &mut s);
            Some(s)
        }
    }
}

/// Whether the CSV encoding can tell null from the empty string for `ty`.
pub fn csv_null_distinct(ty: Type) -> bool {
    matches!(ty, Type::String | Type::Json)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::value::Text;

    fn schema() -> Schema {
        Schema::new([
            ("a", Type::Int),
            ("f", Type::Float),
            ("s", Type::String),
            ("b", Type::Bool),
            ("t", Type::Timestamp),
            ("j", Type::Json),
            ("n", Type::String),
        ])
    }

    fn row() -> Vec<Value> {
        vec![
            Value::Int(-7),
            Value::Float(1.0),
            Value::str("q\"\\\n\u{1}é,x"),
            Value::Bool(true),
            Value::Ts(1_700_000_000_000),
            Value::Json(Text::from("{\"a\":[1,2]}")),
            Value::Null,
        ]
    }

    #[test]
    fn jsonl_golden() {
        let mut out = String::new();
        Encoder::new(&schema(), Format::Jsonl).encode(&row(), &mut out);
        assert_eq!(
            out,
            "{\"a\":-7,\"f\":1.0,\"s\":\"q\\\"\\\\\\n\\u0001é,x\",\"b\":true,\"t\":1700000000000,\"j\":{\"a\":[1,2]},\"n\":null}\n"
        );
    }

    #[test]
    fn floats_golden() {
        let cases = [
            (1.0, "1.0"),
            (1e300, "1e300"),
            (0.1, "0.1"),
            (-0.0, "-0.0"),
            (123_456_789.0, "123456789.0"),
            (1.5e-7, "1.5e-7"),
            (f64::NAN, "null"),
            (f64::INFINITY, "null"),
        ];
        for (f, want) in cases {
            assert_eq!(float_text(f), want);
        }
    }

    #[test]
    fn csv_golden() {
        let enc = Encoder::new(&schema(), Format::Csv);
        assert_eq!(enc.header(), "a,f,s,b,t,j,n\r\n");
        let mut out = String::new();
        enc.encode(&row(), &mut out);
        assert_eq!(
            out,
            "-7,1.0,\"q\"\"\\\n\u{1}é,x\",true,1700000000000,\"{\"\"a\"\":[1,2]}\",\r\n"
        );
        let mut out = String::new();
        let s1 = Schema::new([("s", Type::String), ("f", Type::Float)]);
        Encoder::new(&s1, Format::Csv).encode(&[Value::str(""), Value::Float(f64::NAN)], &mut out);
        assert_eq!(out, "\"\",\r\n");
    }
}

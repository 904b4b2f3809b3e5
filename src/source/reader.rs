//! Partition readers: each yields one partition's records in order.

use lockstep_operators::value::Text;
use std::fs::File;
use std::io::{BufRead, BufReader, Read, Seek, SeekFrom};
use std::path::{Path as FsPath, PathBuf};
use std::sync::Arc;

use lockstep_operators::encode::Format;
use lockstep_operators::value::{Row, Schema, Value};

use super::parse::{csv_open_quote, parse_jsonl, CsvHeader};
use crate::graph::spec::{FieldGen, GeneratorSpec, NexmarkEvents, NexmarkSpec};

/// One item read from a partition.
#[derive(Debug)]
pub enum Item {
    /// A record that fits the schema.
    Row(Row),
    /// Input that does not: the raw text, why, and its 1-based line.
    Bad {
        /// The raw input (lossy UTF-8 if it was not UTF-8).
        raw: String,
        /// Why it was rejected.
        reason: String,
        /// The line it starts on (1-based, within its file); a Kafka
        /// record's offset.
        line: u64,
    },
    /// Nothing to read yet (an unbounded source such as Kafka): ask again
    /// later.
    Wait,
}

/// Reads one partition, record by record.
pub trait PartitionReader {
    /// The next item, or `None` at the end.
    ///
    /// # Errors
    /// An I/O error, which fails the job.
    fn next_item(&mut self) -> std::io::Result<Option<Item>>;

    /// The raw text and 1-based line of the last record returned, for a
    /// record rejected after parsing (a null event time); `None` for
    /// generated data.
    fn last_raw(&mut self) -> Option<(String, u64)> {
        None
    }

    /// Whether the reader has read everything its input holds now (an
    /// unbounded source asks before a heartbeat: a replay that has not
    /// caught up with what a lost run read must not decide anew).
    fn caught_up(&mut self) -> bool {
        true
    }

    /// Where the next item starts: a byte offset (files), a record number
    /// (generators), an event offset (nexmark). A reader opened at this
    /// position yields the same items from here on.
    fn position(&self) -> u64;
}

/// A byte range of a file: the lines that start in `[start, end)`.
#[derive(Clone, Debug)]
pub struct FilePart {
    /// The file.
    pub path: PathBuf,
    /// First byte of the range.
    pub start: u64,
    /// End of the range; `None` reads to the end of the file.
    pub end: Option<u64>,
}

/// Splits files into partitions: one per file, or `split` byte ranges of one.
///
/// # Errors
/// When a file cannot be opened (named in the message).
pub fn file_parts(files: &[PathBuf], split: Option<u32>) -> Result<Vec<FilePart>, String> {
    for f in files {
        File::open(f).map_err(|e| format!("cannot open input file {}: {e}", f.display()))?;
    }
    match split {
        None => Ok(files
            .iter()
            .map(|f| FilePart {
                path: f.clone(),
                start: 0,
                end: None,
            })
            .collect()),
        Some(k) => {
            let f = &files[0];
            let len = std::fs::metadata(f)
                .map_err(|e| format!("cannot read {}: {e}", f.display()))?
                .len();
            let k = u64::from(k.max(1));
            Ok((0..k)
                .map(|i| FilePart {
                    path: f.clone(),
                    start: len * i / k,
                    end: if i + 1 == k {
                        None
                    } else {
                        Some(len * (i + 1) / k)
                    },
                })
                .collect())
        }
    }
}

/// Reads JSON lines or CSV from a byte range of a file, or from any reader.
pub struct TextReader {
    input: Box<dyn BufRead + Send>,
    schema: Schema,
    format: Format,
    csv: Option<CsvHeader>,
    /// Why the CSV header could not be used: every record is rejected with it.
    header_error: Option<String>,
    /// Byte position of the next unread byte.
    pos: u64,
    end: Option<u64>,
    /// 1-based line number of the next line, once known.
    line: Option<u64>,
    /// The file and where this range starts, to count lines lazily.
    file: Option<(PathBuf, u64)>,
    lines_read: u64,
    /// The range line (0-based) where the last record started.
    last_first: u64,
    buf: Vec<u8>,
    done: bool,
    /// Standard input, read by a thread of its own (then `input` is unused).
    pump: Option<Pump>,
    /// A CSV record from standard input whose quoted field spans lines,
    /// waiting for its next line: its bytes so far and its first line.
    partial: Option<(Vec<u8>, u64)>,
}

/// What reading one line gave.
enum Line {
    /// A line, in `buf`.
    Got,
    /// The end of the input (or the range).
    End,
    /// Nothing yet (standard input that has no whole line now).
    Wait,
}

/// How many chunks of standard input wait for the worker, at most.
const PUMP_CHUNKS: usize = 64;

/// Standard input, read in chunks by a thread of its own, so that a worker
/// never blocks on it: while no whole line has arrived, the source waits
/// (and the rest of the dataflow goes on, so earlier epochs complete).
pub struct Pump {
    rx: std::sync::mpsc::Receiver<std::io::Result<Vec<u8>>>,
    buf: Vec<u8>,
    at: usize,
    eof: bool,
}

impl Pump {
    /// Starts reading standard input.
    pub fn stdin() -> Pump {
        let (tx, rx) = std::sync::mpsc::sync_channel(PUMP_CHUNKS);
        let _ = std::thread::Builder::new()
            .name("lockstep-stdin".into())
            .spawn(move || {
                let mut input = std::io::stdin().lock();
                loop {
                    let mut chunk = vec![0u8; 1 << 16];
                    match input.read(&mut chunk) {
                        Ok(0) => {
                            let _ = tx.send(Ok(Vec::new()));
                            return;
                        }
                        Ok(n) => {
                            chunk.truncate(n);
                            if tx.send(Ok(chunk)).is_err() {
                                return;
                            }
                        }
                        Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
                        Err(e) => {
                            let _ = tx.send(Err(e));
                            return;
                        }
                    }
                }
            });
        Pump {
            rx,
            buf: Vec::new(),
            at: 0,
            eof: false,
        }
    }

    fn take(&mut self, chunk: Vec<u8>) {
        if chunk.is_empty() {
            self.eof = true;
            return;
        }
        if self.at > 0 {
            self.buf.drain(..self.at);
            self.at = 0;
        }
        self.buf.extend_from_slice(&chunk);
    }

    /// Whether a whole line, or the end, can be read without waiting.
    fn ready(&mut self) -> std::io::Result<bool> {
        loop {
            if self.eof || memchr::memchr(b'\n', &self.buf[self.at..]).is_some() {
                return Ok(true);
            }
            match self.rx.try_recv() {
                Ok(Ok(c)) => self.take(c),
                Ok(Err(e)) => return Err(e),
                Err(std::sync::mpsc::TryRecvError::Empty) => return Ok(false),
                Err(std::sync::mpsc::TryRecvError::Disconnected) => self.eof = true,
            }
        }
    }
}

impl Read for Pump {
    fn read(&mut self, out: &mut [u8]) -> std::io::Result<usize> {
        let avail = self.fill_buf()?;
        let n = avail.len().min(out.len());
        out[..n].copy_from_slice(&avail[..n]);
        self.consume(n);
        Ok(n)
    }
}

impl BufRead for Pump {
    fn fill_buf(&mut self) -> std::io::Result<&[u8]> {
        while self.at >= self.buf.len() && !self.eof {
            match self.rx.recv() {
                Ok(Ok(c)) => self.take(c),
                Ok(Err(e)) => return Err(e),
                Err(_) => self.eof = true,
            }
        }
        Ok(&self.buf[self.at..])
    }

    fn consume(&mut self, n: usize) {
        self.at = (self.at + n).min(self.buf.len());
    }
}

impl TextReader {
    /// A reader of a file's byte range.
    ///
    /// # Errors
    /// I/O errors opening or seeking the file.
    pub fn open(part: &FilePart, schema: &Schema, format: Format) -> std::io::Result<TextReader> {
        let mut f = File::open(&part.path)?;
        let mut start = part.start;
        if start > 0 {
            // A range owns the lines that start in it: skip a partial line.
            f.seek(SeekFrom::Start(start - 1))?;
            let mut r = BufReader::new(f);
            let mut skipped = Vec::new();
            let n = r.read_until(b'\n', &mut skipped)?;
            start = start - 1 + n as u64;
            f = r.into_inner();
            f.seek(SeekFrom::Start(start))?;
        }
        let mut reader = TextReader {
            input: Box::new(BufReader::with_capacity(1 << 20, f)),
            schema: schema.clone(),
            format,
            csv: None,
            header_error: None,
            pos: start,
            end: part.end,
            line: (start == 0).then_some(1),
            file: Some((part.path.clone(), start)),
            lines_read: 0,
            last_first: 0,
            buf: Vec::new(),
            done: false,
            pump: None,
            partial: None,
        };
        if format == Format::Csv && start > 0 {
            // The header is the file's first line.
            let mut head = BufReader::new(File::open(&part.path)?);
            let mut line = Vec::new();
            head.read_until(b'\n', &mut line)?;
            let line = line.strip_prefix(BOM).unwrap_or(&line);
            let text = String::from_utf8_lossy(strip_eol(line)).into_owned();
            match CsvHeader::parse(&text, schema) {
                Ok(h) => reader.csv = Some(h),
                Err(reason) => reader.header_error = Some(format!("bad CSV header: {reason}")),
            }
        }
        Ok(reader)
    }

    /// A reader of standard input that never blocks its worker.
    pub fn stdin(schema: &Schema, format: Format) -> TextReader {
        let mut r = TextReader::from_reader(Box::new(std::io::empty()), schema, format);
        r.pump = Some(Pump::stdin());
        r
    }

    /// A reader of a stream.
    pub fn from_reader(
        input: Box<dyn BufRead + Send>,
        schema: &Schema,
        format: Format,
    ) -> TextReader {
        TextReader {
            pump: None,
            partial: None,
            input,
            schema: schema.clone(),
            format,
            csv: None,
            header_error: None,
            pos: 0,
            end: None,
            line: Some(1),
            file: None,
            lines_read: 0,
            last_first: 0,
            buf: Vec::new(),
            done: false,
        }
    }

    /// Reads one physical line into `buf`.
    fn read_line(&mut self) -> std::io::Result<Line> {
        self.buf.clear();
        if self.done || self.end.is_some_and(|e| self.pos >= e) {
            return Ok(Line::End);
        }
        if let Some(p) = &mut self.pump {
            if !p.ready()? {
                return Ok(Line::Wait);
            }
        }
        let mut buf = std::mem::take(&mut self.buf);
        let n = self.read_until_nl(&mut buf)?;
        self.buf = buf;
        if n == 0 {
            self.done = true;
            return Ok(Line::End);
        }
        self.pos += n as u64;
        Ok(Line::Got)
    }

    /// Reads up to and including the next newline into `buf`.
    fn read_until_nl(&mut self, buf: &mut Vec<u8>) -> std::io::Result<usize> {
        match &mut self.pump {
            Some(p) => p.read_until(b'\n', buf),
            None => self.input.read_until(b'\n', buf),
        }
    }
}

fn strip_eol(b: &[u8]) -> &[u8] {
    let b = b.strip_suffix(b"\n").unwrap_or(b);
    b.strip_suffix(b"\r").unwrap_or(b)
}

fn count_lines(path: &FsPath, upto: u64) -> std::io::Result<u64> {
    let mut f = File::open(path)?.take(upto);
    let mut buf = vec![0u8; 1 << 16];
    let mut n = 0u64;
    loop {
        let k = f.read(&mut buf)?;
        if k == 0 {
            return Ok(n);
        }
        n += memchr::memchr_iter(b'\n', &buf[..k]).count() as u64;
    }
}

/// The UTF-8 byte order mark, skipped at the start of a file.
const BOM: &[u8] = b"\xEF\xBB\xBF";

impl PartitionReader for TextReader {
    fn position(&self) -> u64 {
        self.pos
    }

    fn last_raw(&mut self) -> Option<(String, u64)> {
        let raw = String::from_utf8_lossy(strip_eol(&self.buf)).into_owned();
        let line = self.base_line() + self.last_first;
        Some((raw, line))
    }

    fn next_item(&mut self) -> std::io::Result<Option<Item>> {
        loop {
            // A CSV record from standard input that waited for a line.
            let resumed = self.partial.take();
            let first = resumed.as_ref().map_or(self.lines_read, |p| p.1);
            self.last_first = first;
            let at_file_start = self.pos == 0;
            if let Some((bytes, _)) = resumed {
                self.buf = bytes;
            } else {
                match self.read_line()? {
                    Line::Got => {}
                    Line::End => return Ok(None),
                    Line::Wait => return Ok(Some(Item::Wait)),
                }
                self.lines_read += 1;
                if at_file_start && self.buf.starts_with(BOM) {
                    self.buf.drain(..BOM.len());
                }
            }
            if self.format == Format::Jsonl {
                let text = match std::str::from_utf8(strip_eol(&self.buf)) {
                    Ok(t) => t,
                    Err(e) => {
                        let raw = String::from_utf8_lossy(strip_eol(&self.buf)).into_owned();
                        return Ok(Some(self.bad(raw, format!("invalid UTF-8: {e}"), first)));
                    }
                };
                let parsed = parse_jsonl(text, &self.schema);
                return Ok(Some(match parsed {
                    Ok(row) => Item::Row(row),
                    Err(reason) => {
                        let raw = text.to_string();
                        let reason = if raw.trim().is_empty() {
                            "empty line (JSON lines has one object per line)".to_string()
                        } else {
                            reason
                        };
                        self.bad(raw, reason, first)
                    }
                }));
            }
            // CSV: a record whose quoted field spans lines reads on, even past
            // the range end, keeping the line ends inside the field as they are.
            let mut bytes = std::mem::take(&mut self.buf);
            while open_quote(strip_eol(&bytes)) {
                // Standard input without the next line yet: wait for it
                // without blocking the worker.
                if let Some(p) = &mut self.pump {
                    if !p.ready()? {
                        self.partial = Some((bytes, first));
                        return Ok(Some(Item::Wait));
                    }
                }
                let mut next = Vec::new();
                let n = self.read_until_nl(&mut next)?;
                if n == 0 {
                    break;
                }
                self.pos += n as u64;
                self.lines_read += 1;
                bytes.extend_from_slice(&next);
            }
            let record = match std::str::from_utf8(strip_eol(&bytes)) {
                Ok(t) => t.to_string(),
                Err(e) => {
                    let raw = String::from_utf8_lossy(strip_eol(&bytes)).into_owned();
                    return Ok(Some(self.bad(raw, format!("invalid UTF-8: {e}"), first)));
                }
            };
            if let Some(reason) = &self.header_error {
                let reason = format!("no usable CSV header ({reason}); fix the file's first line");
                return Ok(Some(self.bad(record, reason, first)));
            }
            let Some(header) = &self.csv else {
                match CsvHeader::parse(&record, &self.schema) {
                    Ok(h) => {
                        self.csv = Some(h);
                        continue;
                    }
                    Err(reason) => {
                        let reason = format!("bad CSV header: {reason}");
                        self.header_error = Some(reason.clone());
                        return Ok(Some(self.bad(record, reason, first)));
                    }
                }
            };
            let item = match header.parse_record(&record, &self.schema) {
                Ok(row) => Item::Row(row),
                Err(reason) => self.bad(record, reason, first),
            };
            // Keep the record's bytes for `last_raw`.
            self.buf = bytes;
            return Ok(Some(item));
        }
    }
}

/// Whether CSV bytes end inside a quoted field (invalid UTF-8 ends the record).
fn open_quote(bytes: &[u8]) -> bool {
    std::str::from_utf8(bytes).is_ok_and(csv_open_quote)
}

impl TextReader {
    /// A rejected record whose first line is the range's line `first` (0-based).
    fn bad(&mut self, raw: String, reason: String, first: u64) -> Item {
        Item::Bad {
            raw,
            reason,
            line: self.base_line() + first,
        }
    }

    /// The 1-based line number of the range's first line, counted once.
    fn base_line(&mut self) -> u64 {
        if let Some(l) = self.line {
            return l;
        }
        let base = self
            .file
            .as_ref()
            .and_then(|(p, start)| count_lines(p, *start).ok())
            .unwrap_or(0)
            + 1;
        self.line = Some(base);
        base
    }
}

/// The `generator` source's partition reader.
pub struct GeneratorReader {
    spec: Arc<GeneratorSpec>,
    next: u64,
    step: u64,
}

impl GeneratorReader {
    /// Partition `p` of the generator: record numbers `p, p + P, ...`,
    /// from record number `from` (a [`PartitionReader::position`]) if given.
    pub fn new(spec: Arc<GeneratorSpec>, p: u32, from: Option<u64>) -> GeneratorReader {
        let step = u64::from(spec.partitions.max(1));
        GeneratorReader {
            spec,
            next: from.unwrap_or(u64::from(p)),
            step,
        }
    }
}

/// SplitMix64: a fixed, documented mixer for the generator's random patterns.
fn splitmix64(mut z: u64) -> u64 {
    z = z.wrapping_add(0x9e37_79b9_7f4a_7c15);
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

/// The random number of field `f` of record `i` under `seed`.
fn random(seed: u64, f: usize, i: u64) -> u64 {
    splitmix64(splitmix64(splitmix64(seed) ^ (f as u64 + 1)) ^ i)
}

#[allow(
    clippy::cast_precision_loss,
    clippy::cast_possible_wrap,
    clippy::cast_possible_truncation
)]
fn gen_value(g: &FieldGen, seed: u64, f: usize, i: u64) -> Value {
    match g {
        FieldGen::Sequence { start, step } => {
            Value::Int(start.wrapping_add(step.wrapping_mul(i as i64)))
        }
        FieldGen::Random { min, max } => {
            let span = (i128::from(*max) - i128::from(*min) + 1) as u128;
            let r = u128::from(random(seed, f, i)) % span;
            Value::Int((i128::from(*min) + r as i128) as i64)
        }
        FieldGen::RandomFloat { min, max } => {
            let unit = (random(seed, f, i) >> 11) as f64 / (1u64 << 53) as f64;
            Value::Float(min + unit * (max - min))
        }
        FieldGen::Sine {
            amplitude,
            period,
            offset,
        } => {
            let phase = (i % period) as f64 / *period as f64;
            Value::Float(offset + amplitude * (std::f64::consts::TAU * phase).sin())
        }
        FieldGen::Step { values, every } => {
            let v = &values[((i / every) % values.len() as u64) as usize];
            // The field is `int` only when every value is an integer; a mix
            // of integers and fractions is a `float` field.
            match v {
                serde_json::Value::String(s) => Value::str(s),
                n if values.iter().all(serde_json::Value::is_i64) => {
                    Value::Int(n.as_i64().unwrap_or(0))
                }
                n => Value::Float(n.as_f64().unwrap_or(0.0)),
            }
        }
        FieldGen::Choice(values) => {
            Value::str(&values[(random(seed, f, i) % values.len() as u64) as usize])
        }
        FieldGen::Timestamp { start, step_ms } => {
            Value::Ts(start.wrapping_add(step_ms.wrapping_mul(i as i64)))
        }
    }
}

impl PartitionReader for GeneratorReader {
    fn position(&self) -> u64 {
        self.next
    }

    fn next_item(&mut self) -> std::io::Result<Option<Item>> {
        if self.next >= self.spec.count {
            return Ok(None);
        }
        let i = self.next;
        self.next += self.step;
        let row = self
            .spec
            .fields
            .values()
            .enumerate()
            .map(|(f, g)| gen_value(g, self.spec.seed, f, i))
            .collect();
        Ok(Some(Item::Row(row)))
    }
}

/// The `nexmark` source's partition reader.
pub struct NexmarkReader {
    gen: nexmark::EventGenerator,
    count: u64,
}

impl NexmarkReader {
    /// Partition `p`: the events of the source's type numbered `p, p + P, ...`
    /// among the events of that type, from offset `from` (a
    /// [`PartitionReader::position`]) if given.
    pub fn new(spec: &NexmarkSpec, p: u32, from: Option<u64>) -> NexmarkReader {
        use nexmark::event::EventType;
        let cfg = nexmark::config::NexmarkConfig {
            base_time: spec.base_time,
            ..Default::default()
        };
        let ty = match spec.events {
            NexmarkEvents::Person => EventType::Person,
            NexmarkEvents::Auction => EventType::Auction,
            NexmarkEvents::Bid => EventType::Bid,
        };
        let gen = nexmark::EventGenerator::new(cfg)
            .with_type_filter(ty)
            .with_offset(from.unwrap_or(u64::from(p)))
            .with_step(u64::from(spec.partitions.max(1)));
        NexmarkReader {
            gen,
            count: spec.count,
        }
    }
}

#[allow(clippy::cast_possible_wrap)]
fn int(v: usize) -> Value {
    Value::Int(v as i64)
}

#[allow(clippy::cast_possible_wrap)]
fn ts(v: u64) -> Value {
    Value::Ts(v as i64)
}

fn text(s: String) -> Value {
    Value::Str(Text::from(s))
}

impl PartitionReader for NexmarkReader {
    fn position(&self) -> u64 {
        self.gen.offset()
    }

    fn next_item(&mut self) -> std::io::Result<Option<Item>> {
        use nexmark::event::Event;
        let n = self.gen.global_offset();
        if n >= self.count {
            return Ok(None);
        }
        let row: Row = match self.gen.next() {
            Some(Event::Bid(b)) => vec![
                int(b.auction),
                int(b.bidder),
                int(b.price),
                text(b.channel),
                text(b.url),
                ts(b.date_time),
                text(b.extra),
            ],
            Some(Event::Person(p)) => vec![
                int(p.id),
                text(p.name),
                text(p.email_address),
                text(p.credit_card),
                text(p.city),
                text(p.state),
                ts(p.date_time),
                text(p.extra),
            ],
            Some(Event::Auction(a)) => vec![
                int(a.id),
                text(a.item_name),
                text(a.description),
                int(a.initial_bid),
                int(a.reserve),
                ts(a.date_time),
                ts(a.expires),
                int(a.seller),
                int(a.category),
                text(a.extra),
            ],
            None => return Ok(None),
        };
        Ok(Some(Item::Row(row)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn step_values_take_the_field_type() {
        let ints: FieldGen = serde_json::from_str(r#"{"step": {"values": [1, 2]}}"#).expect("spec");
        let mixed: FieldGen =
            serde_json::from_str(r#"{"step": {"values": [1, 2.5]}}"#).expect("spec");
        assert_eq!(gen_value(&ints, 0, 0, 0), Value::Int(1));
        // A mix of integers and fractions is a float field: 1 is 1.0.
        assert!(matches!(gen_value(&mixed, 0, 0, 0), Value::Float(f) if f == 1.0));
        assert!(matches!(gen_value(&mixed, 0, 0, 1), Value::Float(f) if f == 2.5));
    }

    #[test]
    fn generator_patterns_are_pure_functions_of_seed_and_number() {
        let r: FieldGen =
            serde_json::from_str(r#"{"random": {"min": -3, "max": 3}}"#).expect("spec");
        for i in 0..1000 {
            let v = gen_value(&r, 7, 2, i);
            assert_eq!(v, gen_value(&r, 7, 2, i));
            assert!(matches!(v, Value::Int(x) if (-3..=3).contains(&x)));
        }
        let seq: FieldGen =
            serde_json::from_str(r#"{"sequence": {"start": 10, "step": -2}}"#).expect("spec");
        assert_eq!(gen_value(&seq, 0, 0, 3), Value::Int(4));
        let sine: FieldGen =
            serde_json::from_str(r#"{"sine": {"period": 4, "amplitude": 2}}"#).expect("spec");
        assert!(matches!(gen_value(&sine, 0, 0, 1), Value::Float(f) if (f - 2.0).abs() < 1e-12));
    }
}

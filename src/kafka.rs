//! Kafka: the source's partition reader and start-up plan, and the client
//! pieces of the sink (its producer, and the scan of each output
//! partition's last record that makes its output exactly-once without
//! transactions). See docs/kafka.md.
//!
//! Consumers use `assign()` at offsets from our checkpoint or plan, never
//! group subscription (whose rebalances would make ownership depend on
//! timing), with `auto.offset.reset=error`.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use indexmap::IndexMap;
use rdkafka::config::ClientConfig;
use rdkafka::consumer::{BaseConsumer, CommitMode, Consumer};
use rdkafka::error::KafkaError;
use rdkafka::message::{BorrowedMessage, Headers, Message};
use rdkafka::producer::{BaseProducer, DeliveryResult, ProducerContext};
use rdkafka::types::RDKafkaErrorCode;
use rdkafka::{ClientContext, Offset, TopicPartitionList};
use serde::{Deserialize, Serialize};

use lockstep_operators::value::Schema;

use crate::source::parse::parse_jsonl;
use crate::source::reader::{Item, PartitionReader};

/// How long metadata and offset requests wait for the brokers.
pub const REQUEST_TIMEOUT: Duration = Duration::from_secs(15);

/// The header that names a record's writer: `job/sink`.
pub const WRITER_HEADER: &str = "lockstep-writer";

/// The header that holds a record's position: `epoch.seq`, its epoch and
/// its index among the records of that epoch in its partition.
pub const POSITION_HEADER: &str = "lockstep-position";

/// A client configuration for `brokers` with the user's `properties`
/// (applied last, so they may override ours).
pub fn client_config(brokers: &str, properties: &IndexMap<String, String>) -> ClientConfig {
    let mut c = ClientConfig::new();
    c.set("bootstrap.servers", brokers)
        .set("socket.timeout.ms", "10000")
        .set("log_level", "3");
    for (k, v) in properties {
        c.set(k, v);
    }
    c
}

fn consumer(brokers: &str, properties: &IndexMap<String, String>) -> Result<BaseConsumer, String> {
    let mut c = client_config(brokers, properties);
    // librdkafka's assign() wants a group id, though lockstep never joins
    // the group (and commits to it only with `commit_group`).
    if c.get("group.id").is_none() {
        c.set("group.id", "lockstep");
    }
    c.set("enable.auto.commit", "false")
        .set("enable.auto.offset.store", "false")
        .set("auto.offset.reset", "error")
        .set("enable.partition.eof", "false")
        .set("fetch.wait.max.ms", "20")
        .set("queued.max.messages.kbytes", "16384")
        .create()
        .map_err(|e| format!("cannot create a Kafka consumer for {brokers}: {e}"))
}

/// The partition count of `topic`: a missing topic or unreachable brokers
/// are errors naming them.
///
/// # Errors
/// The topic does not exist, or the brokers cannot be reached.
pub fn partitions(
    brokers: &str,
    properties: &IndexMap<String, String>,
    topic: &str,
) -> Result<u32, String> {
    let c = consumer(brokers, properties)?;
    let md = c
        .fetch_metadata(Some(topic), REQUEST_TIMEOUT)
        .map_err(|e| {
            format!("cannot reach the Kafka brokers {brokers} to read topic \"{topic}\": {e}")
        })?;
    let Some(t) = md.topics().iter().find(|t| t.name() == topic) else {
        return Err(missing(topic, brokers));
    };
    if t.error().is_some() || t.partitions().is_empty() {
        return Err(missing(topic, brokers));
    }
    u32::try_from(t.partitions().len()).map_err(|_| "too many partitions".to_string())
}

fn missing(topic: &str, brokers: &str) -> String {
    format!(
        "topic \"{topic}\" does not exist on the Kafka brokers {brokers}; create it first (lockstep never creates topics: their partition count decides where records go)"
    )
}

/// Where a Kafka source starts on its first run.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Start {
    /// Each partition's first offset.
    Earliest,
    /// Each partition's high watermark at start-up.
    Latest,
    /// The first offset whose record timestamp is at or after this time (ms
    /// since the Unix epoch).
    Time(i64),
}

/// A Kafka source's start-up decisions: partition count, start offsets,
/// and (bounded) end offsets. Made once, when the job first starts, and
/// kept in the decision log so that a restart replays the same input.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Plan {
    /// The topic's partition count.
    pub partitions: u32,
    /// Per partition, the offset to start at.
    pub start: Vec<i64>,
    /// Per partition, the offset to stop before (`"until": "end"`).
    pub end: Option<Vec<i64>>,
}

/// Makes the plan of a Kafka source now.
///
/// # Errors
/// The topic is missing or the brokers cannot be reached.
pub fn plan(
    brokers: &str,
    properties: &IndexMap<String, String>,
    topic: &str,
    start: Start,
    bounded: bool,
) -> Result<Plan, String> {
    let n = partitions(brokers, properties, topic)?;
    let c = consumer(brokers, properties)?;
    let mut marks = Vec::new();
    for p in 0..n {
        let (lo, hi) = c
            .fetch_watermarks(topic, p as i32, REQUEST_TIMEOUT)
            .map_err(|e| {
                format!("cannot read the offsets of topic \"{topic}\" partition {p} from {brokers}: {e}")
            })?;
        marks.push((lo, hi));
    }
    let starts: Vec<i64> = match start {
        Start::Earliest => marks.iter().map(|m| m.0).collect(),
        Start::Latest => marks.iter().map(|m| m.1).collect(),
        Start::Time(t) => {
            let mut tpl = TopicPartitionList::new();
            for p in 0..n {
                tpl.add_partition_offset(topic, p as i32, Offset::Offset(t))
                    .map_err(|e| e.to_string())?;
            }
            let found = c.offsets_for_times(tpl, REQUEST_TIMEOUT).map_err(|e| {
                format!("cannot look up the offsets of topic \"{topic}\" at time {t}: {e}")
            })?;
            let mut out = Vec::new();
            for (p, m) in marks.iter().enumerate() {
                let o = found
                    .find_partition(topic, p as i32)
                    .map(|e| e.offset())
                    .unwrap_or(Offset::End);
                out.push(match o {
                    Offset::Offset(o) => o,
                    // No record at or after the time: start at the end.
                    _ => m.1,
                });
            }
            drop(found);
            out
        }
    };
    Ok(Plan {
        partitions: n,
        start: starts,
        end: bounded.then(|| marks.iter().map(|m| m.1).collect()),
    })
}

/// Reads one partition of a Kafka topic from an offset: JSON lines, one
/// record per message. `next_item` never blocks: with nothing fetched yet
/// it says [`Item::Wait`].
pub struct KafkaReader {
    consumer: BaseConsumer,
    topic: String,
    partition: u32,
    schema: Schema,
    /// The next offset to read.
    next: i64,
    end: Option<i64>,
    last_raw: Option<(String, u64)>,
    /// Commit offsets to the consumer group (monitoring only).
    commit: bool,
    last_commit: Instant,
    /// When the reader last checked whether a bounded partition ended in
    /// records it cannot see (transaction markers, compaction).
    last_probe: Instant,
}

impl KafkaReader {
    /// Opens partition `partition` of `topic` at offset `from`, ending
    /// before `end` (bounded).
    ///
    /// # Errors
    /// The consumer cannot be created or assigned.
    #[allow(clippy::too_many_arguments)]
    pub fn open(
        brokers: &str,
        properties: &IndexMap<String, String>,
        topic: &str,
        partition: u32,
        schema: &Schema,
        from: i64,
        end: Option<i64>,
        group: Option<&str>,
    ) -> Result<KafkaReader, String> {
        let mut props = properties.clone();
        if let Some(g) = group {
            props.insert("group.id".into(), g.to_string());
        }
        let consumer = consumer(brokers, &props)?;
        let mut tpl = TopicPartitionList::new();
        tpl.add_partition_offset(topic, partition as i32, Offset::Offset(from))
            .map_err(|e| e.to_string())?;
        consumer
            .assign(&tpl)
            .map_err(|e| format!("cannot assign topic \"{topic}\" partition {partition}: {e}"))?;
        Ok(KafkaReader {
            consumer,
            topic: topic.to_string(),
            partition,
            schema: schema.clone(),
            next: from,
            end,
            last_raw: None,
            commit: group.is_some(),
            last_commit: Instant::now(),
            last_probe: Instant::now(),
        })
    }

    fn item(
        schema: &Schema,
        last_raw: &mut Option<(String, u64)>,
        m: &BorrowedMessage<'_>,
    ) -> Item {
        let offset = u64::try_from(m.offset()).unwrap_or(0);
        let payload = m.payload().unwrap_or(&[]);
        match std::str::from_utf8(payload) {
            Ok(text) => {
                let text = text.strip_suffix('\n').unwrap_or(text);
                match parse_jsonl(text, schema) {
                    Ok(row) => {
                        *last_raw = Some((text.to_string(), offset));
                        Item::Row(row)
                    }
                    Err(reason) => Item::Bad {
                        raw: text.to_string(),
                        reason,
                        line: offset,
                    },
                }
            }
            Err(e) => Item::Bad {
                raw: String::from_utf8_lossy(payload).into_owned(),
                reason: format!("invalid UTF-8: {e}"),
                line: offset,
            },
        }
    }

    /// Commits the position to the consumer group, at most once a second
    /// (for monitoring; lockstep never reads it back).
    fn maybe_commit(&mut self) {
        if self.commit && self.last_commit.elapsed() >= Duration::from_secs(1) {
            self.last_commit = Instant::now();
            let mut tpl = TopicPartitionList::new();
            if tpl
                .add_partition_offset(
                    &self.topic,
                    self.partition as i32,
                    Offset::Offset(self.next),
                )
                .is_ok()
            {
                let _ = self.consumer.commit(&tpl, CommitMode::Async);
            }
        }
    }
}

impl PartitionReader for KafkaReader {
    fn position(&self) -> u64 {
        u64::try_from(self.next).unwrap_or(0)
    }

    fn caught_up(&mut self) -> bool {
        // The partition's high watermark now: what a lost run can have
        // read is below it. Unknown (the broker away) is not caught up.
        self.consumer
            .fetch_watermarks(&self.topic, self.partition as i32, Duration::from_secs(1))
            .is_ok_and(|(_, hi)| self.next >= hi)
    }

    fn last_raw(&mut self) -> Option<(String, u64)> {
        self.last_raw.clone()
    }

    fn next_item(&mut self) -> std::io::Result<Option<Item>> {
        if self.end.is_some_and(|e| self.next >= e) {
            if self.commit {
                // The final position, once, synchronously.
                self.commit = false;
                let mut tpl = TopicPartitionList::new();
                if tpl
                    .add_partition_offset(
                        &self.topic,
                        self.partition as i32,
                        Offset::Offset(self.next),
                    )
                    .is_ok()
                {
                    let _ = self.consumer.commit(&tpl, CommitMode::Sync);
                }
            }
            return Ok(None);
        }
        self.maybe_commit();
        loop {
            match self.consumer.poll(Duration::ZERO) {
                None => {
                    // A bounded partition whose last offsets hold no
                    // records (transaction markers, compacted away) ends
                    // where the consumer's fetch position passes its end.
                    if let Some(end) = self.end {
                        if self.last_probe.elapsed() >= Duration::from_millis(200) {
                            self.last_probe = Instant::now();
                            let at = self.consumer.position().ok().and_then(|tpl| {
                                tpl.find_partition(&self.topic, self.partition as i32)
                                    .and_then(|e| match e.offset() {
                                        Offset::Offset(o) => Some(o),
                                        _ => None,
                                    })
                            });
                            if at.is_some_and(|o| o >= end) {
                                self.next = end;
                                return Ok(None);
                            }
                        }
                    }
                    return Ok(Some(Item::Wait));
                }
                Some(Ok(m)) => {
                    if m.partition() != self.partition as i32 || m.offset() < self.next {
                        continue;
                    }
                    if self.end.is_some_and(|e| m.offset() >= e) {
                        // Past the planned end (the offsets before it held
                        // no records): the partition ends at its plan.
                        self.next = self.end.unwrap_or(self.next);
                        return Ok(None);
                    }
                    self.next = m.offset() + 1;
                    let item = Self::item(&self.schema, &mut self.last_raw, &m);
                    return Ok(Some(item));
                }
                Some(Err(e)) => {
                    if let Some(message) = fatal(&e, &self.topic, self.partition, self.next) {
                        return Err(std::io::Error::other(message));
                    }
                    // Transient (a broker down, a leader moving): librdkafka
                    // retries; the partition waits.
                    return Ok(Some(Item::Wait));
                }
            }
        }
    }
}

/// The message of a consumer error that stops the job; `None` for a
/// transient one.
fn fatal(e: &KafkaError, topic: &str, partition: u32, next: i64) -> Option<String> {
    let code = e.rdkafka_error_code();
    match code {
        Some(RDKafkaErrorCode::AutoOffsetReset) | Some(RDKafkaErrorCode::OffsetOutOfRange) => Some(format!(
            "offset {next} of topic \"{topic}\" partition {partition} is no longer in the topic (retention deleted it, or the topic was re-created): {e}; add --fresh to start over"
        )),
        Some(RDKafkaErrorCode::UnknownTopicOrPartition) | Some(RDKafkaErrorCode::UnknownTopic) | Some(RDKafkaErrorCode::UnknownPartition) => {
            Some(format!("topic \"{topic}\" partition {partition} does not exist (any more): {e}"))
        }
        Some(RDKafkaErrorCode::Fatal) => Some(format!("Kafka consumer failed: {e}")),
        _ => None,
    }
}

/// A position in a sink partition: the epoch, and the index of the record
/// among that epoch's records in the partition.
pub type Position = (u64, u64);

/// The header value of a position.
pub fn position_header(p: Position) -> String {
    format!("{}.{}", p.0, p.1)
}

fn parse_position(v: &[u8]) -> Option<Position> {
    let s = std::str::from_utf8(v).ok()?;
    let (e, q) = s.split_once('.')?;
    Some((e.parse().ok()?, q.parse().ok()?))
}

/// A record of a sink's output partition, as its headers describe it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Written {
    /// Its offset.
    pub offset: i64,
    /// Its writer header, if any.
    pub writer: Option<String>,
    /// Its position header, if it parses.
    pub position: Option<Position>,
}

/// Reads one record of a partition (the one at `offset`), or the last one
/// (`offset` `None`); `Ok(None)` for an empty partition.
///
/// # Errors
/// The brokers cannot be reached, or the record cannot be read in time.
pub fn read_record(
    brokers: &str,
    properties: &IndexMap<String, String>,
    topic: &str,
    partition: u32,
    offset: Option<i64>,
) -> Result<Option<Written>, String> {
    let c = consumer(brokers, properties)?;
    let (lo, hi) = c
        .fetch_watermarks(topic, partition as i32, REQUEST_TIMEOUT)
        .map_err(|e| {
            format!("cannot read the offsets of topic \"{topic}\" partition {partition}: {e}")
        })?;
    let at = match offset {
        Some(o) if o < lo || o >= hi => return Ok(None),
        Some(o) => o,
        None if hi <= lo => return Ok(None),
        None => hi - 1,
    };
    let mut tpl = TopicPartitionList::new();
    tpl.add_partition_offset(topic, partition as i32, Offset::Offset(at))
        .map_err(|e| e.to_string())?;
    c.assign(&tpl).map_err(|e| e.to_string())?;
    let deadline = Instant::now() + REQUEST_TIMEOUT;
    while Instant::now() < deadline {
        match c.poll(Duration::from_millis(100)) {
            Some(Ok(m)) if m.offset() == at => {
                let mut writer = None;
                let mut position = None;
                if let Some(h) = m.headers() {
                    for h in h.iter() {
                        match (h.key, h.value) {
                            (WRITER_HEADER, Some(v)) => {
                                writer = Some(String::from_utf8_lossy(v).into_owned())
                            }
                            (POSITION_HEADER, Some(v)) => position = parse_position(v),
                            _ => {}
                        }
                    }
                }
                return Ok(Some(Written {
                    offset: at,
                    writer,
                    position,
                }));
            }
            Some(Ok(_)) => {}
            Some(Err(e)) => {
                if let Some(m) = fatal(&e, topic, partition, at) {
                    return Err(m);
                }
            }
            None => {}
        }
    }
    Err(format!(
        "cannot read offset {at} of topic \"{topic}\" partition {partition} within {} s",
        REQUEST_TIMEOUT.as_secs()
    ))
}

/// Deliveries of a sink's producer, by epoch: how many of its records the
/// broker acknowledged, and the last offset per partition.
#[derive(Debug, Default)]
pub struct Acks {
    /// Per epoch: acknowledged records, and per partition the largest
    /// acknowledged offset.
    pub by_epoch: std::collections::BTreeMap<u64, (u64, std::collections::BTreeMap<u32, i64>)>,
    /// The first delivery error.
    pub error: Option<String>,
}

/// The sink producer's context: counts deliveries, and reports an
/// unreachable broker on stderr (at most every ten seconds) while
/// librdkafka retries.
pub struct SinkContext {
    /// The deliveries.
    pub acks: Arc<Mutex<Acks>>,
    /// `sink "name"`, for messages.
    pub what: String,
    last_warning: Mutex<Option<Instant>>,
}

impl SinkContext {
    /// A context for the sink described by `what`.
    pub fn new(what: String) -> SinkContext {
        SinkContext {
            acks: Arc::new(Mutex::new(Acks::default())),
            what,
            last_warning: Mutex::new(None),
        }
    }
}

impl ClientContext for SinkContext {
    fn error(&self, error: KafkaError, reason: &str) {
        if let Ok(mut last) = self.last_warning.lock() {
            if last.is_none_or(|t| t.elapsed() >= Duration::from_secs(10)) {
                *last = Some(Instant::now());
                tracing::warn!(
                    "lockstep: {}: Kafka: {error} ({reason}); retrying, nothing is dropped",
                    self.what
                );
            }
        }
    }
}

impl ProducerContext for SinkContext {
    type DeliveryOpaque = Box<(u32, u64)>;

    fn delivery(&self, result: &DeliveryResult<'_>, opaque: Self::DeliveryOpaque) {
        let (part, epoch) = *opaque;
        let Ok(mut acks) = self.acks.lock() else {
            return;
        };
        match result {
            Ok(m) => {
                let slot = acks.by_epoch.entry(epoch).or_default();
                slot.0 += 1;
                let o = slot.1.entry(part).or_insert(-1);
                *o = (*o).max(m.offset());
            }
            Err((e, _)) => {
                if acks.error.is_none() {
                    acks.error = Some(format!(
                        "{}: the broker refused a record for partition {part} of epoch {epoch}: {e}",
                        self.what
                    ));
                }
            }
        }
    }
}

/// The sink's producer: idempotent, `acks=all`, and waiting (never
/// dropping) while the brokers are down.
///
/// # Errors
/// The producer cannot be created.
pub fn producer(
    brokers: &str,
    properties: &IndexMap<String, String>,
    context: SinkContext,
) -> Result<BaseProducer<SinkContext>, String> {
    let mut c = client_config(brokers, &IndexMap::new());
    c.set("enable.idempotence", "true")
        .set("acks", "all")
        // A record that fails for good stops later ones of its partition
        // too, so a failure never leaves a gap behind acknowledged records.
        .set("enable.gapless.guarantee", "true")
        // 0: no delivery timeout; a record waits for the broker however
        // long it is down (librdkafka retries with backoff).
        .set("message.timeout.ms", "0")
        .set("linger.ms", "5")
        .set("retry.backoff.ms", "100")
        .set("retry.backoff.max.ms", "2000");
    for (k, v) in properties {
        c.set(k, v);
    }
    c.create_with_context(context)
        .map_err(|e| format!("cannot create a Kafka producer for {brokers}: {e}"))
}

/// Kafka's default partitioner for a keyed record: murmur2 of the key,
/// made positive, modulo the partition count — the partition a Java or
/// librdkafka producer with the `murmur2_random` partitioner picks.
pub fn murmur2_partition(key: &[u8], partitions: u32) -> u32 {
    (murmur2(key) & 0x7fff_ffff) % partitions.max(1)
}

/// Kafka's murmur2 (seed 0x9747b28c).
pub fn murmur2(data: &[u8]) -> u32 {
    const M: u32 = 0x5bd1_e995;
    const R: u32 = 24;
    let len = data.len();
    let mut h: u32 = 0x9747_b28c ^ (len as u32);
    let mut chunks = data.chunks_exact(4);
    for c in &mut chunks {
        let mut k = u32::from_le_bytes([c[0], c[1], c[2], c[3]]);
        k = k.wrapping_mul(M);
        k ^= k >> R;
        k = k.wrapping_mul(M);
        h = h.wrapping_mul(M);
        h ^= k;
    }
    let rest = chunks.remainder();
    if rest.len() >= 3 {
        h ^= u32::from(rest[2]) << 16;
    }
    if rest.len() >= 2 {
        h ^= u32::from(rest[1]) << 8;
    }
    if !rest.is_empty() {
        h ^= u32::from(rest[0]);
        h = h.wrapping_mul(M);
    }
    h ^= h >> 13;
    h = h.wrapping_mul(M);
    h ^= h >> 15;
    h
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn murmur2_matches_kafkas_partitioner() {
        // Values from Kafka's own UtilsTest (murmur2 of these strings).
        assert_eq!(murmur2(b"21") as i32, -973932308);
        assert_eq!(murmur2(b"foobar") as i32, -790332482);
        assert_eq!(murmur2(b"a-little-bit-long-string") as i32, -985981536);
        assert_eq!(murmur2(b"a-little-bit-longer-string") as i32, -1486304829);
        assert_eq!(
            murmur2(b"lkjh234lh9fiuh90y23oiuhsafujhadof229phr9h19h89h8") as i32,
            -58897971
        );
        assert_eq!(murmur2(b"abc") as i32, 479470107);
    }

    #[test]
    fn positions_round_trip_through_their_header() {
        assert_eq!(
            parse_position(position_header((12, 345)).as_bytes()),
            Some((12, 345))
        );
        assert_eq!(parse_position(b"12"), None);
    }
}

/// One record of a topic, as [`read_topic`] returns it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TopicRecord {
    /// Its key.
    pub key: Option<Vec<u8>>,
    /// Its value.
    pub value: Vec<u8>,
    /// Its headers, in order.
    pub headers: Vec<(String, Vec<u8>)>,
    /// Its timestamp (ms), when it has one.
    pub timestamp: Option<i64>,
}

/// Every record of every partition of `topic` up to the high watermarks
/// seen when called, by partition (for tests, examples and benchmarks).
///
/// # Errors
/// The topic is missing, or the records cannot be read within the timeout.
pub fn read_topic(brokers: &str, topic: &str) -> Result<Vec<Vec<TopicRecord>>, String> {
    let props = IndexMap::new();
    let n = partitions(brokers, &props, topic)?;
    let mut out = Vec::new();
    for p in 0..n {
        let c = consumer(brokers, &props)?;
        let (lo, hi) = c
            .fetch_watermarks(topic, p as i32, REQUEST_TIMEOUT)
            .map_err(|e| e.to_string())?;
        let mut recs = Vec::new();
        if hi > lo {
            let mut tpl = TopicPartitionList::new();
            tpl.add_partition_offset(topic, p as i32, Offset::Offset(lo))
                .map_err(|e| e.to_string())?;
            c.assign(&tpl).map_err(|e| e.to_string())?;
            let deadline = Instant::now() + REQUEST_TIMEOUT * 4;
            let mut next = lo;
            while next < hi {
                if Instant::now() > deadline {
                    return Err(format!(
                        "topic \"{topic}\" partition {p}: read {next} of {hi} offsets before the timeout"
                    ));
                }
                match c.poll(Duration::from_millis(100)) {
                    Some(Ok(m)) => {
                        next = m.offset() + 1;
                        recs.push(TopicRecord {
                            key: m.key().map(<[u8]>::to_vec),
                            value: m.payload().unwrap_or(&[]).to_vec(),
                            headers: m
                                .headers()
                                .map(|h| {
                                    h.iter()
                                        .map(|h| {
                                            (h.key.to_string(), h.value.unwrap_or(&[]).to_vec())
                                        })
                                        .collect()
                                })
                                .unwrap_or_default(),
                            timestamp: m.timestamp().to_millis(),
                        });
                    }
                    Some(Err(e)) => {
                        if let Some(m) = fatal(&e, topic, p, next) {
                            return Err(m);
                        }
                    }
                    None => {}
                }
            }
        }
        out.push(recs);
    }
    Ok(out)
}

/// The high watermark of each partition of `topic` (for tests and tools).
///
/// # Errors
/// The topic is missing or the brokers cannot be reached.
pub fn high_watermarks(brokers: &str, topic: &str) -> Result<Vec<i64>, String> {
    let props = IndexMap::new();
    let n = partitions(brokers, &props, topic)?;
    let c = consumer(brokers, &props)?;
    (0..n)
        .map(|p| {
            c.fetch_watermarks(topic, p as i32, REQUEST_TIMEOUT)
                .map(|(_, hi)| hi)
                .map_err(|e| e.to_string())
        })
        .collect()
}

/// The offsets consumer group `group` committed for each partition of
/// `topic` (`None`: nothing committed), for monitoring and tests.
///
/// # Errors
/// The topic is missing or the brokers cannot be reached.
pub fn committed(brokers: &str, group: &str, topic: &str) -> Result<Vec<Option<i64>>, String> {
    let mut props = IndexMap::new();
    props.insert("group.id".to_string(), group.to_string());
    let n = partitions(brokers, &props, topic)?;
    let c = consumer(brokers, &props)?;
    let mut tpl = TopicPartitionList::new();
    for p in 0..n {
        tpl.add_partition(topic, p as i32);
    }
    let got = c
        .committed_offsets(tpl, REQUEST_TIMEOUT)
        .map_err(|e| e.to_string())?;
    let out = (0..n)
        .map(|p| {
            got.find_partition(topic, p as i32)
                .and_then(|e| match e.offset() {
                    Offset::Offset(o) => Some(o),
                    _ => None,
                })
        })
        .collect();
    // rdkafka 0.39 hangs dropping a consumer while a list it returned from
    // `committed*` is alive: drop the list first.
    drop(got);
    drop(c);
    Ok(out)
}

//! The config types of the graph file's top level, sources and sinks, exactly
//! as users write them (the `RawGraph` stage). Node configs belong to their
//! node types in `lockstep-operators`.

use indexmap::IndexMap;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use lockstep_operators::encode::Format;
use lockstep_operators::value::Type;

/// `time`: how epochs are derived. Exactly one field.
#[derive(Debug, Clone, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
#[schemars(extend("minProperties" = 1, "maxProperties" = 1))]
pub struct TimeSpec {
    /// Epochs of this many milliseconds of event time.
    #[schemars(range(min = 1))]
    pub epoch_ms: Option<u64>,
    /// Epochs of this many records of each partition.
    #[schemars(range(min = 1))]
    pub epoch_records: Option<u64>,
}

/// `checkpoint`: how often `--state` runs checkpoint.
#[derive(Debug, Clone, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct CheckpointSpec {
    /// Checkpoint whenever `frontier / every_epochs` increases.
    #[schemars(range(min = 1))]
    pub every_epochs: u64,
}

/// What to do with a record that fails to parse or evaluate.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize, Serialize, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum OnError {
    /// Send it to the `errors` output (the default); it is counted.
    #[default]
    Route,
    /// Stop the job, naming the record and the reason.
    Fail,
}

/// `event_time` of a source.
#[derive(Debug, Clone, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct EventTimeSpec {
    /// The `timestamp` (or `int`) field that holds event time.
    pub field: String,
    /// How far out of order records may arrive; the watermark trails the
    /// largest event time by this much.
    #[serde(default)]
    pub max_out_of_order_ms: u64,
}

/// A `file` source.
#[derive(Debug, Clone, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
#[schemars(extend("oneOf" = [{"required": ["path"]}, {"required": ["paths"]}]))]
pub struct FileSourceSpec {
    /// One file, one partition (or `split` partitions).
    pub path: Option<String>,
    /// Several files, one partition each.
    #[schemars(length(min = 1))]
    pub paths: Option<Vec<String>>,
    /// Read the one `path` as this many byte ranges, each a partition.
    #[schemars(range(min = 1))]
    pub split: Option<u32>,
    /// `jsonl` or `csv`; default: `csv` for a `.csv` file, else `jsonl`.
    pub format: Option<Format>,
    /// Field name → type, in order.
    #[schemars(with = "IndexMap<String, Type>", extend("minProperties" = 1))]
    pub schema: IndexMap<String, String>,
    /// Where event time comes from.
    pub event_time: Option<EventTimeSpec>,
    /// `route` (default) or `fail`.
    #[serde(default)]
    pub on_error: OnError,
}

fn jsonl() -> Format {
    Format::Jsonl
}

/// The format a file's name implies when the graph gives none: `csv` for a
/// `.csv` extension (any case), else `jsonl`.
pub fn format_for_path(path: &str) -> Format {
    let is_csv = std::path::Path::new(path)
        .extension()
        .is_some_and(|e| e.eq_ignore_ascii_case("csv"));
    if is_csv {
        Format::Csv
    } else {
        Format::Jsonl
    }
}

/// A `stdin` source.
#[derive(Debug, Clone, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct StdinSourceSpec {
    /// `jsonl` (default) or `csv`.
    #[serde(default = "jsonl")]
    pub format: Format,
    /// Field name → type, in order.
    #[schemars(with = "IndexMap<String, Type>", extend("minProperties" = 1))]
    pub schema: IndexMap<String, String>,
    /// Where event time comes from.
    pub event_time: Option<EventTimeSpec>,
    /// `route` (default) or `fail`.
    #[serde(default)]
    pub on_error: OnError,
}

/// How a `generator` source makes one field.
#[derive(Debug, Clone, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case", deny_unknown_fields)]
pub enum FieldGen {
    /// `int`: start + i × step for record number i.
    Sequence {
        /// The first value.
        #[serde(default)]
        start: i64,
        /// The increment.
        #[serde(default = "one")]
        step: i64,
    },
    /// `int`: uniform in `[min, max]`, from the seed and the record number.
    Random {
        /// Smallest value.
        min: i64,
        /// Largest value.
        max: i64,
    },
    /// `float`: uniform in `[min, max)`.
    RandomFloat {
        /// Smallest value.
        min: f64,
        /// Bound.
        max: f64,
    },
    /// `float`: offset + amplitude × sin(2π i / period).
    Sine {
        /// Peak deviation.
        #[serde(default = "one_f")]
        amplitude: f64,
        /// Records per cycle.
        #[schemars(range(min = 1))]
        period: u64,
        /// Added to every value.
        #[serde(default)]
        offset: f64,
    },
    /// The values in turn, each for `every` records (`int`, `float` or `string`).
    Step {
        /// The values, all numbers or all strings.
        #[schemars(length(min = 1))]
        values: Vec<serde_json::Value>,
        /// Records per value.
        #[serde(default = "one_u")]
        #[schemars(range(min = 1))]
        every: u64,
    },
    /// `string`: one of the values, chosen from the seed and the record number.
    Choice(#[schemars(length(min = 1))] Vec<String>),
    /// `timestamp`: start + i × step_ms.
    Timestamp {
        /// The first value (ms since the Unix epoch).
        start: i64,
        /// Milliseconds between records.
        #[serde(default = "one")]
        step_ms: i64,
    },
}

fn one() -> i64 {
    1
}
fn one_u() -> u64 {
    1
}
fn one_f() -> f64 {
    1.0
}

/// A `generator` source.
#[derive(Debug, Clone, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct GeneratorSpec {
    /// How many records in all (record numbers 0..count).
    pub count: u64,
    /// Partitions; record i goes to partition i mod partitions.
    #[serde(default = "one_u32")]
    #[schemars(range(min = 1))]
    pub partitions: u32,
    /// The seed of the random patterns.
    #[serde(default)]
    pub seed: u64,
    /// Field name → pattern, in order.
    #[schemars(extend("minProperties" = 1))]
    pub fields: IndexMap<String, FieldGen>,
    /// Where event time comes from.
    pub event_time: Option<EventTimeSpec>,
}

fn one_u32() -> u32 {
    1
}

/// Which events a `nexmark` source emits.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum NexmarkEvents {
    /// Person events.
    Person,
    /// Auction events.
    Auction,
    /// Bid events.
    Bid,
}

/// A `nexmark` source.
#[derive(Debug, Clone, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct NexmarkSpec {
    /// Which events.
    pub events: NexmarkEvents,
    /// How many event numbers of the one sequence (all types) to generate.
    pub count: u64,
    /// The event time of event 0, in ms since the Unix epoch.
    pub base_time: u64,
    /// Partitions; event number n goes to partition n mod partitions.
    #[serde(default = "one_u32")]
    #[schemars(range(min = 1))]
    pub partitions: u32,
    /// Watermark lag (the generator is in order; default 0).
    #[serde(default)]
    pub max_out_of_order_ms: u64,
}

/// A `file` sink.
#[derive(Debug, Clone, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct FileSinkSpec {
    /// The upstream.
    pub input: String,
    /// The output file (with `partitions`, see docs for the names).
    pub path: String,
    /// `jsonl` or `csv`; default: `csv` for a `.csv` path, else `jsonl`.
    pub format: Option<Format>,
    /// Fields that order records within an epoch (default: all, in order).
    pub order_by: Option<Vec<String>>,
    /// Write this many files, choosing each record's file by key hash.
    #[schemars(range(min = 1))]
    pub partitions: Option<u32>,
    /// The fields hashed to choose a partition (default: all fields).
    pub key: Option<Vec<String>>,
}

/// A `stdout` sink.
#[derive(Debug, Clone, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct StdoutSinkSpec {
    /// The upstream.
    pub input: String,
    /// `jsonl` (default) or `csv`.
    #[serde(default = "jsonl")]
    pub format: Format,
    /// Fields that order records within an epoch (default: all, in order).
    pub order_by: Option<Vec<String>>,
}

/// A `null` sink.
#[derive(Debug, Clone, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct NullSinkSpec {
    /// The upstream.
    pub input: String,
}

/// Where a `kafka` source starts on its first run: `"earliest"` (default),
/// `"latest"`, or a time (integer ms since the Unix epoch, or an RFC 3339
/// string) whose first record at or after it is read first.
#[derive(Debug, Clone, Deserialize, JsonSchema)]
#[serde(untagged)]
#[schemars(extend("examples" = ["earliest", "latest"]))]
pub enum KafkaStartSpec {
    /// Milliseconds since the Unix epoch.
    Millis(i64),
    /// `earliest`, `latest`, or an RFC 3339 time.
    Text(String),
}

/// `until` of a `kafka` source.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum KafkaUntil {
    /// Stop at the high watermarks seen when the job first started.
    End,
}

/// A `kafka` source.
#[derive(Debug, Clone, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct KafkaSourceSpec {
    /// Bootstrap brokers, `host:port[,host:port...]`.
    pub brokers: String,
    /// The topic: one source partition per topic partition.
    pub topic: String,
    /// `jsonl` (default): one JSON object per message.
    #[serde(default = "jsonl")]
    pub format: Format,
    /// Field name → type, in order.
    #[schemars(with = "IndexMap<String, Type>", extend("minProperties" = 1))]
    pub schema: IndexMap<String, String>,
    /// Where event time comes from.
    pub event_time: Option<EventTimeSpec>,
    /// Where a fresh job starts.
    pub start: Option<KafkaStartSpec>,
    /// `"end"`: a bounded run.
    pub until: Option<KafkaUntil>,
    /// Unbounded runs: after this long with nothing to read, a partition's
    /// watermark advances to the wall clock (a heartbeat, logged so that a
    /// replay repeats it); 0 turns heartbeats off.
    #[serde(default = "default_idle_ms")]
    pub idle_ms: u64,
    /// Commit read offsets to this consumer group, for monitoring only.
    pub commit_group: Option<String>,
    /// Extra librdkafka properties (security, timeouts).
    #[serde(default)]
    pub properties: IndexMap<String, String>,
    /// `route` (default) or `fail`.
    #[serde(default)]
    pub on_error: OnError,
}

fn default_idle_ms() -> u64 {
    1000
}

/// A `kafka` sink.
#[derive(Debug, Clone, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct KafkaSinkSpec {
    /// The upstream.
    pub input: String,
    /// Bootstrap brokers.
    pub brokers: String,
    /// The topic (it must exist; its partition count is fixed).
    pub topic: String,
    /// `jsonl` (default): each record's value is one JSON object.
    #[serde(default = "jsonl")]
    pub format: Format,
    /// The fields of the message key (a JSON object of them) that also
    /// choose the partition (Kafka's murmur2); default: no key, and the
    /// partition is chosen by the value's bytes.
    pub key: Option<Vec<String>>,
    /// Fields that order records within an epoch (default: all, in order).
    pub order_by: Option<Vec<String>>,
    /// Extra librdkafka producer properties.
    #[serde(default)]
    pub properties: IndexMap<String, String>,
}

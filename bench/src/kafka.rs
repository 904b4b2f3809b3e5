//! Kafka benchmarks: lockstep's Kafka source and sink beside a hand-written
//! timely program reading and writing Kafka with rdkafka directly, on the
//! same topic of bids (4 partitions), in the same run.
//!
//! - `kafka-null`: read every bid and count it.
//! - `kafka-win`: bids per auction per 10 s tumbling window, written to a
//!   Kafka topic (4 partitions, keyed by auction; lockstep with its position
//!   headers and acknowledged positions, the baseline with a plain
//!   producer flushed at the end).
//! - `kafka-live`: latency. Bids are produced at a fixed rate with event
//!   time = produce time; an unbounded lockstep job counts them per auction
//!   in 100 ms windows into a topic; a consumer measures, per output record,
//!   the time from its window's end (the wall-clock instant its last record
//!   could have been produced) to the record being readable.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use rdkafka::config::ClientConfig;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::message::{Headers, Message};
use rdkafka::producer::{BaseProducer, BaseRecord, Producer};
use rdkafka::{Offset, TopicPartitionList};
use serde_json::json;
use timely::dataflow::operators::generic::operator::source;
use timely::dataflow::operators::vec::Map;
use timely::dataflow::operators::Operator;

use crate::baseline::{counting_sink, execute, Bid};
use lockstep::{GraphBuilder, Registry};

/// Partitions of the input and output topics.
pub const PARTITIONS: u32 = 4;

fn client(brokers: &str) -> ClientConfig {
    let mut c = ClientConfig::new();
    c.set("bootstrap.servers", brokers)
        .set("group.id", "bench")
        .set("enable.auto.commit", "false")
        .set("auto.offset.reset", "error")
        .set("fetch.wait.max.ms", "20")
        .set("queued.max.messages.kbytes", "16384");
    c
}

/// Creates `topic` with `partitions` partitions (nisshi's CLI).
pub fn create_topic(nisshi: &str, brokers: &str, topic: &str, partitions: u32) {
    let out = std::process::Command::new(nisshi)
        .args(["topic", "create", topic, "--partitions"])
        .arg(partitions.to_string())
        .args(["--broker", &format!("tcp://{brokers}")])
        .output()
        .expect("nisshi topic create");
    assert!(
        out.status.success(),
        "topic {topic}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// Fills `topic` with the bids of the bids file, keyed by auction.
pub fn fill(brokers: &str, topic: &str, file: &std::path::Path) -> u64 {
    let p: BaseProducer = client(brokers)
        .set("linger.ms", "20")
        .set("queue.buffering.max.messages", "200000")
        .create()
        .expect("producer");
    let text = std::fs::read_to_string(file).expect("bids file");
    let mut n = 0;
    for line in text.lines() {
        let bid: Bid = serde_json::from_str(line).expect("bid");
        let key = bid.auction.to_string();
        loop {
            match p.send(BaseRecord::<str, str>::to(topic).key(&key).payload(line)) {
                Ok(()) => break,
                Err((_, _)) => {
                    p.poll(Duration::from_millis(5));
                }
            }
        }
        n += 1;
    }
    p.flush(Duration::from_secs(120)).expect("flush");
    n
}

/// The bids of the partitions `p mod peers == index` of `topic`, up to the
/// high watermarks seen at start, stamped with their 1-second epoch: one
/// consumer per partition (as lockstep has), polled in turn. The
/// capability follows the least epoch of the partitions still open, so
/// that records of one partition never trail it.
fn kafka_bids<'s>(
    scope: timely::dataflow::Scope<'s, u64>,
    brokers: &str,
    topic: &str,
    read: Arc<AtomicU64>,
) -> timely::dataflow::StreamVec<'s, u64, Bid> {
    let (index, peers) = (scope.index(), scope.peers());
    // Per owned partition: its consumer, end offset and current epoch.
    let mut parts: Vec<(BaseConsumer, i64, u64)> = Vec::new();
    for p in (0..PARTITIONS as i32).filter(|p| *p as usize % peers == index) {
        let consumer: BaseConsumer = client(brokers).create().expect("consumer");
        let (lo, hi) = consumer
            .fetch_watermarks(topic, p, Duration::from_secs(10))
            .expect("watermarks");
        if hi > lo {
            let mut tpl = TopicPartitionList::new();
            tpl.add_partition_offset(topic, p, Offset::Offset(lo))
                .expect("tpl");
            consumer.assign(&tpl).expect("assign");
            parts.push((consumer, hi, 0));
        }
    }
    source(scope, "kafka bids", move |cap, info| {
        let activator = scope.activator_for(info.address);
        let mut cap = Some(cap);
        move |output| {
            let Some(c) = cap.as_mut() else { return };
            let mut n = 0u64;
            for (consumer, end, epoch) in parts.iter_mut() {
                let mut batch: Vec<Bid> = Vec::new();
                let mut at = *epoch;
                while batch.len() < 1024 {
                    match consumer.poll(Duration::ZERO) {
                        Some(Ok(m)) => {
                            let bid: Bid =
                                serde_json::from_slice(m.payload().unwrap_or(&[])).expect("bid");
                            let e = u64::try_from(bid.date_time / 1000).unwrap_or(0);
                            if e > at && !batch.is_empty() {
                                output.session(&c.delayed(&at)).give_container(&mut batch);
                                batch.clear();
                            }
                            at = at.max(e);
                            batch.push(bid);
                            n += 1;
                            if m.offset() + 1 >= *end {
                                *end = -1;
                                break;
                            }
                        }
                        Some(Err(e)) => panic!("kafka: {e}"),
                        None => break,
                    }
                }
                if !batch.is_empty() {
                    output.session(&c.delayed(&at)).give_container(&mut batch);
                }
                *epoch = at;
            }
            read.fetch_add(n, Ordering::Relaxed);
            parts.retain(|p| p.1 >= 0);
            match parts.iter().map(|p| p.2).min() {
                None => cap = None,
                Some(least) => {
                    if least > *c.time() {
                        c.downgrade(&least);
                    }
                    if n > 0 {
                        activator.activate();
                    } else {
                        activator.activate_after(Duration::from_micros(200));
                    }
                }
            }
        }
    })
}

/// Hand-written: read and count. Returns (records read, records counted).
pub fn null_job(brokers: &str, topic: &str, workers: usize) -> (u64, u64) {
    let read = Arc::new(AtomicU64::new(0));
    let written = Arc::new(AtomicU64::new(0));
    let (b, t) = (brokers.to_string(), topic.to_string());
    let (r2, w2) = (Arc::clone(&read), Arc::clone(&written));
    execute(workers, move |scope| {
        counting_sink(kafka_bids(scope, &b, &t, Arc::clone(&r2)), Arc::clone(&w2));
    });
    (
        read.load(Ordering::Relaxed),
        written.load(Ordering::Relaxed),
    )
}

/// Hand-written: bids per auction per 10 s window, produced to `out`
/// (keyed by auction, librdkafka's murmur2 partitioner), flushed at the end
/// of each worker. Returns (records read, records written).
pub fn window_job(brokers: &str, topic: &str, out: &str, workers: usize) -> (u64, u64) {
    let read = Arc::new(AtomicU64::new(0));
    let written = Arc::new(AtomicU64::new(0));
    let (b, t, o) = (brokers.to_string(), topic.to_string(), out.to_string());
    let (r2, w2) = (Arc::clone(&read), Arc::clone(&written));
    execute(workers, move |scope| {
        let bids = kafka_bids(scope, &b, &t, Arc::clone(&r2));
        let windows = crate::stateful::count_per_key(
            bids.map(|b| (b.auction, b.date_time)),
            "count per auction",
            |t, ends| {
                ends.clear();
                ends.push(t - t.rem_euclid(10_000) + 10_000);
            },
        );
        let producer: BaseProducer = client(&b)
            .set("partitioner", "murmur2_random")
            .set("linger.ms", "5")
            .set("enable.idempotence", "true")
            .set("acks", "all")
            .create()
            .expect("producer");
        let (o, written) = (o.clone(), Arc::clone(&w2));
        windows.sink(
            timely::dataflow::channels::pact::Pipeline,
            "produce",
            move |(input, frontier)| {
                input.for_each(|_, data| {
                    for (auction, end, n) in data.drain(..) {
                        let key = auction.to_string();
                        let value = format!(
                            "{{\"auction\":{auction},\"window_start\":{},\"window_end\":{end},\"n\":{n}}}",
                            end - 10_000
                        );
                        loop {
                            match producer
                                .send(BaseRecord::<str, str>::to(&o).key(&key).payload(&value))
                            {
                                Ok(()) => break,
                                Err(_) => producer.poll(Duration::from_millis(1)),
                            }
                        }
                        written.fetch_add(1, Ordering::Relaxed);
                    }
                });
                producer.poll(Duration::ZERO);
                if frontier.is_empty() {
                    producer.flush(Duration::from_secs(60)).expect("flush");
                }
            },
        );
    });
    (
        read.load(Ordering::Relaxed),
        written.load(Ordering::Relaxed),
    )
}

const BID_SCHEMA: &str = r#"{"auction": "int", "bidder": "int", "price": "int", "channel": "string", "date_time": "timestamp", "extra": "string"}"#;

/// lockstep: Kafka → null.
pub fn null_graph(brokers: &str, topic: &str) -> lockstep::Graph {
    let schema: serde_json::Value = serde_json::from_str(BID_SCHEMA).expect("schema");
    GraphBuilder::new("kafka-null")
        .epoch_ms(1000)
        .source(
            "bids",
            json!({"type": "kafka", "brokers": brokers, "topic": topic, "until": "end",
                   "schema": schema, "event_time": {"field": "date_time"}}),
        )
        .sink("out", json!({"type": "null", "input": "bids"}))
        .build(&Registry::builtin())
        .unwrap_or_else(|e| panic!("{e}"))
}

/// lockstep: Kafka → 10 s windows per auction → Kafka.
pub fn window_graph(brokers: &str, topic: &str, out: &str) -> lockstep::Graph {
    let schema: serde_json::Value = serde_json::from_str(BID_SCHEMA).expect("schema");
    GraphBuilder::new("kafka-win")
        .epoch_ms(1000)
        .source(
            "bids",
            json!({"type": "kafka", "brokers": brokers, "topic": topic, "until": "end",
                   "schema": schema, "event_time": {"field": "date_time"}}),
        )
        .node(
            "w",
            json!({"type": "window", "input": "bids", "key": ["auction"],
                   "window": {"tumbling_ms": 10000}, "aggregate": {"n": "count(*)"}}),
        )
        .sink(
            "out",
            json!({"type": "kafka", "input": "w", "brokers": brokers, "topic": out, "key": ["auction"]}),
        )
        .sink("late", json!({"type": "null", "input": "w.late"}))
        .build(&Registry::builtin())
        .unwrap_or_else(|e| panic!("{e}"))
}

/// lockstep, unbounded: live bids → 100 ms windows per auction → Kafka.
pub fn live_graph(brokers: &str, topic: &str, out: &str) -> lockstep::Graph {
    let schema: serde_json::Value = serde_json::from_str(BID_SCHEMA).expect("schema");
    GraphBuilder::new("kafka-live")
        .epoch_ms(100)
        .source(
            "bids",
            json!({"type": "kafka", "brokers": brokers, "topic": topic, "idle_ms": 200,
                   "schema": schema, "event_time": {"field": "date_time"}}),
        )
        .node(
            "w",
            json!({"type": "window", "input": "bids", "key": ["auction"],
                   "window": {"tumbling_ms": 100}, "aggregate": {"n": "count(*)"}}),
        )
        .sink(
            "out",
            json!({"type": "kafka", "input": "w", "brokers": brokers, "topic": out, "key": ["auction"]}),
        )
        .sink("late", json!({"type": "null", "input": "w.late"}))
        .build(&Registry::builtin())
        .unwrap_or_else(|e| panic!("{e}"))
}

fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as i64)
}

/// Produces `rate` bids per second with event time = now into `topic` for
/// `seconds`, while a consumer of `out` records, per output record, the
/// time from its window's end to when it was read. Returns the latencies
/// in ms and the bids produced.
pub fn live(brokers: &str, topic: &str, out: &str, rate: u64, seconds: u64) -> (Vec<f64>, u64) {
    let producer: BaseProducer = client(brokers)
        .set("linger.ms", "1")
        .create()
        .expect("producer");
    let consumer: BaseConsumer = client(brokers).create().expect("consumer");
    let mut tpl = TopicPartitionList::new();
    for p in 0..PARTITIONS as i32 {
        tpl.add_partition_offset(out, p, Offset::Beginning)
            .expect("tpl");
    }
    consumer.assign(&tpl).expect("assign");
    let mut lat = Vec::new();
    let start = Instant::now();
    let mut sent = 0u64;
    let mut i = 0i64;
    let deadline = Duration::from_secs(seconds);
    while start.elapsed() < deadline + Duration::from_secs(2) {
        // Produce what the rate asks for by now (within the run).
        if start.elapsed() < deadline {
            let due = (start.elapsed().as_secs_f64() * rate as f64) as u64;
            while sent < due {
                let ts = now_ms();
                let auction = 1000 + (i * 7919) % 500;
                let v = format!(
                    "{{\"auction\":{auction},\"bidder\":{i},\"price\":{},\"channel\":\"c\",\"date_time\":{ts},\"extra\":\"\"}}",
                    i % 1000
                );
                let key = auction.to_string();
                if producer
                    .send(BaseRecord::<str, str>::to(topic).key(&key).payload(&v))
                    .is_err()
                {
                    producer.poll(Duration::from_millis(1));
                    continue;
                }
                sent += 1;
                i += 1;
            }
        }
        producer.poll(Duration::ZERO);
        while let Some(Ok(m)) = consumer.poll(Duration::from_millis(1)) {
            let seen = now_ms();
            let v: serde_json::Value =
                serde_json::from_slice(m.payload().unwrap_or(&[])).expect("json");
            let end = v["window_end"].as_i64().expect("window_end");
            let _ = m.headers().map(|h| h.count());
            lat.push((seen - end) as f64);
        }
    }
    (lat, sent)
}

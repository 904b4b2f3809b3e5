//! The Nexmark examples' checked-in outputs equal a reference computed here
//! independently, in plain Rust over the `nexmark` crate's events, by the
//! spec's ordering rule (epoch, then all fields, then encoded bytes).

use nexmark::config::NexmarkConfig;
use nexmark::event::{Event, EventType};
use nexmark::EventGenerator;

use super::common::*;

const BASE: u64 = 1_700_000_000_000;

/// Bids among the first `count` event numbers, with the partition each lands in.
fn bids(count: u64, partitions: u64) -> Vec<(u64, nexmark::event::Bid)> {
    let cfg = NexmarkConfig {
        base_time: BASE,
        ..Default::default()
    };
    let mut gen = EventGenerator::new(cfg).with_type_filter(EventType::Bid);
    let mut out = Vec::new();
    let mut k = 0;
    while gen.global_offset() < count {
        match gen.next() {
            Some(Event::Bid(b)) => out.push((k % partitions, b)),
            _ => panic!("type filter"),
        }
        k += 1;
    }
    out
}

fn be(i: i64) -> [u8; 9] {
    let mut k = [1u8; 9];
    k[1..].copy_from_slice(&((i as u64) ^ (1 << 63)).to_be_bytes());
    k
}

fn str_key(s: &str) -> Vec<u8> {
    let mut k = vec![1];
    for &b in s.as_bytes() {
        k.push(b);
        if b == 0 {
            k.push(0xFF);
        }
    }
    k.extend([0, 0]);
    k
}

#[test]
fn q1_example_equals_the_reference() {
    let mut rows: Vec<(u64, Vec<u8>, String)> = Vec::new();
    for (_, b) in bids(2000, 2) {
        let price = (b.price as i64) * 908 / 1000;
        let epoch = b.date_time / 1000;
        let mut key = Vec::new();
        for k in [b.auction as i64, b.bidder as i64, price, b.date_time as i64] {
            key.extend(be(k));
        }
        key.extend(str_key(&b.extra));
        let line = format!(
            "{{\"auction\":{},\"bidder\":{},\"price\":{price},\"date_time\":{},\"extra\":\"{}\"}}\n",
            b.auction, b.bidder, b.date_time, b.extra
        );
        rows.push((epoch, key, line));
    }
    rows.sort();
    let want: String = rows.into_iter().map(|r| r.2).collect();
    assert_same(
        want.as_bytes(),
        &read(&root().join("examples/nexmark-q1/expected/q1.out.jsonl")),
        "q1 vs reference",
    );
}

#[test]
fn q2_example_equals_the_reference() {
    let mut rows: Vec<(u64, Vec<u8>, String)> = Vec::new();
    for (_, b) in bids(200_000, 4) {
        if b.auction % 123 != 0 {
            continue;
        }
        let mut key = Vec::new();
        key.extend(be(b.auction as i64));
        key.extend(be(b.price as i64));
        rows.push((
            b.date_time / 1000,
            key,
            format!("{},{}\r\n", b.auction, b.price),
        ));
    }
    assert!(rows.len() > 1000);
    rows.sort();
    let want: String = std::iter::once("auction,price\r\n".to_string())
        .chain(rows.into_iter().map(|r| r.2))
        .collect();
    assert_same(
        want.as_bytes(),
        &read(&root().join("examples/nexmark-q2/expected/q2.out.csv")),
        "q2 vs reference",
    );
}

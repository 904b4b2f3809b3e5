//! The progress bar: on an interactive terminal, a line on standard error
//! with how much of a bounded input was read (bytes of files, records of
//! generated sources), events/s and the time left. Quiet otherwise.

use std::io::Write;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use super::Observer;

/// A running progress bar; [`Progress::stop`] clears it.
pub struct Progress {
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

/// Width of the bar in characters.
const WIDTH: usize = 24;

fn human(n: f64) -> String {
    if n >= 1e9 {
        format!("{:.1}G", n / 1e9)
    } else if n >= 1e6 {
        format!("{:.1}M", n / 1e6)
    } else if n >= 1e3 {
        format!("{:.1}k", n / 1e3)
    } else {
        format!("{n:.0}")
    }
}

/// One line of the bar: done of total (if known), records/s, time left.
pub fn line(done: Option<(u64, u64)>, records: u64, rate: f64) -> String {
    let mut s = String::new();
    if let Some((d, t)) = done.filter(|(_, t)| *t > 0) {
        #[allow(clippy::cast_precision_loss)]
        let f = (d as f64 / t as f64).clamp(0.0, 1.0);
        #[allow(clippy::cast_possible_truncation, clippy::cast_sign_loss)]
        let filled = (f * WIDTH as f64).round() as usize;
        s.push_str(&format!(
            "[{}{}] {:>3.0}% ",
            "#".repeat(filled),
            "-".repeat(WIDTH - filled),
            f * 100.0
        ));
    }
    #[allow(clippy::cast_precision_loss)]
    s.push_str(&format!(
        "{} records, {}/s",
        human(records as f64),
        human(rate)
    ));
    s
}

impl Progress {
    /// Starts the bar if standard error is a terminal; else does nothing.
    pub fn start(o: Arc<Observer>) -> Progress {
        use std::io::IsTerminal;
        let stop = Arc::new(AtomicBool::new(false));
        if !std::io::stderr().is_terminal() {
            return Progress { stop, thread: None };
        }
        let flag = Arc::clone(&stop);
        let thread = std::thread::Builder::new()
            .name("lockstep-progress".into())
            .spawn(move || {
                let started = Instant::now();
                let mut last: Option<(Instant, u64)> = None;
                let mut rate = 0.0;
                while !flag.load(Ordering::SeqCst) {
                    std::thread::sleep(Duration::from_millis(200));
                    let s = o.snapshot();
                    let records: u64 = s["partitions"]
                        .as_array()
                        .map(|p| p.iter().filter_map(|x| x["records"].as_u64()).sum())
                        .unwrap_or(0);
                    let now = Instant::now();
                    if let Some((t, r)) = last {
                        let dt = now.duration_since(t).as_secs_f64();
                        if dt > 0.0 {
                            #[allow(clippy::cast_precision_loss)]
                            let inst = records.saturating_sub(r) as f64 / dt;
                            rate = if rate == 0.0 {
                                inst
                            } else {
                                0.7 * rate + 0.3 * inst
                            };
                        }
                    }
                    last = Some((now, records));
                    let done = s["progress"]["done"]
                        .as_u64()
                        .zip(s["progress"]["total"].as_u64());
                    let mut text = line(done, records, rate);
                    if let Some((d, t)) = done {
                        let el = started.elapsed().as_secs_f64();
                        if d > 0 && d < t {
                            #[allow(clippy::cast_precision_loss)]
                            let left = el * (t - d) as f64 / d as f64;
                            text.push_str(&format!(", ETA {left:.0} s"));
                        }
                    }
                    let mut e = std::io::stderr().lock();
                    let _ = write!(e, "\r\x1b[2K{text}");
                    let _ = e.flush();
                }
                let mut e = std::io::stderr().lock();
                let _ = write!(e, "\r\x1b[2K");
                let _ = e.flush();
            })
            .ok();
        Progress { stop, thread }
    }

    /// Stops and clears the bar.
    pub fn stop(mut self) {
        self.stop.store(true, Ordering::SeqCst);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

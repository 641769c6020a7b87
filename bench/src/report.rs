//! What every bench prints, and the load driver behind most of it: run N
//! clients over M requests, record every latency, summarise as req/s, p50,
//! p99 and max, and print plain-text tables, failures and verdicts. The
//! tables' columns are parsed by users' scripts: change them with care.

use std::future::Future;
use std::pin::Pin;
use std::time::{Duration, Instant};

use anyhow::Context;

/// How many error messages a phase keeps to show.
const ERROR_SAMPLES: usize = 5;
/// How many of them [`show_errors`] prints.
const SHOWN_ERRORS: usize = 3;

/// One request in flight, as the load driver runs it.
pub type Op<T> = Pin<Box<dyn Future<Output = Result<T, String>> + Send>>;

/// Everything one load phase measured.
#[derive(Debug)]
pub struct Phase<T> {
    /// One latency per completed request, failures included.
    pub latencies: Vec<Duration>,
    /// What the successful requests returned, in no particular order.
    pub values: Vec<T>,
    /// How many requests failed (transport error or unexpected status).
    pub errors: usize,
    /// The first few failure messages.
    pub error_samples: Vec<String>,
    /// Wall-clock time from the first request sent to the last answered.
    pub elapsed: Duration,
}

impl<T> Phase<T> {
    /// A phase with nothing measured yet, room for `requests`.
    pub fn new(requests: usize) -> Self {
        Phase {
            latencies: Vec::with_capacity(requests),
            values: Vec::with_capacity(requests),
            errors: 0,
            error_samples: Vec::new(),
            elapsed: Duration::ZERO,
        }
    }

    /// Counts one request that took `latency`.
    pub fn record(&mut self, latency: Duration, result: Result<T, String>) {
        self.latencies.push(latency);
        match result {
            Ok(value) => self.values.push(value),
            Err(message) => {
                self.errors += 1;
                if self.error_samples.len() < ERROR_SAMPLES {
                    self.error_samples.push(message);
                }
            }
        }
    }
}

/// Prints (to stderr) how many requests of a phase failed and the first
/// few messages.
pub fn show_errors<T>(what: &str, phase: &Phase<T>) {
    if phase.errors == 0 {
        return;
    }
    eprintln!(
        "{what}: {} of {} requests failed; first ones:",
        phase.errors,
        phase.latencies.len()
    );
    for message in phase.error_samples.iter().take(SHOWN_ERRORS) {
        eprintln!("  {message}");
    }
}

/// Runs `requests` calls of `op` from `clients` concurrent tasks, each task
/// issuing its share one after the other. `op` gets the request's index in
/// `0..requests`; client `c` handles indices `c`, `c + clients`, ...
pub async fn run_load<T, F, Fut>(clients: usize, requests: usize, op: F) -> anyhow::Result<Phase<T>>
where
    T: Send + 'static,
    F: Fn(usize) -> Fut + Clone + Send + 'static,
    Fut: Future<Output = Result<T, String>> + Send,
{
    let clients = clients.max(1);
    let started = Instant::now();
    let mut tasks = Vec::with_capacity(clients);
    for client in 0..clients {
        let op = op.clone();
        tasks.push(tokio::spawn(async move {
            let mut phase = Phase::new(requests / clients + 1);
            for index in (client..requests).step_by(clients) {
                let sent = Instant::now();
                let result = op(index).await;
                phase.record(sent.elapsed(), result);
            }
            phase
        }));
    }
    let mut total = Phase::new(requests);
    for task in tasks {
        let part = task.await.context("a load client task panicked")?;
        total.latencies.extend(part.latencies);
        total.values.extend(part.values);
        total.errors += part.errors;
        let room = ERROR_SAMPLES.saturating_sub(total.error_samples.len());
        total
            .error_samples
            .extend(part.error_samples.into_iter().take(room));
    }
    total.elapsed = started.elapsed();
    Ok(total)
}

/// The numbers a table row shows for one phase.
#[derive(Debug, Clone, Copy)]
pub struct Summary {
    /// Requests completed, failures included.
    pub requests: usize,
    /// Requests that failed.
    pub errors: usize,
    /// Successful requests per second of wall-clock time.
    pub per_second: f64,
    /// Latencies, failures included.
    pub latency: Latency,
}

impl Summary {
    /// Summarises a phase; sorts its latencies in place.
    pub fn of<T>(phase: &mut Phase<T>) -> Self {
        phase.latencies.sort_unstable();
        let ok = phase.latencies.len().saturating_sub(phase.errors);
        let seconds = phase.elapsed.as_secs_f64();
        Summary {
            requests: phase.latencies.len(),
            errors: phase.errors,
            per_second: if seconds > 0.0 {
                ok as f64 / seconds
            } else {
                0.0
            },
            latency: Latency::of_sorted(&phase.latencies),
        }
    }

    /// The `req/s` cell: whole requests per second.
    pub fn rate(&self) -> String {
        format!("{:.0}", self.per_second)
    }
}

/// The latency columns of a table row.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct Latency {
    pub p50: Duration,
    pub p99: Duration,
    pub max: Duration,
}

impl Latency {
    /// The percentiles of ascending `sorted` (zero when empty).
    pub fn of_sorted(sorted: &[Duration]) -> Self {
        Latency {
            p50: percentile(sorted, 50.0),
            p99: percentile(sorted, 99.0),
            max: sorted.last().copied().unwrap_or_default(),
        }
    }

    /// The `p50 ms`, `p99 ms` and `max ms` cells.
    pub fn cells(&self) -> [String; 3] {
        [ms(self.p50), ms(self.p99), ms(self.max)]
    }
}

/// The nearest-rank percentile of ascending `sorted` (zero when empty).
pub fn percentile(sorted: &[Duration], pct: f64) -> Duration {
    if sorted.is_empty() {
        return Duration::ZERO;
    }
    let rank = ((pct / 100.0) * sorted.len() as f64).ceil() as usize;
    sorted[rank.clamp(1, sorted.len()) - 1]
}

/// Milliseconds with two decimals.
pub fn ms(duration: Duration) -> String {
    format!("{:.2}", duration.as_secs_f64() * 1000.0)
}

/// The verdict on a target, in the words each bench has always printed
/// (users' scripts match them, so the spellings were not unified).
#[derive(Debug, Clone, Copy)]
pub enum Verdicts {
    /// `MET` / `NOT MET` (`records`).
    Upper,
    /// `met` / `NOT MET` (`jobs`).
    Shouted,
    /// `met` / `NOT met` (`query`, `memory`).
    Lower,
}

impl Verdicts {
    pub fn of(self, met: bool) -> &'static str {
        match (self, met) {
            (Verdicts::Upper, true) => "MET",
            (Verdicts::Upper | Verdicts::Shouted, false) => "NOT MET",
            (Verdicts::Shouted | Verdicts::Lower, true) => "met",
            (Verdicts::Lower, false) => "NOT met",
        }
    }
}

/// The machine's core count, which every bench prints first.
pub fn cores() -> usize {
    std::thread::available_parallelism().map_or(0, usize::from)
}

/// A plain-text table: the first column left-aligned, the rest right-aligned.
#[derive(Debug, Default)]
pub struct Table {
    rows: Vec<Vec<String>>,
}

impl Table {
    /// A table with these column headings.
    pub fn new<S: Into<String>>(header: impl IntoIterator<Item = S>) -> Self {
        Table {
            rows: vec![header.into_iter().map(Into::into).collect()],
        }
    }

    /// Appends a row; missing trailing cells print empty.
    pub fn row<S: Into<String>>(&mut self, cells: impl IntoIterator<Item = S>) {
        self.rows.push(cells.into_iter().map(Into::into).collect());
    }

    /// Prints the table to stdout after a blank line.
    pub fn print(&self) {
        println!();
        print!("{}", self.render());
    }

    /// The table as lines of text, with a rule under the header.
    pub fn render(&self) -> String {
        let columns = self.rows.iter().map(Vec::len).max().unwrap_or(0);
        let widths: Vec<usize> = (0..columns)
            .map(|column| {
                self.rows
                    .iter()
                    .filter_map(|row| row.get(column))
                    .map(|cell| cell.chars().count())
                    .max()
                    .unwrap_or(0)
            })
            .collect();
        let mut out = String::new();
        for (index, row) in self.rows.iter().enumerate() {
            let cells: Vec<String> = widths
                .iter()
                .enumerate()
                .map(|(column, &width)| {
                    let cell = row.get(column).map_or("", String::as_str);
                    if column == 0 {
                        format!("{cell:<width$}")
                    } else {
                        format!("{cell:>width$}")
                    }
                })
                .collect();
            out.push_str(cells.join("  ").trim_end());
            out.push('\n');
            if index == 0 {
                let rule = widths.iter().sum::<usize>() + 2 * widths.len().saturating_sub(1);
                out.push_str(&"-".repeat(rule));
                out.push('\n');
            }
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn millis(values: &[u64]) -> Vec<Duration> {
        values.iter().copied().map(Duration::from_millis).collect()
    }

    #[test]
    fn percentiles_use_the_nearest_rank() {
        let sorted = millis(&(1..=100).collect::<Vec<_>>());
        assert_eq!(percentile(&sorted, 50.0), Duration::from_millis(50));
        assert_eq!(percentile(&sorted, 99.0), Duration::from_millis(99));
        assert_eq!(percentile(&sorted, 100.0), Duration::from_millis(100));
        assert_eq!(percentile(&millis(&[7]), 99.0), Duration::from_millis(7));
        assert_eq!(percentile(&[], 50.0), Duration::ZERO);
    }

    #[test]
    fn summary_counts_only_successes_in_throughput() {
        let mut phase = Phase {
            latencies: millis(&[3, 1, 2, 4]),
            values: vec![(); 3],
            errors: 1,
            error_samples: vec!["boom".into()],
            elapsed: Duration::from_secs(1),
        };
        let summary = Summary::of(&mut phase);
        assert_eq!(summary.requests, 4);
        assert_eq!(summary.errors, 1);
        assert!((summary.per_second - 3.0).abs() < 1e-9);
        assert_eq!(summary.latency.p50, Duration::from_millis(2));
        assert_eq!(summary.latency.max, Duration::from_millis(4));
    }

    #[tokio::test]
    async fn load_runs_every_index_once() {
        let mut phase = run_load(3, 10, |index| async move {
            if index == 4 {
                Err(format!("request {index} failed"))
            } else {
                Ok(index)
            }
        })
        .await
        .expect("tasks do not panic");
        phase.values.sort_unstable();
        assert_eq!(phase.values, vec![0, 1, 2, 3, 5, 6, 7, 8, 9]);
        assert_eq!(phase.errors, 1);
        assert_eq!(phase.latencies.len(), 10);
        assert_eq!(phase.error_samples, vec!["request 4 failed".to_owned()]);
    }

    #[test]
    fn verdicts_keep_each_benchs_spelling() {
        assert_eq!(Verdicts::Upper.of(true), "MET");
        assert_eq!(Verdicts::Shouted.of(false), "NOT MET");
        assert_eq!(Verdicts::Lower.of(false), "NOT met");
        assert_eq!(Verdicts::Lower.of(true), "met");
    }

    #[test]
    fn tables_align_their_columns() {
        let mut table = Table::new(["op", "req/s"]);
        table.row(["create", "12.5"]);
        table.row(["read", "1000.0"]);
        assert_eq!(
            table.render(),
            "op       req/s\n--------------\ncreate    12.5\nread    1000.0\n"
        );
    }
}

//! Load driving and latency statistics: run N clients over M requests,
//! record every latency, and summarise as req/s, p50, p99 and max.

use std::future::Future;
use std::time::{Duration, Instant};

use anyhow::Context;

/// How many error messages a phase keeps to show.
const ERROR_SAMPLES: usize = 5;

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
            let mut phase = Phase {
                latencies: Vec::with_capacity(requests / clients + 1),
                values: Vec::with_capacity(requests / clients + 1),
                errors: 0,
                error_samples: Vec::new(),
                elapsed: Duration::ZERO,
            };
            for index in (client..requests).step_by(clients) {
                let sent = Instant::now();
                let result = op(index).await;
                phase.latencies.push(sent.elapsed());
                match result {
                    Ok(value) => phase.values.push(value),
                    Err(message) => {
                        phase.errors += 1;
                        if phase.error_samples.len() < ERROR_SAMPLES {
                            phase.error_samples.push(message);
                        }
                    }
                }
            }
            phase
        }));
    }
    let mut total = Phase {
        latencies: Vec::with_capacity(requests),
        values: Vec::with_capacity(requests),
        errors: 0,
        error_samples: Vec::new(),
        elapsed: Duration::ZERO,
    };
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
    pub p50: Duration,
    pub p99: Duration,
    pub max: Duration,
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
            p50: percentile(&phase.latencies, 50.0),
            p99: percentile(&phase.latencies, 99.0),
            max: phase.latencies.last().copied().unwrap_or_default(),
        }
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
        assert_eq!(summary.p50, Duration::from_millis(2));
        assert_eq!(summary.max, Duration::from_millis(4));
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

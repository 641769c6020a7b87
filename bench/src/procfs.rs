//! A process's memory as the kernel reports it in `/proc/<pid>/status`
//! (`VmRSS`, the resident set now; `VmHWM`, its peak), for the benches
//! that watch a worker's or the api's memory, and finding a process by name.

use anyhow::Context;

/// A `/proc/<pid>/status` field given in kB (KiB), in KiB.
pub fn status_kib(pid: u32, field: &str) -> anyhow::Result<f64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status"))
        .with_context(|| format!("cannot read /proc/{pid}/status (has the worker exited?)"))?;
    parse_kib(&status, field).with_context(|| format!("no {field} in /proc/{pid}/status"))
}

/// The pid of the only process named `name` (`flag` is the option that
/// names one when there are several or none).
pub fn find(name: &str, flag: &str) -> anyhow::Result<u32> {
    let mut found = Vec::new();
    for entry in std::fs::read_dir("/proc")? {
        let entry = entry?;
        let Ok(pid) = entry.file_name().to_string_lossy().parse::<u32>() else {
            continue;
        };
        if let Ok(comm) = std::fs::read_to_string(format!("/proc/{pid}/comm")) {
            if comm.trim() == name {
                found.push(pid);
            }
        }
    }
    match found.as_slice() {
        [pid] => Ok(*pid),
        [] => anyhow::bail!("no process named {name} runs; start one or pass {flag}"),
        many => anyhow::bail!("several {name} processes run ({many:?}); pass {flag}"),
    }
}

/// CPU time used so far, in seconds, by the processes of each group of
/// this machine (by process name: `postgres`, `crust-api`, `crust-worker`,
/// `crust-scheduler`, `crust-bench`, `rabbitmq` for `beam.smp`; others are
/// left out), from `/proc/<pid>/stat` (user + system, all threads).
/// Processes that ended since are not counted, so take readings close
/// together and compare them with [`cpu_shares`].
pub fn cpu_by_group() -> std::collections::BTreeMap<&'static str, f64> {
    // USER_HZ, the unit of /proc/<pid>/stat times, is 100 on Linux.
    const TICKS: f64 = 100.0;
    let mut groups = std::collections::BTreeMap::new();
    let Ok(entries) = std::fs::read_dir("/proc") else {
        return groups;
    };
    for entry in entries.flatten() {
        let Ok(pid) = entry.file_name().to_string_lossy().parse::<u32>() else {
            continue;
        };
        let Ok(stat) = std::fs::read_to_string(format!("/proc/{pid}/stat")) else {
            continue;
        };
        let Some((name, ticks)) = parse_stat(&stat) else {
            continue;
        };
        let group = match name {
            "postgres" => "postgres",
            "crust-api" => "crust-api",
            "crust-worker" => "crust-worker",
            "crust-scheduler" => "crust-scheduler",
            "crust-bench" => "crust-bench",
            "beam.smp" => "rabbitmq",
            _ => continue,
        };
        *groups.entry(group).or_insert(0.0) += ticks / TICKS;
    }
    groups
}

/// Each group's share of one core between two [`cpu_by_group`] readings
/// `seconds` apart, in percent, highest first.
pub fn cpu_shares(
    before: &std::collections::BTreeMap<&'static str, f64>,
    after: &std::collections::BTreeMap<&'static str, f64>,
    seconds: f64,
) -> Vec<(&'static str, f64)> {
    let mut shares: Vec<(&'static str, f64)> = after
        .iter()
        .map(|(group, used)| {
            let spent = used - before.get(group).copied().unwrap_or(0.0);
            (*group, 100.0 * spent.max(0.0) / seconds.max(1e-9))
        })
        .collect();
    shares.sort_by(|a, b| b.1.total_cmp(&a.1));
    shares
}

/// Prints where the CPU went between two [`cpu_by_group`] readings, as
/// shares of one core beside what the machine has (`cores` × 100 %): the
/// group near its share of the machine, or the machine near full, is the
/// limit of that phase.
pub fn print_cpu(what: &str, before: &std::collections::BTreeMap<&'static str, f64>, seconds: f64) {
    let shares = cpu_shares(before, &cpu_by_group(), seconds);
    let total: f64 = shares.iter().map(|(_, share)| share).sum();
    let parts: Vec<String> = shares
        .iter()
        .filter(|(_, share)| *share >= 0.5)
        .map(|(group, share)| format!("{group} {share:.0} %"))
        .collect();
    println!(
        "CPU during {what} (% of one core; the machine has {} %): {} — together {total:.0} %",
        crate::report::cores() * 100,
        parts.join(", ")
    );
}

/// The process name and its user + system ticks from a `/proc/<pid>/stat`
/// line (the name is in parentheses and may hold spaces).
fn parse_stat(stat: &str) -> Option<(&str, f64)> {
    let open = stat.find('(')?;
    let close = stat.rfind(')')?;
    let name = &stat[open + 1..close];
    let fields: Vec<&str> = stat[close + 1..].split_whitespace().collect();
    // After the name: state is field 3, utime 14 and stime 15 (1-based).
    let utime: f64 = fields.get(11)?.parse().ok()?;
    let stime: f64 = fields.get(12)?.parse().ok()?;
    Some((name, utime + stime))
}

/// `field`'s value in KiB from the text of a status file.
fn parse_kib(status: &str, field: &str) -> Option<f64> {
    let line = status
        .lines()
        .find(|line| line.starts_with(&format!("{field}:")))?;
    line[field.len() + 1..]
        .trim()
        .trim_end_matches("kB")
        .trim()
        .parse()
        .ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stat_lines_give_the_name_and_the_cpu_ticks() {
        let stat =
            "4242 (crust worker) S 1 4242 4242 0 -1 4194560 500 0 0 0 250 50 0 0 20 0 9 0 100 0 0";
        assert_eq!(parse_stat(stat), Some(("crust worker", 300.0)));
        assert_eq!(parse_stat("4242 (x) S 1"), None);
    }

    #[test]
    fn shares_are_percent_of_one_core_highest_first() {
        let before = std::collections::BTreeMap::from([("postgres", 10.0), ("crust-api", 5.0)]);
        let after = std::collections::BTreeMap::from([
            ("postgres", 28.0),
            ("crust-api", 9.0),
            ("rabbitmq", 1.0),
        ]);
        assert_eq!(
            cpu_shares(&before, &after, 10.0),
            [("postgres", 180.0), ("crust-api", 40.0), ("rabbitmq", 10.0)]
        );
    }

    #[test]
    fn fields_are_read_in_kib() {
        let status = "Name:\tcrust-worker\nVmPeak:\t  99999 kB\nVmHWM:\t  204800 kB\nVmRSS:\t   10240 kB\nThreads:\t3\n";
        assert_eq!(parse_kib(status, "VmRSS"), Some(10_240.0));
        assert_eq!(parse_kib(status, "VmHWM"), Some(204_800.0));
        assert_eq!(parse_kib(status, "VmSwap"), None);
        assert_eq!(parse_kib("Name:\tx\n", "VmRSS"), None);
    }
}

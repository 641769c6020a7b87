//! What live log followers need from Postgres: the channels triggers notify
//! (migration 0009) and how their payloads read.
//!
//! A bump of `jobs.log_seq` (every log writer hands out seq numbers that
//! way, in the transaction that inserts the lines) notifies [`LOG_CHANNEL`]
//! with `<jobID>:<new log_seq>`; a job reaching a final status notifies
//! [`STATUS_CHANNEL`] with `<jobID>`. Both are sent in the
//! writer's transaction, so Postgres delivers them at its commit, when the
//! lines and status are visible, to every api process listening.
//!
//! Except from the worker, the writer of nearly all lines and outcomes: a
//! transaction that notifies holds one lock for the whole database from
//! just before its commit until the commit is flushed to disk, so writers
//! that notify commit one at a time, each waiting for its own flush (and
//! holding its rows' locks meanwhile), where writers that do not share one
//! flush. The worker's sessions say [`NOTIFY_AFTER`], the triggers leave
//! their statements alone (not those of trigger functions they set off),
//! and the worker sends the same notifications after each commit with
//! [`NOTIFY_SQL`], in a transaction of their own that has nothing to make
//! durable and so does not wait for a flush.

use crust_model::Id;

/// Channel of "a job has new log lines" (`<jobID>:<seq>`).
pub const LOG_CHANNEL: &str = "crust_job_logs";

/// Channel of "a job finished" (`<jobID>`).
pub const STATUS_CHANNEL: &str = "crust_job_status";

/// The session setting of a writer that sends its own notifications after
/// its commits (migration 0015; the worker's sessions).
pub const NOTIFY_AFTER: (&str, &str) = ("crust.notify", "after");

/// Sends notifications, `$1` their channels and `$2` their payloads, as
/// one statement whose transaction commits without waiting for the WAL
/// flush (`synchronous_commit` off for it alone): it writes nothing that
/// must survive a crash, and the database-wide notify lock is held for
/// microseconds instead of a flush.
pub const NOTIFY_SQL: &str = "SELECT pg_notify(n.channel, n.payload)
     FROM (SELECT set_config('synchronous_commit', 'off', true)) AS local,
          unnest($1::text[], $2::text[]) AS n(channel, payload)";

/// The channels and payloads of `notices`, as [`NOTIFY_SQL`] takes them.
pub fn notify_params(notices: &[Notice]) -> (Vec<&'static str>, Vec<String>) {
    notices
        .iter()
        .map(|notice| match notice {
            Notice::Logged { job, seq } => (LOG_CHANNEL, format!("{job}:{seq}")),
            Notice::Finished { job } => (STATUS_CHANNEL, job.to_string()),
        })
        .unzip()
}

/// Sends `notices` through [`NOTIFY_SQL`].
pub async fn notify(pool: &sqlx::PgPool, notices: &[Notice]) -> crate::Result<()> {
    if notices.is_empty() {
        return Ok(());
    }
    let (channels, payloads) = notify_params(notices);
    sqlx::query(NOTIFY_SQL)
        .bind(channels)
        .bind(payloads)
        .execute(pool)
        .await?;
    Ok(())
}

/// A notification as the followers' hub sees it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Notice {
    /// The job's log now reaches `seq`.
    Logged { job: Id, seq: i32 },
    /// The job reached a final status.
    Finished { job: Id },
}

/// Reads a notification of [`LOG_CHANNEL`] or [`STATUS_CHANNEL`]; `None`
/// for another channel or a payload of another shape.
pub fn parse_notice(channel: &str, payload: &str) -> Option<Notice> {
    match channel {
        LOG_CHANNEL => {
            let (job, seq) = payload.split_once(':')?;
            Some(Notice::Logged {
                job: Id::parse(job).ok()?,
                seq: seq.parse().ok()?,
            })
        }
        STATUS_CHANNEL => Some(Notice::Finished {
            job: Id::parse(payload).ok()?,
        }),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn notices_parse_and_strangers_do_not() {
        let job = Id::parse("12").unwrap();
        assert_eq!(
            parse_notice(LOG_CHANNEL, "12:7"),
            Some(Notice::Logged { job, seq: 7 })
        );
        assert_eq!(
            parse_notice(STATUS_CHANNEL, "12"),
            Some(Notice::Finished { job })
        );
        assert_eq!(parse_notice(LOG_CHANNEL, "12"), None);
        let (channels, payloads) =
            notify_params(&[Notice::Logged { job, seq: 7 }, Notice::Finished { job }]);
        for ((channel, payload), notice) in channels
            .iter()
            .zip(&payloads)
            .zip([Notice::Logged { job, seq: 7 }, Notice::Finished { job }])
        {
            assert_eq!(parse_notice(channel, payload), Some(notice));
        }
        assert_eq!(parse_notice("other", "12"), None);
    }
}

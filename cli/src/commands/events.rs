//! `events`: the audit trail, read to its end or followed as it grows.

use crate::args::{EventsArgs, Global};
use crate::failure::{Failure, warn, write_stdout};
use crate::output;
use crate::storage::{self, Access};
use apitoken::{DynTokenStore, Event, EventCursor, EventKind, FeedMessage, StoreError, TokenStore};
use std::io::{self, Write};
use std::ops::ControlFlow;
use std::process::ExitCode;

/// The table's columns and their widths. Every cell has a fixed width (a sequence number
/// past 99,999,999 pushes its row right), so that rows printed as they arrive line up.
const COLUMNS: [(&str, usize); 7] = [
    ("SEQUENCE", 8),
    ("AT", 20),
    ("ENVIRONMENT", 36),
    ("TOKEN", 36),
    ("EVENT", 7),
    // `token ` and a UUID.
    ("BY", 42),
    ("DETAIL", 0),
];

pub(crate) async fn events(global: &Global, args: EventsArgs) -> Result<ExitCode, Failure> {
    let mut out = Printer::new(&args);
    storage::with_issuer(global, Access::Read, async |issuer| {
        let store = issuer.store();
        // A cursor past the end would skip, unsaid, the events that fill the gap.
        let head = store.event_head().await.map_err(read_failure)?;
        if args.after > head {
            return Err(Failure::usage(format!(
                "--after {}: this database's newest event is {head}: give the sequence number of an event it printed (0: from the first)",
                args.after
            )));
        }
        if !args.follow {
            return catch_up(store, &args, &mut out).await.map(drop);
        }
        // Listening only once the database is open: a signal before that ends the command
        // at once, with nothing printed, as it would any other.
        let mut stop = Stop::listen()?;
        tokio::select! {
            followed = follow(store, &args, &mut out) => followed,
            () = stop.wait() => Ok(()),
        }
    })
    .await?;
    out.finish(&args)?;
    Ok(ExitCode::SUCCESS)
}

/// Prints the events the log holds after `out.cursor`, a page per query and a write per
/// page. `Break` when no more should be printed (--limit reached, the reader gone).
async fn catch_up(
    store: &DynTokenStore,
    args: &EventsArgs,
    out: &mut Printer,
) -> Result<ControlFlow<()>, Failure> {
    loop {
        let size = out.remaining().map_or(args.page_size, |n| {
            u32::try_from(n).map_or(args.page_size, |n| n.min(args.page_size))
        });
        let page = match store.events_since(args.env, out.cursor, size).await {
            Ok(page) => page,
            // A follower goes on, as the feed does; a one-off read must not skip silently.
            Err(StoreError::EventsPruned { after, resumed }) if args.follow => {
                out.missed(after, resumed);
                continue;
            }
            Err(e) => return Err(read_failure(e)),
        };
        // The store may return fewer than asked before the end: only an empty page is it.
        if page.events.is_empty() {
            return Ok(ControlFlow::Continue(()));
        }
        out.print(&page.events)?;
        if out.done() {
            return Ok(ControlFlow::Break(()));
        }
        out.cursor = out.cursor.max(page.next);
    }
}

/// Prints what the log holds, then each event as it is committed, until --limit or the
/// reader goes away (a signal ends it from outside).
async fn follow(
    store: &DynTokenStore,
    args: &EventsArgs,
    out: &mut Printer,
) -> Result<(), Failure> {
    // At once: whoever watches sees the columns before the first change comes.
    out.header()?;
    if catch_up(store, args, out).await?.is_break() {
        return Ok(());
    }
    let mut feed = store.watch(out.cursor).map_err(read_failure)?;
    let mut interrupted = false;
    loop {
        match feed.next().await {
            Some(FeedMessage::Event(event)) => {
                // The feed reads every environment's events.
                if args.env.is_none_or(|env| event.environment == env) {
                    out.print(std::slice::from_ref(&event))?;
                    if out.done() {
                        return Ok(());
                    }
                }
                out.cursor = event.cursor();
            }
            Some(FeedMessage::CaughtUp { cursor, .. }) => {
                out.cursor = out.cursor.max(cursor);
                if interrupted {
                    interrupted = false;
                    note("resumed: in touch with the database again, and caught up");
                }
            }
            Some(FeedMessage::Interrupted { reason }) => {
                if !interrupted {
                    interrupted = true;
                    warn(&format!(
                        "lost touch with the database ({reason}); retrying: events made meanwhile will be printed late, none is lost"
                    ));
                }
            }
            Some(FeedMessage::Missed { after, resumed }) => out.missed(after, resumed),
            // A message this version does not know of: nothing to print.
            Some(_) => {}
            None => {
                return Err(Failure::usage(format!(
                    "the change feed ended unexpectedly: rerun with `--follow --after {}`",
                    out.cursor
                )));
            }
        }
    }
}

/// Standard output for events, and where the run got to.
struct Printer {
    json: bool,
    limit: Option<u64>,
    printed: u64,
    /// Whether the table's header was written.
    header: bool,
    /// The position after the last event read (printed, or passed over for another
    /// environment): where a later run goes on from.
    cursor: EventCursor,
    /// Whether the reader went away (`apitoken events | head`).
    closed: bool,
}

impl Printer {
    fn new(args: &EventsArgs) -> Printer {
        Printer {
            json: args.json,
            limit: args.limit,
            printed: 0,
            header: false,
            cursor: args.after,
            closed: false,
        }
    }

    /// How many more events may be printed, under --limit.
    fn remaining(&self) -> Option<u64> {
        self.limit.map(|limit| limit.saturating_sub(self.printed))
    }

    /// Whether nothing more is to be printed.
    fn done(&self) -> bool {
        self.closed || self.remaining() == Some(0)
    }

    /// Writes `events` (as many as --limit leaves) in one flushed write.
    fn print(&mut self, events: &[Event]) -> Result<(), Failure> {
        let take = self
            .remaining()
            .map_or(events.len(), |n| usize::try_from(n).unwrap_or(usize::MAX));
        let events = &events[..events.len().min(take)];
        let Some(last) = events.last() else {
            return Ok(());
        };
        let mut text = String::new();
        if !self.json && !self.header {
            text.push_str(&header_line());
            text.push('\n');
        }
        for event in events {
            if self.json {
                let line = serde_json::to_string(event)
                    .map_err(|e| Failure::usage(format!("cannot write JSON: {e}")))?;
                text.push_str(&line);
            } else {
                text.push_str(&row(event));
            }
            text.push('\n');
        }
        self.write(&text)?;
        self.header = !self.json;
        self.printed += events.len() as u64;
        self.cursor = last.cursor();
        Ok(())
    }

    /// The table's header alone (not in JSON).
    fn header(&mut self) -> Result<(), Failure> {
        if self.json || self.header {
            return Ok(());
        }
        self.write(&header_line())?;
        self.header = true;
        Ok(())
    }

    /// Events after `after` were pruned unread: say so, and go on from `resumed`.
    fn missed(&mut self, after: EventCursor, resumed: EventCursor) {
        warn(&format!(
            "the events after {after} were pruned before they were read, so they are missing here; going on after {resumed}"
        ));
        self.cursor = resumed;
    }

    /// A reader that went away ends the output quietly; other write errors fail the
    /// command.
    fn write(&mut self, text: &str) -> Result<(), Failure> {
        match write_stdout(text) {
            Ok(()) => Ok(()),
            Err(e) if e.kind() == io::ErrorKind::BrokenPipe => {
                self.closed = true;
                Ok(())
            }
            Err(e) => Err(Failure::usage(format!(
                "cannot write to standard output: {e}"
            ))),
        }
    }

    /// After a run that ended well: in a table, an empty log said as such, and where to go
    /// on from, on standard error (JSON keeps both streams to the events).
    fn finish(&mut self, args: &EventsArgs) -> Result<(), Failure> {
        if self.json {
            return Ok(());
        }
        if self.printed == 0 && !self.header && !self.closed {
            let scope = args
                .env
                .map_or_else(String::new, |env| format!(" in environment {env}"));
            self.write(&format!("no events after {}{scope}", args.after))?;
        }
        note(&format!(
            "next cursor: {cursor} (to go on from here: --after {cursor})",
            cursor = self.cursor
        ));
        Ok(())
    }
}

fn header_line() -> String {
    let (names, widths): (Vec<&str>, Vec<usize>) = COLUMNS.into_iter().unzip();
    output::table_line(&names, &widths)
}

fn row(event: &Event) -> String {
    let detail = match event.kind {
        EventKind::Revoked { cause: Some(cause) } => format!("cause {cause}"),
        EventKind::Rotated { successor } => format!("successor {successor}"),
        _ => String::new(),
    };
    let cells = [
        event.sequence.to_string(),
        output::second(event.at),
        event.environment.to_string(),
        event.token.to_string(),
        event.kind.name().to_owned(),
        event.actor.to_string(),
        detail,
    ];
    let widths = COLUMNS.map(|(_, width)| width);
    output::table_line(&cells, &widths)
}

/// `note: …` on standard error: for the person reading, never needed by a script.
fn note(message: &str) {
    let _ = writeln!(io::stderr(), "note: {message}");
}

/// A failed read of the log as one line that says what to do.
fn read_failure(e: StoreError) -> Failure {
    match e {
        StoreError::EventsPruned { after, resumed } => Failure::usage(format!(
            "the events after {after} were pruned before they were read (the log now starts after {resumed}): rerun with `--after {resumed}` to read on from there; the pruned events are gone"
        )),
        StoreError::NoEventLog => Failure::usage(e.to_string()),
        e => Failure::usage(format!("cannot read the event log: {e}")),
    }
}

/// Ctrl-C (SIGINT) and SIGTERM, which end --follow as its natural end: exit 0, with the
/// next cursor said.
struct Stop {
    #[cfg(unix)]
    interrupt: tokio::signal::unix::Signal,
    #[cfg(unix)]
    terminate: tokio::signal::unix::Signal,
}

impl Stop {
    /// Takes both signals from now on (their default ends the process without a word).
    #[cfg(unix)]
    fn listen() -> Result<Stop, Failure> {
        use tokio::signal::unix::{SignalKind, signal};
        let listen = |kind| {
            signal(kind).map_err(|e| {
                Failure::usage(format!(
                    "cannot listen for Ctrl-C and SIGTERM, which end --follow ({e}): run without --follow, repeatedly with --after"
                ))
            })
        };
        Ok(Stop {
            interrupt: listen(SignalKind::interrupt())?,
            terminate: listen(SignalKind::terminate())?,
        })
    }

    #[cfg(not(unix))]
    fn listen() -> Result<Stop, Failure> {
        Ok(Stop {})
    }

    /// Returns on the first of them.
    #[cfg(unix)]
    async fn wait(&mut self) {
        tokio::select! {
            _ = self.interrupt.recv() => {}
            _ = self.terminate.recv() => {}
        }
    }

    #[cfg(not(unix))]
    async fn wait(&mut self) {
        if tokio::signal::ctrl_c().await.is_err() {
            // Not listening: Ctrl-C ends the process as it would without us.
            std::future::pending::<()>().await;
        }
    }
}

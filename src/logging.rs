//! Log output that never blocks the thread that logs. Events are formatted where they
//! happen and handed to one writer thread through a bounded queue; when stderr (a
//! full pipe, a stalled journald) cannot keep up, lines are dropped and counted, and the
//! count is written once the writer catches up. A DNS loop never waits for a log line.

use std::io::Write;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc::{Receiver, SyncSender, TrySendError, sync_channel};

/// Lines queued at most.
pub const QUEUE: usize = 4096;

/// The sending side: a `MakeWriter` for tracing-subscriber.
#[derive(Clone)]
pub struct NonBlocking {
    tx: SyncSender<Item>,
    dropped: Arc<AtomicU64>,
}

enum Item {
    Line(Vec<u8>),
    /// Write out everything before this, then say so.
    Flush(std::sync::mpsc::Sender<()>),
}

/// One event's writer: collects the event's bytes, queues them on drop.
pub struct Line {
    tx: SyncSender<Item>,
    dropped: Arc<AtomicU64>,
    buf: Vec<u8>,
}

impl Write for Line {
    fn write(&mut self, b: &[u8]) -> std::io::Result<usize> {
        self.buf.extend_from_slice(b);
        Ok(b.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl Drop for Line {
    fn drop(&mut self) {
        if self.buf.is_empty() {
            return;
        }
        match self.tx.try_send(Item::Line(std::mem::take(&mut self.buf))) {
            Ok(()) => {}
            Err(TrySendError::Full(_)) | Err(TrySendError::Disconnected(_)) => {
                self.dropped.fetch_add(1, Ordering::Relaxed);
            }
        }
    }
}

impl<'a> tracing_subscriber::fmt::MakeWriter<'a> for NonBlocking {
    type Writer = Line;

    fn make_writer(&'a self) -> Line {
        Line {
            tx: self.tx.clone(),
            dropped: self.dropped.clone(),
            buf: Vec::new(),
        }
    }
}

impl NonBlocking {
    /// Lines dropped so far because the queue was full.
    pub fn dropped(&self) -> u64 {
        self.dropped.load(Ordering::Relaxed)
    }

    /// Waits (at most `within`) until every line queued so far is written: at exit, so
    /// the last lines ("stopped") are not lost with the process.
    pub fn flush(&self, within: std::time::Duration) {
        let (ack, done) = std::sync::mpsc::channel();
        if self.tx.send(Item::Flush(ack)).is_ok() {
            let _ = done.recv_timeout(within);
        }
    }
}

/// A queue of `capacity` lines and the loop that drains it into `out`: run the loop
/// on a thread of its own.
pub fn channel<W: Write>(capacity: usize, out: W) -> (NonBlocking, impl FnOnce()) {
    let (tx, rx) = sync_channel(capacity);
    let dropped = Arc::new(AtomicU64::new(0));
    let writer = NonBlocking {
        tx,
        dropped: dropped.clone(),
    };
    (writer, move || drain(rx, out, &dropped))
}

fn drain<W: Write>(rx: Receiver<Item>, mut out: W, dropped: &AtomicU64) {
    let mut reported = 0;
    let mut report = |out: &mut W| {
        let now = dropped.load(Ordering::Relaxed);
        if now > reported {
            let lost = now - reported;
            let _ = writeln!(
                out,
                "gslb: {lost} log lines dropped: the log output could not keep up"
            );
            reported = now;
        }
    };
    // Drops are reported before the next line that gets through, and at the end.
    while let Ok(item) = rx.recv() {
        report(&mut out);
        match item {
            Item::Line(line) => {
                let _ = out.write_all(&line);
            }
            Item::Flush(ack) => {
                let _ = out.flush();
                let _ = ack.send(());
            }
        }
    }
    report(&mut out);
}

/// A writer to stderr on its own thread.
pub fn stderr() -> NonBlocking {
    let (w, run) = channel(QUEUE, std::io::stderr());
    std::thread::Builder::new()
        .name("gslb-log".into())
        .spawn(run)
        .expect("spawn the log writer");
    w
}

#[cfg(test)]
mod tests {
    use super::*;
    use tracing_subscriber::fmt::MakeWriter;

    /// With nobody draining, logging still returns at once: the lines past the queue
    /// are dropped and counted, not waited for.
    #[test]
    fn a_full_queue_drops_lines_instead_of_blocking() {
        let (w, _run) = channel(8, Vec::new());
        let t = std::time::Instant::now();
        for i in 0..1000 {
            let mut line = w.make_writer();
            writeln!(line, "event {i}").unwrap();
        }
        assert!(t.elapsed() < std::time::Duration::from_secs(1));
        assert_eq!(w.dropped(), 992);
    }

    #[test]
    fn the_writer_writes_lines_whole_and_reports_drops() {
        struct Shared(Arc<std::sync::Mutex<Vec<u8>>>);
        impl Write for Shared {
            fn write(&mut self, b: &[u8]) -> std::io::Result<usize> {
                self.0.lock().unwrap().extend_from_slice(b);
                Ok(b.len())
            }
            fn flush(&mut self) -> std::io::Result<()> {
                Ok(())
            }
        }
        let out = Arc::new(std::sync::Mutex::new(Vec::new()));
        let (w, run) = channel(2, Shared(out.clone()));
        for i in 0..3 {
            let mut line = w.make_writer();
            write!(line, "part {i}, ").unwrap();
            writeln!(line, "end").unwrap();
        }
        drop(w);
        // Every sender gone: the loop drains what is queued, reports, and ends.
        run();
        let text = String::from_utf8(out.lock().unwrap().clone()).unwrap();
        assert_eq!(
            text,
            "gslb: 1 log lines dropped: the log output could not keep up\npart 0, end\npart 1, end\n"
        );
    }
}

//! A model check of the page lock's protocol with loom: the very functions of `page_lock`,
//! run on loom's atomics and a model of the futex, in every interleaving (up to loom's
//! preemption bound) of a few threads. A lost wake-up shows as loom's "deadlock" (every thread
//! asleep), a broken exclusion as a failed assertion.
//!
//! `RUSTFLAGS="--cfg loom" cargo test -p rustshim-plugin-api --release --lib loom`
//! (`tests/tests/project/page_lock_model.rs` runs it, and shows it catches an injected lost wake-up).

use super::*;
use loom::sync::atomic::{AtomicU32, AtomicUsize};
use loom::sync::{Arc, Condvar, Mutex};
use loom::thread;
use std::sync::atomic::Ordering::SeqCst;

/// The futex: the word, and one wait queue. The kernel checks the word and queues the sleeper
/// under the queue's lock, which a wake takes too: so does this model.
struct Word {
    word: AtomicU32,
    queue: Mutex<()>,
    woken: Condvar,
}

impl Futex for Word {
    forward_atomics!(.word);

    fn wait(&self, expected: u32) {
        let queue = self.queue.lock().unwrap();
        if self.word.load(Relaxed) == expected {
            drop(self.woken.wait(queue).unwrap());
        }
    }
    fn wake_all(&self) {
        let _queue = self.queue.lock().unwrap();
        self.woken.notify_all();
    }
    fn spin(&self) {
        thread::yield_now();
    }
    // One look again: enough to explore spinning, few enough to keep the model small.
    const SPINS: u32 = 1;
}

/// The lock and who is inside it.
struct Model {
    lock: Word,
    readers_in: AtomicUsize,
    writers_in: AtomicUsize,
}

impl Model {
    fn new() -> Arc<Model> {
        Arc::new(Model {
            lock: Word {
                word: AtomicU32::new(0),
                queue: Mutex::new(()),
                woken: Condvar::new(),
            },
            readers_in: AtomicUsize::new(0),
            writers_in: AtomicUsize::new(0),
        })
    }

    fn read(&self) {
        read_lock(&self.lock);
        self.readers_in.fetch_add(1, SeqCst);
        assert_eq!(self.writers_in.load(SeqCst), 0, "a reader beside a writer");
        self.readers_in.fetch_sub(1, SeqCst);
        read_unlock(&self.lock);
    }

    fn write(&self) {
        write_lock(&self.lock);
        assert_eq!(self.writers_in.fetch_add(1, SeqCst), 0, "two writers");
        assert_eq!(self.readers_in.load(SeqCst), 0, "a writer beside a reader");
        self.writers_in.fetch_sub(1, SeqCst);
        write_unlock(&self.lock);
    }

    /// Everyone has left: the word is free, with no one next or asleep.
    fn check_free(&self) {
        assert_eq!(self.lock.word.load(SeqCst), 0, "left locked or flagged");
    }
}

/// Runs `roles` (true: writer) once each, concurrently, in every interleaving.
fn check(roles: &'static [&'static [bool]]) {
    let mut builder = loom::model::Builder::new();
    if builder.preemption_bound.is_none() {
        builder.preemption_bound = Some(3);
    }
    builder.check(move || {
        let model = Model::new();
        let threads: Vec<_> = roles[1..]
            .iter()
            .map(|&ops| {
                let model = model.clone();
                thread::spawn(move || run(&model, ops))
            })
            .collect();
        run(&model, roles[0]);
        for t in threads {
            t.join().unwrap();
        }
        model.check_free();
    });
}

fn run(model: &Model, ops: &[bool]) {
    for &write in ops {
        if write {
            model.write();
        } else {
            model.read();
        }
    }
}

#[test]
fn loom_two_readers_and_a_writer() {
    check(&[&[false], &[false], &[true]]);
}

#[test]
fn loom_a_reader_and_two_writers() {
    check(&[&[false], &[true], &[true]]);
}

#[test]
fn loom_a_reader_twice_and_a_writer_twice() {
    check(&[&[false, false], &[true, true]]);
}

#[test]
fn loom_a_reader_writer_and_two_readers() {
    check(&[&[false, true], &[false], &[false]]);
}

//! Deferred families: the indexes and the delivery state (`d`, `i`, `o`, `g`, `e`, `u`),
//! whose writes a group commit does not put into sled's tree one key at a time.
//!
//! Why: sled 0.34 copies a tree node on every insert, so its cost is per key, and a push
//! used to write seven keys. Now a group commit writes to the tree only what the answer
//! depends on and cannot be rebuilt — the message record and its audit entry (the
//! *primary* families) — plus **one journal record per group** (family `j`) holding the
//! group's deferred writes in order. The same writes go into an in-memory map (the
//! *overlay*) that every read of a deferred family consults before the tree. Later
//! groups fold the overlay into the tree in bulk, a bounded number of keys per group, and
//! drop the journal records it covered in the same batch.
//!
//! Many deferred writes never reach the tree at all: a delivery record rewritten by a pull
//! and an ack, an inbox entry removed by the ack, an outbox entry removed when the peer
//! signs its receipt — the overlay keeps only the last write of each key, and forgets a
//! write-once key (inbox, outbox, retention and subject entries) removed before it was
//! folded, so scans do not step over tombstones.
//!
//! Invariants kept here (the argument is in ARCHITECTURE.md § Crash safety):
//! - a group's journal record is in the same sled batch as its primary writes, so after a
//!   crash the group's deferred writes exist exactly when its primary writes do;
//! - journal records are dropped only after the last of their writes is folded into the
//!   tree, a slice per group and oldest first (one batch dropping thousands of them stalled
//!   a commit for ~100 ms), so every deferred write is, at every instant, in the tree or
//!   in a journal record (or both), and a journal record never outlives a newer one;
//! - what a start replays may be in the tree already (a crash in the middle of a fold), so
//!   it becomes the `frozen` generation, never `active`: the removal of a replayed
//!   write-once key then leaves a tombstone that hides the tree's copy, instead of being
//!   forgotten as if the key had never been folded. Folding a replayed write again is
//!   harmless: it writes what the tree holds or what it should;
//! - reading a deferred key: the newer overlay generation (`active`), then the older one
//!   being folded (`frozen`), then the tree; a `None` in the overlay is a removal;
//! - memory: `active` turns into `frozen` once it holds more than the configured bytes, and
//!   there is at most one `frozen`, so the overlay holds at most about twice that bound
//!   (writes that arrive while `frozen` folds still go to `active`);
//! - only the ledger's writer mutates the overlay (through [`super::Store::apply`]);
//!   readers take a short read lock and copy out at most [`CURSOR_CHUNK`] entries at a time.

use std::collections::{BTreeMap, VecDeque};
use std::ops::Bound;
use std::sync::{Arc, RwLock};

use super::keys::{is_write_once, key, JOURNAL};
use super::record::RecordError;
use super::StoreError;

/// One deferred write: the key and its new value, or `None` for a removal.
pub(super) type Op = (Vec<u8>, Option<Vec<u8>>);

/// Largest journal record value: far below sled's blob threshold (see `super::SEGMENT_BYTES`).
const JOURNAL_CHUNK_BYTES: usize = 12 << 10;

/// Entries a reader copies out of the overlay per lock.
pub(super) const CURSOR_CHUNK: usize = 128;

/// Fixed cost counted per overlay entry (map node, vectors), on top of key and value bytes.
const ENTRY_OVERHEAD: usize = 64;

/// Journal record format: version byte, CRC-32 of the rest, then ops.
const JOURNAL_VERSION: u8 = 1;

/// The overlay: the deferred writes not yet folded into the tree, newest generation first.
#[derive(Debug)]
pub(super) struct Overlay {
    state: RwLock<State>,
    /// `active` turns into `frozen` above this many bytes.
    bound: usize,
}

#[derive(Debug, Default)]
struct State {
    active: BTreeMap<Vec<u8>, Option<Vec<u8>>>,
    active_bytes: usize,
    frozen: Option<Frozen>,
    /// Oldest journal record still in the tree (group number).
    first_journal: u64,
    /// Number the next group's journal record gets.
    next_journal: u64,
}

#[derive(Debug)]
struct Frozen {
    /// The writes to fold; emptied once all are folded (reads then find them in the tree).
    ops: Arc<BTreeMap<Vec<u8>, Option<Vec<u8>>>>,
    /// Next key to fold (inclusive); `None` once every op is folded, when the generation's
    /// journal records are dropped, a slice per group.
    cursor: Option<Vec<u8>>,
    /// Journal records `first_journal..journal_end` hold `ops`.
    journal_end: u64,
}

/// What one group does to the tree for the overlay, computed by [`Overlay::plan`] before the
/// batch and committed to the overlay by [`Overlay::commit`] after it succeeded.
#[derive(Debug, Default)]
pub(super) struct Plan {
    /// This group's journal records (key, value).
    pub(super) journal: Vec<(Vec<u8>, Vec<u8>)>,
    /// Older writes folded into the tree by this group.
    pub(super) fold: Vec<Op>,
    /// Journal records this group may drop (the keys from, to), once `frozen` is folded:
    /// the store drops the first of them, at most as many as it folds, and says where it
    /// stopped in `dropped_to`.
    pub(super) drop_journal: Option<(Vec<u8>, Vec<u8>)>,
    /// Set by the store: the journal record (group number) the next drop starts at.
    pub(super) dropped_to: Option<u64>,
    /// Where the fold stopped (`None`: it finished).
    cursor_after: Option<Vec<u8>>,
    /// This group's deferred writes.
    ops: Vec<Op>,
}

impl Overlay {
    /// An empty overlay whose generations turn over above `bound` bytes (journal records are
    /// numbered from where [`Overlay::replay`] finds them).
    pub(super) fn new(bound: usize) -> Overlay {
        Overlay {
            state: RwLock::new(State::default()),
            bound,
        }
    }

    /// Replays journal records found at open, in order (`records` yields (group, value)).
    pub(super) fn replay(
        &self,
        records: impl Iterator<Item = Result<(u64, Vec<u8>), StoreError>>,
    ) -> Result<usize, StoreError> {
        let mut st = self.state.write().expect("overlay lock");
        let mut n = 0;
        let mut first = None;
        // Some of these writes may be folded already: they become `frozen` (see the
        // module's invariants), removals kept as tombstones.
        let mut ops = BTreeMap::new();
        for r in records {
            let (group, bytes) = r?;
            first.get_or_insert(group);
            for (k, v) in decode(&bytes).map_err(|source| StoreError::Corrupt {
                family: "journal",
                key: group.to_string(),
                source,
            })? {
                ops.insert(k, v);
                n += 1;
            }
            st.next_journal = group + 1;
        }
        st.first_journal = first.unwrap_or(st.next_journal);
        if first.is_some() {
            st.frozen = Some(Frozen {
                cursor: ops.keys().next().cloned(),
                ops: Arc::new(ops),
                journal_end: st.next_journal,
            });
        }
        Ok(n)
    }

    /// The newest write of `k`: `Some(Some(v))` a value, `Some(None)` a removal, `None`
    /// nothing deferred (read the tree).
    pub(super) fn get(&self, k: &[u8]) -> Option<Option<Vec<u8>>> {
        let st = self.state.read().expect("overlay lock");
        if let Some(op) = st.active.get(k) {
            return Some(op.clone());
        }
        st.frozen.as_ref().and_then(|f| f.ops.get(k).cloned())
    }

    /// Up to `n` entries with keys in `[from, to)` (`from` exclusive when `after`), newest
    /// generation winning, in key order.
    pub(super) fn range(&self, from: &[u8], after: bool, to: Option<&[u8]>, n: usize) -> Vec<Op> {
        let st = self.state.read().expect("overlay lock");
        let lo = if after {
            Bound::Excluded(from)
        } else {
            Bound::Included(from)
        };
        let hi = to.map_or(Bound::Unbounded, Bound::Excluded);
        let mut a = st.active.range::<[u8], _>((lo, hi)).peekable();
        let empty = BTreeMap::new();
        let frozen = st.frozen.as_ref().map_or(&empty, |f| &*f.ops);
        let mut f = frozen.range::<[u8], _>((lo, hi)).peekable();
        let mut out = Vec::with_capacity(n.min(64));
        while out.len() < n {
            let (take_active, same) = match (a.peek(), f.peek()) {
                (None, None) => break,
                (Some(_), None) => (true, false),
                (None, Some(_)) => (false, false),
                (Some((ka, _)), Some((kf, _))) => (ka <= kf, ka == kf),
            };
            if same {
                f.next();
            }
            let (k, v) = if take_active { a.next() } else { f.next() }.expect("peeked");
            out.push((k.clone(), v.clone()));
        }
        out
    }

    /// Plans the overlay's part of one group: its journal records, and the next slice of
    /// `frozen` to fold (at most `fold_max` writes).
    pub(super) fn plan(&self, ops: Vec<Op>, fold_max: usize) -> Plan {
        let st = self.state.read().expect("overlay lock");
        let mut plan = Plan::default();
        if !ops.is_empty() {
            plan.journal = encode(st.next_journal, &ops);
        }
        plan.ops = ops;
        if let Some(frozen) = &st.frozen {
            match &frozen.cursor {
                Some(cursor) => {
                    let mut it = frozen
                        .ops
                        .range::<[u8], _>((Bound::Included(cursor.as_slice()), Bound::Unbounded));
                    for (k, v) in it.by_ref().take(fold_max) {
                        plan.fold.push((k.clone(), v.clone()));
                    }
                    plan.cursor_after = it.next().map(|(k, _)| k.clone());
                }
                None => {
                    plan.drop_journal = Some((
                        journal_key(st.first_journal, 0),
                        journal_key(frozen.journal_end, 0),
                    ));
                }
            }
        }
        plan
    }

    /// The group's batch is applied: its writes join `active`, the fold advances.
    pub(super) fn commit(&self, plan: Plan) {
        let mut st = self.state.write().expect("overlay lock");
        if !plan.journal.is_empty() {
            st.next_journal += 1;
        }
        for (k, v) in plan.ops {
            insert(&mut st, k, v);
        }
        let first_journal = st.first_journal;
        if let Some(f) = st.frozen.as_mut() {
            if plan.drop_journal.is_some() {
                let to = plan.dropped_to.unwrap_or(first_journal);
                let finished = to >= f.journal_end;
                st.first_journal = to;
                if finished {
                    st.frozen = None;
                }
            } else {
                f.cursor = plan.cursor_after;
                if f.cursor.is_none() {
                    // All folded: the tree answers for these keys now.
                    f.ops = Arc::new(BTreeMap::new());
                }
            }
        }
        self.turn_over(&mut st);
    }

    /// Writes not yet folded into the tree, and the bytes they take.
    pub(super) fn size(&self) -> (usize, usize) {
        let st = self.state.read().expect("overlay lock");
        let frozen = st.frozen.as_ref().map_or(0, |f| f.ops.len());
        (st.active.len() + frozen, st.active_bytes)
    }

    /// True when nothing is left to fold and no journal record to drop.
    pub(super) fn is_settled(&self) -> bool {
        let st = self.state.read().expect("overlay lock");
        st.active.is_empty() && st.frozen.is_none()
    }

    /// Turns `active` into `frozen` now, if nothing is frozen (to fold everything).
    pub(super) fn freeze_now(&self) {
        let mut st = self.state.write().expect("overlay lock");
        if st.frozen.is_none() && !st.active.is_empty() {
            let ops = std::mem::take(&mut st.active);
            st.active_bytes = 0;
            let cursor = ops.keys().next().cloned();
            st.frozen = Some(Frozen {
                ops: Arc::new(ops),
                cursor,
                journal_end: st.next_journal,
            });
        }
    }

    fn turn_over(&self, st: &mut State) {
        if st.frozen.is_none() && st.active_bytes > self.bound {
            let ops = std::mem::take(&mut st.active);
            st.active_bytes = 0;
            let cursor = ops.keys().next().cloned();
            st.frozen = Some(Frozen {
                ops: Arc::new(ops),
                cursor,
                journal_end: st.next_journal,
            });
        }
    }
}

/// Puts one write into `active`, keeping its byte count: key, value and a fixed overhead
/// per entry; a rewrite of a key changes only the value's part.
///
/// The removal of a write-once key whose write is still in `active` drops the entry: that
/// key was never folded (only `frozen` is), so no copy of it exists in the tree.
fn insert(st: &mut State, k: Vec<u8>, v: Option<Vec<u8>>) {
    if v.is_none() && is_write_once(k[0]) {
        if let Some(Some(old)) = st.active.get(&k) {
            let freed = k.len() + old.len() + ENTRY_OVERHEAD;
            st.active_bytes = st.active_bytes.saturating_sub(freed);
            st.active.remove(&k);
            return;
        }
    }
    let new_len = v.as_ref().map_or(0, Vec::len);
    let key_len = k.len();
    match st.active.insert(k, v) {
        Some(old) => {
            st.active_bytes = st.active_bytes - old.map_or(0, |o| o.len()) + new_len;
        }
        None => st.active_bytes += key_len + new_len + ENTRY_OVERHEAD,
    }
}

/// Key of chunk `chunk` of group `group`'s journal record.
pub(super) fn journal_key(group: u64, chunk: u16) -> Vec<u8> {
    let mut k = key(JOURNAL, &group.to_be_bytes());
    k.extend_from_slice(&chunk.to_be_bytes());
    k
}

/// The group number of a journal key.
pub(super) fn journal_group(k: &[u8]) -> Option<u64> {
    k.get(1..9)
        .and_then(|b| b.try_into().ok())
        .map(u64::from_be_bytes)
}

/// Encodes `ops` as group `group`'s journal record, in chunks below sled's blob threshold:
/// `[version][crc32 of the rest][ops...]`, each op `[key len u32][key][tag][value len
/// u32][value]` with tag 1 for a value and 0 for a removal (no length or value).
fn encode(group: u64, ops: &[Op]) -> Vec<(Vec<u8>, Vec<u8>)> {
    let mut chunks = Vec::new();
    let mut cur = vec![JOURNAL_VERSION, 0, 0, 0, 0];
    let finish = |cur: &mut Vec<u8>, chunks: &mut Vec<(Vec<u8>, Vec<u8>)>| {
        let crc = crc32fast::hash(&cur[5..]);
        cur[1..5].copy_from_slice(&crc.to_le_bytes());
        let chunk = u16::try_from(chunks.len()).expect("a group has fewer than 65536 chunks");
        chunks.push((
            journal_key(group, chunk),
            std::mem::replace(cur, vec![JOURNAL_VERSION, 0, 0, 0, 0]),
        ));
    };
    for (k, v) in ops {
        let len = 9 + k.len() + v.as_ref().map_or(0, |v| 4 + v.len());
        if cur.len() > 5 && cur.len() + len > JOURNAL_CHUNK_BYTES {
            finish(&mut cur, &mut chunks);
        }
        cur.extend_from_slice(&(k.len() as u32).to_le_bytes());
        cur.extend_from_slice(k);
        match v {
            Some(v) => {
                cur.push(1);
                cur.extend_from_slice(&(v.len() as u32).to_le_bytes());
                cur.extend_from_slice(v);
            }
            None => cur.push(0),
        }
    }
    finish(&mut cur, &mut chunks);
    chunks
}

/// Decodes one journal chunk.
fn decode(bytes: &[u8]) -> Result<Vec<Op>, RecordError> {
    if bytes.len() < 5 {
        return Err(RecordError::Truncated(bytes.len()));
    }
    if bytes[0] != JOURNAL_VERSION {
        return Err(RecordError::Version(bytes[0]));
    }
    let stored = u32::from_le_bytes(bytes[1..5].try_into().expect("4 bytes"));
    let computed = crc32fast::hash(&bytes[5..]);
    if stored != computed {
        return Err(RecordError::Checksum { stored, computed });
    }
    let mut rest = &bytes[5..];
    let mut ops = Vec::new();
    let short = || RecordError::Body("journal op is cut short".into());
    let take = |rest: &mut &[u8], n: usize| -> Result<Vec<u8>, RecordError> {
        if rest.len() < n {
            return Err(short());
        }
        let (a, b) = rest.split_at(n);
        *rest = b;
        Ok(a.to_vec())
    };
    let take_len = |rest: &mut &[u8]| -> Result<usize, RecordError> {
        let b = take(rest, 4)?;
        Ok(u32::from_le_bytes(b.try_into().expect("4 bytes")) as usize)
    };
    while !rest.is_empty() {
        let klen = take_len(&mut rest)?;
        let k = take(&mut rest, klen)?;
        let tag = take(&mut rest, 1)?[0];
        let v = match tag {
            0 => None,
            1 => {
                let vlen = take_len(&mut rest)?;
                Some(take(&mut rest, vlen)?)
            }
            t => return Err(RecordError::Body(format!("journal op has tag {t}"))),
        };
        ops.push((k, v));
    }
    Ok(ops)
}

/// A reader's position in the overlay: copies out [`CURSOR_CHUNK`] entries per lock, so a
/// long scan never holds the writer up.
pub(super) struct Cursor {
    overlay: Arc<Overlay>,
    next: Vec<u8>,
    after: bool,
    to: Option<Vec<u8>>,
    buf: VecDeque<Op>,
    done: bool,
}

impl Cursor {
    pub(super) fn new(overlay: Arc<Overlay>, from: Vec<u8>, to: Option<Vec<u8>>) -> Cursor {
        Cursor {
            overlay,
            next: from,
            after: false,
            to,
            buf: VecDeque::new(),
            done: false,
        }
    }

    /// The next entry without taking it.
    pub(super) fn peek(&mut self) -> Option<&Op> {
        if self.buf.is_empty() && !self.done {
            let chunk =
                self.overlay
                    .range(&self.next, self.after, self.to.as_deref(), CURSOR_CHUNK);
            self.done = chunk.len() < CURSOR_CHUNK;
            if let Some((k, _)) = chunk.last() {
                self.next = k.clone();
                self.after = true;
            }
            self.buf.extend(chunk);
        }
        self.buf.front()
    }

    /// Takes the next entry.
    pub(super) fn next_op(&mut self) -> Option<Op> {
        self.peek();
        self.buf.pop_front()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn op(k: &str, v: Option<&str>) -> Op {
        (k.as_bytes().to_vec(), v.map(|v| v.as_bytes().to_vec()))
    }

    #[test]
    fn journal_round_trips_across_chunks() {
        let ops: Vec<Op> = (0..2000)
            .map(|i| {
                op(
                    &format!("ikey{i:05}"),
                    (i % 3 != 0).then_some("value-bytes"),
                )
            })
            .collect();
        let chunks = encode(7, &ops);
        assert!(chunks.len() > 1, "large groups span chunks");
        let mut back = Vec::new();
        for (i, (k, v)) in chunks.iter().enumerate() {
            assert_eq!(k, &journal_key(7, i as u16));
            assert_eq!(journal_group(k), Some(7));
            assert!(v.len() <= JOURNAL_CHUNK_BYTES + 64);
            back.extend(decode(v).expect("decodes"));
        }
        assert_eq!(back, ops);
    }

    #[test]
    fn a_damaged_journal_chunk_is_refused() {
        let (_, mut v) = encode(1, &[op("a", Some("b"))]).remove(0);
        let last = v.len() - 1;
        v[last] ^= 1;
        assert!(matches!(decode(&v), Err(RecordError::Checksum { .. })));
    }

    #[test]
    fn newest_generation_wins_and_removals_shadow() {
        let o = Overlay::new(0); // turns over after every group
        let p = o.plan(vec![op("k1", Some("old")), op("k2", Some("x"))], 0);
        o.commit(p);
        // k1, k2 now frozen; newer writes go to active.
        let p = o.plan(vec![op("k1", Some("new")), op("k2", None)], 0);
        assert!(p.fold.is_empty(), "fold_max 0 folds nothing");
        o.commit(p);
        assert_eq!(o.get(b"k1"), Some(Some(b"new".to_vec())));
        assert_eq!(o.get(b"k2"), Some(None));
        assert_eq!(o.get(b"k3"), None);
        let all = o.range(b"k", false, None, 10);
        assert_eq!(all, vec![op("k1", Some("new")), op("k2", None)]);
    }

    #[test]
    fn folding_walks_frozen_in_slices_then_drops_its_journal() {
        let o = Overlay::new(0);
        o.commit(o.plan((0..5).map(|i| op(&format!("k{i}"), Some("v"))).collect(), 2));
        for want in [2, 2, 1] {
            let p = o.plan(vec![], 2);
            assert_eq!(p.fold.len(), want);
            assert!(p.drop_journal.is_none(), "no drop while folding");
            o.commit(p);
        }
        assert_eq!(o.size().0, 0, "folded writes are read from the tree");
        assert_eq!(o.get(b"k0"), None);
        assert!(!o.is_settled(), "the journal is still there");
        let mut p = o.plan(vec![], 2);
        assert!(p.fold.is_empty());
        let (from, to) = p.drop_journal.clone().expect("then the journal goes");
        assert_eq!((from, to), (journal_key(0, 0), journal_key(1, 0)));
        p.dropped_to = Some(1); // the store dropped all of it
        o.commit(p);
        assert!(o.is_settled());
    }
}

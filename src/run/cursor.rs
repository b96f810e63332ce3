//! Cursors over a [`Run`], both ways.
//!
//! A [`Cursor`] always rests on an entry or is off one end (past the last
//! entry, or before the first): `current()` never does I/O or validation;
//! `advance()` and `prev()` may enter (and, the first time, verify) the next
//! or previous block, so they return a `Result`. From past the end `prev()`
//! comes back to the last entry; from before the start `advance()` comes
//! back to the first.

use super::archive::BlockView;
use super::entry::EntryRef;
use super::reader::Run;
use crate::{Error, Result};

/// `block` of a cursor before the first entry.
const BEFORE_START: usize = usize::MAX;

/// A position in a run.
#[derive(Debug, Clone)]
pub struct Cursor<'a> {
    run: &'a Run,
    /// Block the cursor is in (`block_count` past the end, `BEFORE_START`
    /// before the start).
    block: usize,
    view: Option<BlockView<'a>>,
    pos: usize,
}

impl<'a> Cursor<'a> {
    pub(crate) fn first(run: &'a Run) -> Result<Self> {
        let mut c = Cursor {
            run,
            block: 0,
            view: None,
            pos: 0,
        };
        c.enter(0)?;
        Ok(c)
    }

    pub(crate) fn seek(run: &'a Run, key: &[u8]) -> Result<Self> {
        let b = run.find_block(key);
        let mut c = Cursor {
            run,
            block: b,
            view: None,
            pos: 0,
        };
        c.enter(b)?;
        if let Some(view) = c.view {
            // The index promised this block's last key is >= key.
            c.pos = view.lower_bound(key);
            if c.pos == view.len() {
                c.enter(b + 1)?;
            }
        }
        Ok(c)
    }

    /// A cursor at the first entry whose key is `> key`.
    pub(crate) fn seek_past(run: &'a Run, key: &[u8]) -> Result<Self> {
        let mut c = Cursor::seek(run, key)?;
        // Z-set runs hold a key once per value; key-value runs at most once.
        while c.key() == Some(key) {
            c.advance()?;
        }
        Ok(c)
    }

    /// A cursor at the last entry (before the start of an empty run).
    pub(crate) fn last(run: &'a Run) -> Result<Self> {
        let mut c = Cursor {
            run,
            block: BEFORE_START,
            view: None,
            pos: 0,
        };
        if let Some(b) = run.block_count().checked_sub(1) {
            c.enter_back(b)?;
        }
        Ok(c)
    }

    /// A cursor at a position an earlier cursor reported with
    /// [`Cursor::position`] (how a merge resumes where it stopped).
    pub(crate) fn at(run: &'a Run, (block, pos): (usize, usize)) -> Result<Self> {
        let mut c = Cursor {
            run,
            block,
            view: None,
            pos: 0,
        };
        c.enter(block)?;
        if let Some(view) = c.view {
            // Positions come from a cursor over this very run.
            assert!(
                pos < view.len(),
                "cursor position {pos} past block {block} of {} entries",
                view.len()
            );
            c.pos = pos;
        }
        Ok(c)
    }

    /// Where the cursor rests: `(block, entry in block)`.
    pub(crate) fn position(&self) -> (usize, usize) {
        (self.block, self.pos)
    }

    /// The run under the cursor.
    pub(crate) fn run(&self) -> &'a Run {
        self.run
    }

    /// Positions at entry 0 of block `b`, or exhausted if `b` is past the end.
    fn enter(&mut self, b: usize) -> Result<()> {
        self.block = b;
        self.pos = 0;
        self.view = None;
        if b < self.run.block_count() {
            self.view = Some(self.run.block(b)?);
            // Cursors mostly move forward: overlap the next block's memory
            // latency with the work on this one.
            self.run.prefetch_block(b + 1);
        }
        Ok(())
    }

    /// Positions at the last entry of block `b` (`b < block_count`).
    fn enter_back(&mut self, b: usize) -> Result<()> {
        let view = self.run.block(b)?;
        self.block = b;
        // Validated blocks are never empty.
        self.pos = view.len().saturating_sub(1);
        self.view = Some(view);
        if let Some(before) = b.checked_sub(1) {
            self.run.prefetch_block(before);
        }
        Ok(())
    }

    /// The entry under the cursor, or `None` once exhausted.
    #[inline]
    pub fn current(&self) -> Option<EntryRef<'a>> {
        self.view.map(|v| v.entry(self.pos))
    }

    /// The key under the cursor, or `None` once exhausted.
    #[inline]
    pub fn key(&self) -> Option<&'a [u8]> {
        self.view.map(|v| v.key(self.pos))
    }

    /// Moves to the next entry. On error the cursor stays where it was.
    #[inline]
    pub fn advance(&mut self) -> Result<()> {
        let Some(view) = self.view else {
            if self.block == BEFORE_START {
                self.enter(0)?;
            }
            return Ok(());
        };
        if self.pos + 1 < view.len() {
            self.pos += 1;
            return Ok(());
        }
        let (block, pos) = (self.block, self.pos);
        let entered = self.enter(block + 1).and_then(|()| match self.view {
            Some(next) => self.run.check_boundary(block + 1, &view, &next),
            None => Ok(()),
        });
        entered.inspect_err(|_| {
            self.block = block;
            self.pos = pos;
            self.view = Some(view);
        })
    }

    /// Moves to the previous entry: from the first one to before the
    /// start, from past the end to the last one. On error the cursor stays
    /// where it was.
    pub fn prev(&mut self) -> Result<()> {
        let Some(view) = self.view else {
            if self.block != BEFORE_START
                && let Some(b) = self.run.block_count().checked_sub(1)
            {
                self.enter_back(b)?;
            }
            return Ok(());
        };
        if self.pos > 0 {
            self.pos -= 1;
            return Ok(());
        }
        let block = self.block;
        let Some(before) = block.checked_sub(1) else {
            self.block = BEFORE_START;
            self.view = None;
            return Ok(());
        };
        let entered = self.enter_back(before).and_then(|()| match self.view {
            Some(prev) => self.run.check_boundary(block, &prev, &view),
            None => Ok(()),
        });
        entered.inspect_err(|_| {
            self.block = block;
            self.pos = 0;
            self.view = Some(view);
        })
    }

    /// True once the cursor is off either end (past the last entry or
    /// before the first).
    pub fn is_exhausted(&self) -> bool {
        self.view.is_none()
    }
}

/// Iterator over every entry of a run; see [`Run::iter`].
#[derive(Debug)]
pub struct Iter<'a> {
    state: IterState<'a>,
}

#[derive(Debug)]
enum IterState<'a> {
    Start(&'a Run),
    Running(Cursor<'a>),
    Failed(Option<Error>),
}

impl<'a> Iter<'a> {
    pub(crate) fn new(run: &'a Run) -> Self {
        Iter {
            state: IterState::Start(run),
        }
    }
}

impl<'a> Iterator for Iter<'a> {
    type Item = Result<EntryRef<'a>>;

    #[inline]
    fn next(&mut self) -> Option<Self::Item> {
        loop {
            match &mut self.state {
                IterState::Start(run) => match Cursor::first(run) {
                    Ok(c) => self.state = IterState::Running(c),
                    Err(e) => self.state = IterState::Failed(Some(e)),
                },
                IterState::Running(c) => {
                    let entry = c.current()?;
                    if let Err(e) = c.advance() {
                        // Hand out this entry now and the error next time.
                        self.state = IterState::Failed(Some(e));
                    }
                    return Some(Ok(entry));
                }
                IterState::Failed(e) => return e.take().map(Err),
            }
        }
    }
}
